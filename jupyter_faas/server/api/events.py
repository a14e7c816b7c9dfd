"""The event feed websocket (``/faas/api/events``): what monitors such as the side panel see.

JSON text messages, unlike the clients' binary ``/faas/api/ws`` (whose protocol this
module leaves alone). Authenticated with the server's token like every endpoint.

server -> client, at most every ``BATCH_S`` seconds while anything happened::

    {"events": [
      {"type": "function", "name", "version", "action": "deployed" | "deleted" | "provisioned"
       | "snapshot"},   (provisioned: one of its provisioned environments came up or failed, or
                         the count changed; snapshot: a template was made or refused)
      {"type": "invocation", "request_id", "function", "version", "status", "created_at",
       "started_at"?, "ended_at"?, "error_type"?, "duration_ms"?, "max_memory_used_mb"?},
      {"type": "log", "request_id", "function", "lines": [[ts, stream, text], ...], "dropped": n},
      {"type": "overflow", "dropped": n}
    ]}

client -> server::

    {"watch": [request_id, ...]}   the invocations whose log lines to push (replaces the set)

server -> client, at once, for each watch::

    {"watching": [request_id, ...]}   the set now in effect: lines printed from here on are
                                      pushed; earlier ones are in the store (read them there)

Logs can flood (a function may print 200,000 lines), and a browser cannot draw them as
fast as a server makes them. So log lines are pushed only for watched invocations, at most
``LOG_LINES_PER_BATCH`` per invocation per batch; the rest are counted in ``dropped`` (the
store keeps every line: ``GET /faas/api/invocations/{id}/logs``). Invocation events for
one request id within a batch are merged into one; past ``MAX_INVOCATIONS_PER_BATCH``
distinct invocations a batch ends with ``overflow``, telling the client to re-read the
list instead of applying events one by one.
"""

from __future__ import annotations

import asyncio
import json
import logging

from tornado import websocket

from .sockets import TokenSocket

log = logging.getLogger("jupyter_faas.server")

BATCH_S = 0.2
LOG_LINES_PER_BATCH = 200
MAX_INVOCATIONS_PER_BATCH = 500
MAX_WATCHED = 16


class EventSocket(TokenSocket):
    def open(self):
        self.set_nodelay(True)
        self.watched: set[str] = set()
        self.functions: list[dict] = []
        self.invocations: dict[str, dict] = {}
        self.logs: dict[str, dict] = {}
        self.overflow = 0
        self.flush_handle = None
        self.unsubscribe = self.settings["faas_service"].subscribe(self._on_event)

    def on_close(self):
        self.unsubscribe()
        if self.flush_handle is not None:
            self.flush_handle.cancel()

    def on_message(self, message):
        try:
            msg = json.loads(message)
            watch = msg["watch"]
            if not isinstance(watch, list) or not all(isinstance(r, str) for r in watch):
                raise ValueError("watch must be a list of request ids")
        except (ValueError, KeyError, TypeError) as exc:
            self.write_message(json.dumps({"error": f"bad message ({exc}); send "
                                                    f"{{\"watch\": [request_id, ...]}}"}))
            return
        self.watched = set(watch[-MAX_WATCHED:])
        # A watcher cannot otherwise tell when lines start coming: say so, in order with the
        # events (it may then read the store for what came before).
        self.write_message(json.dumps({"watching": sorted(self.watched)}))

    # Called on the server's loop for every change: only collect, never block.
    def _on_event(self, event: dict) -> None:
        kind = event["type"]
        if kind == "log":
            rid = event["request_id"]
            if rid not in self.watched:
                return
            entry = self.logs.setdefault(rid, {"type": "log", "request_id": rid,
                                               "function": event["function"], "lines": [],
                                               "dropped": 0})
            if len(entry["lines"]) < LOG_LINES_PER_BATCH:
                entry["lines"].append(list(event["line"]))
            else:
                entry["dropped"] += 1
        elif kind == "invocation":
            rid = event["request_id"]
            if rid in self.invocations:
                self.invocations[rid].update({k: v for k, v in event.items() if v is not None})
            elif len(self.invocations) < MAX_INVOCATIONS_PER_BATCH:
                self.invocations[rid] = dict(event)
            else:
                self.overflow += 1
        else:
            self.functions.append(dict(event))
        if self.flush_handle is None:
            self.flush_handle = asyncio.get_running_loop().call_later(BATCH_S, self._flush)

    def _flush(self) -> None:
        self.flush_handle = None
        events = self.functions + list(self.invocations.values()) + list(self.logs.values())
        if self.overflow:
            events.append({"type": "overflow", "dropped": self.overflow})
        self.functions, self.invocations, self.logs, self.overflow = [], {}, {}, 0
        if not events:
            return
        try:
            self.write_message(json.dumps({"events": events}))
        except websocket.WebSocketClosedError:
            self.unsubscribe()
