"""The FaaS server as the Jupyter server extension reaches it.

Located lazily with the client's own discovery (:func:`jupyter_faas.client.discovery.discover`:
env vars, the runtime file, else start a server), in a thread so a starting server never
blocks Jupyter's loop, and located again when it stops answering (``jupyter faas stop``,
a crash): the next request finds or starts its successor. The token stays in this process.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

from tornado import httpclient, websocket

from ..client.discovery import discover


class FaaSUnavailable(Exception):
    """The FaaS server could not be found, started or reached."""


def _answers(url: str, token: str) -> bool:
    """Whether a server from the runtime file is really up (its pid may have been reused)."""
    req = urllib.request.Request(url.rstrip("/") + "/faas/api/status",
                                 headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status == 200
    except (OSError, urllib.error.URLError, ValueError):
        return False


class FaaSBackend:
    def __init__(self):
        self._endpoint: tuple[str, str] | None = None
        self._lock = asyncio.Lock()
        self._http = httpclient.AsyncHTTPClient()

    async def endpoint(self, refresh: bool = False) -> tuple[str, str]:
        async with self._lock:
            if self._endpoint is None or refresh:
                try:
                    url, token = await asyncio.get_running_loop().run_in_executor(
                        None, lambda: discover(check=_answers))
                except Exception as exc:  # noqa: BLE001 - whatever failed, the panel gets a 503
                    self._endpoint = None
                    raise FaaSUnavailable(f"cannot find or start the jupyter_faas server: {exc}") from exc
                self._endpoint = (url.rstrip("/"), token)
            return self._endpoint

    async def fetch(self, method: str, path: str, query: str = "", body: bytes | None = None,
                    timeout: float = 60) -> httpclient.HTTPResponse:
        """Forward one request; re-locate the server once if the connection is refused."""
        for attempt in (0, 1):
            url, token = await self.endpoint(refresh=attempt == 1)
            req = httpclient.HTTPRequest(
                url + path + (f"?{query}" if query else ""), method=method, body=body,
                headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
                request_timeout=timeout, allow_nonstandard_methods=True)
            try:
                resp = await self._http.fetch(req, raise_error=False)
            except OSError as exc:  # refused, reset: the server is gone, look again
                error = exc
                continue
            if resp.code != 599:
                return resp
            # A timeout is not retried: the server may have run the invocation.
            error = resp.error
            break
        raise FaaSUnavailable(f"the jupyter_faas server at {url} did not answer: {error}")

    async def open_events(self) -> websocket.WebSocketClientConnection:
        for attempt in (0, 1):
            url, token = await self.endpoint(refresh=attempt == 1)
            req = httpclient.HTTPRequest("ws" + url[4:] + "/faas/api/events",
                                         headers={"Authorization": f"token {token}"})
            try:
                return await websocket.websocket_connect(req)
            except (OSError, httpclient.HTTPClientError) as exc:  # gone, or a new server's token
                error = exc
        raise FaaSUnavailable(f"cannot open the event feed of the jupyter_faas server at {url}: {error}")


def error_message(resp: httpclient.HTTPResponse) -> str:
    try:
        return json.loads(resp.body).get("message", "")
    except (ValueError, AttributeError, TypeError):
        return ""
