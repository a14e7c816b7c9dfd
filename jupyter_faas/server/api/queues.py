"""``/faas/api/queues``: local queues (create, list, read, send, peek, redrive a dead-letter
queue).  Parse, call the triggers room's ``Queues``, serialise; nothing else."""

from __future__ import annotations

from ...errors import InvalidParameter
from .errors import BaseHandler


class _QueuesBase(BaseHandler):
    @property
    def queues(self):
        return self.settings["faas_triggers"].queues


class QueuesHandler(_QueuesBase):
    def get(self):
        self.finish({"queues": self.queues.list()})

    def post(self):
        body = self.json_body()
        if set(body) - {"name", "visibility_timeout"}:
            raise InvalidParameter("give {'name': ..., 'visibility_timeout': seconds or null}")
        self.finish(self.queues.create(body.get("name"), body.get("visibility_timeout")))


class QueueHandler(_QueuesBase):
    def get(self, name):
        self.finish(self.queues.get(name))


class QueueMessagesHandler(_QueuesBase):
    def get(self, name):
        self.finish({"messages": self.queues.peek(name, self.int_arg("limit", 100, 1, 10_000))})

    def post(self, name):
        body = self.json_body()
        ids = self.queues.send(name, body.get("messages"))
        self.finish({"message_ids": ids})


class QueueRedriveHandler(_QueuesBase):
    def post(self, name):
        self.finish(self.queues.redrive(name))
