"""Triggers from the client: ``handle.schedule(...)``, ``faas.triggers()``, and the
:class:`Trigger` each returns (``disable()``, ``enable()``, ``delete()``, ``refresh()``)."""

from __future__ import annotations

import datetime
import html


class Trigger:
    """A trigger as the server keeps it: ``id``, ``kind``, ``function``, ``spec``, ``enabled``,
    ``last_fired_at``, ``fired`` (events made), ``caught_up``, ``next_at`` (schedules)."""

    def __init__(self, row: dict, connection):
        self._row = row
        self._connection = connection

    def __getattr__(self, name):
        row = self.__dict__.get("_row", {})
        if name in row:
            return row[name]
        raise AttributeError(name)

    def refresh(self) -> "Trigger":
        self._row = self._connection.request("GET", f"/faas/api/triggers/{self.id}")
        return self

    def disable(self) -> "Trigger":
        self._row = self._connection.request("PATCH", f"/faas/api/triggers/{self.id}", {"enabled": False})
        return self

    def enable(self) -> "Trigger":
        self._row = self._connection.request("PATCH", f"/faas/api/triggers/{self.id}", {"enabled": True})
        return self

    def delete(self) -> None:
        self._connection.request("DELETE", f"/faas/api/triggers/{self.id}")

    def __repr__(self) -> str:
        spec = describe_spec(self.kind, self.spec)
        state = "enabled" if self.enabled else "disabled"
        extra = ""
        if self._row.get("next_at"):
            extra = " next " + datetime.datetime.fromtimestamp(
                self.next_at, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"<Trigger {self.id} {self.kind} {self.function} {spec!r} {state} fired={self.fired}{extra}>"


    def _ipython_display_(self) -> None:
        """In a notebook: what it fired, live for a few minutes (each firing's attempts and outcome)."""
        from ..display.events_view import EventsView
        from ..display.views import widget_frontend
        if not widget_frontend():
            print(repr(self))
            return
        conn, kind = self._connection, self.kind

        def fetch():
            rows = conn.request("GET", "/faas/api/invocations",
                                params={"function": self.function, "limit": 200})["invocations"]
            return [r for r in rows if r.get("triggered_by") == kind]
        EventsView(f"{self.function} · {kind} {describe_spec(kind, self.spec)}", fetch,
                   live_s=TRIGGER_VIEW_S, extra=lambda: self.refresh() and _state_text(self._row)).show()


class TriggerList(list):
    """What ``faas.triggers()`` returns: a list, shown in a notebook as a table."""

    def _ipython_display_(self) -> None:
        from IPython.display import display
        rows = "".join(
            f"<tr><td>{html.escape(t.kind)}</td><td>{html.escape(t.function)}</td>"
            f"<td><code>{html.escape(describe_spec(t.kind, t.spec))}</code></td>"
            f"<td>{'enabled' if t.enabled else 'disabled'}</td><td>{t.fired}</td>"
            f"<td>{html.escape(_state_text(t._row).lstrip(' ·'))}</td></tr>" for t in self)
        text = "\n".join(repr(t) for t in self) or "no triggers"
        display({"text/plain": text,
                 "text/html": "<table style='font-size:12px'><tr><th>kind</th><th>function</th><th>spec</th>"
                              f"<th>state</th><th>fired</th><th>now</th></tr>{rows}</table>"
                 if self else "<i>no triggers</i>"}, raw=True)


#: a trigger's cell view follows its firings this long
TRIGGER_VIEW_S = 600


def _state_text(row: dict) -> str:
    """What a trigger is doing now: next firing, queue depth and in flight, URL, watched dir."""
    parts = []
    if row.get("next_at"):
        parts.append("next " + datetime.datetime.fromtimestamp(
            row["next_at"], datetime.timezone.utc).strftime("%H:%M:%SZ"))
    if row.get("kind") == "queue":
        parts.append(f"depth {row.get('depth', 0)} · in flight {row.get('in_flight', 0)} · "
                     f"dead letters {row.get('dead_letters', 0)}")
    if row.get("url"):
        parts.append(row["url"])
    if row.get("last_fired_at"):
        parts.append("last fired " + datetime.datetime.fromtimestamp(
            row["last_fired_at"], datetime.timezone.utc).strftime("%H:%M:%SZ"))
    return "".join(" · " + p for p in parts)


def describe_spec(kind: str, spec: dict) -> str:
    """A trigger's spec in a few words (the cell view's and the repr's)."""
    if kind == "schedule":
        return spec.get("expression", "")
    if kind == "url":
        return f"auth={spec.get('auth')}"
    if kind == "file":
        return f"{spec.get('path')}/{spec.get('pattern')} ({', '.join(spec.get('events', []))})"
    if kind == "queue":
        return f"{spec.get('queue')} batch={spec.get('batch_size')}"
    return str(spec)


def create(connection, kind: str, function: str, spec: dict) -> Trigger:
    row = connection.request("POST", "/faas/api/triggers", {"kind": kind, "function": function, "spec": spec})
    return Trigger(row, connection)


def triggers(function=None, connection=None) -> list[Trigger]:
    """Every trigger (of ``function``: a handle or a name), oldest first."""
    from .discovery import default_connection
    conn = connection or default_connection()
    rows = conn.request("GET", "/faas/api/triggers",
                        params={"function": getattr(function, "name", function)})["triggers"]
    return TriggerList(Trigger(r, conn) for r in rows)
