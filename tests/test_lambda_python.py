"""Versions and aliases from Python: faas.lookup, f.publish(), f.alias(), against a real server,
with the zip functions made by real boto3."""

from __future__ import annotations

import collections

import pytest
from lambda_fixtures import client, create

import jupyter_faas as faas

HELLO = ("V = 'one'\n"
         "def handler(event, context):\n"
         "    return {'hi': event.get('name'), 'v': V, 'version': context.function_version}\n")


@pytest.fixture(scope="module")
def lam(server):
    return client(server)


def test_lookup_returns_a_handle_like_faas_function(conn, lam):
    create(lam, "hello_py", {"app.py": HELLO}, MemorySize=256, Timeout=7)
    hello = faas.lookup("hello_py")
    assert isinstance(hello, faas.RemoteFunction)
    assert hello.config["memory"] == 256 and hello.config["timeout"] == 7
    assert hello({"name": "x"}) == {"hi": "x", "v": "one", "version": "$LATEST"}
    inv = hello.invoke({"name": "y"})
    assert inv.status == "succeeded" and inv.result["hi"] == "y"
    assert inv.logs[0] == f"START RequestId: {inv.request_id} Version: $LATEST"
    assert hello.spawn({"name": "z"}).result()["hi"] == "z"
    assert [r["hi"] for r in hello.map([{"name": str(i)} for i in range(5)])] == ["0", "1", "2", "3", "4"]
    with pytest.raises(faas.InvalidParameter, match="cannot run locally"):
        hello.local({})

    assert hello.publish() == 1
    lam.update_function_code(FunctionName="hello_py", ZipFile=_zip(HELLO.replace("'one'", "'two'")))
    assert hello.publish("the second") == 2
    one, two = faas.lookup("hello_py:1"), faas.lookup("hello_py:2")
    assert one({})["v"] == "one" and one({})["version"] == "1"
    assert two({})["v"] == "two" and two.version == "2"
    assert faas.lookup("hello_py:$LATEST")({})["v"] == "two"
    assert faas.Invocation.from_id(two.invoke({}).request_id).status == "succeeded"

    live = hello.alias("live", version=1)
    assert live({})["version"] == "1" and live.version == "live"
    assert faas.lookup("hello_py:live")({})["v"] == "one"
    hello.alias("live", version=2)   # the same call moves it
    assert faas.lookup("hello_py:live")({})["v"] == "two"

    for missing in ("nope", "hello_py:9", "hello_py:ghost"):
        with pytest.raises(faas.ResourceNotFound):
            faas.lookup(missing)


def _zip(text):
    from lambda_fixtures import make_zip
    return make_zip({"app.py": text})


SHARE = 0.1


def test_notebook_function_published_and_aliased_with_weights(conn):
    @faas.function(name="nb_versions")
    def which(event, context):
        return context.function_version

    assert which(None) == "$LATEST"
    assert which.publish() == 1
    assert which.publish() == 1          # nothing changed: the same version
    faas.function(memory=256)(which).publish()   # a new configuration: version 2
    canary = which.alias("canary", version=1, weights={2: SHARE})
    assert isinstance(canary, faas.RemoteFunction)
    # each item of a map is its own call and picks its version: 10% of 1000 -> 70..130
    counts = collections.Counter(canary.map(range(1000)))
    assert set(counts) == {"1", "2"} and 70 <= counts["2"] <= 130, counts
    assert faas.lookup("nb_versions:2").config["memory"] == 256
    with pytest.raises(faas.InvalidParameter, match="between 0.0 and 1.0"):
        which.alias("bad", version=1, weights={2: 3})
