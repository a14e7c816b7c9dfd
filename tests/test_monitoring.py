"""Monitoring for the side panel: keyset paging, function statistics, per-minute metrics
and the event feed websocket, against the store directly and against a real server."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import pytest
from tornado import httpclient, websocket

from jupyter_faas.server.engine.monitoring import Monitoring, input_summary, percentile
from jupyter_faas.server.model import Pricing
from jupyter_faas.server.store import Store

from conftest import wait_for


def _row(i: int, function: str = "f", status: str = "succeeded", created_at: float = 1000.0,
         duration_ms: float | None = 10.0, memory: int = 1024) -> dict:
    ran = duration_ms is not None
    return {"request_id": f"req-{i:06d}", "function": function, "version": 1,
            "invocation_type": "RequestResponse", "encoding": "json", "status": status,
            "created_at": created_at, "started_at": created_at if ran else None,
            "ended_at": created_at + (duration_ms or 0) / 1000 if ran else None,
            "duration_ms": duration_ms, "billed_duration_ms": int(duration_ms) if ran else None,
            "memory_size_mb": memory, "max_memory_used_mb": 20 if ran else None}


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "faas.sqlite")
    s.deploy("f", b"code", {"memory": 1024, "timeout": 3, "env": {}, "concurrency": None})
    s.deploy("g", b"code2", {"memory": 128, "timeout": 3, "env": {}, "concurrency": 2})
    yield s
    s.close()


def test_keyset_paging_neither_skips_nor_repeats_rows_with_equal_timestamps(store):
    # 250 rows, in groups of 10 sharing one timestamp: a cursor on created_at alone would lose rows.
    store.add_invocations_bulk([_row(i, created_at=1000.0 + i // 10) for i in range(250)])
    seen, before, before_id = [], None, None
    while True:
        page = store.list_invocations(limit=7, before=before, before_id=before_id)
        seen += [r["request_id"] for r in page]
        if len(page) < 7:
            break
        before, before_id = page[-1]["created_at"], page[-1]["request_id"]
    assert len(seen) == 250 and len(set(seen)) == 250
    assert seen == sorted(seen, reverse=True)  # newest first; ties by request id


def test_paging_queries_use_the_indexes(store):
    plans = {
        "all": "SELECT * FROM invocations WHERE (created_at, request_id) < (?, ?) "
               "ORDER BY created_at DESC, request_id DESC LIMIT 100",
        "function+status": "SELECT * FROM invocations WHERE function=? AND status=? "
                           "ORDER BY created_at DESC, request_id DESC LIMIT 100",
    }
    params = {"all": (1.0, "x"), "function+status": ("f", "failed")}
    for name, sql in plans.items():
        plan = " ".join(r[-1] for r in store.db.execute("EXPLAIN QUERY PLAN " + sql, params[name]))
        assert "INDEX invocations_" in plan and "TEMP B-TREE" not in plan, f"{name}: {plan}"


def test_function_stats_counts_costs_and_percentiles(store):
    rows = [_row(i, duration_ms=float(i + 1)) for i in range(100)]           # 1..100 ms
    rows += [_row(100, status="failed", duration_ms=5.0),
             _row(101, status="timed_out", duration_ms=3000.0),
             _row(102, status="throttled", duration_ms=None),
             _row(103, function="g", duration_ms=2.0, memory=128)]
    store.add_invocations_bulk(rows)
    mon = Monitoring(store, Pricing(0.0000166667, 0.0000002))
    stats = {s["name"]: s for s in mon.function_stats()}
    f = stats["f"]
    assert (f["invocations"], f["errors"], f["throttles"], f["in_flight"]) == (103, 2, 1, 0)
    durations = sorted([float(i + 1) for i in range(100)] + [5.0, 3000.0])
    assert f["duration_p50_ms"] == percentile(durations, 50) == 50.0
    assert f["duration_p99_ms"] == percentile(durations, 99) == 100.0
    billed_ms = sum(range(1, 101)) + 5 + 3000
    assert f["gb_seconds"] == pytest.approx(1024 / 1024 * billed_ms / 1000)
    # The throttled invocation never ran, so it is not billed.
    assert f["cost_usd"] == pytest.approx(102 * 0.0000002 + f["gb_seconds"] * 0.0000166667)
    g = stats["g"]
    assert (g["invocations"], g["concurrency"], g["memory"]) == (1, 2, 128)
    assert g["gb_seconds"] == pytest.approx(128 / 1024 * 2 / 1000)
    # A different price (the traitlet) changes the estimate.
    dear = Monitoring(store, Pricing(1.0, 0.0))
    assert {s["name"]: s for s in dear.function_stats()}["f"]["cost_usd"] == pytest.approx(f["gb_seconds"])


def test_metrics_per_minute(store):
    now = 60 * 1000 + 30.0             # 30 s into a minute
    start = 60 * 1000 - 4 * 60         # a five-minute window starts four minutes earlier
    rows = [
        _row(1, created_at=start + 5, duration_ms=100.0),
        _row(2, created_at=start + 6, duration_ms=300.0),
        _row(3, created_at=start + 65, status="failed", duration_ms=50.0),
        _row(4, created_at=start + 70, status="throttled", duration_ms=None),
        # three runs overlapping in minute 3, one of which started in minute 2
        _row(5, created_at=start + 170, duration_ms=20000.0),
        _row(6, created_at=start + 185, duration_ms=1000.0),
        _row(7, created_at=start + 185.5, duration_ms=1000.0),
        _row(8, created_at=start - 3600, duration_ms=1.0),    # long before the window
    ]
    store.add_invocations_bulk(rows)
    m = Monitoring(store, Pricing(0, 0)).metrics("f", 5, now=now)
    assert m["start"] == start and m["timestamps"][-1] == start + 240
    assert m["invocations"] == [2, 2, 1, 2, 0]
    assert m["errors"] == [0, 1, 0, 0, 0]
    assert m["throttles"] == [0, 1, 0, 0, 0]
    assert m["duration_p50_ms"][0] == 100.0 and m["duration_p99_ms"][0] == 300.0
    assert m["duration_p50_ms"][4] is None
    assert m["concurrent_executions"] == [1, 1, 1, 3, 0]


def test_metrics_window_is_bounded(store):
    from jupyter_faas.errors import InvalidParameter
    with pytest.raises(InvalidParameter, match="out of range 1..1440"):
        Monitoring(store, Pricing(0, 0)).metrics("f", 100000)


def test_input_summary_shows_json_and_never_unpickles():
    assert input_summary(b'{"key": "a.png",  "n": 1}', "json") == '{"key":"a.png","n":1}'
    assert input_summary(b"x" * 5000, "json").endswith("…")
    assert len(input_summary(b'"' + b"y" * 5000 + b'"', "json")) == 200
    assert input_summary(b"\x80\x05whatever", "pickle") == "pickled arguments, 10 bytes"


def test_migration_2_upgrades_a_version_1_store(tmp_path):
    import sqlite3

    from jupyter_faas.server.store import sqlite as store_module
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(store_module.MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    db.execute("INSERT INTO invocations(request_id, function, version, invocation_type, encoding, "
               "status, created_at) VALUES ('old', 'f', 1, 'Event', 'json', 'succeeded', 1.0)")
    db.commit()
    db.close()
    s = Store(path)
    assert s.db.execute("PRAGMA user_version").fetchone()[0] == len(store_module.MIGRATIONS)
    assert s.list_invocations()[0]["input_summary"] is None
    names = {r[0] for r in s.db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"invocations_page", "invocations_function_status_page"} <= names
    assert "invocations_created" not in names
    s.close()


# ---- against a real server --------------------------------------------------------------

def _get(server, path):
    req = urllib.request.Request(server.url + path, headers={"Authorization": f"token {server.token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def test_stats_metrics_and_paging_over_http(server, conn):
    import jupyter_faas as faas

    @faas.function(name="mon_http", memory=128, timeout=5)
    def double(x):
        print("doubling", x)
        return 2 * x

    assert double.map(range(5)) == [0, 2, 4, 6, 8]
    stats = {f["name"]: f for f in _get(server, "/faas/api/metrics/functions")["functions"]}
    assert stats["mon_http"]["invocations"] == 5 and stats["mon_http"]["errors"] == 0
    assert stats["mon_http"]["gb_seconds"] > 0 and stats["mon_http"]["cost_usd"] > 0
    m = _get(server, "/faas/api/metrics/functions/mon_http?minutes=5")
    assert sum(m["invocations"]) == 5 and len(m["timestamps"]) == 5
    page = _get(server, "/faas/api/invocations?function=mon_http&limit=3")
    nxt = page["next"]
    rest = _get(server, f"/faas/api/invocations?function=mon_http&limit=3&before={nxt['before']!r}"
                        f"&before_id={nxt['before_id']}")
    ids = [r["request_id"] for r in page["invocations"] + rest["invocations"]]
    assert len(ids) == 5 == len(set(ids)) and rest["next"] is None
    assert page["invocations"][0]["input_summary"].startswith("pickled arguments")
    with pytest.raises(urllib.error.HTTPError) as info:
        _get(server, "/faas/api/metrics/functions/nope")
    assert info.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as info:
        _get(server, "/faas/api/invocations?before_id=x")
    assert info.value.code == 400


def test_event_feed_pushes_invocations_and_watched_logs(server, conn, tmp_path):
    import jupyter_faas as faas
    go = tmp_path / "go"

    @faas.function(name="mon_events", memory=128, timeout=10)
    def chatty(n, go=None):
        if go:  # prints once the test is watching it
            _wait_for_file(go)
        for i in range(n):
            print("line", i)
        return n

    chatty(1)  # deployed and warm before the feed opens

    async def scenario():
        bad = httpclient.HTTPRequest(server.url.replace("http", "ws") + "/faas/api/events")
        with pytest.raises(httpclient.HTTPClientError) as denied:
            await websocket.websocket_connect(bad)
        assert denied.value.code == 403
        req = httpclient.HTTPRequest(server.url.replace("http", "ws") + "/faas/api/events",
                                     headers={"Authorization": f"token {server.token}"})
        ws = await websocket.websocket_connect(req)
        await ws.write_message("not json")
        assert "error" in json.loads(await ws.read_message())
        fut = chatty.spawn(1000, str(go))
        rid = await asyncio.get_running_loop().run_in_executor(None, lambda: _wait_rid(fut))
        await ws.write_message(json.dumps({"watch": [rid]}))
        await _watching(ws, rid)  # the watch is in effect before the function prints
        go.touch()
        statuses, lines, dropped = [], [], 0
        deadline = time.monotonic() + 30
        while "succeeded" not in statuses and time.monotonic() < deadline:
            msg = json.loads(await asyncio.wait_for(ws.read_message(), 30))
            for ev in msg["events"]:
                if ev["type"] == "invocation" and ev["request_id"] == rid:
                    statuses.append(ev["status"])
                elif ev["type"] == "log" and ev["request_id"] == rid:
                    assert len(ev["lines"]) <= 200
                    lines += [text for _, _, text in ev["lines"]]
                    dropped += ev["dropped"]
        ws.close()
        return statuses, lines, dropped

    statuses, lines, dropped = asyncio.run(scenario())
    assert statuses[-1] == "succeeded"
    assert lines, "no log line of the watched invocation was pushed"
    assert lines[-1].startswith("REPORT RequestId:") or dropped > 0
    # Every line was either pushed or counted as dropped (lines before the watch are not sent).
    stored = _get(server, f"/faas/api/invocations/{_last_rid(server)}/logs")["logs"]
    assert len(lines) + dropped <= len(stored) == 1003


def test_event_feed_caps_a_flood_of_log_lines(server, conn, tmp_path):
    """200,000 lines from one watched invocation: the feed pushes a bounded trickle and
    counts the rest, the store keeps every line, and the server stays responsive."""
    import jupyter_faas as faas
    go, release = tmp_path / "go", tmp_path / "release"

    @faas.function(name="mon_flood", memory=256, timeout=60)
    def flood(n, go=None, release=None):
        import sys
        if go:
            _wait_for_file(go)  # the test watches it before the flood starts
        write = sys.stdout.write
        for i in range(n):
            write(f"flood line {i}\n")
        sys.stdout.flush()
        if release:
            _wait_for_file(release)  # still running while the test asks the REST API
        return n

    flood(0)

    async def scenario():
        req = httpclient.HTTPRequest(server.url.replace("http", "ws") + "/faas/api/events",
                                     headers={"Authorization": f"token {server.token}"})
        ws = await websocket.websocket_connect(req)
        fut = flood.spawn(200_000, str(go), str(release))
        rid = await asyncio.get_running_loop().run_in_executor(None, lambda: _wait_rid(fut))
        await ws.write_message(json.dumps({"watch": [rid]}))
        await _watching(ws, rid)  # the watch is in effect before the function prints
        go.touch()
        pushed = dropped = messages = biggest = 0
        done = False
        while not done:
            raw = await asyncio.wait_for(ws.read_message(), 60)
            messages += 1
            biggest = max(biggest, len(raw))
            for ev in json.loads(raw)["events"]:
                if ev["type"] == "log" and ev["request_id"] == rid:
                    assert len(ev["lines"]) <= 200
                    pushed += len(ev["lines"])
                    dropped += ev["dropped"]
                elif ev["type"] == "invocation" and ev["request_id"] == rid:
                    done = ev["status"] == "succeeded"
            # While the flood runs, the REST API still answers (the flood waits for the answer).
            if pushed and not release.exists():
                row = await asyncio.get_running_loop().run_in_executor(
                    None, _get, server, f"/faas/api/invocations/{rid}")
                assert row["status"] == "running"
                release.touch()
        ws.close()
        return rid, pushed, dropped, biggest, messages

    rid, pushed, dropped, biggest, messages = asyncio.run(scenario())
    print(f"\nflood of 200,000 lines: {pushed} pushed, {dropped} counted as dropped, "
          f"{messages} messages, largest {biggest} bytes")
    assert pushed > 0 and dropped > 0
    assert pushed + dropped <= 200_003 and pushed < 200_000 // 2
    assert biggest < 64 * 1024  # each message is small, whatever the function prints
    # The store has every line: START, the 200,000 lines, END, REPORT, in order.
    first = _get(server, f"/faas/api/invocations/{rid}/logs?limit=1")["logs"][0]
    assert first["line"].startswith("START RequestId:")
    tail = _get(server, f"/faas/api/invocations/{rid}/logs?after={first['id'] + 199_999}")["logs"]
    assert [entry["line"] for entry in tail][:2] == ["flood line 199999", f"END RequestId: {rid}"]
    assert tail[2]["line"].startswith("REPORT RequestId:") and len(tail) == 3


async def _watching(ws, rid):
    """Read the feed until the server says the watch of ``rid`` is in effect."""
    while True:
        msg = json.loads(await asyncio.wait_for(ws.read_message(), 30))
        if rid in msg.get("watching", []):
            return


def _wait_rid(fut, timeout=10.0) -> str:
    return wait_for(lambda: fut.request_id, timeout, what="the invocation's request id")


def _wait_for_file(path, timeout=30.0):
    """In an environment: wait until the test creates ``path`` (ships by value with the handler)."""
    import os
    import time
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.005)


def _last_rid(server) -> str:
    return _get(server, "/faas/api/invocations?function=mon_events&limit=1")["invocations"][0]["request_id"]
