"""Service.submit_many: many invocations accepted with one store transaction, real environments."""

import asyncio
import contextlib

import cloudpickle
import pytest

from jupyter_faas.errors import ResourceNotFound
from jupyter_faas.server.invoker import Service
from jupyter_faas.server.memory import WatchdogMemory
from jupyter_faas.server.pool import Pool
from jupyter_faas.server.store import Store


@contextlib.asynccontextmanager
async def running_service(tmp_path):
    """A Service over a real store and pool (real environments), closed afterwards."""
    store = Store(tmp_path / "faas.sqlite")
    pool = Pool(WatchdogMemory(), tmp_path / "envs", [], idle_timeout=60)
    service = Service(store, pool, memory_budget_mb=4096, max_concurrency=None, throttle_wait=2.0,
                      max_payload_bytes=1 << 20)
    service.start_background()
    try:
        yield service, store
    finally:
        await service.close()
        store.close()


@pytest.mark.timeout(120)
def test_submit_many_accepts_all_at_once_and_runs_each(tmp_path):
    async def main():
        async with running_service(tmp_path) as (service, store):
            service.deploy("double", cloudpickle.dumps(lambda x: 2 * x))
            calls = [{"name": "double", "payload": cloudpickle.dumps(((i,), {})), "queue": True}
                     for i in range(20)]
            calls.insert(3, {"name": "missing", "payload": b""})
            out = service.submit_many(calls)
            assert isinstance(out[3], ResourceNotFound)  # one bad call rejects only itself
            invocations = out[:3] + out[4:]
            # Accepted means in the store, before anyone is told.
            assert all(store.get_invocation(inv.request_id) for inv in invocations)
            ends = [await asyncio.wait_for(inv.done, 60) for inv in invocations]
            assert [done["status"] for done, _ in ends] == ["succeeded"] * 20
            assert [cloudpickle.loads(result) for _, result in ends] == [2 * i for i in range(20)]
            assert {store.get_invocation(inv.request_id)["status"] for inv in invocations} == {"succeeded"}
    asyncio.run(main())


@pytest.mark.timeout(120)
def test_batch_items_with_idle_environments_are_written_running_and_an_end_waits_for_its_commit(tmp_path):
    """submit_many writes an item that finds an idle environment already running (one write);
    an invocation that ended but whose terminal row is not committed yet is findable in
    ``ending`` (a re-attach then waits for its done), never reported before the commit."""
    async def main():
        async with running_service(tmp_path) as (service, store):
            service.deploy("double", cloudpickle.dumps(lambda x: 2 * x))
            first = service.submit_many([{"name": "double", "payload": cloudpickle.dumps(((1,), {})),
                                          "queue": True}])[0]
            await asyncio.wait_for(first.done, 60)  # now one environment is warm and idle
            commits = []
            service._commit_soon = lambda: commits.append(1)  # hold the group commit
            inv = service.submit_many([{"name": "double", "payload": cloudpickle.dumps(((4,), {})),
                                        "queue": True}])[0]
            assert store.get_invocation(inv.request_id)["status"] == "running"
            deadline = asyncio.get_running_loop().time() + 30
            while inv.request_id not in service.ending:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.01)
            assert inv.request_id not in service.active and not inv.done.done()
            assert store.get_invocation(inv.request_id)["status"] == "running"  # not final yet
            service._commit()
            assert inv.done.done() and inv.request_id not in service.ending
            done, result = inv.done.result()
            assert done["status"] == "succeeded" and cloudpickle.loads(result) == 8
            assert store.get_invocation(inv.request_id)["status"] == "succeeded"
    asyncio.run(main())
