"""The client<->server invocation protocol, whatever carries it.

:class:`InvocationSession` is the carrier-neutral session (frames of
:mod:`kernel_workers.wire`); :class:`DirectServer` carries it over a private Unix
socket.  The websocket carrier is a tornado handler, so it lives with the other
handlers in :mod:`..api` (the only layer that knows tornado); this package knows no
HTTP at all.
"""

from .direct import DirectServer
from .session import InvocationSession

__all__ = ["DirectServer", "InvocationSession"]
