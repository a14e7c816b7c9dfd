"""What a long-running server holds does not grow without bound.

Per-version state in memory (code, version records, placement statistics) is bounded by
``versions_kept``.  Real servers, real processes, conditions waited on.
"""

from __future__ import annotations

import json
import urllib.request

import jupyter_faas as faas
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
