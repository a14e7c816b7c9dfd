"""Invoke through Lambda's API with real boto3 against a real server (reference/lambda.md §1)."""

from __future__ import annotations

import base64
import json
import time

import pytest
from lambda_fixtures import client, create

import jupyter_faas as faas

APP = """
import os, sys, time
def handler(event, context):
    print("got", event)
    return {"event": event, "request_id": context.aws_request_id,
            "task_root": os.environ["LAMBDA_TASK_ROOT"], "cwd": os.getcwd(), "path0": sys.path[0]}

def boom(event, context):
    raise ValueError("kaboom")

def slow(event, context):
    time.sleep(30)

def hog(event, context):
    data = b"x" * (400 << 20)
    return len(data)

def crash(event, context):
    print("about to exit")
    os._exit(3)

def loud(event, context):
    for i in range(200):
        print("line %03d " % i + "." * 60)
    return "done"

def touch(event, context):
    open(event["path"], "w").write("ran")
"""


@pytest.fixture(scope="module")
def lam(server):
    lam = client(server)
    create(lam, "hello", {"app.py": APP})
    for name, handler, extra in [("boom", "app.boom", {}), ("slow", "app.slow", {"Timeout": 1}),
                                 ("hog", "app.hog", {"MemorySize": 128}), ("crash", "app.crash", {}),
                                 ("loud", "app.loud", {}), ("touch", "app.touch", {})]:
        create(lam, name, {"app.py": APP}, handler=handler, **extra)
    return lam


def _json(response) -> dict:
    return json.loads(response["Payload"].read())


@pytest.mark.parametrize("name,qualifier", [
    ("hello", None), ("hello:$LATEST", None), ("hello", "$LATEST"),
    ("000000000000:function:hello", None),
    ("arn:aws:lambda:us-east-1:000000000000:function:hello", None),
    ("arn:aws:lambda:us-east-1:000000000000:function:hello:$LATEST", "$LATEST"),
])
def test_every_name_form_invokes_the_function(lam, name, qualifier):
    extra = {"Qualifier": qualifier} if qualifier else {}
    r = lam.invoke(FunctionName=name, Payload=b'{"name": "x"}', **extra)
    assert r["StatusCode"] == 200 and "FunctionError" not in r
    assert r["ExecutedVersion"] == "$LATEST"
    out = _json(r)
    assert out["event"] == {"name": "x"}
    assert out["request_id"] == r["ResponseMetadata"]["RequestId"]
    # the package's directory first on sys.path and as LAMBDA_TASK_ROOT; cwd a scratch directory
    assert out["path0"] == out["task_root"] and "/lambda/code/" in out["task_root"]
    assert out["cwd"] != out["task_root"]


def test_empty_payload_is_an_empty_event(lam):
    assert _json(lam.invoke(FunctionName="hello"))["event"] == {}


def test_a_qualifier_that_disagrees_or_is_unknown(lam):
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="does not match"):
        lam.invoke(FunctionName="hello:$LATEST", Qualifier="live")
    with pytest.raises(lam.exceptions.ResourceNotFoundException, match="function:hello:live"):
        lam.invoke(FunctionName="hello:live")
    with pytest.raises(lam.exceptions.ResourceNotFoundException, match="Function not found"):
        lam.invoke(FunctionName="missing")
    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.invoke(FunctionName="arn:aws:s3:::bucket")


def test_tail_is_the_last_4_kb_of_the_log_with_the_report(lam):
    r = lam.invoke(FunctionName="hello", Payload=b'{"k": 1}', LogType="Tail")
    log = base64.b64decode(r["LogResult"]).decode()
    rid = r["ResponseMetadata"]["RequestId"]
    assert log.startswith(f"START RequestId: {rid}")
    assert "got {'k': 1}" in log and f"END RequestId: {rid}" in log
    assert f"REPORT RequestId: {rid}\tDuration: " in log and "Memory Size: 128 MB" in log
    r = lam.invoke(FunctionName="loud", LogType="Tail")
    log = base64.b64decode(r["LogResult"])
    assert len(log) == 4096 and b"line 199" in log and b"line 000" not in log
    assert log.rstrip().splitlines()[-1].startswith(b"REPORT RequestId: ")
    assert "LogResult" not in lam.invoke(FunctionName="hello")


def test_handler_error_is_200_unhandled_with_lambdas_error_json(lam):
    r = lam.invoke(FunctionName="boom", LogType="Tail")
    assert r["StatusCode"] == 200 and r["FunctionError"] == "Unhandled"
    body = _json(r)
    assert body["errorType"] == "ValueError" and body["errorMessage"] == "kaboom"
    assert body["requestId"] == r["ResponseMetadata"]["RequestId"]
    assert any('app.py", line' in frame and "in boom" in frame for frame in body["stackTrace"])
    assert "[ERROR] ValueError: kaboom" in base64.b64decode(r["LogResult"]).decode()


