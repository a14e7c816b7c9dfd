"""Function URLs: ``/url/<function>/<path>`` (any method) invokes the function with API
Gateway's payload 2.0 event (:mod:`..triggers.urls` builds it and maps the result back).

Not part of ``/faas/api``: these are the user's own endpoints, as a Lambda function URL is
its own domain.  A bad request gets a 4xx (never a 500); the function's failure a 502,
its timeout a 504, a throttle a 429.
"""

from __future__ import annotations

import json

from tornado import web

from ...errors import FaaSError, PayloadTooLarge, ResourceNotFound
from ..triggers.urls import http_event, http_response
from .auth import token_matches
from .errors import error_body


class FunctionUrlHandler(web.RequestHandler):
    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

    def check_xsrf_cookie(self) -> None:
        pass  # the token (or nothing, for auth="none"), never a cookie, authorises

    def _fail(self, code: int, error_type: str, message: str) -> None:
        self.set_status(code)
        self.set_header("x-amzn-ErrorType", error_type)
        self.finish(error_body(code, error_type, message))

    async def _invoke(self, name: str, path: str | None) -> None:
        service, triggers = self.settings["faas_service"], self.settings["faas_triggers"]
        config = triggers.url_config(name)
        if config is None or not config["enabled"]:
            self._fail(404, "ResourceNotFoundException",
                       f"no function URL for {name!r} (create one with handle.url(), or enable it)")
            return
        auth = config["spec"]["auth"] == "token"
        if auth and not token_matches(self.request, self.settings["faas_token"]):
            self._fail(403, "AccessDeniedException", "this function URL needs the server's token: "
                                                     "'Authorization: Bearer <token>'")
            return
        r = self.request
        event = http_event(function=name, method=r.method, path=path or "/", query=r.query,
                           headers=list(r.headers.get_all()), body=r.body or b"",
                           source_ip=r.remote_ip or "", host=r.host, protocol=r.version,
                           now=service.clock.time(), strip_token=auth)
        try:
            inv = service.submit(name, json.dumps(event).encode(), encoding="json")
        except ResourceNotFound as exc:
            self._fail(404, exc.error_type, exc.message)
            return
        except PayloadTooLarge as exc:
            self._fail(413, exc.error_type, exc.message)
            return
        except FaaSError as exc:
            self._fail(400, exc.error_type, exc.message)
            return
        service.store.set_triggered_by(inv.request_id, "url", config["id"], service.clock.time())
        inv.triggered_by = "url"
        done, result = await inv.done
        code, headers, body = http_response(done["status"], result, done.get("error"))
        self.set_status(code)
        self.clear_header("Content-Type")  # only what the function's response says
        for key, value in headers:
            if key.lower() in ("content-length", "transfer-encoding", "connection"):
                continue
            if key.lower() == "set-cookie":
                self.add_header(key, value)
            else:
                self.set_header(key, value)
        self.add_header("x-amzn-RequestId", inv.request_id)
        self.finish(body)

    async def get(self, name, path=None):
        await self._invoke(name, path)

    post = put = patch = delete = options = get

    async def head(self, name, path=None):
        await self._invoke(name, path)
