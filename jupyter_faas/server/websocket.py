"""The client's websocket: submissions in, accepts, live log lines and results out.

Messages are :mod:`kernel_workers.wire` frames in binary websocket messages.

client -> server
  ``invoke``  {cid, function, version?, encoding, queue, logs}  body: payload
  ``cancel``  {request_ids: [...]}
server -> client
  ``accepted`` {cid, request_id, version}
  ``rejected`` {cid, error: {errorType, errorMessage}}
  ``log``      {request_id, lines: [[ts, stream, line], ...]}   (only when ``logs`` was asked)
  ``done``     {request_id, status, error, report, function, version}  body: result

Invocations outlive the socket: a client that goes away does not cancel what it
started (it can re-attach by request id); only ``cancel`` does.
"""

from __future__ import annotations

import asyncio
import hmac
import logging

from tornado import websocket

from kernel_workers import wire

from ..errors import FaaSError

log = logging.getLogger("jupyter_faas.server")


class InvocationSocket(websocket.WebSocketHandler):
    def check_xsrf_cookie(self) -> None:
        pass

    def get_compression_options(self):
        return None

    def check_origin(self, origin: str) -> bool:
        return True  # the token, not the origin, authenticates (no cookies are used)

    async def get(self, *args, **kwargs):
        token = self.settings["faas_token"]
        given = self.request.headers.get("Authorization", "")
        given = given[6:].strip() if given.lower().startswith("token ") else self.get_query_argument("token", "")
        if not given or not hmac.compare_digest(given.encode(), token.encode()):
            self.set_status(403)
            self.finish({"errorType": "AccessDeniedException", "message": "a valid token is required"})
            return
        await super().get(*args, **kwargs)

    def open(self):
        self.set_nodelay(True)
        self.service = self.settings["faas_service"]
        self.closed = False
        self.pending_logs: dict[str, list] = {}
        self._log_flush = None

    def on_close(self):
        self.closed = True

    def send(self, kind: str, body: bytes = b"", **fields) -> None:
        if self.closed:
            return
        try:
            self.write_message(wire.pack(kind, body, **fields), binary=True)
        except websocket.WebSocketClosedError:
            self.closed = True

    def on_message(self, message):
        if isinstance(message, str):
            self.send("rejected", cid=None, error={"errorType": "InvalidRequest",
                                                    "errorMessage": "send binary wire frames"})
            return
        try:
            header, body = wire.unpack(message)
        except wire.ProtocolError as exc:
            self.send("rejected", cid=None, error={"errorType": "ProtocolError", "errorMessage": str(exc)})
            return
        kind = header["k"]
        if kind == "invoke":
            self._invoke(header, bytes(body))
        elif kind == "cancel":
            for rid in header.get("request_ids", []):
                self.service.cancel(rid)

    def _invoke(self, header: dict, body: bytes) -> None:
        cid = header.get("cid")
        listener = self._on_log if header.get("logs") else None
        try:
            inv = self.service.submit(header.get("function"), body, encoding=header.get("encoding", "pickle"),
                                      version=header.get("version"), queue=bool(header.get("queue")),
                                      listener=listener)
        except FaaSError as exc:
            self.send("rejected", cid=cid, error={"errorType": exc.error_type, "errorMessage": exc.message})
            return
        self.send("accepted", cid=cid, request_id=inv.request_id, version=inv.function["version"])
        inv.done.add_done_callback(self._on_done)

    def _on_log(self, request_id: str, entry: tuple) -> None:
        self.pending_logs.setdefault(request_id, []).append(entry)
        if self._log_flush is None:
            self._log_flush = asyncio.get_running_loop().call_later(0.05, self._flush_logs)

    def _flush_logs(self) -> None:
        self._log_flush = None
        pending, self.pending_logs = self.pending_logs, {}
        for rid, lines in pending.items():
            self.send("log", request_id=rid, lines=lines)

    def _on_done(self, fut: asyncio.Future) -> None:
        done, result = fut.result()
        if done["request_id"] in self.pending_logs:
            if self._log_flush is not None:
                self._log_flush.cancel()
            self._flush_logs()
        self.send("done", result or b"", **done)