def test_timeout_is_sandbox_timedout(lam):
    started = time.monotonic()
    r = lam.invoke(FunctionName="slow", LogType="Tail")
    assert time.monotonic() - started < 10
    assert r["FunctionError"] == "Unhandled"
    body = _json(r)
    assert body["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in body["errorMessage"]
    assert base64.b64decode(r["LogResult"]).decode().rstrip("\n").endswith("Status: timeout\t")


def test_out_of_memory_and_crash_are_runtime_errors(lam):
    r = lam.invoke(FunctionName="hog")
    body = _json(r)
    assert r["FunctionError"] == "Unhandled" and body["errorType"] == "Runtime.OutOfMemory"
    assert "128 MB" in body["errorMessage"]
    r = lam.invoke(FunctionName="crash")
    body = _json(r)
    assert r["FunctionError"] == "Unhandled" and body["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in body["errorMessage"] and "about to exit" in body["errorMessage"]


def test_event_is_accepted_with_202_and_runs(lam, tmp_path):
    marker = tmp_path / "ran"
    r = lam.invoke(FunctionName="touch", InvocationType="Event",
                   Payload=json.dumps({"path": str(marker)}).encode())
    assert r["StatusCode"] == 202 and r["Payload"].read() == b""
    deadline = time.monotonic() + 20
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.read_text() == "ran"


def test_dry_run_is_204_and_runs_nothing(lam, tmp_path):
    marker = tmp_path / "ran"
    r = lam.invoke(FunctionName="touch", InvocationType="DryRun",
                   Payload=json.dumps({"path": str(marker)}).encode())
    assert r["StatusCode"] == 204
    time.sleep(0.5)
    assert not marker.exists()
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName="missing", InvocationType="DryRun")


def test_payload_limits_and_non_json(lam):
    with pytest.raises(lam.exceptions.RequestTooLargeException, match="6291456 bytes"):
        lam.invoke(FunctionName="hello", Payload=b'"' + b"x" * (6 * 1024 * 1024) + b'"')
    with pytest.raises(lam.exceptions.RequestTooLargeException, match="1048576 bytes"):
        lam.invoke(FunctionName="hello", InvocationType="Event", Payload=b'"' + b"x" * (1 << 20) + b'"')
    big = b'"' + b"x" * (5 << 20) + b'"'
    assert len(_json(lam.invoke(FunctionName="hello", Payload=big))["event"]) == 5 << 20
    with pytest.raises(lam.exceptions.InvalidRequestContentException, match="Could not parse"):
        lam.invoke(FunctionName="hello", Payload=b"not json")
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="Client context"):
        lam.invoke(FunctionName="hello", ClientContext="!!not base64!!")


def test_reserved_concurrency_zero_throttles_with_429(lam):
    lam.put_function_concurrency(FunctionName="touch", ReservedConcurrentExecutions=0)
    try:
        with pytest.raises(lam.exceptions.TooManyRequestsException) as info:
            lam.invoke(FunctionName="touch", Payload=b'{"path": "/dev/null"}')
        response = info.value.response
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
        assert response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "1"
    finally:
        lam.delete_function_concurrency(FunctionName="touch")
    lam.invoke(FunctionName="touch", Payload=b'{"path": "/dev/null"}')


def test_a_notebook_function_gets_the_decoded_json_event(lam, conn):
    @faas.function(name="nb_double")
    def double(event):
        return {"doubled": [x * 2 for x in event["xs"]]}

    assert double({"xs": [1]}) == {"doubled": [2]}
    r = lam.invoke(FunctionName="nb_double", Payload=b'{"xs": [1, 2, 3]}')
    assert _json(r) == {"doubled": [2, 4, 6]}
    conf = lam.get_function_configuration(FunctionName="nb_double")
    assert conf["Handler"] == "(notebook)" and conf["State"] == "Active"
    # and the zip function's invocations are the engine's: the same store, REPORT and logs
    rid = lam.invoke(FunctionName="hello")["ResponseMetadata"]["RequestId"]
    inv = faas.Invocation.from_id(rid)
    assert inv.status == "succeeded" and inv.report.memory_size_mb == 128
    assert any(line.startswith("REPORT RequestId: " + rid) for line in inv.logs)


def test_aws_env_and_boto3_client_point_at_the_server(lam, conn, server, monkeypatch):
    env = faas.aws_env()
    assert env == {"AWS_ENDPOINT_URL_LAMBDA": server.url, "AWS_ACCESS_KEY_ID": "jupyter-faas",
                   "AWS_SECRET_ACCESS_KEY": server.token, "AWS_REGION": "us-east-1",
                   "AWS_DEFAULT_REGION": "us-east-1"}
    assert _json(faas.boto3_client().invoke(FunctionName="hello", Payload=b"7"))["event"] == 7
    # a user's unmodified script: boto3.client("lambda") reads the same environment
    import boto3
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    plain = boto3.client("lambda")
    assert _json(plain.invoke(FunctionName="hello", Payload=b'"plain"'))["event"] == "plain"
