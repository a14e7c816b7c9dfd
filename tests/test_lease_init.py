"""Cold starts on the leased warm path: an environment started for a map's lease records its
INIT on the first invocation it runs (Init Duration in the row and REPORT, billed with it,
INIT_START and INIT's output before START, init_type), as the server's path does; an INIT that
fails there fails the map's item that would have run there, as on the server's path.  Real
servers, real environments."""

import math
import os

import jupyter_faas as faas

from conftest import wait_for


def _rows(conn, name, since):
    rows = conn.request("GET", "/faas/api/invocations", params={"function": name, "limit": 1000})["invocations"]
    return [r for r in rows if r["created_at"] >= since]


def _lines(conn, rid):
    return [e["line"] for e in conn.request("GET", f"/faas/api/invocations/{rid}/logs")["logs"]]


def test_the_first_item_on_each_environment_started_for_a_leased_map_carries_its_init(conn, tmp_path):
    marker = str(tmp_path / "inits")

    def load():
        print("loading in", os.getpid())
        with open(marker, "a") as f:
            f.write(f"{os.getpid()}\n")

    @faas.function(name="lease_init_ok", init=load, snapshot=False)
    def work(x):
        import time
        time.sleep(0.05)  # every environment of the map gets items
        return os.getpid()

    first = work.invoke(0)  # the server's way: a cold start (INIT, then the call)
    assert first.report.init_duration_ms is not None
    pids = work.map(range(12), concurrency=3, show=False)
    assert len(set(pids)) >= 2, "the map ran on no environment started for it"
    rows = sorted(_rows(conn, "lease_init_ok", 0), key=lambda r: (r["started_at"], r["request_id"]))
    assert len(rows) == 13
    envs = {}
    for row in rows:
        envs.setdefault(row["environment_id"], []).append(row)
    assert len(envs) >= 2
    inits = open(marker).read().split()
    assert len(inits) == len(envs)  # one INIT per environment
    for env_id, env_rows in envs.items():
        head, rest = env_rows[0], env_rows[1:]
        assert head["init_duration_ms"] is not None and head["init_duration_ms"] > 0, env_id
        assert head["init_type"] == "on-demand"
        assert head["billed_duration_ms"] == max(1, math.ceil(head["duration_ms"] + head["init_duration_ms"]))
        assert all(r["init_duration_ms"] is None for r in rest), "INIT reported twice"
        lines = _lines(conn, head["request_id"])
        assert lines[0].startswith("INIT_START Runtime Version: python:")
        assert lines[1].startswith("loading in ")
        assert lines[2].startswith(f"START RequestId: {head['request_id']}")
        assert lines[-1].startswith(f"REPORT RequestId: {head['request_id']}")
        assert f"Init Duration: {head['init_duration_ms']:.2f} ms" in lines[-1]
        assert f"Billed Duration: {head['billed_duration_ms']} ms" in lines[-1]
        for row in rest:
            lines = _lines(conn, row["request_id"])
            assert lines[0].startswith("START RequestId: ") and "Init Duration" not in lines[-1]
            assert not any(line.startswith(("INIT_START", "loading in")) for line in lines)


def test_an_init_that_fails_in_an_environment_started_for_a_leased_map_fails_an_item(conn, tmp_path):
    flag = str(tmp_path / "first")

    def load():
        print("init in", os.getpid())
        try:
            os.close(os.open(flag, os.O_CREAT | os.O_EXCL))  # only the first environment's succeeds
        except FileExistsError:
            raise RuntimeError("init fails after the first") from None

    @faas.function(name="lease_init_fails", init=load, snapshot=False)
    def slow(x):
        import time
        time.sleep(0.05)  # items are still queued when the other starts fail
        return x

    assert slow(0) == 0  # the server's way: the one environment whose INIT succeeds
    before = wait_for(lambda: _rows(conn, "lease_init_fails", 0))[0]["created_at"]
    out = slow.map(range(20), concurrency=3, return_exceptions=True, show=False)
    failed = [r for r in out if isinstance(r, BaseException)]
    assert failed, "no item recorded the INIT that failed"
    assert all(isinstance(r, RuntimeError) and "init fails after the first" in str(r) for r in failed)
    assert len(out) == 20 and all(r == i for i, r in enumerate(out) if not isinstance(r, BaseException))
    rows = [r for r in _rows(conn, "lease_init_fails", before) if r["status"] == "failed"]
    assert len(rows) == len(failed)
    for row in rows:
        assert row["error_type"] == "RuntimeError"
        assert row["init_duration_ms"] is not None and row["environment_id"] is not None
        lines = _lines(conn, row["request_id"])
        assert lines[0].startswith("INIT_START Runtime Version: python:")
        assert lines[1].startswith("init in ")
        assert lines[2] == "[ERROR] RuntimeError: init fails after the first"
        assert lines[-1].startswith(f"REPORT RequestId: {row['request_id']}") and "Init Duration" in lines[-1]


def test_a_leased_map_whose_every_init_fails_ends_with_its_last_item(conn):
    # every item goes the server's way (and fails with the INIT error); the map's driver then
    # has nothing left and ends, rather than waiting for a frame that never comes
    import threading

    def bad_init():
        raise RuntimeError("init boom")

    failing = faas.function(name="lease_init_all_fail", snapshot=False, init=bad_init, show=False)(lambda x: x)
    results = failing.map(range(8), concurrency=3, return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["RuntimeError"] * 8
    assert all("init boom" in str(r) for r in results)
    assert not [t for t in threading.enumerate() if t.name == "faas-leased-map" and t.is_alive()]
