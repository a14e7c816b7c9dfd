"""The engine's rules with a fake backend and a fake clock: admission, throttling, group commit.

No processes and no sleeps: the backend is :class:`engine_fakes.FakeBackend`, time is
:class:`~jupyter_faas.server.engine.FakeClock`, and the group commit is driven by loop turns.
The store is the real one (SQLite in a temporary directory).
"""

from __future__ import annotations

import asyncio

import pytest

from engine_fakes import FakeBackend, turns
from jupyter_faas.server.engine import FakeClock, Service
from jupyter_faas.server.model import IllegalTransition, Pricing
from jupyter_faas.server.store import Store


def make(tmp_path, backend=None, **options):
    store = Store(tmp_path / "faas.sqlite")
    clock = FakeClock()
    backend = backend or FakeBackend()
    settings = dict(memory_budget_mb=10_000, max_concurrency=None, throttle_wait=2.0,
                    max_payload_bytes=1 << 20)
    settings.update(options)
    service = Service(store, backend, clock=clock, **settings)
    service.deploy("f", b"code", memory=128, timeout=3)
    return service, store, backend, clock


def run(coro):
    return asyncio.run(coro)


def test_admission_keeps_max_concurrency_and_starts_the_next_when_one_ends(tmp_path):
    async def main():
        service, store, backend, _ = make(tmp_path, max_concurrency=2)
        invs = [service.submit("f", b"p%d" % i, queue=True) for i in range(5)]
        await turns()
        assert len(backend.running()) == 2
        assert [store.get_invocation(i.request_id)["status"] for i in invs].count("queued") == 3
        backend.finish(backend.running()[0])
        await turns()
        assert len(backend.running()) == 2 and len(backend.runs) == 3
        while backend.running():
            backend.finish(backend.running()[0])
            await turns()
        assert {store.get_invocation(i.request_id)["status"] for i in invs} == {"succeeded"}
        assert service.running == 0 and service.memory_in_use == 0
    run(main())


def test_a_maps_group_limit_is_kept(tmp_path):
    async def main():
        service, _, backend, _ = make(tmp_path)
        out = service.submit_many([{"name": "f", "payload": b"x", "queue": True, "group": ["g", 3]}
                                   for _ in range(10)])
        await turns()
        assert len(out) == 10 and len(backend.running()) == 3
        backend.finish(backend.running()[0])
        await turns()
        assert len(backend.running()) == 3
    run(main())


def test_a_sync_call_is_throttled_only_when_throttle_wait_has_passed(tmp_path):
    async def main():
        service, store, backend, clock = make(tmp_path, max_concurrency=1, throttle_wait=2.0)
        first = service.submit("f", b"a")
        second = service.submit("f", b"b")          # no slot: waits, sync
        await turns()
        clock.advance(1.9)
        await turns()
        assert store.get_invocation(second.request_id)["status"] == "queued"
        clock.advance(0.2)
        await turns()
        done, _ = await asyncio.wait_for(second.done, 1)
        assert done["status"] == "throttled"
        assert done["error"]["errorType"] == "TooManyRequestsException"
        assert store.get_invocation(second.request_id)["status"] == "throttled"
        backend.finish(first.request_id)
        await turns()
        assert (await first.done)[0]["status"] == "succeeded"
    run(main())


def test_an_invocation_runs_only_after_its_running_row_and_is_told_only_after_its_end_is_stored(tmp_path):
    """The two durability invariants, checked at the moment each thing happens."""
    async def main():
        service, store, backend, _ = make(tmp_path)
        seen_at_run = []
        backend.on_run = lambda env, rid: seen_at_run.append(store.get_invocation(rid)["status"])
        told = []
        invs = [service.submit("f", b"x", queue=True) for _ in range(3)]
        for inv in invs:
            inv.done.add_done_callback(
                lambda fut, rid=inv.request_id: told.append(store.get_invocation(rid)["status"]))
        await turns()
        for rid in backend.running():
            backend.finish(rid)
        # Ended, but the terminal rows wait for the group commit: nobody is told yet, and a
        # re-attaching client finds them in ``ending`` (it waits for their done).
        assert not any(inv.done.done() for inv in invs)
        assert all(i.request_id in service.ending and i.request_id not in service.active for i in invs)
        assert all(store.get_invocation(i.request_id)["status"] == "running" for i in invs)
        await turns()
        assert seen_at_run == ["running"] * 3
        assert told == ["succeeded"] * 3
    run(main())


