"""Lambda's versions and aliases from Python: ``faas.lookup``, ``f.publish()``, ``f.alias()``.

``faas.lookup("hello")``, ``faas.lookup("hello:live")`` and ``faas.lookup("hello:3")``
return a :class:`DeployedFunction`: the same kind of handle as ``@faas.function`` (call it,
``.invoke``, ``.spawn``, ``.map``...), for a function already on the server (a zip function
created with boto3 or the CLI, or a notebook function).  Its calls carry the qualifier, and
the server resolves it per call: through an alias with weights, each call (each item of a
``map``) picks its version.  Nothing is deployed from a looked-up handle.

The control plane is Lambda's own REST API on the FaaS server (``/2015-03-31/...``),
signed with SigV4 like boto3 does (:mod:`jupyter_faas.sigv4`), so boto3 is not needed.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from .. import errors
from ..sigv4 import sign
from .discovery import default_connection
from .function import RemoteFunction

_BY_CODE = {"ResourceNotFoundException": errors.ResourceNotFound,
            "InvalidParameterValueException": errors.InvalidParameter,
            "ResourceConflictException": errors.InvalidParameter,
            "PreconditionFailedException": errors.InvalidParameter,
            "TooManyRequestsException": errors.Throttled}


def lambda_request(conn, method: str, path: str, body: dict | None = None,
                   query: dict | None = None, timeout: float = 60) -> dict:
    """Call the server's Lambda API (``path`` under ``/2015-03-31/functions``...), signed with
    the connection's token; Lambda's errors as the FaaS exceptions (404: ResourceNotFound...)."""
    url = conn.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
    data = b"" if body is None else json.dumps(body).encode()
    headers = sign(method, url, data, conn.token)
    if body is not None:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data if body is not None else None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        try:
            info = json.loads(exc.read())
        except ValueError:
            info = {}
        code = exc.headers.get("x-amzn-ErrorType", "").split(":")[0]
        message = info.get("message") or info.get("Message") or f"HTTP {exc.code} from {method} {path}"
        raise _BY_CODE.get(code, errors.ServerError)(message) from None
    except OSError as exc:
        raise errors.ServerError(f"cannot reach the FaaS server at {conn.url}: {exc}") from exc
    return json.loads(raw) if raw else {}


def _function_path(name: str) -> str:
    return "/2015-03-31/functions/" + urllib.parse.quote(name, safe="")


class DeployedFunction(RemoteFunction):
    """A handle on ``name[:qualifier]`` as the server has it (see :func:`lookup`).

    ``.version`` is the qualifier its calls carry (``"$LATEST"``, ``"3"`` or an alias);
    ``.config`` has the version's memory, timeout and env.  ``.local()`` is not available:
    the code is on the server.
    """

    def __init__(self, name: str, qualifier: str, config: dict, *, connection=None, show=None):
        # Not RemoteFunction.__init__: there is no callable here to pickle and deploy.
        self._fn = None
        self.name = name
        self.qualifier = qualifier
        self.show = show
        self.config = config
        self._connection = connection
        self._deployed = None
        self.__name__ = self.__qualname__ = name
        self.__doc__ = f"{name}:{qualifier} on the FaaS server"

    def __repr__(self) -> str:
        return (f"<DeployedFunction {self.name}:{self.qualifier} memory={self.config['memory']} "
                f"timeout={self.config['timeout']:g}>")

    def deploy(self, force: bool = False) -> str:
        """Nothing to deploy: the qualifier the calls carry."""
        return self.qualifier

    def local(self, *args, **kwargs):
        raise errors.InvalidParameter(f"{self.name}:{self.qualifier} was looked up on the server: its code "
                                      f"is not in this process, so it cannot run locally. Call it instead.")


def lookup(name: str, *, connection=None, show: bool | None = None) -> DeployedFunction:
    """A handle on a function on the server: ``"hello"`` ($LATEST), ``"hello:3"`` (published
    version 3) or ``"hello:live"`` (an alias; weighted aliases pick per call).  Raises
    ResourceNotFound if there is no such function, version or alias."""
    if not isinstance(name, str) or not name:
        raise errors.InvalidParameter(f"lookup takes 'name' or 'name:qualifier', not {name!r}")
    base, _, qualifier = name.partition(":")
    conn = connection or default_connection()
    conf = lambda_request(conn, "GET", _function_path(base) + "/configuration",
                          query={"Qualifier": qualifier} if qualifier else None)
    config = {"memory": conf["MemorySize"], "timeout": float(conf["Timeout"]),
              "env": (conf.get("Environment") or {}).get("Variables") or {}, "concurrency": None}
    return DeployedFunction(base, qualifier or "$LATEST", config, connection=connection, show=show)


def publish(fn: RemoteFunction, description: str = "") -> int:
    """Publish ``fn`` as it is now (deployed first) as its next numbered version; the number."""
    if not isinstance(fn, DeployedFunction):
        fn.deploy()
    conf = lambda_request(fn.connection, "POST", _function_path(fn.name) + "/versions",
                          {"Description": description})
    return int(conf["Version"])


def alias(fn: RemoteFunction, name: str, version, weights: dict | None, description: str) -> DeployedFunction:
    """Point alias ``name`` of ``fn`` at ``version`` (created or replaced), with ``weights``
    ({other version: share of calls}, at most one); a handle on ``fn:name``."""
    routing = {"AdditionalVersionWeights": {str(v): float(w) for v, w in (weights or {}).items()}}
    body = {"FunctionVersion": str(version), "Description": description, "RoutingConfig": routing}
    path = _function_path(fn.name) + "/aliases"
    one = f"{path}/{urllib.parse.quote(name, safe='')}"
    try:
        lambda_request(fn.connection, "GET", one)
    except errors.ResourceNotFound:
        lambda_request(fn.connection, "POST", path, dict(body, Name=name))
    else:
        lambda_request(fn.connection, "PUT", one, body)
    return lookup(f"{fn.name}:{name}", connection=fn._connection, show=fn.show)
