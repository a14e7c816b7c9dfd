"""Every REST response of a real server, validated against openapi.yaml with openapi-core.

One case per (operation, documented status): each sends real HTTP requests to a real
server (module-scoped, the conftest ``server``), and openapi-core validates the request
(unless the case sends a bad one on purpose) and the response: that the status is
documented for the operation, the headers the spec names (required ones must be there),
and the body against its schema; and a JSON body may have no field its schema does not
list (validation alone lets undocumented fields through).  ``test_every_documented_response_has_a_case`` makes
the table of cases follow the spec: a new operation or status in openapi.yaml needs a
case here.  ``500`` responses are documented for every operation but are not provoked
(a server failure cannot be caused from outside on purpose).

The server is reached only through HTTP; the one import of server internals is the
route table, to check that the spec lists every route there is.
"""

from __future__ import annotations

import base64
import functools
import re
import sys
import uuid
from pathlib import Path

import cloudpickle
import pytest
import requests
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse
from openapi_core.validation.response.exceptions import MissingData

import jupyter_faas as faas
from conftest import wait_for

SPEC = next(Path(faas.__file__).parent.rglob("openapi.yaml"))
METHODS = ("get", "post", "put", "patch", "delete", "head", "options")
UPGRADE = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
           "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode()}
ERROR_TYPES = {400: "InvalidParameterValueException", 403: "AccessDeniedException",
               404: "ResourceNotFoundException", 405: "InvalidRequest",
               413: "RequestTooLargeException"}
NO_SUCH_ID = "00000000-0000-4000-8000-000000000000"
NO_SUCH_TRIGGER = "schedule-000000000000"
#: the websocket paths (not POST /faas/api/functions/{name}/events, which is plain JSON)
WEBSOCKETS = ("/faas/api/ws", "/faas/api/events")


@pytest.fixture(scope="module")
def spec() -> OpenAPI:
    return OpenAPI.from_file_path(str(SPEC))  # validates the document itself first


