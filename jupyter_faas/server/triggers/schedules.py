"""Schedules: EventBridge ``rate``/``cron`` expressions firing Event invocations.

State: ``next_at``, the next firing due.  A firing writes its Event invocation and the new
``next_at`` in one transaction (:meth:`Store.fired_trigger`), so a restart neither fires
twice nor forgets a firing.  At start, a schedule whose ``next_at`` has passed fires once
(however many firings were missed: EventBridge does not replay a backlog either), with
``caught_up`` counted, and then keeps its rhythm from now.  Timers are the engine clock's,
so the rules are unit-tested on a :class:`~..engine.FakeClock`.
"""

from __future__ import annotations

import datetime
import json
import logging
import uuid

from ...errors import FaaSError, InvalidParameter
from ..engine.async_queue import ACCOUNT, REGION
from .schedule_expr import parse

log = logging.getLogger("jupyter_faas.server")


def scheduled_event(trigger_id: str, due: float) -> dict:
    """EventBridge's "Scheduled Event" (reference/lambda.md §6)."""
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event",
            "source": "aws.events", "account": ACCOUNT,
            "time": datetime.datetime.fromtimestamp(due, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": REGION, "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{trigger_id}"],
            "detail": {}}


class Schedules:
    def __init__(self, service):
        self.service = service
        self.store = service.store
        self.clock = service.clock
        self.timers: dict[str, object] = {}

    def check(self, spec: dict) -> dict:
        expression = spec.get("expression")
        parse(expression)
        unknown = set(spec) - {"expression"}
        if unknown:
            raise InvalidParameter(f"a schedule takes only 'expression', not {', '.join(sorted(unknown))}")
        return {"expression": expression.strip()}

    def _expr(self, row: dict):
        return parse(row["spec"]["expression"], anchor=row["created_at"])

    def initial_state(self, row: dict) -> dict:
        return {"next_at": self._expr(row).next_after(self.clock.time())}

    def describe(self, row: dict) -> dict:
        return {"next_at": row["state"].get("next_at") if row["enabled"] else None}

    def start(self, row: dict, restart: bool = False) -> None:
        self.stop(row["id"])
        next_at = row["state"].get("next_at")
        if next_at is None:
            return  # a cron whose last year has passed
        now = self.clock.time()
        if restart and next_at <= now:
            self._fire(row["id"], caught_up=True)
            return
        self.timers[row["id"]] = self.clock.call_later(max(next_at - now, 0.0), self._fire, row["id"])

    def stop(self, trigger_id: str) -> None:
        timer = self.timers.pop(trigger_id, None)
        if timer is not None:
            timer.cancel()

    def close(self) -> None:
        for trigger_id in list(self.timers):
            self.stop(trigger_id)

    def _fire(self, trigger_id: str, caught_up: bool = False) -> None:
        self.timers.pop(trigger_id, None)
        row = self.store.get_trigger(trigger_id)
        if row is None or not row["enabled"]:
            return
        now = self.clock.time()
        due = row["state"].get("next_at") or now
        next_at = self._expr(row).next_after(max(now, due))
        state = {"next_at": next_at}
        event = json.dumps(scheduled_event(trigger_id, due)).encode()
        try:
            self.service.invoke_async_many(
                row["function"], [event], triggered_by="schedule",
                write=lambda rows: self.store.fired_trigger(trigger_id, now, state, caught_up, rows))
        except FaaSError as exc:   # its function was deleted: the schedule keeps its rhythm
            log.warning("schedule %s could not invoke %s: %s", trigger_id, row["function"], exc)
            self.store.update_trigger(trigger_id, state=state)
        if next_at is not None:
            self.timers[trigger_id] = self.clock.call_later(max(next_at - now, 0.0), self._fire, trigger_id)
