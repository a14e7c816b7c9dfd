"""Asynchronous invocation over HTTP: accept events (202), event invoke config, attempts,
dead letters and redrive.  Parse, call the service, serialise; nothing else."""

from __future__ import annotations

import json

from ...errors import InvalidParameter
from .errors import BaseHandler

#: events one request may carry
EVENTS_PER_REQUEST = 10_000
#: the largest id the store can hold (SQLite's INTEGER); a larger one is a 400, not an overflow
MAX_ID = 2**63 - 1


class EventsHandler(BaseHandler):
    """``POST /faas/api/functions/{name}/events`` ``{"events": [...]}``: accepted (on disk) -> 202."""

    def post(self, name):
        body = self.json_body()
        events = body.get("events")
        if not isinstance(events, list) or not events:
            raise InvalidParameter("give {'events': [...]}: a non-empty list of JSON events")
        if len(events) > EVENTS_PER_REQUEST:
            raise InvalidParameter(f"{len(events)} events in one request; the limit is {EVENTS_PER_REQUEST}")
        version = body.get("version")
        if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
            raise InvalidParameter(f"version={version!r} is not a whole number")
        invs = self.service.invoke_async_many(
            name, [json.dumps(e, separators=(",", ":")).encode() for e in events], version=version)
        self.set_status(202)
        self.finish({"invocations": [{"request_id": i.request_id, "status": i.status,
                                      "version": i.function["version"]} for i in invs]})


class EventConfigHandler(BaseHandler):
    def get(self, name):
        self.finish(self.service.event_config(name))

    def put(self, name):
        self.finish(self.service.put_event_config(name, **self.json_body()))


class AttemptsHandler(BaseHandler):
    def get(self, request_id):
        self.finish({"attempts": self.service.attempts(request_id)})


class DeadLettersHandler(BaseHandler):
    def get(self):
        self.finish({"dead_letters": self.service.dead_letters(
            self.get_query_argument("function", None), self.int_arg("limit", 100, 1, 10_000))})


class RedriveHandler(BaseHandler):
    def post(self):
        body = self.json_body()
        ids = body.get("ids")
        if ids is not None and (not isinstance(ids, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) and 1 <= i <= MAX_ID for i in ids)):
            raise InvalidParameter("ids must be a list of dead-letter ids (whole numbers from 1)")
        function = body.get("function")
        if ids is None and function is not None:
            self.service.get_function(function)
        self.finish({"redriven": self.service.redrive(ids, function)})
