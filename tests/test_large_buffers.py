"""Large buffers on the server's machine: their own limit (the function's memory), not Lambda's 6 MB.

Lambda's ``max_payload_mb`` still counts every byte that travels inside a message; the
out-of-band buffers of a pickle that travel through a file of the buffer directory are
limited by what the function's memory can hold.  The engine's rules are checked with a
fake backend (sparse files: nothing is written); a real default server round-trips 100 MB.
"""

from __future__ import annotations

import asyncio

import numpy
import pytest

import jupyter_faas as faas
from engine_fakes import FakeBackend, turns
from jupyter_faas.errors import PayloadTooLarge
from jupyter_faas.server.backends.local.buffer_files import BufferFiles
from jupyter_faas.server.engine import FakeClock, Service
from jupyter_faas.server.store import Store

MB = 1024 * 1024


def make_service(tmp_path, **options):
    files = BufferFiles(tmp_path / "buffers")
    settings = dict(memory_budget_mb=10_000, max_concurrency=None, throttle_wait=2.0,
                    max_payload_bytes=6 * MB, files=files)
    settings.update(options)
    backend = FakeBackend()
    service = Service(Store(tmp_path / "faas.sqlite"), backend, clock=FakeClock(), **settings)
    service.deploy("f", b"code", memory=256, timeout=3)
    return service, backend, files


def sparse(files, name, size) -> dict:
    """A descriptor of one buffer of ``size`` bytes in a sparse file (no bytes are written)."""
    with open(files.dir / name, "wb") as f:
        f.truncate(size)
    return {"file": name, "spans": [[0, size]]}


def test_buffers_in_files_are_limited_by_the_functions_memory_not_the_payload_limit(tmp_path):
    async def main():
        service, backend, files = make_service(tmp_path)
        inv = service.submit("f", b"pickle", buffers=sparse(files, "arg-big", 200 * MB))
        await turns()
        assert backend.running() == [inv.request_id]  # 200 MB > 6 MB, accepted: it fits in 256 MB
        with pytest.raises(PayloadTooLarge) as info:
            service.submit("f", b"pickle", buffers=sparse(files, "arg-huge", 300 * MB))
        msg = str(info.value)
        assert "300.0 MB" in msg and "256 MB" in msg and "memory=" in msg, msg
        assert not (files.dir / "arg-huge").exists()  # a refused call's file is deleted
        # The inline bytes keep Lambda's limit.
        with pytest.raises(PayloadTooLarge, match="max_payload_mb"):
            service.submit("f", b"x" * (7 * MB))
    asyncio.run(main())


def test_a_result_over_the_functions_memory_is_refused_and_one_within_it_is_kept(tmp_path):
    async def main():
        service, backend, files = make_service(tmp_path)
        ok = service.submit("f", b"pickle")
        big = service.submit("f", b"pickle", queue=True)
        await turns()
        described = sparse(files, f"res-{ok.request_id}", 100 * MB)
        backend.finish(ok.request_id, header={"k": "result", "buffers": described})
        await turns()
        done, _ = await ok.done
        assert done["status"] == "succeeded" and done["buffers"] == described
        await turns()
        sparse(files, f"res-{big.request_id}", 300 * MB)
        backend.finish(big.request_id, header={"k": "result", "buffers": {
            "file": f"res-{big.request_id}", "spans": [[0, 300 * MB]]}})
        await turns()
        done, _ = await big.done
        error = done["error"]
        assert error["errorType"] == "Function.ResponseSizeTooLarge"
        assert "300.0 MB" in error["errorMessage"] and "256 MB" in error["errorMessage"], error
        assert not (files.dir / f"res-{big.request_id}").exists()
    asyncio.run(main())


def echo_doubled(a):
    return a * 2


def test_a_100_mb_array_round_trips_under_the_default_configuration(make_server):
    server = make_server()  # no option: a user passing a big array needs none
    faas.connect(server.url, server.token)
    from jupyter_faas.client import discovery
    try:
        double = faas.function(echo_doubled, name="echo_doubled", memory=1024)
        arg = numpy.arange(100 * MB // 8, dtype="float64")  # 100 MB
        out = double(arg)
        assert out.nbytes == 100 * MB
        assert out[-1] == 2 * arg[-1] and out[12345] == 24690

        small = faas.function(echo_doubled, name="echo_small", memory=128)
        with pytest.raises(faas.PayloadTooLarge) as info:
            small(numpy.zeros(200 * MB // 8))
        msg = str(info.value)
        assert "200.0 MB" in msg and "128 MB" in msg and "memory=" in msg, msg
    finally:
        discovery.reset()
