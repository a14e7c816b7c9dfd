"""The client's side of asynchronous invocation: ``invoke_async``, the event invoke config a
``@faas.function`` carries (retries, backoff, max event age, destinations), dead letters.

``invoke_async`` is Lambda's ``Event`` invocation: it returns once the server has the event
on disk, with a :class:`~.invocation.Invocation` whose status is ``queued``.  ``spawn`` stays
the direct call with a future.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from .. import errors, limits
from .invocation import Invocation


def destination(which: str, target) -> str | None:
    """``None``, a handle (or a function name), a queue, or a directory path -> its wire form."""
    if target is None:
        return None
    name = getattr(target, "name", None)
    if getattr(target, "_fn", None) is not None and name:   # a RemoteFunction
        return f"function:{name}"
    if getattr(target, "is_queue", False):
        return f"queue:{name}"
    if isinstance(target, os.PathLike) or (isinstance(target, str) and (os.sep in target or target.startswith("."))):
        return f"dir:{os.path.abspath(os.fspath(target))}"
    if isinstance(target, str) and target.partition(":")[0] in limits.DESTINATION_KINDS:
        return limits.check_destination(which, target)
    if isinstance(target, str):
        return limits.check_destination(which, f"function:{target}")
    raise errors.InvalidParameter(f"{which}={target!r} is not a destination: give a function (a handle "
                                  f"or its name), a queue (faas.queue(...)) or a directory path")


def event_config(retries, retry_delay, max_event_age, on_success, on_failure) -> dict:
    """The validated config (defaults for what is None), destinations in their wire form."""
    given = {"retries": retries, "retry_delay": retry_delay, "max_event_age": max_event_age,
             "on_success": destination("on_success", on_success),
             "on_failure": destination("on_failure", on_failure)}
    return limits.check_event_config(**{k: v for k, v in given.items() if v is not None})


def destination_handles(*targets) -> list:
    """The handles among ``targets`` (deployed before the function that names them)."""
    return [t for t in targets if getattr(t, "_fn", None) is not None and hasattr(t, "deploy")]


def json_event(event) -> dict | list | str | int | float | bool | None:
    try:
        json.dumps(event)
    except (TypeError, ValueError) as exc:
        raise errors.InvalidParameter(f"an async event must be JSON-serialisable, as Lambda's are "
                                      f"({exc}); pass a dict of plain values") from None
    return event


class Invocations(list):
    """The Invocations of ``invoke_async_many``: a list, shown in a notebook as one live view
    (queued, retrying, running, succeeded, failed; attempts) until every one has ended."""

    def _ipython_display_(self) -> None:
        from ..display.events_view import EventsView
        from ..display.views import widget_frontend
        if not widget_frontend():
            print(repr(list(self)))
            return
        if not self:
            print("[]")
            return
        first = self[0]
        ids = {inv.request_id for inv in self}
        conn, name = first._connection, first.function

        def fetch():
            if len(ids) <= 50:
                return [inv.refresh()._row for inv in self]
            rows = conn.request("GET", "/faas/api/invocations",
                                params={"function": name, "limit": min(10_000, 4 * len(ids))})["invocations"]
            return [r for r in rows if r["request_id"] in ids]
        EventsView(f"{name}.invoke_async_many · {len(self):,} events", fetch).show()


def invoke_async(conn, name: str, version: int, events: list) -> list[Invocation]:
    accepted = conn.request("POST", f"/faas/api/functions/{name}/events",
                            {"events": [json_event(e) for e in events], "version": version})
    return Invocations(Invocation._from_row(dict(row, function=name, encoding="json"), conn)
                       for row in accepted["invocations"])


@dataclass
class DeadLetter:
    """An event that failed for good with no on-failure destination; :meth:`redrive` sends it again."""

    id: int
    request_id: str
    function: str
    input_summary: str
    condition: str
    error_type: str | None
    error_message: str | None
    attempts: int
    created_at: float
    _connection: object = None

    def redrive(self) -> Invocation | None:
        """Submit the event again (a new request id); None if it was redriven already."""
        out = self._connection.request("POST", "/faas/api/dead-letters/redrive", {"ids": [self.id]})
        return next((Invocation._from_row({"request_id": r["request_id"], "function": self.function,
                                           "status": "queued", "encoding": "json"}, self._connection)
                     for r in out["redriven"]), None)


def dead_letters(function: str | None = None, limit: int = 100, connection=None) -> list[DeadLetter]:
    """Failed events waiting for a redrive, newest first."""
    from .discovery import default_connection
    conn = connection or default_connection()
    rows = conn.request("GET", "/faas/api/dead-letters", params={"function": _name(function),
                                                                 "limit": limit})["dead_letters"]
    fields = set(DeadLetter.__dataclass_fields__) - {"_connection"}
    return [DeadLetter(**{k: v for k, v in r.items() if k in fields}, _connection=conn) for r in rows]


def redrive(function=None, connection=None) -> list[Invocation]:
    """Submit every dead letter (of ``function``, or all) again; their new Invocations."""
    from .discovery import default_connection
    conn = connection or default_connection()
    out = conn.request("POST", "/faas/api/dead-letters/redrive", {"function": _name(function)})
    return [Invocation._from_row({"request_id": r["request_id"], "function": r["function"],
                                  "status": "queued", "encoding": "json"}, conn) for r in out["redriven"]]


def _name(function) -> str | None:
    return getattr(function, "name", function)