def test_a_warm_call_with_no_queue_is_written_running_in_one_step(tmp_path):
    async def main():
        service, store, backend, _ = make(tmp_path)
        first = service.submit("f", b"x")
        await turns()
        backend.finish(first.request_id)
        await turns()
        second = service.submit("f", b"y")   # an idle environment: the fast path
        assert store.get_invocation(second.request_id)["status"] == "running"
        await turns()
        assert backend.running() == [second.request_id]
    run(main())


def test_a_failed_batch_write_gives_back_slots_and_environments_without_an_illegal_move(tmp_path):
    """submit_many counted slots for items that found idle environments; when the store
    refuses the batch, the counts and environments come back and no invocation was ever
    moved backwards (once it did RUNNING -> QUEUED behind the lifecycle's back)."""
    async def main():
        service, store, backend, _ = make(tmp_path)
        warm = [service.submit("f", b"x", queue=True) for _ in range(2)]
        await turns()
        for rid in backend.running():
            backend.finish(rid)
        await turns()
        assert all(w.done.done() for w in warm)

        def refuse(rows):
            raise OSError("disk full")
        store.add_invocations = refuse
        with pytest.raises(OSError, match="disk full"):
            service.submit_many([{"name": "f", "payload": b"y", "queue": True} for _ in range(3)])
        assert service.running == 0 and service.memory_in_use == 0
        assert service.slots.by_function.get("f", 0) == 0
        assert sorted(e.state for e in backend.envs) == ["idle", "idle"]
    run(main())


def test_the_lifecycle_refuses_an_illegal_move(tmp_path):
    async def main():
        service, _, backend, _ = make(tmp_path)
        inv = service.submit("f", b"x", queue=True)
        await turns()
        assert inv.status == "running"
        with pytest.raises(IllegalTransition, match="'running' to 'queued'"):
            inv.status = "queued"
    run(main())


def test_admission_waits_for_a_warm_environment_then_looks_again_when_the_wait_is_up(tmp_path):
    async def main():
        service, store, backend, clock = make(tmp_path)
        first = service.submit("f", b"a", queue=True)   # nothing to wait for yet: a cold start
        await turns()
        backend.warm_wait = 0.5                           # placement: a busy one frees soon
        second = service.submit("f", b"b", queue=True)
        await turns()
        assert len(backend.envs) == 1 and store.get_invocation(second.request_id)["status"] == "queued"
        backend.warm_wait = None
        clock.advance(0.5)                                # the wait is up: admission looks again
        await turns()
        assert len(backend.envs) == 2 and backend.running() == [first.request_id, second.request_id]
    run(main())


def test_every_report_costs_at_the_configured_prices(tmp_path):
    async def main():
        service, _, backend, _ = make(tmp_path, pricing=Pricing(per_gb_second=1.0, per_request=0.5))
        inv = service.submit("f", b"x")
        await turns()
        backend.finish(inv.request_id, duration_ms=1000.0)
        await turns()
        done, _ = await inv.done
        rep = done["report"]
        assert rep["gb_seconds"] == pytest.approx(128 / 1024 * rep["billed_duration_ms"] / 1000)
        assert rep["cost_usd"] == pytest.approx(0.5 + rep["gb_seconds"] * 1.0)
    run(main())


def test_outcome_kinds_become_the_vocabularys_statuses_and_error_types(tmp_path):
    async def main():
        service, store, backend, _ = make(tmp_path)
        cases = {"timeout": ("timed_out", "Sandbox.Timedout"), "oom": ("failed", "Runtime.OutOfMemory"),
                 "crash": ("failed", "Runtime.ExitError"), "cancelled": ("cancelled", "Cancelled")}
        for kind, (status, error_type) in cases.items():
            inv = service.submit("f", b"x", queue=True)
            await turns()
            backend.finish(inv.request_id, kind, returncode=-11 if kind == "crash" else None)
            await turns()
            done, _ = await inv.done
            assert (done["status"], done["error"]["errorType"]) == (status, error_type), kind
            if kind == "crash":
                assert "signal: SIGSEGV (-11)" in done["error"]["errorMessage"]
            assert store.get_invocation(inv.request_id)["status"] == status
    run(main())


