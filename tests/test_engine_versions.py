"""Lambda's versions and aliases in the engine, with a fake backend and a real store (no processes)."""

from __future__ import annotations

import asyncio

import pytest

from engine_fakes import FakeBackend, turns
from jupyter_faas.errors import InvalidParameter, ResourceNotFound
from jupyter_faas.server.engine import FakeClock, Service
from jupyter_faas.server.store import Store


def make(path, backend=None):
    return Service(Store(path / "faas.sqlite"), backend or FakeBackend(), clock=FakeClock(),
                   memory_budget_mb=10_000, max_concurrency=None, throttle_wait=2.0,
                   max_payload_bytes=1 << 20)


class Draws:
    """An rng whose draws a test chooses."""

    def __init__(self, *values):
        self.values = list(values)

    def random(self):
        return self.values.pop(0)


def test_published_versions_pin_engine_versions(tmp_path):
    service = make(tmp_path)
    first = service.deploy("f", b"code-1")["version"]
    one = service.versions.publish("f", "one")
    assert (one["lambda_version"], one["version"], one["created"]) == ("1", first, True)
    assert service.versions.publish("f")["lambda_version"] == "1"   # nothing changed
    second = service.deploy("f", b"code-2")["version"]
    assert service.versions.publish("f")["lambda_version"] == "2"
    assert service.get_function("f", "1")["version"] == first
    assert service.get_function("f", "2")["version"] == second
    assert service.get_function("f", "$LATEST")["version"] == second
    # going back to the first code makes it $LATEST again; version 1 never moved
    service.deploy("f", b"code-1")
    assert service.get_function("f", "$LATEST")["version"] == first
    assert [v["lambda_version"] for v in service.versions.list("f")] == ["$LATEST", "1", "2"]
    with pytest.raises(ResourceNotFound):
        service.get_function("f", "3")


def test_an_alias_picks_its_additional_version_with_the_weights_probability(tmp_path):
    service = make(tmp_path)
    service.deploy("f", b"code-1")
    service.versions.publish("f")
    service.deploy("f", b"code-2")
    service.versions.publish("f")
    service.versions.put_alias("f", "live", "1", {"2": 0.25})
    service.versions.rng = Draws(0.0, 0.2499, 0.25, 0.9)
    picked = [service.get_function("f", "live")["lambda_version"] for _ in range(4)]
    assert picked == ["2", "2", "1", "1"]
    assert service.versions.get("f", "live")["lambda_version"] == "1"   # reading ignores weights
    for bad in ({"2": 1.5}, {"1": 0.5}, {"2": 0.1, "$LATEST": 0.1}, {"9": 0.1}):
        with pytest.raises((InvalidParameter, ResourceNotFound)):
            service.versions.put_alias("f", "bad", "1", bad)
    with pytest.raises(InvalidParameter, match="not all digits"):
        service.versions.put_alias("f", "12", "1")
    with pytest.raises(InvalidParameter, match="alias"):
        service.versions.delete_version("f", 2)   # live routes to it


def test_the_row_and_the_start_line_say_the_lambda_version_and_recovery_keeps_it(tmp_path):
    async def main():
        backend = FakeBackend()
        service = make(tmp_path, backend)
        engine_version = service.deploy("f", b"code")["version"]
        service.versions.publish("f")
        inv = service.submit("f", b"{}", encoding="json", version="1")
        await turns()
        backend.finish(backend.running()[0])
        await turns()
        row = service.store.get_invocation(inv.request_id)
        assert (row["version"], row["lambda_version"]) == (engine_version, "1")
        # a cold start: INIT_START, then START, both naming the Lambda version
        assert inv.logs[0][2].startswith("INIT_START ") and inv.logs[0][2].endswith(" Version: 1")
        assert inv.logs[1][2] == f"START RequestId: {inv.request_id} Version: 1"
        # queued, then the server stops: the restarted one runs it as version 1 still
        backend.envs.clear()
        queued = service.submit("f", b"{}", encoding="json", version="1", queue=True)
        service.store.close()
        again = make(tmp_path)
        assert again.recover()["requeued"] >= 1
        assert again.active[queued.request_id].function["lambda_version"] == "1"
    asyncio.run(main())


def test_deleting_a_function_forgets_its_versions_and_aliases(tmp_path):
    service = make(tmp_path)
    service.deploy("f", b"code")
    service.versions.publish("f")
    service.versions.put_alias("f", "live", "1")
    service.delete_function("f")
    service.deploy("f", b"other")
    assert service.versions.aliases("f") == []
    assert service.versions.publish("f")["lambda_version"] == "1"


class Provisioner(FakeBackend):
    """A fake backend that records what provisioned concurrency asks of it."""

    def __init__(self, refuse: str | None = None):
        super().__init__()
        self.kept: dict = {}   # (name, engine version, Lambda version) -> count
        self.refuse = refuse   # a function name this backend cannot provision

    def provision(self, function, count, code_for):
        if function["name"] == self.refuse:
            raise InvalidParameter("provisioned concurrency is not available on the fake backend")
        key = (function["name"], function["version"], function["lambda_version"])
        if count:
            self.kept[key] = count
        else:
            self.kept.pop(key, None)


def test_provisioned_latest_follows_each_deploy_and_0_stops(tmp_path):
    backend = Provisioner()
    service = make(tmp_path, backend)
    first = service.deploy("f", b"code-1")["version"]
    state = service.settings.set_provisioned("f", "$LATEST", 2)
    assert (state["qualifier"], state["requested"], state["versions"]) == ("$LATEST", 2, [first])
    assert backend.kept == {("f", first, "$LATEST"): 2}
    second = service.deploy("f", b"code-2")["version"]
    assert backend.kept == {("f", second, "$LATEST"): 2}          # it moved with $LATEST
    service.deploy("f", b"code-1")
    assert backend.kept == {("f", first, "$LATEST"): 2}           # and back
    service.versions.publish("f")
    service.settings.set_provisioned("f", "1", 1)                 # the same engine version
    assert backend.kept == {("f", first, "$LATEST"): 2, ("f", first, "1"): 1}
    assert service.settings.set_provisioned("f", "$LATEST", 0) is None
    assert backend.kept == {("f", first, "1"): 1}
    assert [q for q, _ in service.settings.provisioned_configs("f")] == ["1"]


def test_provisioned_limits_and_a_refusing_backend_keep_nothing(tmp_path):
    backend = Provisioner(refuse="g")
    service = make(tmp_path, backend)
    service.deploy("f", b"code", concurrency=3)
    service.deploy("g", b"code")
    service.deploy("big", b"code", memory=4096)
    service.versions.publish("f")
    service.settings.set_provisioned("f", "1", 2)
    with pytest.raises(InvalidParameter, match=r"reserved concurrency 3.*2 are provisioned.*at most 1"):
        service.settings.set_provisioned("f", "$LATEST", 2)
    with pytest.raises(InvalidParameter, match="memory budget of 10000 MB"):
        service.settings.set_provisioned("big", "$LATEST", 3)
    with pytest.raises(InvalidParameter, match="whole number"):
        service.settings.set_provisioned("f", "$LATEST", -1)
    with pytest.raises(InvalidParameter, match="unpublished"):
        service.settings.put_provisioned("f", "$LATEST", 1)       # Lambda's API keeps Lambda's rule
    with pytest.raises(InvalidParameter, match="fake backend"):
        service.settings.set_provisioned("g", "$LATEST", 1)
    assert [s["function"] for s in service.store.settings("provisioned")] == ["f"]
    assert backend.kept == {("f", 1, "1"): 2}
