"""Local queues against a real server: SQS records, partial batch failure, whole-batch return on
an error, max_receive_count -> the dead-letter queue and its redrive, the poller bounded by the
function's concurrency, a queue destination, bad input; and the SIGKILL test: 1,000 messages,
every one processed at least once, none again once its run's end was recorded."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3

import pytest

import jupyter_faas as faas
from conftest import wait_for
from jupyter_faas.client import discovery


def note(event, context):
    """Appends one line per record to $OUT/log: messageId, receive count, body, request id; fails
    the records whose body is "bad" (batchItemFailures) until $OUT/fixed exists; raises on a body
    "raise" the first time it is received."""
    import json
    import os
    out = os.environ["OUT"]
    lines, failures = [], []
    for r in event["Records"]:
        lines.append(json.dumps([r["messageId"], r["attributes"]["ApproximateReceiveCount"], r["body"],
                                 context.aws_request_id]))
    fd = os.open(os.path.join(out, "log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, ("\n".join(lines) + "\n").encode())
    os.close(fd)
    with open(os.path.join(out, context.aws_request_id + ".json"), "w") as f:
        json.dump(event, f)
    for r in event["Records"]:
        if r["body"] == "raise" and r["attributes"]["ApproximateReceiveCount"] == "1":
            raise RuntimeError("the whole batch goes back")
        if r["body"] == "bad" and not os.path.exists(os.path.join(out, "fixed")):
            failures.append({"itemIdentifier": r["messageId"]})
    return {"batchItemFailures": failures}


def log_lines(out):
    path = out / "log"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_a_subscription_gets_sqs_records_and_deletes_what_it_processed(conn, tmp_path):
    q = faas.queue("jobs_shape")
    ids = q.send_batch(["one", {"two": 2}], attributes={"kind": "test", "n": 3})
    assert len(ids) == 2 and len(q) == 2
    f = faas.function(note, name="shape", env={"OUT": str(tmp_path)})
    t = f.subscribe(q, batch_size=10, batch_window=0.0)
    assert t.kind == "queue" and t.spec["batch_size"] == 10
    wait_for(lambda: len(q) == 0, what="the queue drained")
    [path] = [p for p in tmp_path.glob("*.json")]
    records = json.loads(path.read_text())["Records"]
    assert [r["messageId"] for r in records] == ids
    r = records[0]
    assert set(r) == {"messageId", "receiptHandle", "body", "attributes", "messageAttributes", "md5OfBody",
                      "eventSource", "eventSourceARN", "awsRegion"}
    assert r["eventSource"] == "aws:sqs" and r["eventSourceARN"].endswith(":jobs_shape")
    assert r["body"] == "one" and records[1]["body"] == '{"two": 2}'
    assert r["md5OfBody"] == hashlib.md5(b"one").hexdigest()
    assert r["attributes"]["ApproximateReceiveCount"] == "1"
    assert set(r["attributes"]) == {"ApproximateReceiveCount", "SentTimestamp", "SenderId",
                                    "ApproximateFirstReceiveTimestamp"}
    assert r["messageAttributes"]["kind"] == {"stringValue": "test", "stringListValues": [],
                                              "binaryListValues": [], "dataType": "String"}
    assert r["messageAttributes"]["n"]["dataType"] == "Number"
    [inv] = faas.invocations(function="shape")
    assert inv._row["triggered_by"] == "queue" and inv._row["invocation_type"] == "RequestResponse"
    row = t.refresh()
    assert row.fired == 2 and row.depth == 0 and row.in_flight == 0
    t.delete()


def test_partial_failures_come_back_then_go_to_the_dead_letter_queue_and_redrive(conn, tmp_path):
    q = faas.queue("jobs_partial", visibility_timeout=0.2)
    f = faas.function(note, name="partial", env={"OUT": str(tmp_path)})
    t = f.subscribe(q, batch_size=10, max_receive_count=2)
    q.send_batch(["good", "bad"])
    dlq = q.dead_letter_queue
    assert dlq.name == "jobs_partial-dlq"
    wait_for(lambda: len(dlq) == 1 and len(q) == 0, what="the bad message in the dead-letter queue")
    lines = log_lines(tmp_path)
    assert [(b, n) for _, n, b, _ in lines if b == "good"] == [("good", "1")]      # deleted at once
    assert [(b, n) for _, n, b, _ in lines if b == "bad"] == [("bad", "1"), ("bad", "2")]
    assert [m["body"] for m in dlq.peek()] == ["bad"]
    assert t.refresh().dead_letters == 1
    (tmp_path / "fixed").write_text("")
    assert dlq.redrive() == 1
    wait_for(lambda: len(dlq) == 0 and len(q) == 0 and len(log_lines(tmp_path)) == 4, what="the redrive")
    assert log_lines(tmp_path)[-1][1:3] == ["1", "bad"]   # its receive count starts again
    t.delete()


def test_a_function_error_returns_the_whole_batch(conn, tmp_path):
    q = faas.queue("jobs_error", visibility_timeout=0.1)
    q.send_batch(["raise", "fine"])
    f = faas.function(note, name="raiser", env={"OUT": str(tmp_path)})
    t = f.subscribe(q, batch_size=10, batch_window=0.0)
    wait_for(lambda: len(q) == 0, what="the queue drained")
    seen = sorted((b, n) for _, n, b, _ in log_lines(tmp_path))
    assert seen == [("fine", "1"), ("fine", "2"), ("raise", "1"), ("raise", "2")]
    statuses = sorted(i.status for i in faas.invocations(function="raiser"))
    assert statuses == ["failed", "succeeded"]
    t.delete()


def slow(event, context):
    """The first two wait (up to 10 s) until two batches run at once, recording that they saw them."""
    import os
    import pathlib
    import time
    out = pathlib.Path(os.environ["OUT"])
    (out / f"start-{context.aws_request_id}").write_text("")
    deadline = time.monotonic() + (10 if len(list(out.glob("start-*"))) <= 2 else 0)
    while time.monotonic() < deadline:
        if (out / "saw-two").exists() or len(list(out.glob("start-*"))) - len(list(out.glob("end-*"))) >= 2:
            (out / "saw-two").write_text("")
            break
        time.sleep(0.01)
    (out / f"end-{context.aws_request_id}").write_text("")


def test_the_poller_scales_out_to_the_functions_concurrency_and_never_past_it(conn, tmp_path):
    q = faas.queue("jobs_deep", visibility_timeout=60)
    q.send_batch([str(i) for i in range(12)])
    f = faas.function(slow, name="slow_consumer", concurrency=2, timeout=30, env={"OUT": str(tmp_path)})
    t = f.subscribe(q, batch_size=1)
    wait_for(lambda: len(q) == 0, timeout=90, what="the queue drained")
    assert (tmp_path / "saw-two").exists()            # two ran at once: it scaled out
    rows = [i._row for i in faas.invocations(function="slow_consumer", limit=100)]
    assert len(rows) == 12 and {r["status"] for r in rows} == {"succeeded"}, [
        (r["status"], r["input_summary"][150:260]) for r in rows]
    assert not [r for r in rows if r["status"] == "throttled"]
    edges = sorted([(r["started_at"], 1) for r in rows] + [(r["ended_at"], -1) for r in rows],
                   key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak == 2
    t.delete()


def test_a_queue_destination_gets_the_invocation_record(conn, tmp_path):
    q = faas.queue("results")

    def ok(event):
        return {"doubled": event["x"] * 2}

    f = faas.function(ok, name="to_queue", on_success=q)
    inv = f.invoke_async({"x": 21})
    inv.wait(60)
    [m] = wait_for(lambda: q.peek(), what="the record in the queue")
    record = json.loads(m["body"])
    assert record["requestContext"]["requestId"] == inv.request_id
    assert record["requestContext"]["condition"] == "Success"
    assert record["responsePayload"] == {"doubled": 42} and record["requestPayload"] == {"x": 21}


def test_bad_subscriptions_and_messages_are_invalid_parameters(conn, tmp_path):
    q = faas.queue("jobs_bad")
    f = faas.function(note, name="bad_sub", env={"OUT": str(tmp_path)})
    for size in (0, 10_001, 2.5):
        with pytest.raises(faas.InvalidParameter, match="batch_size"):
            f.subscribe(q, batch_size=size)
    with pytest.raises(faas.InvalidParameter, match="batch_window"):
        f.subscribe(q, batch_size=100)            # over 10 needs a window, as Lambda says
    with pytest.raises(faas.InvalidParameter, match="not a queue"):
        f.subscribe("no_such_queue")
    with pytest.raises(faas.InvalidParameter, match="max_receive_count"):
        f.subscribe(q, max_receive_count=0)
    with pytest.raises(faas.InvalidParameter, match="delay"):
        q.send("x", delay=901)
    with pytest.raises(faas.InvalidParameter, match="limit"):
        q.send("x" * (256 * 1024 + 1))
    with pytest.raises(faas.InvalidParameter, match="queue name"):
        faas.queue("no spaces")
    assert faas.triggers(function="bad_sub") == [] and len(q) == 0


def test_sigkill_with_a_thousand_messages_loses_none_and_repeats_none_whose_end_was_recorded(
        make_server, tmp_path):
    server = make_server()
    try:
        faas.connect(server.url, server.token)
        q = faas.queue("durable", visibility_timeout=60)   # none comes back on its own: only the kill
        q.send_batch([f"m{i}" for i in range(1000)])
        f = faas.function(note, name="durable_consumer", env={"OUT": str(tmp_path)})
        f.subscribe(q, batch_size=10)
        wait_for(lambda: len(log_lines(tmp_path)) >= 200, timeout=60, what="some batches processed")
        server.kill()
        server.start()
        q = faas.connect(server.url, server.token) and faas.queue("durable")
        wait_for(lambda: len(q) == 0, timeout=120, what="every message processed after the restart")
    finally:
        discovery.reset()
    lines = log_lines(tmp_path)
    assert {b for _, _, b, _ in lines} == {f"m{i}" for i in range(1000)}      # at least once each
    db = sqlite3.connect(os.path.join(server.base, "data", "faas", "faas.sqlite"))
    status = dict(db.execute("SELECT request_id, status FROM invocations"))
    seen_done = set()
    repeats = 0
    for message_id, _, body, rid in lines:
        assert message_id not in seen_done, f"{body} ran again after a run whose end was recorded"
        if status.get(rid) == "succeeded":
            seen_done.add(message_id)
        else:
            repeats += 1
    assert len(seen_done) == 1000