def test_cancel_of_a_queued_invocation_drops_it_and_of_a_running_one_asks_the_backend(tmp_path):
    async def main():
        service, store, backend, _ = make(tmp_path, max_concurrency=1)
        running = service.submit("f", b"a", queue=True)
        queued = service.submit("f", b"b", queue=True)
        await turns()
        assert service.cancel(queued.request_id)
        await turns()
        assert (await queued.done)[0]["status"] == "cancelled"
        assert service.cancel(running.request_id)
        assert backend.cancelled == [backend.envs[0]]
        backend.finish(running.request_id, "cancelled")
        await turns()
        assert (await running.done)[0]["status"] == "cancelled"
        assert [r for _, r, _ in backend.runs] == [running.request_id]  # the queued one never ran
    run(main())


def test_a_backend_without_provisioned_concurrency_says_so_as_a_bad_request():
    from jupyter_faas.errors import InvalidParameter
    with pytest.raises(InvalidParameter, match="provisioned concurrency is not available on the"):
        FakeBackend().provision({"name": "f", "version": 1}, 2, lambda f: b"")


class _PooledBackend(FakeBackend):
    """Functions deployed with backend='dask' count against a pool of their own (a cluster's)."""

    def __init__(self, budget):
        super().__init__()
        self.budget = budget

    def memory_pool(self, function):
        return ("dask", self.budget) if function.get("backend") == "dask" else None


def test_invocations_on_a_cluster_count_against_its_memory_not_this_machines(tmp_path):
    async def main():
        backend = _PooledBackend(budget=1000)
        service, store, _, _ = make(tmp_path, backend=backend, memory_budget_mb=300)
        service.deploy("big_local", b"code", memory=256, timeout=3)
        service.deploy("on_cluster", b"code", memory=256, timeout=3, backend="dask")
        local = [service.submit("big_local", b"l", queue=True) for _ in range(2)]
        remote = [service.submit("on_cluster", b"r%d" % i, queue=True) for i in range(5)]
        await turns()
        # this machine: one 256 MB invocation in its 300 MB; the cluster: three in its 1000 MB
        running = {r: backend.active[r].function["name"] for r in backend.running()}
        assert sorted(running.values()) == ["big_local"] + ["on_cluster"] * 3, running
        stats = service.stats()
        assert stats["memory_in_use_mb"] == 256 and stats["running"] == 4
        assert stats["memory_pools"] == {"dask": {"running": 3, "memory_in_use_mb": 768,
                                                  "memory_budget_mb": 1000}}
        # a cluster invocation ending frees the cluster's memory, not this machine's
        backend.finish(next(r for r, name in running.items() if name == "on_cluster"))
        await turns()
        names = sorted(backend.active[r].function["name"] for r in backend.running())
        assert names == ["big_local"] + ["on_cluster"] * 3
        while backend.running():
            backend.finish(backend.running()[0])
            await turns()
        assert {store.get_invocation(i.request_id)["status"] for i in local + remote} == {"succeeded"}
        assert service.stats()["memory_pools"]["dask"]["memory_in_use_mb"] == 0
        assert service.memory_in_use == 0 and service.running == 0
    run(main())


def test_a_cluster_without_a_known_budget_caps_nothing_but_max_concurrency(tmp_path):
    async def main():
        backend = _PooledBackend(budget=None)
        service, _, _, _ = make(tmp_path, backend=backend, memory_budget_mb=100, max_concurrency=6)
        service.deploy("on_cluster", b"code", memory=2048, timeout=3, backend="dask")
        for i in range(8):
            service.submit("on_cluster", b"r%d" % i, queue=True)
        await turns()
        assert len(backend.running()) == 6       # max_concurrency counts every invocation
    run(main())


def test_a_sync_call_throttled_on_the_cluster_names_the_clusters_budget(tmp_path):
    async def main():
        backend = _PooledBackend(budget=300)
        service, store, _, clock = make(tmp_path, backend=backend, throttle_wait=1.0)
        service.deploy("on_cluster", b"code", memory=256, timeout=3, backend="dask")
        service.submit("on_cluster", b"first")
        await turns()
        second = service.submit("on_cluster", b"second")
        await turns()
        clock.advance(1.5)
        await turns()
        row = store.get_invocation(second.request_id)
        assert row["status"] == "throttled"
        assert "memory budget of the dask backend (300 MB" in row["error"]["errorMessage"]
    run(main())
