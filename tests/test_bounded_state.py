"""What a long-running server holds does not grow without bound.

Per-version state in memory (code, version records, placement statistics) is bounded by
``versions_kept``; spare environments go when the pool scales to zero; buffer files that no
invocation owns (a crash, a client that died before sending its call) are swept.  Real
servers, real processes, conditions waited on.
"""

from __future__ import annotations

import json
import threading
import urllib.request

import numpy
import psutil
import pytest

import jupyter_faas as faas
from conftest import wait_for
from jupyter_faas.client import discovery

MB = 1_000_000


def get(server, path: str) -> dict:
    request = urllib.request.Request(f"{server.url}{path}",
                                     headers={"Authorization": f"token {server.token}"})
    return json.loads(urllib.request.urlopen(request, timeout=30).read())


def status(server) -> dict:
    return get(server, "/faas/api/status")


def make_adder(k):
    def adder(x):
        return x + k
    return adder


def test_per_version_state_stays_bounded_and_an_evicted_version_still_runs(make_server):
    server = make_server("--FaaSServer.versions_kept=4", "--FaaSServer.idle_timeout=2")
    faas.connect(server.url, server.token)
    try:
        first = faas.function(make_adder(0), name="adder")
        assert first(1) == 1
        for k in range(1, 16):  # 16 versions of one function, each run once
            version = faas.function(make_adder(k), name="adder")
            assert version(1) == 1 + k
            if k % 5 == 0:
                assert first(1) == 1  # a version still in use keeps working
            held = status(server)
            assert held["cached_code"] <= 4 and held["cached_versions"] <= 4, held
            assert held["version_stats"] <= 4, held
        assert first.version == 1 and version.version == 16
        assert first(41) == 41  # evicted long ago: read from the store again
    finally:
        discovery.reset()


def zygote_children(server) -> list:
    """The zygote's children: execution environments and spares (the zygote itself stays)."""
    (zygote,) = [p for p in psutil.Process(server.proc.pid).children()
                 if "kernel_workers.zygote" in " ".join(p.cmdline())]
    try:
        return zygote.children()
    except psutil.Error:
        return []


def test_spare_environments_stop_when_the_pool_scales_to_zero(make_server):
    server = make_server("--FaaSServer.idle_timeout=1")
    wait_for(lambda: status(server).get("spare", 0) > 0, what="spares forked ahead at start")
    # Nothing ran for idle_timeout: no environment, no spare; only the zygote is left.
    wait_for(lambda: not zygote_children(server) and "spare" not in status(server),
             what="spares stopped at scale to zero")
    faas.connect(server.url, server.token)
    try:
        inc = faas.function(lambda x: x + 1, name="inc_after_zero")
        assert inc(1) == 2  # a cold start after scale to zero forks from the zygote
        wait_for(lambda: status(server).get("spare", 0) > 0, what="spares again once invoked")
        wait_for(lambda: not zygote_children(server), what="scale to zero again")
        assert inc(2) == 3
    finally:
        discovery.reset()


def hold(a, until):
    """Holds a large argument until the file ``until`` exists."""
    import os
    import time
    while not os.path.exists(until):
        time.sleep(0.01)
    return int(a.sum())


@pytest.mark.timeout(180)
def test_buffer_files_a_crash_leaves_are_swept_and_live_ones_kept(make_server, monkeypatch, tmp_path):
    server = make_server("--FaaSServer.max_concurrency=1")
    monkeypatch.delenv("JUPYTER_FAAS_URL", raising=False)
    for key in ("JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "JUPYTER_CONFIG_DIR"):
        monkeypatch.setenv(key, server.env[key])
    conn = faas.connect()  # through the runtime file, so it finds the restarted server
    directory = conn.buffer_dir
    release = tmp_path / "release"
    try:
        holder = faas.function(hold, name="hold_big", memory=512, timeout=120)
        total = faas.function(lambda a: int(a.sum()), name="total_queued", memory=512)
        running = holder.spawn(numpy.ones(4 * MB, dtype="uint8"), str(release))
        running_rid = running.request_id
        wait_for(lambda: faas.Invocation.from_id(running_rid).status == "running")
        (running_file,) = [p.name for p in directory.glob("arg-*")]
        results = []
        mapper = threading.Thread(target=lambda: results.append(
            total.map([numpy.full(4 * MB, 2, dtype="uint8")], show=False)), daemon=True)
        mapper.start()
        wait_for(lambda: {i.status for i in faas.invocations(function="total_queued")} == {"queued"})
        (queued_file,) = [p.name for p in directory.glob("arg-*") if p.name != running_file]
        # The running invocation's result, half written, as the kill leaves it.
        (directory / f"res-{running_rid}").write_bytes(b"x" * 1000)

        server.kill()
        server.start()  # the same data dir
        # The running invocation failed (it may have run partly) and its files are gone; the
        # queued one kept its argument's file and runs with it.
        assert not (directory / running_file).exists()
        assert not (directory / f"res-{running_rid}").exists()
        assert get(server, f"/faas/api/invocations/{running_rid}")["status"] == "failed"
        mapper.join(90)
        assert not mapper.is_alive(), "the map never learned how its item ended"
        assert results == [[2 * 4 * MB]]
        wait_for(lambda: not (directory / queued_file).exists(), what="the queued argument's file, once it ran")
    finally:
        release.touch()
        discovery.reset()


@pytest.mark.timeout(120)
def test_while_serving_a_buffer_file_no_invocation_owns_is_swept_and_a_live_one_is_not(make_server, tmp_path):
    server = make_server("--FaaSServer.buffer_orphan_s=0.5")
    conn = faas.connect(server.url, server.token)
    directory = conn.buffer_dir
    release = tmp_path / "release"
    try:
        holder = faas.function(hold, name="hold_live", memory=512, timeout=60)
        running = holder.spawn(numpy.ones(4 * MB, dtype="uint8"), str(release))
        wait_for(lambda: {i.status for i in faas.invocations(function="hold_live")} == {"running"})
        (live,) = [p.name for p in directory.glob("arg-*")]
        # What a client that died between writing its argument and sending the call leaves.
        (directory / "arg-of-a-client-that-died").write_bytes(b"x" * 1000)
        wait_for(lambda: not (directory / "arg-of-a-client-that-died").exists(),
                 what="the orphan swept while the server runs")
        # The same pass looked at the running invocation's file, older than the age too.
        assert (directory / live).exists()
        release.touch()
        assert running.result(timeout=60) == 4 * MB
    finally:
        release.touch()
        discovery.reset()
