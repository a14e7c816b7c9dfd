"""The Event path's rules on a fake backend and a fake clock: retries, backoff timing, max event
age, destination records, dead letters and redrive, and recovery of a running event."""

from __future__ import annotations

import asyncio
import json

import pytest

from engine_fakes import FakeBackend, turns
from jupyter_faas.errors import InvalidParameter
from jupyter_faas.server.engine import AsyncService, FakeClock
from jupyter_faas.server.engine.async_queue import RetryPolicy, destination_record
from jupyter_faas.server.store import Store


def make(tmp_path, backend=None, store=None, clock=None, **options):
    store = store or Store(tmp_path / "faas.sqlite")
    clock = clock or FakeClock()
    backend = backend or FakeBackend()
    settings = dict(memory_budget_mb=10_000, max_concurrency=None, throttle_wait=2.0,
                    max_payload_bytes=1 << 20)
    settings.update(options)
    service = AsyncService(store, backend, clock=clock, random=lambda: 0.5, **settings)
    service.deploy("f", b"code", memory=128, timeout=3)
    return service, store, backend, clock


def run(coro):
    return asyncio.run(coro)


def fail(backend, rid, kind="error"):
    header = {"errorType": "ValueError", "errorMessage": "boom", "stackTrace": ["line 1"]}
    backend.finish(rid, kind, body=b"", header=header)


def test_backoff_doubles_from_retry_delay_with_jitter_around_it():
    p = RetryPolicy(retries=3, retry_delay=1.0)
    assert [p.delay(n, 0.5) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]
    assert p.delay(1, 0.0) == pytest.approx(0.75) and p.delay(1, 0.999999) == pytest.approx(1.25, abs=1e-5)


def test_a_failing_event_is_retried_after_1_then_2_seconds_under_one_request_id(tmp_path):
    async def main():
        service, store, backend, clock = make(tmp_path)
        inv = service.invoke_async("f", b'{"k": 1}')
        assert store.get_invocation(inv.request_id)["status"] == "queued"   # accepted = on disk
        await turns()
        assert backend.running() == [inv.request_id]
        fail(backend, inv.request_id)
        await turns()
        row = store.get_invocation(inv.request_id)
        assert row["status"] == "queued" and row["attempts"] == 1
        clock.advance(0.99)
        await turns()
        assert backend.running() == []                    # not before retry_delay
        clock.advance(0.02)
        await turns()
        assert backend.running() == [inv.request_id]      # the same request id
        fail(backend, inv.request_id, "timeout")
        await turns()
        clock.advance(1.99)
        await turns()
        assert backend.running() == []
        clock.advance(0.02)
        await turns()
        fail(backend, inv.request_id, "crash")
        await turns(10)
        row = store.get_invocation(inv.request_id)
        assert row["status"] == "failed" and row["attempts"] == 3
        attempts = store.attempts(inv.request_id)
        assert [a["attempt"] for a in attempts] == [1, 2, 3]
        assert [a["status"] for a in attempts] == ["failed", "timed_out", "failed"]
        lines = [r["line"] for r in store.logs(inv.request_id)]
        assert sum(line.startswith("START ") for line in lines) == 3
        assert sum(line.startswith("REPORT ") for line in lines) == 3
        dead = service.dead_letters()
        assert len(dead) == 1 and dead[0]["condition"] == "RetriesExhausted" and dead[0]["attempts"] == 3
        assert dead[0]["error_type"] == "Runtime.ExitError"
    run(main())


def test_retries_zero_fails_at_once_and_success_after_a_retry_counts_two_attempts(tmp_path):
    async def main():
        service, store, backend, clock = make(tmp_path)
        service.deploy("g", b"code2", memory=128, timeout=3)
        service.put_event_config("g", retries=0)
        a = service.invoke_async("g", b"1")
        b = service.invoke_async("f", b"2")
        await turns()
        fail(backend, a.request_id)
        fail(backend, b.request_id)
        await turns(10)
        assert store.get_invocation(a.request_id)["status"] == "failed"
        assert store.get_invocation(a.request_id)["attempts"] == 1
        clock.advance(1.0)
        await turns()
        backend.finish(b.request_id, "result", body=b'"ok"')
        await turns(10)
        row = store.get_invocation(b.request_id)
        assert row["status"] == "succeeded" and row["attempts"] == 2
        assert [d["request_id"] for d in service.dead_letters()] == [a.request_id]
    run(main())


def test_max_event_age_stops_retries_and_expires_a_queued_event(tmp_path):
    async def main():
        service, store, backend, clock = make(tmp_path, max_concurrency=1)
        service.put_event_config("f", retries=5, retry_delay=40, max_event_age=60)
        a = service.invoke_async("f", b"1")
        b = service.invoke_async("f", b"2")      # waits behind a (max_concurrency=1)
        await turns()
        clock.advance(10)
        fail(backend, a.request_id)              # retry due at 50 s: within 60 s
        await turns()
        assert store.get_invocation(a.request_id)["status"] == "queued"
        # b started when a's slot freed
        assert backend.running() == [b.request_id]
        clock.advance(61)                        # b runs past a's retry and b's own max age
        backend.finish(b.request_id, "result", body=b"1")
        await turns(10)
        row = store.get_invocation(a.request_id)
        assert row["status"] == "failed" and row["error_type"] == "EventAgeExceeded"
        dead = service.dead_letters()
        assert dead[0]["condition"] == "EventAgeExceeded" and dead[0]["attempts"] == 1
    run(main())


