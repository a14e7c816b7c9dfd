"""The FaaS server's Lambda API (``/2015-03-31/...``) from Python, for versions and aliases.

Requests are signed with SigV4 like boto3 signs them (:mod:`jupyter_faas.sigv4`), with the
connection's token as the secret, so boto3 is not needed; Lambda's errors come back as the
FaaS exceptions (404: ResourceNotFound, 400/409/412: InvalidParameter).  Used by
``f.publish()``, ``f.alias()`` and ``faas.lookup()``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from .. import errors
from ..sigv4 import sign

_BY_CODE = {"ResourceNotFoundException": errors.ResourceNotFound,
            "InvalidParameterValueException": errors.InvalidParameter,
            "ResourceConflictException": errors.InvalidParameter,
            "PreconditionFailedException": errors.InvalidParameter,
            "TooManyRequestsException": errors.Throttled}


def lambda_request(conn, method: str, path: str, body: dict | None = None,
                   query: dict | None = None, timeout: float = 60) -> dict:
    """One signed request to the server's Lambda API; its JSON answer."""
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


def _path(name: str, *rest: str) -> str:
    return "/".join(["/2015-03-31/functions", *(urllib.parse.quote(p, safe="") for p in (name, *rest))])


def configuration(conn, name: str, qualifier: str | None) -> dict:
    """``{memory, timeout, env, concurrency}`` of ``name:qualifier``; raises ResourceNotFound."""
    conf = lambda_request(conn, "GET", _path(name, "configuration"),
                          query={"Qualifier": qualifier} if qualifier else None)
    return {"memory": conf["MemorySize"], "timeout": float(conf["Timeout"]),
            "env": (conf.get("Environment") or {}).get("Variables") or {}, "concurrency": None}


def publish_version(conn, name: str, description: str = "") -> int:
    """PublishVersion of ``$LATEST``: the version's number."""
    return int(lambda_request(conn, "POST", _path(name, "versions"), {"Description": description})["Version"])


def put_alias(conn, name: str, alias: str, version, weights: dict | None, description: str) -> None:
    """Create the alias, or move it if it exists (Get, then Create or Update)."""
    body = {"FunctionVersion": str(version), "Description": description,
            "RoutingConfig": {"AdditionalVersionWeights": {str(v): float(w) for v, w in (weights or {}).items()}}}
    try:
        lambda_request(conn, "GET", _path(name, "aliases", alias))
    except errors.ResourceNotFound:
        lambda_request(conn, "POST", _path(name, "aliases"), dict(body, Name=alias))
    else:
        lambda_request(conn, "PUT", _path(name, "aliases", alias), body)
