"""``Triggers``: create, list, enable, disable and delete triggers; reconcile them at start.

A trigger is a row: ``id``, ``kind``, ``function``, ``spec`` (what the user gave), ``enabled``,
``last_fired_at``, ``fired`` (events it made), ``caught_up`` (firings made up after a
restart) and ``state`` (its cursor).  Each kind has a runner with ``start(row)`` and
``stop(id)``; the manager keeps rows and runners in step.
"""

from __future__ import annotations

import logging
import uuid

from ... import limits
from ...errors import InvalidParameter, ResourceNotFound
from .files import Files
from .queues import Queues, Subscriptions
from .schedules import Schedules
from .urls import Urls

log = logging.getLogger("jupyter_faas.server")

KINDS = ("schedule", "url", "file", "queue")


class Triggers:
    """Over an :class:`~..engine.AsyncService` (``service``: its store and clock are the ones used)."""

    def __init__(self, service):
        self.service = service
        self.store = service.store
        self.base_url = ""  # the server's URL, once it is bound (for function URLs)
        self.queues = Queues(service)
        service.queue_sink = self.queues.send_one  # a queue:<name> destination
        self.runners = {"schedule": Schedules(service), "url": Urls(service, lambda: self.base_url),
                        "file": Files(service), "queue": Subscriptions(service, self.queues)}

    def reconcile(self) -> dict:
        """At start: every enabled trigger runs again (a schedule due while the server was down
        fires once now, recorded as caught up)."""
        started = 0
        settled = self.runners["queue"].recover()
        for row in self.store.triggers():
            if row["enabled"] and row["kind"] in self.runners:
                try:
                    self.runners[row["kind"]].start(row, restart=True)
                    started += 1
                except Exception:  # noqa: BLE001 - one broken trigger must not stop the others
                    log.exception("could not start trigger %s (%s of %s)", row["id"], row["kind"],
                                  row["function"])
        return {"triggers": started, "queue_batches_settled": settled}

    def check(self, kind: str, spec: dict) -> dict:
        """``spec`` as :meth:`create` would keep it, or InvalidParameter; creates nothing and
        needs no function (``%%lambda`` checks its triggers before it deploys).  A queue
        subscription's queue may not exist yet: its name is checked."""
        if kind not in self.runners:
            raise InvalidParameter(f"kind={kind!r} is not a trigger kind; give one of {', '.join(KINDS)}")
        if not isinstance(spec, dict):
            raise InvalidParameter("a trigger's spec is a JSON object")
        spec = dict(spec)
        owner = spec.pop("owner", None)
        if owner is not None and not isinstance(owner, str):
            raise InvalidParameter(f"owner={owner!r}: give a string (what made the trigger) or nothing")
        if kind == "queue" and isinstance(spec.get("queue"), str) and self.store.get_queue(spec["queue"]) is None:
            if not limits.NAME_RE.match(spec["queue"]):
                raise InvalidParameter(f"queue name {spec['queue']!r}: letters, digits, - and _, up to 64")
            return dict(spec, **({"owner": owner} if owner else {}))
        return dict(self.runners[kind].check(spec), **({"owner": owner} if owner else {}))

    def create(self, kind: str, function: str, spec: dict) -> dict:
        """A trigger of ``kind`` on ``function``.  ``spec`` may carry ``owner`` (kept with it):
        what made it, e.g. ``%%lambda``, whose cell replaces the triggers it made before."""
        checked = self.check(kind, spec)
        self.service.get_function(function)
        runner = self.runners[kind]
        if kind == "url":  # one URL per function (Lambda's rule)
            for existing in self.store.triggers(function, "url"):
                if existing["spec"]["auth"] == checked["auth"]:
                    return self._view(existing)
                raise InvalidParameter(f"{function} already has a function URL with auth="
                                       f"{existing['spec']['auth']!r}; delete it first")
        if kind == "queue":
            runner.check({k: v for k, v in checked.items() if k != "owner"})  # the queue must exist now
        row = {"id": f"{kind}-{uuid.uuid4().hex[:12]}", "kind": kind, "function": function,
               "spec": checked, "enabled": True, "created_at": self.service.clock.time()}
        row["state"] = runner.initial_state(row)
        self.store.add_trigger(row)
        runner.start(self.get(row["id"]))
        return self.get(row["id"])

    def list(self, function: str | None = None) -> list[dict]:
        return [self._view(r) for r in self.store.triggers(function)]

    def get(self, trigger_id: str) -> dict:
        row = self.store.get_trigger(trigger_id)
        if row is None:
            raise ResourceNotFound(f"Trigger not found: {trigger_id}; `faas.triggers()` lists them")
        return self._view(row)

    def set_enabled(self, trigger_id: str, enabled: bool) -> dict:
        row = self.get(trigger_id)
        if not isinstance(enabled, bool):
            raise InvalidParameter(f"enabled={enabled!r} is not true or false")
        if row["enabled"] == enabled:
            return row
        runner = self.runners[row["kind"]]
        if enabled:
            state = runner.initial_state(row)  # no catch-up for a time it was disabled on purpose
            self.store.update_trigger(trigger_id, enabled=True, state=state)
            runner.start(self.get(trigger_id))
        else:
            runner.stop(trigger_id)
            self.store.update_trigger(trigger_id, enabled=False)
        return self.get(trigger_id)

    def delete(self, trigger_id: str) -> None:
        row = self.get(trigger_id)
        self.runners[row["kind"]].stop(trigger_id)
        self.store.delete_trigger(trigger_id)

    def delete_function(self, function: str) -> list[dict]:
        """The function was deleted: its triggers go too (a function URL, as Lambda's
        DeleteFunction deletes its URL config; schedules, file watches and subscriptions, which
        would only fail now, and would come back if the name were deployed again).  Returns them."""
        rows = self.store.triggers(function)
        for row in rows:
            self.runners[row["kind"]].stop(row["id"])
            self.store.delete_trigger(row["id"])
        return rows

    def url_config(self, function: str) -> dict | None:
        """The function's URL trigger (enabled or not), or None."""
        rows = self.store.triggers(function, "url")
        return rows[0] if rows else None

    def close(self) -> None:
        for runner in self.runners.values():
            runner.close()

    def _view(self, row: dict) -> dict:
        runner = self.runners.get(row["kind"])
        return dict(row, **(runner.describe(row) if runner else {}))
