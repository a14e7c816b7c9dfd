"""invoke_async against a real server: retries under one request id, destinations, dead letters,
redrive, bad options; and the SIGKILL test: 1,000 queued events, none lost, none run twice
once its end was recorded."""

from __future__ import annotations

import collections
import json
import sqlite3
import time

import pytest

import jupyter_faas as faas
from conftest import wait_for
from jupyter_faas.client import discovery


def flaky(event, context):
    """Fails until the counter of its event (event['key'], else its request id) reaches
    event['succeed_on'] attempts."""
    import pathlib
    p = pathlib.Path(event["dir"]) / event.get("key", context.aws_request_id)
    n = int(p.read_text()) + 1 if p.exists() else 1
    p.write_text(str(n))
    print("attempt", n, "of", context.aws_request_id)
    if n < event["succeed_on"]:
        raise ValueError(f"attempt {n} fails")
    return {"attempt": n}


def test_invoke_async_retries_under_one_request_id_then_succeeds(conn, tmp_path):
    f = faas.function(flaky, name="flaky", retries=2, retry_delay=0.2)
    started = time.monotonic()
    inv = f.invoke_async({"dir": str(tmp_path), "succeed_on": 3})
    assert time.monotonic() - started < 5 and inv.request_id
    inv.wait(60)
    assert inv.status == "succeeded" and inv.result == {"attempt": 3}
    assert inv.attempts == 3
    again = faas.Invocation.from_id(inv.request_id)
    assert again.attempts == 3 and again._row["triggered_by"] == "async"
    logs = again.logs
    assert sum(line.startswith("START RequestId: " + inv.request_id) for line in logs) == 3
    assert sum(line.startswith("REPORT RequestId: " + inv.request_id) for line in logs) == 3
    attempts = conn.request("GET", f"/faas/api/invocations/{inv.request_id}/attempts")["attempts"]
    assert [a["status"] for a in attempts] == ["failed", "failed", "succeeded"]
    # the backoff's timing is checked on a fake clock (tests/test_async_engine.py); here, that
    # each retry started after the attempt before it ended
    assert attempts[1]["started_at"] >= attempts[0]["ended_at"]
    assert attempts[2]["started_at"] >= attempts[1]["ended_at"]


def test_exhausted_retries_go_to_the_dead_letter_list_and_redrive(conn, tmp_path):
    f = faas.function(flaky, name="flaky_dlq", retries=1, retry_delay=0.05)
    inv = f.invoke_async({"dir": str(tmp_path), "succeed_on": 3, "key": "k"})
    inv.wait(60)
    assert inv.status == "failed" and inv.attempts == 2
    with pytest.raises(faas.FunctionError):
        inv.result
    [entry] = wait_for(lambda: faas.dead_letters(function="flaky_dlq"), what="the dead letter")
    assert entry.request_id == inv.request_id and entry.attempts == 2
    assert entry.error_type == "ValueError" and entry.condition == "RetriesExhausted"
    assert '"succeed_on":3' in entry.input_summary.replace(" ", "")
    again = entry.redrive()
    again.wait(60)
    assert again.status == "succeeded" and again.attempts == 1  # the key's third attempt
    assert faas.dead_letters(function="flaky_dlq") == []


def test_destinations_receive_lambdas_record(conn, tmp_path):
    out = tmp_path / "out"
    out.mkdir()

    def sink(event):
        import pathlib
        pathlib.Path(event["requestPayload"]["dir"], "sunk.json").write_text(__import__("json").dumps(event))

    sink_f = faas.function(sink, name="sink")
    f = faas.function(flaky, name="flaky_dest", retries=0, on_success=out, on_failure=sink_f)
    ok = f.invoke_async({"dir": str(tmp_path), "succeed_on": 1})
    bad = f.invoke_async({"dir": str(tmp_path), "succeed_on": 2})
    ok.wait(60), bad.wait(60)
    wait_for(lambda: (tmp_path / "sunk.json").exists() and list(out.glob("*.json")),
             what="both destination records")
    success = json.loads(next(out.glob("*.json")).read_text())
    assert success["requestContext"]["condition"] == "Success"
    assert success["requestContext"]["requestId"] == ok.request_id
    assert success["responsePayload"] == {"attempt": 1}
    failure = json.loads((tmp_path / "sunk.json").read_text())
    assert set(failure) == {"version", "timestamp", "requestContext", "requestPayload",
                            "responseContext", "responsePayload"}
    assert failure["requestContext"]["condition"] == "RetriesExhausted"
    assert failure["requestContext"]["approximateInvokeCount"] == 1
    assert failure["responseContext"]["functionError"] == "Unhandled"
    assert failure["responsePayload"]["errorType"] == "ValueError"


