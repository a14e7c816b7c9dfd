"""Service.submit_many: many invocations accepted with one store transaction, real environments."""

import asyncio
import contextlib

import cloudpickle
import pytest

from jupyter_faas.errors import ResourceNotFound
from jupyter_faas.server.engine import Service
from jupyter_faas.server.backends.local.memory import WatchdogMemory
from jupyter_faas.server.backends.local import Pool
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
            assert [done["status"] for done, _ in ends] == ["succeeded"] * 20, [
                done["error"] for done, _ in ends if done["status"] != "succeeded"]
            assert [cloudpickle.loads(result) for _, result in ends] == [2 * i for i in range(20)]
            assert {store.get_invocation(inv.request_id)["status"] for inv in invocations} == {"succeeded"}
    asyncio.run(main())


@pytest.mark.timeout(120)
def test_a_server_with_more_than_1024_descriptors_still_forks_environments(tmp_path):
    """The zygote is handed the server's socket under the server's descriptor number; a busy
    server (many clients and environments) has numbers past select()'s 1024, which once
    killed the zygote at start ('filedescriptor out of range in select()')."""
    import os
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        async def main():
            async with running_service(tmp_path) as (service, _):
                service.deploy("double", cloudpickle.dumps(lambda x: 2 * x))
                inv = service.submit("double", cloudpickle.dumps(((21,), {})), queue=True)
                done, result = await asyncio.wait_for(inv.done, 60)
                assert done["status"] == "succeeded", done["error"]
                assert cloudpickle.loads(result) == 42
        asyncio.run(main())
    finally:
        for fd in held:
            os.close(fd)