def _operations(spec_dict: dict):
    for path, item in spec_dict["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


class Api:
    """requests against the server; every answer validated against the spec."""

    def __init__(self, server, spec: OpenAPI):
        self.base = server.url.rstrip("/")
        self.token = server.token
        self.spec = spec

    def __call__(self, method: str, path: str, expect: int | tuple, *, auth: str = "header",
                 valid_request: bool = True, empty_body: bool = False, headers: dict | None = None,
                 params: dict | None = None, **kwargs) -> requests.Response:
        headers = dict(headers or {})
        params = dict(params or {})
        if auth == "header":
            headers["Authorization"] = f"token {self.token}"
        elif auth == "bearer":
            headers["Authorization"] = f"Bearer {self.token}"
        elif auth == "query":
            params["token"] = self.token
        elif auth == "wrong":
            headers["Authorization"] = "token not-the-token"
        else:
            assert auth == "none", auth
        with requests.Session() as session:
            resp = session.request(method, self.base + path, headers=headers, params=params,
                                   timeout=60, **kwargs)
        expected = expect if isinstance(expect, tuple) else (expect,)
        assert resp.status_code in expected, (method, path, resp.status_code, resp.text[:1000])
        request = RequestsOpenAPIRequest(resp.request)
        if valid_request:
            self.spec.validate_request(request)
        errors = list(self.spec.response_validator.iter_errors(request, RequestsOpenAPIResponse(resp)))
        if empty_body and resp.content == b"":
            # OpenAPI 3.0 cannot say "this content, or no body": the spec's description does
            errors = [e for e in errors if not isinstance(e, MissingData)]
        if errors:
            raise errors[0]
        if resp.headers.get("Content-Type", "").startswith("application/json"):
            extra = list(_undocumented_fields(method, path, resp.status_code, resp.json()))
            assert not extra, f"{method} {path} {resp.status_code}: fields the spec does not document: {extra}"
        if resp.status_code in ERROR_TYPES and path not in WEBSOCKETS:
            body = resp.json()
            assert body["errorType"] == ERROR_TYPES[resp.status_code] == resp.headers["x-amzn-ErrorType"], body
            assert body["Type"] == "User"
        return resp

    def get(self, path, expect=200, **kw):
        return self("GET", path, expect, **kw)

    def post(self, path, expect=200, **kw):
        return self("POST", path, expect, **kw)


@pytest.fixture(scope="module")
def api(server, spec) -> Api:
    return Api(server, spec)


# ---- functions the cases deploy (through the REST API: JSON events in, JSON out) ----------

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # environments cannot import tests

def echo(event):
    print("echo", event)
    return event


def nap(event):
    import time
    time.sleep(event.get("s", 0))
    return event


def boom(event):
    raise ValueError(f"boom {event}")


def deploy(api: Api, name: str, fn, expect=(200, 201), **config) -> dict:
    body = {"name": name, "code": base64.b64encode(cloudpickle.dumps(fn)).decode(), **config}
    return api.post("/faas/api/functions", expect, json=body).json()


@pytest.fixture(scope="module")
def echoed(api) -> dict:
    """``echo`` deployed and invoked once (synchronously, over REST): its InvokeResult."""
    deploy(api, "oa_echo", echo)
    done = api.post("/faas/api/functions/oa_echo/invocations", json={"hello": 1}).json()
    assert done["status"] == "succeeded", done
    return done


# ---- the cases ----------------------------------------------------------------------------

CASES: dict = {}


def case(operation_id: str, status: int):
    def register(fn):
        CASES[(operation_id, status)] = fn
        return fn
    return register


@case("getStatus", 200)
def _(api, **_):
    for auth in ("header", "bearer", "query"):
        body = api.get("/faas/api/status", auth=auth).json()
    assert body["version"] == faas.__version__


@case("listFunctions", 200)
def _(api, echoed, **_):
    names = [f["name"] for f in api.get("/faas/api/functions").json()["functions"]]
    assert "oa_echo" in names and names == sorted(names)


@case("deployFunction", 201)
def _(api, **_):
    name = f"oa_new_{uuid.uuid4().hex[:8]}"
    first = deploy(api, name, echo, 201, memory=256, timeout=5, env={"A": "1"}, concurrency=2)
    assert first["version"] == 1 and first["memory"] == 256 and first["env"] == {"A": "1"}
    second = deploy(api, name, echo, 201, memory=512)
    assert second["version"] == 2 and second["timeout"] == 3  # left out: the default


@case("deployFunction", 200)
def _(api, **_):
    first = deploy(api, "oa_same", echo)
    again = deploy(api, "oa_same", echo, 200)
    assert again["version"] == first["version"] == 1


@case("deployFunction", 400)
def _(api, **_):
    code = base64.b64encode(cloudpickle.dumps(echo)).decode()
    for body, valid in [({"name": "bad name!", "code": code}, False),
                        ({"name": "oa_bad", "code": code, "memory": 64}, False),
                        ({"name": "oa_bad", "code": code, "timeout": 901}, False),
                        ({"name": "oa_bad", "code": "not base64!"}, False),
                        ({"name": "oa_bad", "code": ""}, True),
                        ({"name": "oa_bad", "code": code, "env": {"AWS_REGION": "x"}}, True),
                        ({"name": "oa_bad", "code": code, "layers": ["oa_nolayer:1"]}, True)]:
        api.post("/faas/api/functions", 400, json=body, valid_request=valid)
    api.post("/faas/api/functions", 400, data=b"[1, 2]", valid_request=False,
             headers={"Content-Type": "application/json"})
    api.post("/faas/api/functions", 400, data=b"{not json", valid_request=False,
             headers={"Content-Type": "application/json"})


@case("getFunction", 200)
def _(api, echoed, **_):
    body = api.get("/faas/api/functions/oa_echo").json()
    assert body["name"] == "oa_echo" and "code" not in body


@case("getFunction", 404)
def _(api, **_):
    api.get("/faas/api/functions/oa_nope", 404)


@case("deleteFunction", 204)
def _(api, **_):
    deploy(api, "oa_doomed", echo)
    resp = api("DELETE", "/faas/api/functions/oa_doomed", 204)
    assert resp.content == b""
    api.get("/faas/api/functions/oa_doomed", 404)


@case("deleteFunction", 404)
def _(api, **_):
    api("DELETE", "/faas/api/functions/oa_nope", 404)


@case("getFunctionLogs", 200)
def _(api, echoed, **_):
    logs = api.get("/faas/api/functions/oa_echo/logs", params={"limit": 50}).json()["logs"]
    assert any(line["line"] == "echo {'hello': 1}" and line["request_id"] == echoed["request_id"]
               for line in logs)


@case("getFunctionLogs", 400)
def _(api, echoed, **_):
    for limit in ("0", "100001", "many"):
        api.get("/faas/api/functions/oa_echo/logs", 400, params={"limit": limit}, valid_request=False)


@case("getFunctionLogs", 404)
def _(api, **_):
    api.get("/faas/api/functions/oa_nope/logs", 404)


@case("invokeFunction", 200)
def _(api, echoed, **_):
    assert echoed["status"] == "succeeded" and echoed["result"] == {"hello": 1}
    assert echoed["report"]["memory_size_mb"] == 128 and echoed["error"] is None
    # no body is the event {}; a failed invocation is a 200 too, with its error
    assert api.post("/faas/api/functions/oa_echo/invocations").json()["result"] == {}
    deploy(api, "oa_boom", boom)
    failed = api.post("/faas/api/functions/oa_boom/invocations", json=[1, "x"]).json()
    assert failed["status"] == "failed" and failed["result"] is None
    assert failed["error"]["errorType"] == "ValueError"
    deploy(api, "oa_slow", nap, timeout=1)
    timed_out = api.post("/faas/api/functions/oa_slow/invocations", json={"s": 30}).json()
    assert timed_out["status"] == "timed_out", timed_out


@case("invokeFunction", 202)
def _(api, echoed, **_):
    body = api.post("/faas/api/functions/oa_echo/invocations", 202,
                    params={"type": "Event"}, json={"queued": True}).json()
    assert body["status"] in ("queued", "running", "succeeded")
    wait_for(lambda: api.get(f"/faas/api/invocations/{body['request_id']}").json()["status"]
             == "succeeded")


@case("invokeFunction", 400)
def _(api, echoed, **_):
    api.post("/faas/api/functions/oa_echo/invocations", 400, params={"type": "Sometimes"},
             valid_request=False)
    api.post("/faas/api/functions/oa_echo/invocations", 400, data=b"{not json",
             headers={"Content-Type": "application/json"}, valid_request=False)


@case("invokeFunction", 404)
def _(api, **_):
    api.post("/faas/api/functions/oa_nope/invocations", 404, json={})


@case("invokeFunction", 413)
def _(api, echoed, **_):
    limit = api.get("/faas/api/status").json()["max_payload_bytes"]
    event = {"blob": "x" * (limit + 1000)}  # over the limit, under the HTTP server's own
    api.post("/faas/api/functions/oa_echo/invocations", 413, json=event)


@case("listInvocations", 200)
def _(api, echoed, **_):
    api.post("/faas/api/functions/oa_echo/invocations", json={"second": 2})
    everything = api.get("/faas/api/invocations").json()
    assert everything["next"] is None and everything["invocations"]
    mine = api.get("/faas/api/invocations",
                   params={"function": "oa_echo", "status": "succeeded", "limit": 1}).json()
    assert [i["function"] for i in mine["invocations"]] == ["oa_echo"]
    cursor = mine["next"]
    assert cursor is not None
    older = api.get("/faas/api/invocations",
                    params={"function": "oa_echo", "limit": 1, **cursor}).json()
    assert older["invocations"][0]["request_id"] != mine["invocations"][0]["request_id"]


@case("listInvocations", 400)
def _(api, **_):
    for params in ({"status": "sleeping"}, {"limit": "0"}, {"limit": "1001"},
                   {"before": "yesterday"}):
        api.get("/faas/api/invocations", 400, params=params, valid_request=False)
    # before_id needs before: well formed for the spec, refused by the server
    api.get("/faas/api/invocations", 400, params={"before_id": NO_SUCH_ID})


@case("getInvocation", 200)
def _(api, server, echoed, **_):
    row = api.get(f"/faas/api/invocations/{echoed['request_id']}").json()
    assert row["status"] == "succeeded" and row["encoding"] == "json"
    assert "hello" in row["input_summary"]
    # an invocation of the Python client (pickle encoding), and a failed one
    faas.connect(server.url, server.token)
    try:
        with pytest.raises(ValueError):
            faas.function(lambda: int("x"), name="oa_pickled")()
        failed = faas.invocations(function="oa_pickled", limit=1)[0]
    finally:
        from jupyter_faas.client import discovery
        discovery.reset()
    row = api.get(f"/faas/api/invocations/{failed.request_id}").json()
    assert row["status"] == "failed" and row["encoding"] == "pickle"
    assert row["error"]["errorType"] == "ValueError" and row["error"]["stackTrace"]


@case("getInvocation", 404)
def _(api, **_):
    api.get(f"/faas/api/invocations/{NO_SUCH_ID}", 404)


@case("getInvocationResult", 200)
def _(api, server, echoed, **_):
    resp = api.get(f"/faas/api/invocations/{echoed['request_id']}/result")
    assert resp.content == b'{"hello": 1}'
    assert resp.headers["X-Faas-Encoding"] == "json" and resp.headers["X-Faas-Status"] == "succeeded"
    assert "X-Faas-Buffers" not in resp.headers
    # a pickled numpy result: its out-of-band buffer follows the pickle
    import pickle

    import numpy as np
    faas.connect(server.url, server.token)
    try:
        big = faas.function(lambda: np.arange(300_000, dtype=np.int64), name="oa_array")
        inv = big.invoke()
        assert inv.status == "succeeded"
    finally:
        from jupyter_faas.client import discovery
        discovery.reset()
    resp = api.get(f"/faas/api/invocations/{inv.request_id}/result")
    lengths = [int(n) for n in resp.headers["X-Faas-Buffers"].split(",")]
    assert lengths == [300_000 * 8]
    split = len(resp.content) - sum(lengths)
    array = pickle.loads(resp.content[:split], buffers=[resp.content[split:]])
    assert (array == np.arange(300_000)).all()
    # no result yet: an empty body
    deploy(api, "oa_nap", nap, timeout=60)
    queued = api.post("/faas/api/functions/oa_nap/invocations", 202, params={"type": "Event"},
                      json={"s": 60}).json()
    resp = api.get(f"/faas/api/invocations/{queued['request_id']}/result", empty_body=True)
    assert resp.content == b"" and resp.headers["X-Faas-Status"] in ("queued", "running")
    api.post(f"/faas/api/invocations/{queued['request_id']}/cancel")


@case("getInvocationResult", 404)
def _(api, **_):
    api.get(f"/faas/api/invocations/{NO_SUCH_ID}/result", 404)


@case("getInvocationLogs", 200)
def _(api, echoed, **_):
    path = f"/faas/api/invocations/{echoed['request_id']}/logs"
    logs = api.get(path).json()["logs"]
    logs = [row for row in logs if not row["line"].startswith("INIT_START")]  # a cold start
    assert logs[0]["line"].startswith("START RequestId:") and logs[-1]["line"].startswith("REPORT")
    assert {"stdout", "platform"} <= {line["stream"] for line in logs}
    rest = api.get(path, params={"after": logs[0]["id"], "limit": 1}).json()["logs"]
    assert rest == logs[1:2]


@case("getInvocationLogs", 400)
def _(api, echoed, **_):
    path = f"/faas/api/invocations/{echoed['request_id']}/logs"
    for params in ({"after": "-1"}, {"limit": "0"}, {"limit": "x"}):
        api.get(path, 400, params=params, valid_request=False)


@case("getInvocationLogs", 404)
def _(api, **_):
    api.get(f"/faas/api/invocations/{NO_SUCH_ID}/logs", 404)


@case("cancelInvocation", 200)
def _(api, echoed, **_):
    deploy(api, "oa_nap", nap, timeout=60)
    running = api.post("/faas/api/functions/oa_nap/invocations", 202, params={"type": "Event"},
                       json={"s": 60}).json()
    rid = running["request_id"]
    assert api.post(f"/faas/api/invocations/{rid}/cancel").json() == {"request_id": rid,
                                                                       "cancelled": True}
    assert api.get(f"/faas/api/invocations/{rid}").json()["status"] == "cancelled"
    assert api.post(f"/faas/api/invocations/{rid}/cancel").json()["cancelled"] is False


@case("cancelInvocation", 404)
def _(api, **_):
    api.post(f"/faas/api/invocations/{NO_SUCH_ID}/cancel", 404)


@case("listFunctionStats", 200)
def _(api, echoed, **_):
    body = api.get("/faas/api/metrics/functions").json()
    echo_stats = next(f for f in body["functions"] if f["name"] == "oa_echo")
    assert echo_stats["invocations"] >= 1 and body["prices"]["per_gb_second"] > 0


@case("listFunctionVersions", 200)
def _(api, echoed, **_):
    api.post("/faas/api/functions/oa_echo/invocations", json={"v": 1})
    body = api.get("/faas/api/metrics/versions").json()
    echo = next(f for f in body["functions"] if f["name"] == "oa_echo")
    assert echo["versions"][0]["version"] == "$LATEST" and echo["aliases"] == []
    assert next(r for r in echo["invocations_by_version"] if r["version"] == "$LATEST")["invocations"] >= 1


@case("getFunctionMetrics", 200)
def _(api, echoed, **_):
    m = api.get("/faas/api/metrics/functions/oa_echo", params={"minutes": 5}).json()
    assert len(m["timestamps"]) == len(m["invocations"]) == 5 and sum(m["invocations"]) >= 1


@case("getFunctionMetrics", 400)
def _(api, echoed, **_):
    for minutes in ("0", "1441", "an hour"):
        api.get("/faas/api/metrics/functions/oa_echo", 400, params={"minutes": minutes},
                valid_request=False)


@case("getFunctionMetrics", 404)
def _(api, **_):
    api.get("/faas/api/metrics/functions/oa_nope", 404)


@case("shutdown", 200)
def _(api, make_server, spec, **_):
    other = make_server()
    assert Api(other, spec).post("/faas/api/shutdown").json() == {"stopping": True}
    assert other.proc.wait(30) == 0


@case("websocket", 101)
def _(api, **_):
    resp = api.get("/faas/api/ws", 101, headers=UPGRADE)
    assert resp.headers["Upgrade"].lower() == "websocket"


@case("websocket", 400)
def _(api, **_):
    api.get("/faas/api/ws", 400, valid_request=False)  # not an upgrade


@case("websocket", 426)
def _(api, **_):
    api.get("/faas/api/ws", 426, headers={**UPGRADE, "Sec-WebSocket-Version": "12"})


@case("events", 101)
def _(api, **_):
    api.get("/faas/api/events", 101, headers=UPGRADE)


@case("events", 400)
def _(api, **_):
    api.get("/faas/api/events", 400, valid_request=False)


# ---- events: the async queue, event invoke config, attempts, dead letters ---------------

def _event_config(api: Api, name: str, **config) -> dict:
    return api("PUT", f"/faas/api/functions/{name}/event-config", 200, json=config).json()


def _dead_letter(api: Api, name: str) -> dict:
    """``boom`` deployed as ``name`` with no retries, one event sent: its dead letter."""
    deploy(api, name, boom)
    _event_config(api, name, retries=0)
    [inv] = api.post(f"/faas/api/functions/{name}/events", 202,
                     json={"events": [{"doomed": name}]}).json()["invocations"]
    rid = inv["request_id"]
    return wait_for(lambda: next((d for d in api.get("/faas/api/dead-letters",
                                                      params={"function": name}).json()["dead_letters"]
                                  if d["request_id"] == rid), None), what=f"the dead letter of {rid}")


@case("invokeAsync", 202)
def _(api, echoed, **_):
    version = api.get("/faas/api/functions/oa_echo").json()["version"]
    events = [{"n": 1}, [2, "two"], "three"]
    body = api.post("/faas/api/functions/oa_echo/events", 202, json={"events": events}).json()
    invs = body["invocations"]
    assert len(invs) == 3 and len({i["request_id"] for i in invs}) == 3
    assert all(i["version"] == version and i["status"] in ("queued", "running", "succeeded")
               for i in invs), invs
    for inv, event in zip(invs, events):
        path = f"/faas/api/invocations/{inv['request_id']}"
        row = wait_for(lambda: (r := api.get(path).json())["status"] == "succeeded" and r)
        assert row["invocation_type"] == "Event" and row["triggered_by"] == "async"
        assert api.get(path + "/result").json() == event
    # a version pinned: the one deployed
    pinned = api.post("/faas/api/functions/oa_echo/events", 202,
                      json={"events": [None], "version": version}).json()["invocations"]
    assert pinned[0]["version"] == version


@case("invokeAsync", 400)
def _(api, echoed, **_):
    path = "/faas/api/functions/oa_echo/events"
    for body in ({}, {"events": []}, {"events": {"n": 1}}, {"events": [1], "version": "1"},
                 {"events": [1], "version": True}):
        error = api.post(path, 400, json=body, valid_request=False).json()
        assert "events" in error["message"] or "version" in error["message"], error
    api.post(path, 400, json={"events": [0] * 10_001}, valid_request=False)
    api.post(path, 400, data=b"{not json", headers={"Content-Type": "application/json"},
             valid_request=False)


@case("invokeAsync", 404)
def _(api, **_):
    api.post("/faas/api/functions/oa_nope/events", 404, json={"events": [1]})


@case("invokeAsync", 413)
def _(api, echoed, **_):
    body = api.post("/faas/api/functions/oa_echo/events", 413,
                    json={"events": [{"blob": "x" * (1024 * 1024)}]}).json()
    assert "asynchronous invocation" in body["message"]


@case("getEventConfig", 200)
def _(api, **_):
    deploy(api, "oa_config_default", echo)
    assert api.get("/faas/api/functions/oa_config_default/event-config").json() == {
        "retries": 2, "retry_delay": 1.0, "max_event_age": 21600,
        "on_success": None, "on_failure": None}


@case("getEventConfig", 404)
def _(api, **_):
    api.get("/faas/api/functions/oa_nope/event-config", 404)


@case("putEventConfig", 200)
def _(api, server, echoed, **_):
    import json
    deploy(api, "oa_config", boom)
    failed = Path(server.base) / "oa_failed"
    failed.mkdir(exist_ok=True)
    stored = _event_config(api, "oa_config", retries=0, retry_delay=0.5, max_event_age=60,
                           on_success="function:oa_echo", on_failure=f"dir:{failed}")
    assert stored == {"retries": 0, "retry_delay": 0.5, "max_event_age": 60,
                      "on_success": "function:oa_echo", "on_failure": f"dir:{failed}"}
    assert api.get("/faas/api/functions/oa_config/event-config").json() == stored
    # it is obeyed: no retry, the failure's record in the directory, no dead letter
    [inv] = api.post("/faas/api/functions/oa_config/events", 202, json={"events": [7]}).json()["invocations"]
    [record] = wait_for(lambda: list(failed.glob(f"*-{inv['request_id']}.json")), what="the record")
    record = json.loads(record.read_text())
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 1 and record["requestPayload"] == 7
    assert api.get("/faas/api/dead-letters", params={"function": "oa_config"}).json() == {"dead_letters": []}
    # what is left out takes its default again
    assert _event_config(api, "oa_config", retries=1) == {
        "retries": 1, "retry_delay": 1.0, "max_event_age": 21600, "on_success": None, "on_failure": None}
    assert api("PUT", "/faas/api/functions/oa_config/event-config", 200).json()["retries"] == 2  # no body


@case("putEventConfig", 400)
def _(api, echoed, **_):
    path = "/faas/api/functions/oa_echo/event-config"
    for body, says in [({"retries": 11}, "retries"), ({"retry_delay": -1}, "retry_delay"),
                       ({"max_event_age": 59}, "max_event_age"), ({"tries": 1}, "tries"),
                       ({"on_failure": "function:oa_nope"}, "oa_nope"),
                       ({"on_success": "dir:/no/such/dir"}, "/no/such/dir"),
                       ({"on_success": "mail:me"}, "on_success"),
                       ({"on_failure": "queue:no spaces"}, "queue name")]:
        error = api("PUT", path, 400, json=body, valid_request=False).json()
        assert says in error["message"], (body, error)
    api("PUT", path, 400, data=b"[1]", headers={"Content-Type": "application/json"},
        valid_request=False)
    assert api.get(path).json()["retries"] == 2  # nothing was stored


@case("putEventConfig", 404)
def _(api, **_):
    api("PUT", "/faas/api/functions/oa_nope/event-config", 404, json={"retries": 0})


@case("listProvisioned", 200)
def _(api, **_):
    deploy(api, "oa_prov_list", echo)
    assert api.get("/faas/api/functions/oa_prov_list/provisioned-concurrency").json() == {
        "function": "oa_prov_list", "configs": []}
    api("PUT", "/faas/api/functions/oa_prov_list/provisioned-concurrency", 200, json={"count": 1})
    [config] = api.get("/faas/api/functions/oa_prov_list/provisioned-concurrency").json()["configs"]
    assert config["qualifier"] == "$LATEST" and config["requested"] == 1
    api("PUT", "/faas/api/functions/oa_prov_list/provisioned-concurrency", 200, json={"count": 0})


@case("listProvisioned", 404)
def _(api, **_):
    api.get("/faas/api/functions/oa_nope/provisioned-concurrency", 404)


@case("putProvisioned", 200)
def _(api, **_):
    path = "/faas/api/functions/oa_prov/provisioned-concurrency"
    deploy(api, "oa_prov", echo)
    up = api("PUT", path, 200, json={"count": 2, "wait": 60}).json()
    state = up["provisioned"]
    assert up["qualifier"] == "$LATEST" and state["status"] == "READY", up
    assert state["allocated"] == 2 and len(state["environments"]) == 2 and state["versions"] == [1]
    done = api.post("/faas/api/functions/oa_prov/invocations", json={"x": 1}).json()
    assert done["report"]["init_type"] == "provisioned-concurrency"
    assert done["report"]["init_duration_ms"] is None
    row = api.get(f"/faas/api/invocations/{done['request_id']}").json()
    assert row["init_type"] == "provisioned-concurrency" and row["environment_id"] in state["environments"]
    [stats] = [f for f in api.get("/faas/api/metrics/functions").json()["functions"] if f["name"] == "oa_prov"]
    assert [p["requested"] for p in stats["provisioned"]] == [2] and stats["snapshot"] is None
    assert api("PUT", path, 200, json={"count": 0}).json()["provisioned"] is None


@case("putProvisioned", 400)
def _(api, echoed, **_):
    path = "/faas/api/functions/oa_echo/provisioned-concurrency"
    for body, says in [({"count": -1}, "0 or more"), ({"count": "2"}, "whole number"),
                       ({}, "count"), ({"count": 1, "wait": 901}, "wait"),
                       ({"count": 1, "colour": "red"}, "colour"),
                       ({"count": 100000}, "memory budget")]:
        error = api("PUT", path, 400, json=body, valid_request=False).json()
        assert says in error["message"], (body, error)
    assert api.get(path).json()["configs"] == []  # nothing was kept


@case("putProvisioned", 404)
def _(api, **_):
    api("PUT", "/faas/api/functions/oa_nope/provisioned-concurrency", 404, json={"count": 1})


@case("getAttempts", 200)
def _(api, echoed, **_):
    deploy(api, "oa_retried", boom)
    _event_config(api, "oa_retried", retries=1, retry_delay=0)
    [inv] = api.post("/faas/api/functions/oa_retried/events", 202,
                     json={"events": ["again"]}).json()["invocations"]
    rid = inv["request_id"]
    wait_for(lambda: api.get(f"/faas/api/invocations/{rid}").json()["status"] == "failed")
    attempts = api.get(f"/faas/api/invocations/{rid}/attempts").json()["attempts"]
    assert [(a["attempt"], a["status"], a["error_type"]) for a in attempts] == \
        [(1, "failed", "ValueError"), (2, "failed", "ValueError")]
    assert all(a["request_id"] == rid and a["error"]["errorMessage"] == "boom again"
               and a["ended_at"] >= a["started_at"] for a in attempts)
    assert api.get(f"/faas/api/invocations/{rid}").json()["attempts"] == 2
    # a direct (RequestResponse) invocation has no attempts
    assert api.get(f"/faas/api/invocations/{echoed['request_id']}/attempts").json() == {"attempts": []}


@case("getAttempts", 404)
def _(api, **_):
    api.get(f"/faas/api/invocations/{NO_SUCH_ID}/attempts", 404)


@case("listDeadLetters", 200)
def _(api, **_):
    dead = _dead_letter(api, "oa_dead")
    assert dead["function"] == "oa_dead" and dead["condition"] == "RetriesExhausted"
    assert dead["error_type"] == "ValueError" and dead["attempts"] == 1
    assert "oa_dead" in dead["input_summary"] and dead["redriven_at"] is None
    everything = api.get("/faas/api/dead-letters").json()["dead_letters"]
    assert dead in everything
    ids = [d["id"] for d in everything]
    assert ids == sorted(ids, reverse=True)  # newest first
    assert len(api.get("/faas/api/dead-letters", params={"limit": 1}).json()["dead_letters"]) == 1
    assert api.get("/faas/api/dead-letters", params={"function": "oa_echo"}).json() == {"dead_letters": []}


@case("listDeadLetters", 400)
def _(api, **_):
    for limit in ("0", "10001", "all"):
        api.get("/faas/api/dead-letters", 400, params={"limit": limit}, valid_request=False)


@case("redriveDeadLetters", 200)
def _(api, **_):
    dead = _dead_letter(api, "oa_redriven")
    redriven = api.post("/faas/api/dead-letters/redrive", json={"ids": [dead["id"]]}).json()["redriven"]
    [entry] = redriven
    assert entry["id"] == dead["id"] and entry["function"] == "oa_redriven"
    assert entry["request_id"] != dead["request_id"]
    row = api.get(f"/faas/api/invocations/{entry['request_id']}").json()
    assert row["invocation_type"] == "Event" and row["triggered_by"] == "redrive"
    # redriven once: no longer listed, and redriving it again does nothing
    assert api.post("/faas/api/dead-letters/redrive", json={"ids": [dead["id"]]}).json() == {"redriven": []}
    # it fails again: a new dead letter, which redrive by function name submits
    again = wait_for(lambda: api.get("/faas/api/dead-letters",
                                     params={"function": "oa_redriven"}).json()["dead_letters"])
    assert [d["request_id"] for d in again] == [entry["request_id"]]
    by_name = api.post("/faas/api/dead-letters/redrive", json={"function": "oa_redriven"}).json()
    assert [(r["id"], r["function"]) for r in by_name["redriven"]] == [(again[0]["id"], "oa_redriven")]


@case("redriveDeadLetters", 400)
def _(api, **_):
    for body in ({"ids": 1}, {"ids": ["1"]}, {"ids": [True]}, {"ids": [0]}, {"ids": [2**63]}):
        error = api.post("/faas/api/dead-letters/redrive", 400, json=body, valid_request=False).json()
        assert "ids" in error["message"]
    api.post("/faas/api/dead-letters/redrive", 400, data=b"{not json",
             headers={"Content-Type": "application/json"}, valid_request=False)


@case("redriveDeadLetters", 404)
def _(api, **_):
    api.post("/faas/api/dead-letters/redrive", 404, json={"function": "oa_nope"})


# ---- triggers -----------------------------------------------------------------------------

def _schedule(api: Api, function: str, expression: str = "rate(1 hour)") -> dict:
    """A schedule that does not fire during a test."""
    return api.post("/faas/api/triggers", 201, json={
        "kind": "schedule", "function": function, "spec": {"expression": expression}}).json()


@case("listTriggers", 200)
def _(api, **_):
    deploy(api, "oa_listed", echo)
    first, second = _schedule(api, "oa_listed"), _schedule(api, "oa_listed", "cron(0 12 * * ? *)")
    mine = api.get("/faas/api/triggers", params={"function": "oa_listed"}).json()["triggers"]
    assert [t["id"] for t in mine] == [first["id"], second["id"]]  # oldest first
    assert mine[1]["spec"] == {"expression": "cron(0 12 * * ? *)"}
    everything = api.get("/faas/api/triggers").json()["triggers"]
    assert {first["id"], second["id"]} <= {t["id"] for t in everything}
    assert api.get("/faas/api/triggers", params={"function": "oa_nope"}).json() == {"triggers": []}


@case("createTrigger", 201)
def _(api, echoed, **_):
    import time
    before = time.time()
    schedule = _schedule(api, "oa_echo")
    assert schedule["kind"] == "schedule" and schedule["function"] == "oa_echo"
    assert schedule["id"].startswith("schedule-") and schedule["enabled"] is True
    assert schedule["spec"] == {"expression": "rate(1 hour)"}
    assert schedule["fired"] == 0 and schedule["last_fired_at"] is None
    assert before + 3600 - 5 <= schedule["next_at"] <= time.time() + 3600 + 5
    # a function URL: invoking it runs the function with the HTTP event
    deploy(api, "oa_url", echo)
    url = api.post("/faas/api/triggers", 201, json={"kind": "url", "function": "oa_url",
                                                    "spec": {"auth": "token"}}).json()
    assert url["id"].startswith("url-") and url["spec"] == {"auth": "token"}
    assert url["url"] == f"{api.base}/url/oa_url/"
    resp = requests.post(url["url"] + "hi", json={"k": 1}, timeout=30,
                         headers={"Authorization": f"Bearer {api.token}"})
    assert resp.status_code == 200 and resp.json()["rawPath"] == "/hi", resp.text[:500]
    assert "authorization" not in resp.json()["headers"]
    assert requests.get(url["url"], timeout=30).status_code == 403  # auth="token"
    # the same URL again is the one there is
    again = api.post("/faas/api/triggers", 201, json={"kind": "url", "function": "oa_url",
                                                      "spec": {"auth": "token"}}).json()
    assert again["id"] == url["id"]


@case("createTrigger", 400)
def _(api, echoed, **_):
    deploy(api, "oa_url_taken", echo)
    api.post("/faas/api/triggers", 201, json={"kind": "url", "function": "oa_url_taken"})
    for body, says in [({"kind": "email", "function": "oa_echo"}, "kind"),
                       ({"kind": "file", "function": "oa_echo", "spec": {"path": "/no/such/dir"}},
                        "does not exist"),
                       ({"kind": "queue", "function": "oa_echo", "spec": {"queue": "oa_no_queue"}},
                        "not a queue"),
                       ({"kind": "schedule"}, "function"),
                       ({"function": "oa_echo"}, "kind"),
                       ({"kind": "schedule", "function": "oa_echo", "spec": ["rate(1 hour)"]}, "spec"),
                       ({"kind": "schedule", "function": "oa_echo",
                         "spec": {"expression": "rate(0 hours)"}}, "rate"),
                       ({"kind": "schedule", "function": "oa_echo",
                         "spec": {"expression": "cron(0 12 * * * *)"}}, "?"),
                       ({"kind": "url", "function": "oa_echo", "spec": {"auth": "maybe"}}, "auth"),
                       ({"kind": "url", "function": "oa_url_taken", "spec": {"auth": "none"}},
                        "delete it first")]:
        error = api.post("/faas/api/triggers", 400, json=body, valid_request=False).json()
        assert says in error["message"], (body, error)
    assert all(t["spec"] == {"auth": "token"} for t in api.get(
        "/faas/api/triggers", params={"function": "oa_url_taken"}).json()["triggers"])


@case("createTrigger", 404)
def _(api, **_):
    api.post("/faas/api/triggers", 404, json={"kind": "schedule", "function": "oa_nope",
                                              "spec": {"expression": "rate(1 hour)"}})


@case("getTrigger", 200)
def _(api, echoed, **_):
    created = _schedule(api, "oa_echo")
    assert api.get(f"/faas/api/triggers/{created['id']}").json() == created


@case("getTrigger", 404)
def _(api, **_):
    error = api.get(f"/faas/api/triggers/{NO_SUCH_TRIGGER}", 404).json()
    assert NO_SUCH_TRIGGER in error["message"]


@case("setTriggerEnabled", 200)
def _(api, echoed, **_):
    created = _schedule(api, "oa_echo")
    path = f"/faas/api/triggers/{created['id']}"
    off = api("PATCH", path, 200, json={"enabled": False}).json()
    assert off["enabled"] is False and off["next_at"] is None
    assert api("PATCH", path, 200, json={"enabled": False}).json() == off  # already off
    on = api("PATCH", path, 200, json={"enabled": True}).json()
    assert on["enabled"] is True and on["next_at"] >= created["next_at"]
    assert api.get(path).json() == on


@case("setTriggerEnabled", 400)
def _(api, echoed, **_):
    created = _schedule(api, "oa_echo")
    path = f"/faas/api/triggers/{created['id']}"
    for body in ({}, {"enabled": "yes"}, {"enabled": 1}, {"enabled": False, "also": 1}):
        error = api("PATCH", path, 400, json=body, valid_request=False).json()
        assert "enabled" in error["message"], (body, error)
    assert api.get(path).json()["enabled"] is True


@case("setTriggerEnabled", 404)
def _(api, **_):
    api("PATCH", f"/faas/api/triggers/{NO_SUCH_TRIGGER}", 404, json={"enabled": False})


@case("deleteTrigger", 204)
def _(api, echoed, **_):
    created = _schedule(api, "oa_echo")
    resp = api("DELETE", f"/faas/api/triggers/{created['id']}", 204)
    assert resp.content == b""
    api.get(f"/faas/api/triggers/{created['id']}", 404)
    assert created["id"] not in {t["id"] for t in api.get("/faas/api/triggers").json()["triggers"]}


@case("deleteTrigger", 404)
def _(api, **_):
    api("DELETE", f"/faas/api/triggers/{NO_SUCH_TRIGGER}", 404)


def _fill(path: str) -> str:
    return (path.replace("{name}", "oa_echo").replace("{request_id}", NO_SUCH_ID)
            .replace("{trigger_id}", NO_SUCH_TRIGGER))


def _forbidden(operation_id: str):
    """No token, a wrong token: 403, whatever the operation (the token is checked first)."""
    def run(api, **_):
        path, method = next((p, m) for p, m, op in _operations(_spec_dict())
                            if op["operationId"] == operation_id)
        ws = path in WEBSOCKETS
        for auth in ("none", "wrong"):
            resp = api(method.upper(), _fill(path), 403, auth=auth, valid_request=False,
                       headers=UPGRADE if ws else None)
            assert resp.json()["errorType"] == "AccessDeniedException"
    return run


def _all_cases(spec_dict: dict) -> dict:
    cases = dict(CASES)
    for _, _, op in _operations(spec_dict):
        if "403" in op["responses"]:
            cases[(op["operationId"], 403)] = _forbidden(op["operationId"])
    return cases


@functools.lru_cache(maxsize=None)
def _spec_dict() -> dict:
    import yaml
    return yaml.safe_load(SPEC.read_text(encoding="utf-8"))


def _resolve(node: dict) -> dict:
    while "$ref" in node:
        target = _spec_dict()
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


def _undocumented_fields(method: str, path: str, status: int, body, where: str = "body"):
    """Keys of a JSON response that its schema does not list (validation lets them through
    unless a schema says ``additionalProperties: false``; the spec should name every field)."""
    for template, item in _spec_dict()["paths"].items():
        if re.fullmatch(re.sub(r"{\w+}", "[^/]+", template), path):
            response = _resolve(item[method.lower()]["responses"][str(status)])
            yield from _extra(_resolve(response["content"]["application/json"]["schema"]), body, where)
            return


def _extra(schema: dict, value, where: str):
    parts = [_resolve(p) for p in schema.get("allOf", [])] + [schema]
    props = {k: v for part in parts for k, v in part.get("properties", {}).items()}
    more = next((p["additionalProperties"] for p in parts if "additionalProperties" in p), None)
    if isinstance(value, dict) and (props or more is not None):
        for key, item in value.items():
            if key in props:
                yield from _extra(_resolve(props[key]), item, f"{where}.{key}")
            elif isinstance(more, dict):
                yield from _extra(_resolve(more), item, f"{where}.{key}")
            elif more is None:
                yield f"{where}.{key}"
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            yield from _extra(_resolve(schema["items"]), item, f"{where}[{i}]")


# ---- local queues ---------------------------------------------------------------------------

@case("createQueue", 200)
def _(api, **_):
    q = api.post("/faas/api/queues", 200, json={"name": "oa_q", "visibility_timeout": 30}).json()
    assert q["name"] == "oa_q" and q["dead_letter_queue"] == "oa_q-dlq" and q["messages"] == 0
    again = api.post("/faas/api/queues", 200, json={"name": "oa_q"}).json()
    assert again["visibility_timeout"] == 30     # the same queue, its settings kept


@case("createQueue", 400)
def _(api, **_):
    for body in ({"name": "no spaces"}, {"name": "oa_q2", "visibility_timeout": -1}, {"nam": "x"}):
        api.post("/faas/api/queues", 400, json=body, valid_request=False)


@case("listQueues", 200)
def _(api, **_):
    api.post("/faas/api/queues", 200, json={"name": "oa_listed"})
    names = [q["name"] for q in api.get("/faas/api/queues").json()["queues"]]
    assert "oa_listed" in names and "oa_listed-dlq" in names


@case("getQueue", 200)
def _(api, **_):
    api.post("/faas/api/queues", 200, json={"name": "oa_got"})
    assert api.get("/faas/api/queues/oa_got-dlq").json()["redrive_to"] == "oa_got"


@case("getQueue", 404)
def _(api, **_):
    api("GET", "/faas/api/queues/oa_nope", 404)


@case("sendMessages", 200)
def _(api, **_):
    api.post("/faas/api/queues", 200, json={"name": "oa_send"})
    ids = api.post("/faas/api/queues/oa_send/messages", 200, json={"messages": [
        {"body": "a"}, {"body": "b", "attributes": {"k": "v", "n": 1}, "delay": 900}]}).json()["message_ids"]
    q = api.get("/faas/api/queues/oa_send").json()
    assert len(ids) == 2 and q["visible"] == 1 and q["delayed"] == 1


@case("sendMessages", 400)
def _(api, **_):
    api.post("/faas/api/queues", 200, json={"name": "oa_send_bad"})
    for body in ({"messages": []}, {"messages": [{"body": 1}]}, {"messages": [{"body": "x", "delay": 901}]},
                 {"messages": [{"body": "x" * (256 * 1024 + 1)}]}):
        api.post("/faas/api/queues/oa_send_bad/messages", 400, json=body, valid_request=False)


@case("sendMessages", 404)
def _(api, **_):
    api.post("/faas/api/queues/oa_nope/messages", 404, json={"messages": [{"body": "x"}]})


@case("peekMessages", 200)
def _(api, **_):
    api.post("/faas/api/queues", 200, json={"name": "oa_peek"})
    api.post("/faas/api/queues/oa_peek/messages", 200, json={"messages": [{"body": "first"}]})
    [m] = api.get("/faas/api/queues/oa_peek/messages", params={"limit": 5}).json()["messages"]
    assert m["body"] == "first" and m["receiveCount"] == 0


@case("peekMessages", 400)
def _(api, **_):
    api.post("/faas/api/queues", 200, json={"name": "oa_peek_bad"})
    api("GET", "/faas/api/queues/oa_peek_bad/messages", 400, params={"limit": 0}, valid_request=False)


@case("peekMessages", 404)
def _(api, **_):
    api("GET", "/faas/api/queues/oa_nope/messages", 404)


@case("redriveQueue", 200)
def _(api, **_):
    api.post("/faas/api/queues", 200, json={"name": "oa_redrive"})
    assert api.post("/faas/api/queues/oa_redrive-dlq/redrive", 200).json() == {"moved": 0, "to": "oa_redrive"}


@case("redriveQueue", 400)
def _(api, **_):
    api.post("/faas/api/queues", 200, json={"name": "oa_not_dlq"})
    error = api.post("/faas/api/queues/oa_not_dlq/redrive", 400).json()
    assert "not a dead-letter queue" in error["message"]


@case("redriveQueue", 404)
def _(api, **_):
    api.post("/faas/api/queues/oa_nope/redrive", 404)


ALL_CASES = _all_cases(_spec_dict())


def test_every_documented_response_has_a_case():
    documented = {(op["operationId"], int(status))
                  for _, _, op in _operations(_spec_dict()) for status in op["responses"]}
    provoked = set(ALL_CASES)
    assert provoked - documented == set(), "cases for responses the spec does not document"
    missing = documented - provoked - {(op, 500) for op, _ in documented}
    assert missing == set(), "documented responses no case provokes"


@pytest.mark.parametrize("key", sorted(ALL_CASES), ids=[f"{o}-{s}" for o, s in sorted(ALL_CASES)])
def test_response_matches_the_spec(key, request, api, spec, server, echoed):
    ALL_CASES[key](api=api, spec=spec, server=server, echoed=echoed,
                   make_server=request.getfixturevalue("make_server"))


def _check_405(api, paths):
    for path, item in paths:
        for method in sorted(set(METHODS) - set(item) - {"head", "options"}):
            resp = requests.request(method.upper(), api.base + _fill(path), timeout=30,
                                    headers={"Authorization": f"token {api.token}"})
            assert resp.status_code == 405, (method, path, resp.status_code)
            assert resp.headers.get("x-amzn-ErrorType") == "InvalidRequest", (method, path, resp.text)
            assert resp.json()["errorType"] == "InvalidRequest", (method, path)


def test_undocumented_methods_answer_405(api):
    """The spec lists every method a path has: any other is 405, with the error body."""
    _check_405(api, [(p, i) for p, i in _spec_dict()["paths"].items()
                     if p not in WEBSOCKETS])


def test_websocket_paths_answer_405_like_every_path(api):
    """The spec's error table: a method a path does not have is 405 InvalidRequest, JSON."""
    _check_405(api, [(p, i) for p, i in _spec_dict()["paths"].items()
                     if p in WEBSOCKETS])


def test_spec_paths_are_the_routes():
    """The spec lists every route the server has (the one look at server internals)."""
    from jupyter_faas.server.api import routes
    served = {re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern).rstrip("$") for pattern, *_ in routes()}
    assert served == set(_spec_dict()["paths"])


