"""Published versions and aliases with real boto3 (and the AWS CLI v1) against a real server."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from lambda_fixtures import client, create

APP = ("import os\n"
       "V = 'one'\n"
       "def handler(event, context):\n"
       "    return {'v': V, 'context_version': context.function_version,\n"
       "            'env_version': os.environ['AWS_LAMBDA_FUNCTION_VERSION']}\n")


def _json(r):
    return json.loads(r["Payload"].read())


@pytest.fixture(scope="module")
def lam(server):
    return client(server)


def _stored(server, rid):
    req = urllib.request.Request(f"{server.url}/faas/api/invocations/{rid}",
                                 headers={"Authorization": f"token {server.token}"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def test_publish_list_and_invoke_by_version(lam, server):
    create(lam, "ver", {"app.py": APP}, Description="first")
    latest = lam.invoke(FunctionName="ver", LogType="Tail")
    assert latest["ExecutedVersion"] == "$LATEST"
    assert _json(latest) == {"v": "one", "context_version": "$LATEST", "env_version": "$LATEST"}
    rid = latest["ResponseMetadata"]["RequestId"]
    assert f"START RequestId: {rid} Version: $LATEST" in base64.b64decode(latest["LogResult"]).decode()
    assert _stored(server, rid)["lambda_version"] == "$LATEST"

    v1 = lam.publish_version(FunctionName="ver", Description="v one")
    assert v1["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert v1["Version"] == "1" and v1["FunctionArn"].endswith(":function:ver:1")
    assert v1["Description"] == "v one"
    # nothing changed since: publishing again returns the same version
    assert lam.publish_version(FunctionName="ver")["Version"] == "1"

    lam.update_function_code(FunctionName="ver", ZipFile=_zip(APP.replace("'one'", "'two'")))
    v2 = lam.publish_version(FunctionName="ver", CodeSha256=lam.get_function(FunctionName="ver")
                             ["Configuration"]["CodeSha256"])
    assert v2["Version"] == "2" and v2["CodeSha256"] != v1["CodeSha256"]
    with pytest.raises(lam.exceptions.PreconditionFailedException):
        lam.publish_version(FunctionName="ver", CodeSha256=v1["CodeSha256"])

    # each version runs its own code and says which version ran, everywhere
    for qualifier, v in (("1", "one"), ("2", "two"), ("$LATEST", "two")):
        r = lam.invoke(FunctionName="ver", Qualifier=qualifier, LogType="Tail")
        assert r["ExecutedVersion"] == qualifier
        assert _json(r) == {"v": v, "context_version": qualifier, "env_version": qualifier}
        rid = r["ResponseMetadata"]["RequestId"]
        log = base64.b64decode(r["LogResult"]).decode()
        assert f"START RequestId: {rid} Version: {qualifier}\n" in log
        assert _stored(server, rid)["lambda_version"] == qualifier
    assert _json(lam.invoke(FunctionName="ver:1"))["v"] == "one"
    assert _json(lam.invoke(FunctionName="arn:aws:lambda:us-east-1:000000000000:function:ver:2"))["v"] == "two"

    got = lam.get_function(FunctionName="ver", Qualifier="1")["Configuration"]
    assert got["Version"] == "1" and got["CodeSha256"] == v1["CodeSha256"]
    assert lam.get_function_configuration(FunctionName="ver:2")["Version"] == "2"
    # a published version is immutable: changing $LATEST leaves it alone
    lam.update_function_configuration(FunctionName="ver", MemorySize=512)
    assert lam.get_function_configuration(FunctionName="ver:1")["MemorySize"] == 128
    assert lam.get_function_configuration(FunctionName="ver")["MemorySize"] == 512

    with pytest.raises(lam.exceptions.ResourceNotFoundException, match="function:ver:9"):
        lam.invoke(FunctionName="ver:9")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName="ver", Qualifier="9")


def _zip(text):
    from lambda_fixtures import make_zip
    return make_zip({"app.py": text})


def test_list_versions_paginates(lam):
    create(lam, "many", {"app.py": APP})
    for i in range(5):
        lam.update_function_configuration(FunctionName="many", Timeout=3 + i)
        assert lam.publish_version(FunctionName="many")["Version"] == str(i + 1)
    first = lam.list_versions_by_function(FunctionName="many", MaxItems=2)
    assert [v["Version"] for v in first["Versions"]] == ["$LATEST", "1"] and first["NextMarker"]
    pages = lam.get_paginator("list_versions_by_function").paginate(
        FunctionName="many", PaginationConfig={"PageSize": 2})
    versions = [v["Version"] for page in pages for v in page["Versions"]]
    assert versions == ["$LATEST", "1", "2", "3", "4", "5"]
    timeouts = {v["Version"]: v["Timeout"] for page in lam.get_paginator("list_versions_by_function")
                .paginate(FunctionName="many") for v in page["Versions"]}
    assert timeouts == {"$LATEST": 7, "1": 3, "2": 4, "3": 5, "4": 6, "5": 7}
    # delete one version: its number is not given out again
    lam.delete_function(FunctionName="many", Qualifier="2")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName="many:2")
    lam.update_function_configuration(FunctionName="many", Timeout=20)
    assert lam.publish_version(FunctionName="many")["Version"] == "6"
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.publish_version(FunctionName="nope")


def test_aliases_crud_and_error_shapes(lam):
    create(lam, "al", {"app.py": APP})
    lam.publish_version(FunctionName="al")
    lam.update_function_code(FunctionName="al", ZipFile=_zip(APP.replace("'one'", "'two'")))
    lam.publish_version(FunctionName="al")

    made = lam.create_alias(FunctionName="al", Name="live", FunctionVersion="1", Description="prod")
    assert made["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert made["AliasArn"] == "arn:aws:lambda:us-east-1:000000000000:function:al:live"
    assert (made["Name"], made["FunctionVersion"], made["Description"]) == ("live", "1", "prod")
    assert "RoutingConfig" not in made and made["RevisionId"]
    r = lam.invoke(FunctionName="al:live")
    assert r["ExecutedVersion"] == "1" and _json(r)["context_version"] == "1"
    assert _json(lam.invoke(FunctionName="al", Qualifier="live"))["v"] == "one"
    assert lam.get_function_configuration(FunctionName="al:live")["Version"] == "1"

    got = lam.get_alias(FunctionName="al", Name="live")
    assert got["FunctionVersion"] == "1" and got["RevisionId"] == made["RevisionId"]
    upd = lam.update_alias(FunctionName="al", Name="live", FunctionVersion="2", RevisionId=got["RevisionId"])
    assert upd["FunctionVersion"] == "2" and upd["Description"] == "prod"
    assert _json(lam.invoke(FunctionName="al:live"))["v"] == "two"
    with pytest.raises(lam.exceptions.PreconditionFailedException):
        lam.update_alias(FunctionName="al", Name="live", FunctionVersion="1", RevisionId=got["RevisionId"])

    lam.create_alias(FunctionName="al", Name="beta", FunctionVersion="$LATEST")
    lam.create_alias(FunctionName="al", Name="old", FunctionVersion="1")
    names = [a["Name"] for a in lam.list_aliases(FunctionName="al")["Aliases"]]
    assert names == ["beta", "live", "old"]
    assert [a["Name"] for a in lam.list_aliases(FunctionName="al", FunctionVersion="1")["Aliases"]] == ["old"]
    pages = lam.get_paginator("list_aliases").paginate(FunctionName="al", PaginationConfig={"PageSize": 1})
    assert [a["Name"] for p in pages for a in p["Aliases"]] == names

    # errors as botocore parses them
    with pytest.raises(lam.exceptions.ResourceConflictException, match="Alias already exists"):
        lam.create_alias(FunctionName="al", Name="live", FunctionVersion="1")
    with pytest.raises(lam.exceptions.ResourceNotFoundException, match="Alias not found"):
        lam.get_alias(FunctionName="al", Name="nope")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.create_alias(FunctionName="al", Name="x", FunctionVersion="7")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.create_alias(FunctionName="missing", Name="x", FunctionVersion="1")
    with pytest.raises(lam.exceptions.ResourceNotFoundException, match="function:al:nope"):
        lam.invoke(FunctionName="al:nope")
    for bad in ({"2": 1.5}, {"1": 0.5}, {"2": 0.1, "$LATEST": 0.1}):
        with pytest.raises(lam.exceptions.InvalidParameterValueException) as info:
            lam.create_alias(FunctionName="al", Name="w", FunctionVersion="1",
                             RoutingConfig={"AdditionalVersionWeights": bad})
        assert info.value.response["Error"]["Code"] == "InvalidParameterValueException"
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(lam.exceptions.ResourceConflictException, match="old"):
        lam.delete_function(FunctionName="al", Qualifier="1")  # an alias still points at it

    lam.delete_alias(FunctionName="al", Name="old")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_alias(FunctionName="al", Name="old")
    lam.delete_function(FunctionName="al")
    create(lam, "al", {"app.py": APP})  # the same name again: no versions or aliases
    assert lam.list_aliases(FunctionName="al")["Aliases"] == []
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName="al")["Versions"]] == ["$LATEST"]


NOOP = "def handler(event, context):\n    return context.function_version\n"


def test_weighted_alias_splits_calls_by_weight(lam, server):
    create(lam, "split", {"app.py": NOOP})
    lam.publish_version(FunctionName="split")
    lam.update_function_configuration(FunctionName="split", Description="second")
    lam.publish_version(FunctionName="split")
    alias = lam.create_alias(FunctionName="split", Name="canary", FunctionVersion="1",
                             RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}})
    assert alias["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.1}}
    counts = {"1": 0, "2": 0}
    for _ in range(1000):
        r = lam.invoke(FunctionName="split", Qualifier="canary")
        ran = json.loads(r["Payload"].read())
        assert ran == r["ExecutedVersion"]   # the header and the handler's context agree
        counts[ran] += 1
    # 10% of 1000: binomial sd ~9.5, so 70..130 is > 3 sd either side
    assert 70 <= counts["2"] <= 130, counts
    assert counts["1"] + counts["2"] == 1000


def test_aws_cli_publish_and_alias(lam, server):
    create(lam, "clif", {"app.py": NOOP})
    env = dict(server.env, AWS_ENDPOINT_URL_LAMBDA=server.url, AWS_ACCESS_KEY_ID="AKIDCLI",
               AWS_SECRET_ACCESS_KEY=server.token, AWS_DEFAULT_REGION="us-east-1", AWS_MAX_ATTEMPTS="1",
               AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null")

    def aws(*args):
        out = subprocess.run([str(Path(sys.executable).parent / "aws"), "lambda", *args],
                             capture_output=True, text=True, env=env, timeout=120)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout) if out.stdout.strip() else None

    assert aws("publish-version", "--function-name", "clif")["Version"] == "1"
    made = aws("create-alias", "--function-name", "clif", "--name", "live", "--function-version", "1")
    assert made["AliasArn"].endswith(":function:clif:live")
    assert [a["Name"] for a in aws("list-aliases", "--function-name", "clif")["Aliases"]] == ["live"]
    assert [v["Version"] for v in aws("list-versions-by-function", "--function-name", "clif")["Versions"]] \
        == ["$LATEST", "1"]