def test_bad_async_options_are_invalid_parameter(conn, tmp_path):
    for options, match in [({"retries": -1}, "retries=-1"), ({"retries": 11}, "0 to 10"),
                           ({"max_event_age": 30}, "60 to 21600"), ({"retry_delay": -1}, "retry_delay"),
                           ({"on_failure": 42}, "not a destination")]:
        with pytest.raises(faas.InvalidParameter, match=match):
            faas.function(flaky, name="bad", **options)
    f = faas.function(flaky, name="bad_dest", on_failure="nosuchfunction")
    with pytest.raises(faas.InvalidParameter, match="not deployed"):
        f.deploy()
    g = faas.function(flaky, name="bad_event")
    with pytest.raises(faas.InvalidParameter, match="JSON"):
        g.invoke_async({"x": object()})


def append_request_id(event, context):
    import os
    with open(event["log"], "a") as f:
        f.write(context.aws_request_id + "\n")
        f.flush()
        os.fsync(f.fileno())


def test_sigkill_with_1000_queued_events_loses_none_and_reruns_none_that_ended(make_server, tmp_path):
    server = make_server("--FaaSServer.max_concurrency=2")
    faas.connect(server.url, server.token)
    try:
        f = faas.function(append_request_id, name="appender", retries=2)
        ran = tmp_path / "ran.txt"
        invs = []
        for start in range(0, 1000, 250):
            invs += f.invoke_async_many([{"log": str(ran), "i": i} for i in range(start, start + 250)])
        rids = {inv.request_id for inv in invs}
        assert len(rids) == 1000
        # some run and end, most are queued
        wait_for(lambda: ran.exists() and len(ran.read_text().split()) >= 20, what="20 events run")
        server.kill()
    finally:
        discovery.reset()
    db = sqlite3.connect(server.base / "data" / "faas" / "faas.sqlite")
    ended_before = {r[0] for r in db.execute(
        "SELECT request_id FROM invocations WHERE status='succeeded'")}
    db.close()
    assert len(ended_before) < 1000   # the kill came while events were queued
    server.start()
    faas.connect(server.url, server.token)
    try:
        def all_ended():
            rows = faas.invocations(function="appender", limit=1000)
            return len(rows) == 1000 and all(r._row["status"] in ("succeeded", "failed") for r in rows) \
                and rows
        rows = wait_for(all_ended, timeout=120, interval=0.5, what="all 1,000 events ended")
        statuses = collections.Counter(r._row["status"] for r in rows)
        assert statuses == {"succeeded": 1000}
        counts = collections.Counter(ran.read_text().split())
        assert set(counts) == rids                                   # every event ran at least once
        assert all(counts[rid] == 1 for rid in ended_before)        # none ran twice once its end was recorded
        twice = [rid for rid, n in counts.items() if n > 1]
        print(f"ended before the kill: {len(ended_before)}, ran twice: {len(twice)}")
        for rid in twice:  # only those running at the kill, recorded as such
            attempts = server_attempts(server, rid)
            assert attempts[0]["error_type"] == "Runtime.ServerStopped"
    finally:
        discovery.reset()


def server_attempts(server, rid):
    conn = faas.connect(server.url, server.token)
    return conn.request("GET", f"/faas/api/invocations/{rid}/attempts")["attempts"]


def test_a_schedule_fires_every_second_and_can_be_disabled_listed_and_deleted(conn):
    def tick(event):
        return event["detail-type"]

    f = faas.function(tick, name="ticker")
    with pytest.raises(faas.InvalidParameter, match="exactly one of Day-of-month"):
        f.schedule("cron(0 12 * * * *)")
    t = f.schedule("rate(1 second)")
    assert t.enabled and t.kind == "schedule" and t.next_at
    wait_for(lambda: len(faas.invocations(function="ticker")) >= 2, what="two firings")
    rows = faas.invocations(function="ticker")
    assert len(rows) >= 2 and {r._row["triggered_by"] for r in rows} == {"schedule"}
    rows[-1].wait(30)
    assert rows[-1].result == "Scheduled Event"
    assert [x.id for x in faas.triggers(function=f)] == [t.id]
    t.disable()
    assert not t.enabled and t.next_at is None
    count = t.refresh().fired
    # While another schedule fires twice (so the server's clock passed two seconds), the
    # disabled one fires no more.
    other = faas.function(tick, name="ticker_witness").schedule("rate(1 second)")
    wait_for(lambda: other.refresh().fired >= 2, what="the witness schedule to fire twice")
    other.delete()
    assert t.refresh().fired == count
    assert t.refresh().fired >= 2
    t.delete()
    assert faas.triggers(function=f) == []


def test_an_event_over_lambdas_async_limit_is_refused_on_every_route(conn):
    f = faas.function(flaky, name="big_event")
    with pytest.raises(faas.PayloadTooLarge, match="over Lambda's limit for an asynchronous invocation"):
        f.invoke_async({"blob": "x" * 1_100_000})
    assert f.invoke_async({"blob": "x" * 900_000}).request_id
