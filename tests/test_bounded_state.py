"""What a long-running server holds does not grow without bound.

Per-version state in memory (code, version records, placement statistics) is bounded by
``versions_kept``; spare environments go when the pool scales to zero.  Real servers, real
processes, conditions waited on.
"""

from __future__ import annotations

import json
import urllib.request

import psutil

import jupyter_faas as faas
from conftest import wait_for
from jupyter_faas.client import discovery


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
