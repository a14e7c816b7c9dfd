"""Triggers from the client: ``handle.schedule(...)``, ``faas.triggers()``, and the
:class:`Trigger` each returns (``disable()``, ``enable()``, ``delete()``, ``refresh()``)."""

from __future__ import annotations

import datetime


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
    return [Trigger(r, conn) for r in rows]
