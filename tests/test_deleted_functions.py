"""A deleted function is remembered: calling it says when it was deleted, its logs stay readable,
listings leave it out, and deploying the same name again revives it."""

from __future__ import annotations

import re

import pytest

import jupyter_faas as faas
from jupyter_faas.server.store import Store


def test_a_deleted_function_says_so_keeps_its_logs_and_can_be_redeployed(conn):
    @faas.function(name="doomed")
    def doomed(x):
        print("doomed got", x)
        return x + 1

    assert doomed(1) == 2
    rid = faas.invocations(function="doomed", limit=1)[0].request_id
    conn.request("DELETE", "/faas/api/functions/doomed")

    # A kept reference: the server says what happened and what to do.
    with pytest.raises(faas.ResourceNotFound) as info:
        doomed(2)
    msg = str(info.value)
    assert re.search(r"Function doomed was deleted at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC; redeploy it "
                     r"\(@faas.function or %%lambda\) to call it again", msg), msg
    for method, path in (("GET", "/faas/api/functions/doomed"), ("DELETE", "/faas/api/functions/doomed")):
        with pytest.raises(faas.ResourceNotFound, match="was deleted at"):
            conn.request(method, path)
    with pytest.raises(faas.ResourceNotFound, match="was deleted at"):
        conn.request("POST", "/faas/api/functions/doomed/invocations", body={"x": 1})

    # Its invocations and logs stay in the store, and stay reachable.
    logs = conn.request("GET", "/faas/api/functions/doomed/logs")["logs"]
    assert any(entry["line"] == "doomed got 1" for entry in logs), logs
    assert faas.Invocation.from_id(rid).status == "succeeded"
    names = [f["name"] for f in conn.request("GET", "/faas/api/functions")["functions"]]
    assert "doomed" not in names
    panel = [f["name"] for f in conn.request("GET", "/faas/api/metrics/functions")["functions"]]
    assert "doomed" not in panel
    with pytest.raises(faas.ResourceNotFound, match="Function not found: never_was"):
        conn.request("GET", "/faas/api/functions/never_was/logs")

    # Deploying the name again revives it.
    @faas.function(name="doomed")
    def doomed_again(x):
        return x + 100

    assert doomed_again(1) == 101
    assert "doomed" in [f["name"] for f in conn.request("GET", "/faas/api/functions")["functions"]]


def test_the_store_remembers_deletions_and_keeps_versions_for_a_revival(tmp_path):
    store = Store(tmp_path / "faas.sqlite")
    config = {"memory": 128, "timeout": 3, "env": {}, "concurrency": None}
    assert store.deploy("f", b"v1", config) == (1, True)
    assert store.deploy("f", b"v2", config) == (2, True)
    assert store.deleted_at("f") is None
    assert store.delete_function("f") is True
    assert store.delete_function("f") is False  # already deleted
    assert store.get_function("f") is None and store.get_function("f", 1) is None
    assert store.list_functions() == []
    assert store.deleted_at("f") is not None and store.deleted_at("never") is None
    # The same code again is the same version, revived; new code a new number, never a reused one.
    assert store.deploy("f", b"v1", config) == (1, False)
    assert store.get_function("f")["version"] == 1 and store.deleted_at("f") is None
    store.delete_function("f")
    assert store.deploy("f", b"v3", config) == (3, True)
    assert [f["name"] for f in store.list_functions()] == ["f"]
    store.close()
