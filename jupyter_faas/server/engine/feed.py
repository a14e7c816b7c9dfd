"""The event feed: every function and invocation change, and every log line, to subscribers.

What monitors see (the side panel through ``/faas/api/events``; triggers' views later).
Events are dicts with a ``type``: ``function`` {name, version, action},
``invocation`` {request_id, function, version, status, created_at, ...timing}, and
``log`` {request_id, function, line: [ts, stream, text]}.  Callbacks run on the
server's loop and must not block; they batch for their own transport.  A callback
that raises is unsubscribed (one broken monitor must not break invocations).
"""

from __future__ import annotations

import logging

log = logging.getLogger("jupyter_faas.server")


class Feed:
    def __init__(self):
        self.subscribers: list = []

    def __bool__(self) -> bool:
        """Whether anyone listens (so callers can skip building events nobody reads)."""
        return bool(self.subscribers)

    def subscribe(self, callback) -> callable:
        """Call ``callback(event)`` for every event; returns the function that unsubscribes."""
        self.subscribers.append(callback)
        return lambda: self.subscribers.remove(callback) if callback in self.subscribers else None

    def emit(self, event: dict) -> None:
        for callback in list(self.subscribers):
            try:
                callback(event)
            except Exception:  # noqa: BLE001 - one broken subscriber must not break invocations
                log.exception("event subscriber failed; unsubscribing it")
                self.subscribers.remove(callback)

    def invocation(self, inv, **fields) -> None:
        """An invocation's status changed (``fields``: started_at, ended_at, error_type...)."""
        if self.subscribers:
            event = {"type": "invocation", "request_id": inv.request_id,
                     "function": inv.function["name"], "version": inv.function["version"],
                     "status": inv.status, "created_at": inv.created_at, **fields}
            if inv.triggered_by is not None:
                event["triggered_by"] = inv.triggered_by
            if inv.attempts is not None:
                event["attempts"] = inv.attempts
            self.emit(event)

    def function(self, name: str, version: int | None, action: str) -> None:
        self.emit({"type": "function", "name": name, "version": version, "action": action})

    def line(self, inv, entry: tuple) -> None:
        if self.subscribers:
            self.emit({"type": "log", "request_id": inv.request_id, "function": inv.function["name"],
                       "line": entry})
