"""``/faas/api/functions``: deploy, list, read, delete, their logs, and invoke with JSON."""

from __future__ import annotations

import base64
import json

from ...errors import InvalidParameter
from .errors import BaseHandler


def _function_json(function: dict) -> dict:
    return {k: v for k, v in function.items() if k != "code"}


class FunctionsHandler(BaseHandler):
    def get(self):
        self.finish({"functions": [_function_json(f) for f in self.service.list_functions()]})

    def post(self):
        body = self.json_body()
        try:
            code = base64.b64decode(body.get("code", ""), validate=True)
        except (ValueError, TypeError) as exc:
            raise InvalidParameter(f"'code' must be base64: {exc}") from exc
        kwargs = {k: body[k] for k in ("memory", "timeout", "env", "concurrency", "snapshot", "backend")
                  if k in body}
        if body.get("layers"):
            kwargs["layers"] = self.service.layers.resolve(body["layers"])
        function = self.service.deploy(body.get("name"), code, **kwargs)
        self.set_status(201 if function.pop("created") else 200)
        self.finish(_function_json(function))


class FunctionHandler(BaseHandler):
    def get(self, name):
        self.finish(_function_json(self.service.get_function(name)))

    def delete(self, name):
        self.service.delete_function(name)
        self.settings["faas_triggers"].delete_function(name)  # its triggers and URL go with it
        self.set_status(204)
        self.finish()


class FunctionLogsHandler(BaseHandler):
    def get(self, name):
        limit = self.int_arg("limit", 200, 1, 100000)
        self.finish({"logs": self.service.function_logs(name, limit)})


class InvokeHandler(BaseHandler):
    """JSON in, JSON out: the path curl, the CLI and the panel use."""

    async def post(self, name):
        kind = self.get_query_argument("type", "RequestResponse")
        if kind not in ("RequestResponse", "Event"):
            raise InvalidParameter(f"type={kind!r} is not RequestResponse or Event")
        if self.request.body:
            try:
                json.loads(self.request.body)
            except ValueError as exc:
                raise InvalidParameter(f"Could not parse request body into json: {exc}") from exc
        if kind == "Event":  # the durable async queue: retries, destinations, dead letters
            inv = self.service.invoke_async(name, self.request.body or b"{}")
            self.set_status(202)
            self.finish({"request_id": inv.request_id, "status": inv.status})
            return
        inv = self.service.submit(name, self.request.body or b"{}", encoding="json")
        done, result = await inv.done
        out = dict(done)
        # On failure the body is the pickled exception (for the Python client): never decode it here.
        out["result"] = json.loads(result) if result and done["status"] == "succeeded" else None
        out["logs"] = [line for _, _, line in inv.logs]
        self.finish(out)