def test_a_retry_that_would_start_after_max_event_age_is_not_scheduled(tmp_path):
    async def main():
        service, store, backend, clock = make(tmp_path)
        service.put_event_config("f", retries=2, retry_delay=100, max_event_age=60)
        a = service.invoke_async("f", b"1")
        await turns()
        fail(backend, a.request_id)
        await turns(10)
        assert store.get_invocation(a.request_id)["status"] == "failed"
        assert service.dead_letters()[0]["condition"] == "EventAgeExceeded"
    run(main())


def test_destinations_get_lambdas_record_in_a_directory_and_a_function(tmp_path):
    async def main():
        service, store, backend, clock = make(tmp_path)
        service.deploy("sink", b"sinkcode", memory=128, timeout=3)
        out = tmp_path / "records"
        out.mkdir()
        service.put_event_config("f", retries=1, retry_delay=1, on_success=f"dir:{out}",
                                 on_failure="function:sink")
        ok = service.invoke_async("f", b'{"n": 1}')
        bad = service.invoke_async("f", b'{"n": 2}')
        await turns()
        backend.finish(ok.request_id, "result", body=b'{"doubled": 2}')
        fail(backend, bad.request_id)
        await turns(10)
        clock.advance(1.0)
        await turns()
        fail(backend, bad.request_id)
        await turns(10)
        [path] = list(out.glob("*.json"))
        record = json.loads(path.read_text())
        assert record["version"] == "1.0" and record["timestamp"].endswith("Z")
        assert record["requestContext"]["requestId"] == ok.request_id
        assert record["requestContext"]["condition"] == "Success"
        assert record["requestContext"]["approximateInvokeCount"] == 1
        assert record["requestContext"]["functionArn"].startswith("arn:aws:lambda:")
        assert record["requestPayload"] == {"n": 1}
        assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}  # Lambda's version that ran
        assert record["responsePayload"] == {"doubled": 2}
        # the failure went to the function "sink" as an Event invocation of its own
        [sink_run] = [r for r in backend.running() if r != bad.request_id]
        sunk = json.loads([p for _, rid, p in backend.runs if rid == sink_run][0])
        assert sunk["requestContext"]["condition"] == "RetriesExhausted"
        assert sunk["requestContext"]["approximateInvokeCount"] == 2
        assert sunk["responseContext"]["functionError"] == "Unhandled"
        assert sunk["responsePayload"] == {"errorMessage": "boom", "errorType": "ValueError",
                                           "stackTrace": ["line 1"]}
        assert store.get_invocation(sink_run)["triggered_by"] == "destination"
        assert service.dead_letters() == []
    run(main())


def test_redrive_submits_dead_letters_again_once(tmp_path):
    async def main():
        service, store, backend, clock = make(tmp_path)
        service.put_event_config("f", retries=0)
        invs = service.invoke_async_many("f", [b"1", b"2"])
        await turns()
        for inv in invs:
            fail(backend, inv.request_id)
        await turns(10)
        assert len(service.dead_letters(function="f")) == 2
        redone = service.redrive(function="f")
        assert len(redone) == 2 and service.dead_letters() == []
        await turns()
        assert sorted(backend.running()) == sorted(r["request_id"] for r in redone)
        assert service.redrive(function="f") == []
    run(main())


def test_bad_event_config_and_bad_events_are_invalid_parameter(tmp_path):
    async def main():
        service, *_ = make(tmp_path)
        for options, match in [({"retries": -1}, "retries=-1"), ({"retries": 11}, "0 to 10"),
                               ({"max_event_age": 59}, "60 to 21600"),
                               ({"on_failure": "function:nope"}, "not deployed"),
                               ({"on_success": f"dir:{tmp_path}/missing"}, "does not exist"),
                               ({"on_success": "elsewhere"}, "not a destination"),
                               ({"bogus": 1}, "unknown event config")]:
            with pytest.raises(InvalidParameter, match=match):
                service.put_event_config("f", **options)
        with pytest.raises(InvalidParameter, match="must be JSON"):
            service.invoke_async("f", b"{not json")
    run(main())


def test_a_running_event_at_a_crash_is_one_failed_attempt_and_runs_again(tmp_path):
    async def main():
        service, store, backend, clock = make(tmp_path)
        service.put_event_config("f", retries=1)
        a = service.invoke_async("f", b"1")
        b = service.invoke_async("f", b"2")
        await turns()
        backend.finish(b.request_id, "result", body=b"2")   # b's end recorded
        await turns(10)
        assert store.get_invocation(a.request_id)["status"] == "running"
        # the server dies here (a running, b done); a new one starts on the same store
        service2, _, backend2, _ = make(tmp_path, store=store, clock=clock)
        counts = service2.recover()
        assert counts["events_retried"] == 1
        await turns()
        assert backend2.running() == [a.request_id]          # a again, b never again
        backend2.finish(a.request_id, "result", body=b"1")
        await turns(10)
        row = store.get_invocation(a.request_id)
        assert row["status"] == "succeeded" and row["attempts"] == 2
        assert store.attempts(a.request_id)[0]["error_type"] == "Runtime.ServerStopped"
    run(main())


def test_the_record_of_an_event_that_never_ran_has_no_response():
    record = destination_record(request_id="r", function={"name": "f", "version": 3},
                                condition="EventAgeExceeded", attempts=0, payload=b"{}", timestamp=0)
    assert "responseContext" not in record and record["requestPayload"] == {}