def test_websocket_frames_are_described():
    text = SPEC.read_text(encoding="utf-8")
    for kind in ("invoke", "cancel", "watch", "accepted", "rejected", "log", "done", "unknown"):
        assert f"`{kind}`" in text, f"websocket frame kind {kind!r} is not described"


# ---- the websocket's frames, against the Ws* schemas ----------------------------------------

def _frame_validator(spec_dict: dict, schema_name: str):
    from openapi_schema_validator import OAS30Validator
    return OAS30Validator({"components": spec_dict["components"],
                           "allOf": [{"$ref": f"#/components/schemas/{schema_name}"}]})


def test_websocket_frames_match_the_schemas(server, api, echoed):
    """A real session: invoke (pickle and json), watch, cancel, a text and a bad message."""
    import asyncio
    import pickle

    from tornado.websocket import websocket_connect

    from kernel_workers import wire

    doc = _spec_dict()
    schemas = {k: _frame_validator(doc, "Ws" + k.capitalize()) for k in
               ("invoke", "cancel", "watch", "accepted", "rejected", "log", "done", "unknown")}
    seen: dict = {}

    def check(frame: bytes) -> tuple[dict, memoryview]:
        header, body = wire.unpack(frame)
        schemas[header["k"]].validate(header)
        seen.setdefault(header["k"], []).append(header)
        return header, body

    async def session():
        url = api.base.replace("http", "ws", 1) + f"/faas/api/ws?token={api.token}"
        ws = await websocket_connect(url)

        async def send(kind, body=b"", **fields):
            frame = wire.pack(kind, body, **fields)
            check(frame)  # what the client sends is what the spec says too
            await ws.write_message(frame, binary=True)

        async def receive_until(kind):
            while True:
                message = await asyncio.wait_for(ws.read_message(), 30)
                assert isinstance(message, bytes), message
                header, body = check(message)
                if header["k"] == kind:
                    return header, body

        event = b'{"via": "ws"}'
        await send("invoke", event, function="oa_echo", encoding="json", logs=True,
                   items=[["a", len(event)]])
        accepted, _ = await receive_until("accepted")
        [[cid, rid]] = accepted["items"]
        assert cid == "a"
        done, body = await receive_until("done")
        assert done["items"][0]["request_id"] == rid and bytes(body) == event
        payload = pickle.dumps((({"s": 60},), {}))
        await send("invoke", payload, function="oa_nap", queue=True, logs=True,
                   items=[["b", len(payload)]], group=["g", 1])
        accepted, _ = await receive_until("accepted")
        await receive_until("log")  # its START line, streamed while it runs (a quick call's ride on done)
        await send("cancel", request_ids=[accepted["items"][0][1]])
        done, _ = await receive_until("done")
        assert done["items"][0]["status"] == "cancelled"
        await send("invoke", b"", function="oa_nope", items=[["c", 0]])
        rejected, _ = await receive_until("rejected")
        assert rejected["cids"] == ["c"]
        assert rejected["error"]["errorType"] == "ResourceNotFoundException"
        await ws.write_message("text")
        rejected, _ = await receive_until("rejected")
        assert rejected["cids"] == [] and rejected["error"]["errorType"] == "InvalidRequest"
        await ws.write_message(b"\x00\x00\x00\x05not a frame", binary=True)
        rejected, _ = await receive_until("rejected")
        assert rejected["cids"] == [] and rejected["error"]["errorType"] == "ProtocolError"
        # re-attach to ended invocations (and one that does not exist)
        await send("watch", request_ids=[rid, echoed["request_id"], NO_SUCH_ID], logs=True)
        unknown, _ = await receive_until("unknown")
        assert unknown["request_ids"] == [NO_SUCH_ID]
        watched = []
        while len(watched) < 2:
            header, _ = await receive_until("done")
            watched += [item["request_id"] for item in header["items"]]
        assert set(watched) == {rid, echoed["request_id"]}
        ws.close()

    deploy(api, "oa_nap", nap, timeout=60)
    asyncio.run(session())
    assert {"accepted", "rejected", "log", "done", "unknown"} <= set(seen)
