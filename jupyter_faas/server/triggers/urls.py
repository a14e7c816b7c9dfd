"""Function URLs: an HTTP request on ``/url/<function>/<path>`` invokes the function
synchronously with API Gateway's HTTP API payload 2.0 event, and its result is mapped back as
API Gateway maps it (reference/lambda.md §6).

Plain data in, plain data out (no tornado here): :func:`http_event` builds the event from a
request's parts, :func:`http_response` the status, headers and body from how the invocation
ended.  ``auth="token"`` needs the server's token, and the header or query argument carrying
it is removed from the event: the function never learns the server's token.
"""

from __future__ import annotations

import base64
import datetime
import json
import urllib.parse
import uuid

from ...errors import InvalidParameter
from ..engine.async_queue import ACCOUNT

AUTH_TYPES = ("token", "none")
#: statuses of an invocation that did not return, as API Gateway answers them
_FAILED_STATUS = {"timed_out": 504, "throttled": 429}


class Urls:
    """The ``url`` trigger kind: nothing runs in the background; the row says the URL exists."""

    def __init__(self, service, base_url=lambda: ""):
        self.service = service
        self.base_url = base_url

    def check(self, spec: dict) -> dict:
        auth = spec.get("auth", "token")
        if auth not in AUTH_TYPES:
            raise InvalidParameter(f"auth={auth!r}: give 'token' (the server's token is required) or "
                                   f"'none' (open, on the server's address)")
        unknown = set(spec) - {"auth"}
        if unknown:
            raise InvalidParameter(f"a function URL takes only 'auth', not {', '.join(sorted(unknown))}")
        return {"auth": auth}

    def initial_state(self, row: dict) -> dict:
        return {}

    def describe(self, row: dict) -> dict:
        return {"url": f"{self.base_url()}/url/{row['function']}/"}

    def start(self, row: dict, restart: bool = False) -> None:
        pass

    def stop(self, trigger_id: str) -> None:
        pass

    def close(self) -> None:
        pass


def http_event(*, function: str, method: str, path: str, query: str, headers: list, body: bytes,
               source_ip: str, host: str, protocol: str, now: float, strip_token: bool) -> dict:
    """The payload 2.0 event; ``headers`` as ``(name, value)`` pairs (repeats allowed)."""
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        name = name.lower()
        if name == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        if strip_token and name == "authorization":
            continue  # the server's token never reaches user code
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    if strip_token:
        pairs = [(k, v) for k, v in pairs if k != "token"]
        query = urllib.parse.urlencode(pairs)
    params: dict[str, str] = {}
    for k, v in pairs:
        params[k] = f"{params[k]},{v}" if k in params else v
    try:
        text, binary = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, binary = base64.b64encode(body).decode(), True
    when = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
    event = {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query,
        "headers": joined,
        "requestContext": {
            "accountId": ACCOUNT, "apiId": function, "domainName": host,
            "domainPrefix": host.split(".")[0].split(":")[0],
            "http": {"method": method, "path": path, "protocol": protocol, "sourceIp": source_ip,
                     "userAgent": joined.get("user-agent", "")},
            "requestId": str(uuid.uuid4()), "routeKey": "$default", "stage": "$default",
            "time": when.strftime("%d/%b/%Y:%H:%M:%S +0000"), "timeEpoch": int(now * 1000)},
        "isBase64Encoded": binary,
    }
    if cookies:
        event["cookies"] = cookies
    if params:
        event["queryStringParameters"] = params
    if body:
        event["body"] = text
    return event


def http_response(status: str, result: bytes | None, error: dict | None) -> tuple[int, list, bytes]:
    """``(status code, [(header, value)], body)`` for an invocation that ended ``status``."""
    if status != "succeeded":
        code = _FAILED_STATUS.get(status, 502)
        body = {"Message": {504: "Endpoint request timed out", 429: "Too Many Requests"}.get(
            code, "Internal Server Error")}
        if error:
            body.update({"errorType": error.get("errorType"), "errorMessage": error.get("errorMessage")})
        return code, [("Content-Type", "application/json")], json.dumps(body).encode()
    try:
        value = json.loads(result) if result else None
    except ValueError:
        return _bad_response("the function's result is not JSON")
    if isinstance(value, dict) and "statusCode" in value:
        code = value.get("statusCode")
        if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
            return _bad_response(f"statusCode {code!r} is not an HTTP status")
        headers = value.get("headers") or {}
        if not isinstance(headers, dict):
            return _bad_response("headers is not an object")
        out = [(str(k), str(v)) for k, v in headers.items()]
        for cookie in value.get("cookies") or []:
            out.append(("Set-Cookie", str(cookie)))
        body = value.get("body", "")
        if body is None:
            body = ""
        if not isinstance(body, str):
            body = json.dumps(body)
        if value.get("isBase64Encoded"):
            try:
                data = base64.b64decode(body, validate=True)
            except ValueError:
                return _bad_response("isBase64Encoded is true but body is not base64")
        else:
            data = body.encode()
        return code, out, data
    data = value.encode() if isinstance(value, str) else json.dumps(value).encode()
    return 200, [("Content-Type", "application/json")], data


def _bad_response(why: str) -> tuple[int, list, bytes]:
    return 502, [("Content-Type", "application/json")], json.dumps(
        {"Message": "Internal Server Error", "errorType": "Runtime.InvalidResponse",
         "errorMessage": f"the function's response could not be mapped to HTTP: {why}"}).encode()
