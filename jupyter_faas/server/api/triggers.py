"""``/faas/api/triggers``: create, list, read, enable/disable, delete (the triggers room's manager)."""

from __future__ import annotations

from ...errors import InvalidParameter
from .errors import BaseHandler


class _TriggersBase(BaseHandler):
    @property
    def triggers(self):
        return self.settings["faas_triggers"]


class TriggersHandler(_TriggersBase):
    def get(self):
        self.finish({"triggers": self.triggers.list(self.get_query_argument("function", None))})

    def post(self):
        body = self.json_body()
        for key in ("kind", "function"):
            if not isinstance(body.get(key), str):
                raise InvalidParameter(f"give '{key}' (a string)")
        if body.get("check"):  # only check the spec (``%%lambda`` before it deploys): nothing made
            self.finish({"kind": body["kind"], "spec": self.triggers.check(body["kind"], body.get("spec", {}))})
            return
        self.set_status(201)
        self.finish(self.triggers.create(body["kind"], body["function"], body.get("spec", {})))


class TriggerHandler(_TriggersBase):
    def get(self, trigger_id):
        self.finish(self.triggers.get(trigger_id))

    def patch(self, trigger_id):
        body = self.json_body()
        if set(body) != {"enabled"}:
            raise InvalidParameter("give {'enabled': true|false}")
        self.finish(self.triggers.set_enabled(trigger_id, body["enabled"]))

    def delete(self, trigger_id):
        self.triggers.delete(trigger_id)
        self.set_status(204)
        self.finish()
