"""``faas.lookup``: a handle on a function already on the server, by ``name[:qualifier]``.

``faas.lookup("hello")``, ``faas.lookup("hello:3")`` and ``faas.lookup("hello:live")``
return a :class:`~.function.RemoteFunction`, the same kind of handle as ``@faas.function``
(call it, ``.invoke``, ``.spawn``, ``.map``...), for a zip function created with boto3 or
the CLI as for a notebook function.  Its calls carry the qualifier and the server resolves it
per call: through an alias with weights, each call (each item of a ``map``) picks its
version.  Nothing is deployed from such a handle, and ``.local()`` is not available.
"""

from __future__ import annotations

from .. import errors
from . import lambda_api
from .discovery import default_connection
from .function import RemoteFunction


def lookup(name: str, *, connection=None, show: bool | None = None) -> RemoteFunction:
    """A handle on ``"hello"`` ($LATEST), ``"hello:3"`` (published version 3) or
    ``"hello:live"`` (an alias); raises ResourceNotFound if there is no such thing."""
    if not isinstance(name, str) or not name:
        raise errors.InvalidParameter(f"lookup takes 'name' or 'name:qualifier', not {name!r}")
    base, _, qualifier = name.partition(":")
    config = lambda_api.configuration(connection or default_connection(), base, qualifier or None)
    return RemoteFunction.on_server(base, qualifier or "$LATEST", config, connection=connection, show=show)
