"""Jupyter server handlers for the side panel, under ``<base_url>/jupyter-faas/``.

* ``api/<path>``: the FaaS REST API (``/faas/api/<path>``), limited to what the panel
  uses: read functions, invocations, logs and metrics; invoke with JSON; cancel; delete.
  Deploy, results (pickles) and shutdown are not reachable from the browser.
* ``api/version``: the jupyter_faas version this process runs and the FaaS server's, which
  the panel compares with its own (after an upgrade they can differ until JupyterLab is
  restarted or the background FaaS server stopped).
* ``events``: the FaaS event feed (``/faas/api/events``), relayed message for message.

Both sit behind Jupyter's own authentication (and, for REST, its XSRF check); the FaaS
token is added here and never sent to the browser.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.parse

from jupyter_server.auth.decorator import ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.utils import url_path_join
from tornado import web, websocket

from .backend import FaaSBackend, FaaSUnavailable, error_message

_NAME = r"[A-Za-z0-9_-]{1,64}"
_RID = r"[A-Za-z0-9_-]{1,64}"
#: (method, path under /faas/api/) the panel may reach.
ALLOWED = [(re.compile(rf"^{pattern}$"), methods) for pattern, methods in (
    ("status", {"GET"}),
    ("functions", {"GET"}),
    (rf"functions/{_NAME}", {"GET", "DELETE"}),
    (rf"functions/{_NAME}/invocations", {"POST"}),
    ("invocations", {"GET"}),
    (rf"invocations/{_RID}", {"GET"}),
    (rf"invocations/{_RID}/logs", {"GET"}),
    (rf"invocations/{_RID}/cancel", {"POST"}),
    ("metrics/functions", {"GET"}),
    (rf"metrics/functions/{_NAME}", {"GET"}),
    ("triggers", {"GET"}),
    (rf"triggers/{_NAME}", {"GET", "PATCH"}),
    ("dead-letters", {"GET"}),
    ("dead-letters/redrive", {"POST"}),
    ("metrics/versions", {"GET"}),
)]
#: A synchronous invoke may run for Lambda's longest timeout (900 s).
INVOKE_TIMEOUT_S = 960


class ProxyHandler(APIHandler):
    def initialize(self, backend: FaaSBackend) -> None:
        self.backend = backend

    @web.authenticated
    async def get(self, path):
        await self._forward("GET", path)

    @web.authenticated
    async def post(self, path):
        await self._forward("POST", path)

    @web.authenticated
    async def delete(self, path):
        await self._forward("DELETE", path)

    @web.authenticated
    async def patch(self, path):
        await self._forward("PATCH", path)

    async def _forward(self, method: str, path: str) -> None:
        if not any(rx.match(path) and method in methods for rx, methods in ALLOWED):
            raise web.HTTPError(404, f"{method} /jupyter-faas/api/{path} is not an endpoint of the panel")
        body = self.request.body if method in ("POST", "PATCH") else None
        timeout = INVOKE_TIMEOUT_S if path.endswith("/invocations") else 60
        try:
            resp = await self.backend.fetch(method, "/faas/api/" + urllib.parse.quote(path),
                                            self.request.query, body, timeout)
        except FaaSUnavailable as exc:
            raise web.HTTPError(503, str(exc)) from exc
        self.set_status(resp.code)
        if resp.code == 204:
            self.finish()
            return
        self.set_header("Content-Type", resp.headers.get("Content-Type", "application/json"))
        self.finish(resp.body)


class VersionHandler(APIHandler):
    """``{"extension": <this process's jupyter_faas>, "server": <the FaaS server's> | null}``."""

    def initialize(self, backend: FaaSBackend) -> None:
        self.backend = backend

    @web.authenticated
    async def get(self):
        from .. import __version__
        reply = {"extension": __version__, "server": None}
        try:
            resp = await self.backend.fetch("GET", "/faas/api/status")
        except FaaSUnavailable as exc:
            reply["server_error"] = str(exc)
        else:
            if resp.code == 200:
                reply["server"] = json.loads(resp.body).get("version")
            else:
                reply["server_error"] = f"GET /faas/api/status answered {resp.code}: {error_message(resp)}"
        self.finish(reply)


class EventsRelay(WebSocketMixin, websocket.WebSocketHandler, JupyterHandler):
    """Relays the FaaS event feed; one upstream socket per browser socket."""

    def initialize(self, backend: FaaSBackend) -> None:
        self.backend = backend
        self.upstream = None

    @ws_authenticated
    async def get(self, *args, **kwargs):
        # Connect upstream first, so a missing FaaS server is an HTTP error, not a silent socket.
        try:
            self.upstream = await self.backend.open_events()
        except FaaSUnavailable as exc:
            raise web.HTTPError(503, str(exc)) from exc
        await super().get(*args, **kwargs)

    def open(self, *args, **kwargs):
        self._pump_task = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        while True:
            msg = await self.upstream.read_message()
            if msg is None:
                break
            try:
                await self.write_message(msg)
            except websocket.WebSocketClosedError:
                break
        self.close(1011, "the jupyter_faas server closed the event feed")

    def on_message(self, message):
        if self.upstream is not None:
            self.upstream.write_message(message)

    def on_close(self):
        if self.upstream is not None:
            self.upstream.close()


def setup_handlers(serverapp) -> None:
    web_app = serverapp.web_app
    base = web_app.settings["base_url"]
    backend = FaaSBackend()
    web_app.add_handlers(".*$", [
        (url_path_join(base, "jupyter-faas/api/version"), VersionHandler, {"backend": backend}),
        (url_path_join(base, "jupyter-faas/api/(.*)"), ProxyHandler, {"backend": backend}),
        (url_path_join(base, "jupyter-faas/events"), EventsRelay, {"backend": backend}),
    ])
    serverapp.log.info("jupyter_faas panel: /jupyter-faas/ relays to the jupyter_faas server")
