"""Schedules on a fake clock: rate and cron firing times, the Scheduled Event shape, catch-up
after downtime (once, recorded), enable/disable/delete, and bad expressions."""

from __future__ import annotations

import asyncio
import datetime
import json

import pytest

from engine_fakes import FakeBackend, turns
from jupyter_faas.errors import InvalidParameter, ResourceNotFound
from jupyter_faas.server.engine import AsyncService, FakeClock
from jupyter_faas.server.store import Store
from jupyter_faas.server.triggers import Triggers
from jupyter_faas.server.triggers.schedule_expr import parse

T0 = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc).timestamp()


def make(tmp_path, store=None, clock=None):
    store = store or Store(tmp_path / "faas.sqlite")
    clock = clock or FakeClock(T0)
    backend = FakeBackend()
    service = AsyncService(store, backend, clock=clock, memory_budget_mb=10_000, max_concurrency=None,
                           throttle_wait=2.0, max_payload_bytes=1 << 20)
    service.deploy("f", b"code", memory=128, timeout=3)
    return service, Triggers(service), store, backend, clock


def events(store):
    rows = store.list_invocations(function="f", limit=1000)
    return sorted(rows, key=lambda r: r["created_at"])


def test_rate_in_seconds_fires_on_its_rhythm_with_eventbridges_shape(tmp_path):
    async def main():
        service, triggers, store, backend, clock = make(tmp_path)
        t = triggers.create("schedule", "f", {"expression": "rate(10 seconds)"})
        assert t["next_at"] == T0 + 10 and t["enabled"]
        clock.advance(9.9)
        await turns()
        assert events(store) == []
        clock.advance(0.1)
        await turns()
        clock.advance(20)
        await turns()
        rows = events(store)
        assert [r["created_at"] - T0 for r in rows] == [10, 20, 30]
        assert {r["triggered_by"] for r in rows} == {"schedule"} and rows[0]["invocation_type"] == "Event"
        event = json.loads([p for _, rid, p in backend.runs if rid == rows[0]["request_id"]][0])
        assert set(event) == {"version", "id", "detail-type", "source", "account", "time", "region",
                              "resources", "detail"}
        assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
        assert event["time"] == "2024-01-01T00:00:10Z" and event["detail"] == {}
        assert event["resources"][0].endswith(f"rule/{t['id']}")
        assert triggers.get(t["id"])["fired"] == 3
    asyncio.run(main())


def test_cron_fires_at_its_times_in_utc(tmp_path):
    async def main():
        service, triggers, store, backend, clock = make(tmp_path)
        t = triggers.create("schedule", "f", {"expression": "cron(0/15 * * * ? *)"})
        assert t["next_at"] == T0 + 900
        clock.advance(3600)
        await turns()
        assert [r["created_at"] - T0 for r in events(store)] == [900, 1800, 2700, 3600]
    asyncio.run(main())


def test_a_schedule_due_while_the_server_was_down_fires_once_on_restart(tmp_path):
    async def main():
        service, triggers, store, backend, clock = make(tmp_path)
        t = triggers.create("schedule", "f", {"expression": "rate(1 minute)"})
        clock.advance(60)
        await turns()
        assert len(events(store)) == 1
        triggers.close()                       # the server stops ...
        clock.advance(600)                     # ... for ten minutes: ten firings missed
        service2, triggers2, _, backend2, _ = make(tmp_path, store=store, clock=clock)
        triggers2.reconcile()
        await turns()
        rows = events(store)
        assert len(rows) == 2                  # once, not ten times
        row = triggers2.get(t["id"])
        assert row["caught_up"] == 1 and row["fired"] == 2 and row["last_fired_at"] == clock.time()
        assert row["next_at"] == T0 + 720      # keeps its rhythm from now on
        clock.advance(60)
        await turns()
        assert len(events(store)) == 3
    asyncio.run(main())


def test_disable_enable_and_delete(tmp_path):
    async def main():
        service, triggers, store, backend, clock = make(tmp_path)
        t = triggers.create("schedule", "f", {"expression": "rate(5 seconds)"})
        triggers.set_enabled(t["id"], False)
        clock.advance(60)
        await turns()
        assert events(store) == [] and triggers.get(t["id"])["next_at"] is None
        triggers.set_enabled(t["id"], True)    # from now: no catch-up for a disabled time
        assert triggers.get(t["id"])["next_at"] == T0 + 65
        clock.advance(5)
        await turns()
        assert len(events(store)) == 1
        assert [x["id"] for x in triggers.list(function="f")] == [t["id"]]
        triggers.delete(t["id"])
        clock.advance(60)
        await turns()
        assert len(events(store)) == 1 and triggers.list() == []
        with pytest.raises(ResourceNotFound):
            triggers.get(t["id"])
    asyncio.run(main())


@pytest.mark.parametrize("expression, message", [
    ("rate(1 minutes)", "singular"), ("rate(0 minutes)", ">= 1"), ("rate(5 weeks)", "unit"),
    ("cron(0 12 * * * *)", "exactly one of Day-of-month"), ("cron(0 12 * *)", "6 fields"),
    ("cron(60 12 * * ? *)", "Minutes '60' is out of range 0-59"), ("cron(0 12 ? * 8 *)", "Day-of-week"),
    ("cron(0 12 ? * 1#2,2#3 *)", "only one '#'"), ("cron(0 12 * * ? 1969)", "Year"),
    ("every day", "neither rate"), ("cron(0 0 30 2 ? *)", "not a valid cron"),
])
def test_a_bad_expression_says_what_is_wrong(tmp_path, expression, message):
    async def main():
        service, triggers, *_ = make(tmp_path)
        with pytest.raises(InvalidParameter, match=message):
            triggers.create("schedule", "f", {"expression": expression})
        assert triggers.list() == []
    asyncio.run(main())


@pytest.mark.parametrize("expression, after, expected", [
    ("cron(0 10 * * ? *)", "2024-01-01 11:00", "2024-01-02 10:00"),
    ("cron(0 18 ? * MON-FRI *)", "2024-01-05 19:00", "2024-01-08 18:00"),   # Fri -> Mon
    ("cron(0 12 ? * 3#2 *)", "2024-01-01 00:00", "2024-01-09 12:00"),       # 2nd Tuesday
    ("cron(0 12 ? * 2 *)", "2024-01-01 13:00", "2024-01-08 12:00"),         # 2 = MON
    ("cron(0 12 15W * ? *)", "2024-06-01 00:00", "2024-06-14 12:00"),       # the 15th is a Saturday
    ("cron(0 12 L * ? *)", "2024-02-01 00:00", "2024-02-29 12:00"),
    ("cron(0 12 ? * L *)", "2024-01-01 00:00", "2024-01-06 12:00"),         # L = SAT
    ("cron(0 0 1 1 ? 2030)", "2024-01-01 00:00", "2030-01-01 00:00"),
])
def test_cron_rules(expression, after, expected):
    def ts(s):
        return datetime.datetime.strptime(s, "%Y-%m-%d %H:%M").replace(tzinfo=datetime.timezone.utc).timestamp()
    assert parse(expression).next_after(ts(after)) == ts(expected)
