"""Event-invoke configs and provisioned concurrency with real boto3 against a real server."""

from __future__ import annotations

import base64
import json
import time
import urllib.request

import pytest
from lambda_fixtures import client, create

APP = ("import os\n"
       "def handler(event, context):\n"
       "    return os.environ['AWS_LAMBDA_INITIALIZATION_TYPE']\n")
DEST = "arn:aws:lambda:us-east-1:000000000000:function:ev"  # a destination the queue can reach: itself


@pytest.fixture(scope="module")
def lam(server):
    return client(server)


def wait_until(condition, seconds=30.0, what="the condition"):
    """Poll ``condition()`` until it returns a true value (returned), or fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} did not hold within {seconds} s"
        time.sleep(0.02)


def test_event_invoke_config_put_get_update_delete(lam, server):
    create(lam, "ev", {"app.py": APP})
    lam.publish_version(FunctionName="ev")
    put = lam.put_function_event_invoke_config(
        FunctionName="ev", MaximumRetryAttempts=1, MaximumEventAgeInSeconds=120,
        DestinationConfig={"OnFailure": {"Destination": DEST}})
    assert put["FunctionArn"] == "arn:aws:lambda:us-east-1:000000000000:function:ev:$LATEST"
    assert (put["MaximumRetryAttempts"], put["MaximumEventAgeInSeconds"]) == (1, 120)
    assert put["DestinationConfig"] == {"OnFailure": {"Destination": DEST}}
    assert put["LastModified"].year >= 2024
    got = lam.get_function_event_invoke_config(FunctionName="ev")
    assert got["MaximumRetryAttempts"] == 1 and got["DestinationConfig"]["OnFailure"]["Destination"] == DEST

    # Update merges; Put replaces
    upd = lam.update_function_event_invoke_config(FunctionName="ev", MaximumRetryAttempts=0)
    assert (upd["MaximumRetryAttempts"], upd["MaximumEventAgeInSeconds"]) == (0, 120)
    rep = lam.put_function_event_invoke_config(FunctionName="ev", MaximumRetryAttempts=2)
    assert "MaximumEventAgeInSeconds" not in rep and "DestinationConfig" not in rep

    # per qualifier
    lam.put_function_event_invoke_config(FunctionName="ev", Qualifier="1", MaximumEventAgeInSeconds=60)
    assert lam.get_function_event_invoke_config(FunctionName="ev:1")["MaximumEventAgeInSeconds"] == 60
    arns = sorted(c["FunctionArn"] for c in
                  lam.list_function_event_invoke_configs(FunctionName="ev")["FunctionEventInvokeConfigs"])
    assert [a.rsplit(":", 1)[1] for a in arns] == ["$LATEST", "1"]

    unchecked = _unvalidated(server)  # botocore checks these ranges itself; the server must too
    for bad in ({"MaximumRetryAttempts": 3}, {"MaximumEventAgeInSeconds": 30}):
        with pytest.raises(unchecked.exceptions.InvalidParameterValueException, match="between"):
            unchecked.put_function_event_invoke_config(FunctionName="ev", **bad)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.put_function_event_invoke_config(FunctionName="ev", Qualifier="5", MaximumRetryAttempts=0)

    lam.delete_function_event_invoke_config(FunctionName="ev", Qualifier="1")
    with pytest.raises(lam.exceptions.ResourceNotFoundException, match="EventInvokeConfig"):
        lam.get_function_event_invoke_config(FunctionName="ev", Qualifier="1")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.delete_function_event_invoke_config(FunctionName="ev", Qualifier="1")


def _unvalidated(server):
    import boto3
    from botocore.config import Config
    return boto3.client("lambda", endpoint_url=server.url, region_name="us-east-1",
                        aws_access_key_id="AKIDTEST", aws_secret_access_key=server.token,
                        config=Config(retries={"total_max_attempts": 1}, parameter_validation=False))


def _api(server, path: str) -> dict:
    req = urllib.request.Request(f"{server.url}{path}", headers={"Authorization": f"token {server.token}"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def test_latest_event_invoke_config_drives_the_async_queue(lam, server):
    create(lam, "evfail", {"app.py": "def handler(event, context):\n    raise ValueError('no')\n"})
    create(lam, "evsink", {"app.py": "def handler(event, context):\n"
                                     "    c = event['requestContext']\n"
                                     "    print('condition', c['condition'], 'count', c['approximateInvokeCount'],"
                                     " 'version', event['responseContext']['executedVersion'])\n"})
    sink = "arn:aws:lambda:us-east-1:000000000000:function:evsink"
    lam.put_function_event_invoke_config(FunctionName="evfail", MaximumRetryAttempts=0,
                                         DestinationConfig={"OnFailure": {"Destination": sink}})
    assert lam.invoke(FunctionName="evfail", InvocationType="Event", Payload=b"{}")["StatusCode"] == 202
    # no retry (MaximumRetryAttempts=0): one attempt, then the record goes to the sink function
    done = wait_until(lambda: [r for r in _api(server, "/faas/api/invocations?function=evsink")["invocations"]
                               if r["status"] == "succeeded"], what="the destination's invocation")
    lines = [entry["line"] for entry in _api(server, f"/faas/api/invocations/{done[0]['request_id']}/logs")["logs"]]
    assert "condition RetriesExhausted count 1 version $LATEST" in lines
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="Lambda function ARN"):
        lam.put_function_event_invoke_config(FunctionName="evfail", DestinationConfig={
            "OnFailure": {"Destination": "arn:aws:sns:us-east-1:000000000000:topic"}})
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="not deployed"):
        lam.put_function_event_invoke_config(FunctionName="evfail", DestinationConfig={
            "OnSuccess": {"Destination": "arn:aws:lambda:us-east-1:000000000000:function:ghost"}})


def _status(server) -> dict:
    req = urllib.request.Request(f"{server.url}/faas/api/status",
                                 headers={"Authorization": f"token {server.token}"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def _report(r) -> str:
    return [line for line in base64.b64decode(r["LogResult"]).decode().splitlines()
            if line.startswith("REPORT")][0]


def test_provisioned_concurrency_makes_the_first_call_warm_and_stays(make_server):
    server = make_server("--FaaSServer.idle_timeout=0.5")
    lam = client(server)
    create(lam, "pc", {"app.py": APP})
    lam.publish_version(FunctionName="pc")
    lam.create_alias(FunctionName="pc", Name="live", FunctionVersion="1")
    with pytest.raises(lam.exceptions.InvalidParameterValueException, match="unpublished"):
        lam.put_provisioned_concurrency_config(FunctionName="pc", Qualifier="$LATEST",
                                               ProvisionedConcurrentExecutions=1)
    with pytest.raises(lam.exceptions.ClientError, match="ProvisionedConcurrencyConfigNotFound"):
        lam.get_provisioned_concurrency_config(FunctionName="pc", Qualifier="live")

    put = lam.put_provisioned_concurrency_config(FunctionName="pc", Qualifier="live",
                                                 ProvisionedConcurrentExecutions=2)
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert put["RequestedProvisionedConcurrentExecutions"] == 2
    assert put["Status"] in ("IN_PROGRESS", "READY")
    ready = wait_until(lambda: (lambda c: c if c["Status"] == "READY" else None)(
        lam.get_provisioned_concurrency_config(FunctionName="pc", Qualifier="live")), what="READY")
    assert ready["AllocatedProvisionedConcurrentExecutions"] == 2
    assert ready["AvailableProvisionedConcurrentExecutions"] == 2

    # an ordinary call of $LATEST is a cold start: its REPORT has an Init Duration
    cold = lam.invoke(FunctionName="pc", LogType="Tail")
    assert "Init Duration" in _report(cold)
    assert json.loads(cold["Payload"].read()) == "on-demand"
    # ... it is reaped after idle_timeout, the provisioned ones are not
    wait_until(lambda: _status(server)["environments"] - _status(server).get("spare", 0) == 2,
               what="the $LATEST environment reaped")

    # the first call through the alias is warm: no Init Duration; initialized as Lambda says
    warm = lam.invoke(FunctionName="pc", Qualifier="live", LogType="Tail")
    assert warm["ExecutedVersion"] == "1"
    assert "Init Duration" not in _report(warm)
    assert json.loads(warm["Payload"].read()) == "provisioned-concurrency"
    assert "Init Duration" not in _report(lam.invoke(FunctionName="pc:1", LogType="Tail"))

    # the alias moves to a new version: its provisioned environments follow it
    lam.update_function_configuration(FunctionName="pc", Description="second")
    assert lam.publish_version(FunctionName="pc")["Version"] == "2"
    lam.update_alias(FunctionName="pc", Name="live", FunctionVersion="2")
    wait_until(lambda: lam.get_provisioned_concurrency_config(
        FunctionName="pc", Qualifier="live")["Status"] == "READY", what="READY on version 2")
    moved = lam.invoke(FunctionName="pc", Qualifier="live", LogType="Tail")
    assert moved["ExecutedVersion"] == "2" and "Init Duration" not in _report(moved)

    listed = lam.list_provisioned_concurrency_configs(FunctionName="pc")["ProvisionedConcurrencyConfigs"]
    assert [c["FunctionArn"].rsplit(":", 1)[1] for c in listed] == ["live"]
    lam.delete_provisioned_concurrency_config(FunctionName="pc", Qualifier="live")
    with pytest.raises(lam.exceptions.ClientError, match="ProvisionedConcurrencyConfigNotFound"):
        lam.get_provisioned_concurrency_config(FunctionName="pc", Qualifier="live")
    # no longer kept: reaped like any idle environment
    wait_until(lambda: _status(server)["environments"] - _status(server).get("spare", 0) == 0,
               what="the unprovisioned environments reaped")


def test_provisioned_concurrency_that_cannot_start_says_failed(lam):
    create(lam, "pcbad", {"app.py": "import not_there\n"})
    lam.publish_version(FunctionName="pcbad")
    lam.put_provisioned_concurrency_config(FunctionName="pcbad", Qualifier="1",
                                           ProvisionedConcurrentExecutions=1)
    failed = wait_until(lambda: (lambda c: c if c["Status"] == "FAILED" else None)(
        lam.get_provisioned_concurrency_config(FunctionName="pcbad", Qualifier="1")), what="FAILED")
    assert "Runtime.ImportModuleError" in failed["StatusReason"]


def test_reserved_concurrency_below_provisioned_is_refused(lam):
    create(lam, "pcres", {"app.py": APP})
    lam.publish_version(FunctionName="pcres")
    lam.put_function_concurrency(FunctionName="pcres", ReservedConcurrentExecutions=3)
    lam.put_provisioned_concurrency_config(FunctionName="pcres", Qualifier="1",
                                           ProvisionedConcurrentExecutions=2)
    with pytest.raises(lam.exceptions.InvalidParameterValueException,
                       match=r"reserved concurrency 1 for pcres is below its provisioned concurrency "
                             r"\(2 environments: 2 on 1\)"):
        lam.put_function_concurrency(FunctionName="pcres", ReservedConcurrentExecutions=1)
    assert lam.get_function_concurrency(FunctionName="pcres")["ReservedConcurrentExecutions"] == 3
    lam.put_function_concurrency(FunctionName="pcres", ReservedConcurrentExecutions=2)  # enough
    lam.delete_provisioned_concurrency_config(FunctionName="pcres", Qualifier="1")
    lam.put_function_concurrency(FunctionName="pcres", ReservedConcurrentExecutions=1)
    assert lam.get_function_concurrency(FunctionName="pcres")["ReservedConcurrentExecutions"] == 1
