"""The websocket carrier of the client's invocation session (``/faas/api/ws``).

The protocol is :mod:`jupyter_faas.server.protocol.session`'s; this module only moves
its frames over a tornado websocket (binary messages, one frame each).
"""

from __future__ import annotations

from tornado import websocket

from kernel_workers import wire

from ..protocol import InvocationSession
from .sockets import TokenSocket


class InvocationSocket(InvocationSession, TokenSocket):
    """The session over the websocket at ``/faas/api/ws``."""

    def get_compression_options(self):
        return None

    def open(self):
        self.set_nodelay(True)
        self.service = self.settings["faas_service"]
        super().open()
        self.shares_files(self.get_query_argument("buffers", None))

    def send(self, kind: str, body: bytes = b"", **fields) -> None:
        if self.closed:
            return
        try:
            self.write_message(wire.pack(kind, body, **fields), binary=True)
        except websocket.WebSocketClosedError:
            self.closed = True
