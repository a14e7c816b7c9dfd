"""Sync calls over the server's direct Unix socket, from the calling thread itself.

The websocket path hands a call to the client's IO thread and the answer back
(two thread wake-ups per call, each costly on a busy 2-core laptop).  Here the
thread that waits for the result does the I/O: it writes one ``invoke`` frame and
reads ``accepted``, any ``log`` frames and ``done`` (the server side is
:mod:`jupyter_faas.server.protocol.direct`); what they do to the future is the websocket's
:class:`~.dispatch.Dispatcher`.  One call at a time per socket; a small free
list keeps sockets for reuse, one per thread that calls concurrently.

Failure handling keeps the websocket path's promises:
- Ctrl-C while waiting sends ``cancel`` on the same socket and reads on until the
  server says how the invocation ended, then re-raises.
- A socket that breaks after the server accepted the call hands the future to the
  connection's re-attach (``watch`` over the websocket, through a server restart too).
- A socket that cannot be used before that falls back to the websocket.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading

from kernel_workers import wire

from .dispatch import Dispatcher

#: how long Ctrl-C waits for the server to confirm a cancel before giving up on the socket
CANCEL_WAIT_S = 30.0


class DirectUnavailable(Exception):
    """The direct socket cannot be used; nothing was sent, so the websocket may take the call."""


class DirectChannel:
    def __init__(self, path: str, token: str, instance: str | None, buffer_nonce: str | None = None):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            self.channel = wire.BlockingChannel(sock)
            # ``buffers``: this client maps the server's buffer files (as the websocket's ?buffers=)
            self.channel.send("hello", token=token, buffers=buffer_nonce)
            header, _ = self.channel.recv()
        except (OSError, EOFError, wire.ProtocolError) as exc:
            sock.close()
            raise DirectUnavailable(f"cannot use {path}: {exc}") from exc
        # The socket of another server (a restart, another user's path) must not take calls.
        if header["k"] != "hello_ack" or (instance and header.get("instance") != instance):
            sock.close()
            raise DirectUnavailable(f"{path} belongs to another server")
        self.sock = sock
        self._cid = itertools.count(1)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def call(self, fut, function: str, payload, *, encoding: str, version, logs: bool) -> None:
        """Run one invocation to its end, telling ``fut`` of its acceptance, lines and end.

        Raises :class:`DirectUnavailable` if it could not even be sent, and
        :class:`ConnectionError` if the socket broke after it was (``fut`` then knows
        whether the server accepted it).
        """
        cid = next(self._cid)
        dispatcher = Dispatcher(cancel=lambda rids: self.channel.send("cancel", request_ids=rids))
        dispatcher.expect(cid, fut)
        item = [cid, len(payload.data)] + ([payload.buffers] if payload.buffers else [])
        try:
            self.channel.send("invoke", payload.data, function=function, version=version,
                              encoding=encoding, queue=False, logs=logs, items=[item])
        except OSError as exc:
            raise DirectUnavailable(f"could not send: {exc}") from exc
        cancelling = None   # the KeyboardInterrupt to re-raise once the end is known
        cancel_sent = False
        while True:
            try:
                if cancelling is not None and not cancel_sent and fut._request_id is not None:
                    self.sock.settimeout(CANCEL_WAIT_S)
                    self.channel.send("cancel", request_ids=[fut._request_id])
                    cancel_sent = True
                header, body = self.channel.recv()
            except KeyboardInterrupt as exc:
                if cancelling is not None:
                    raise  # a second Ctrl-C: stop waiting for the cancel to be confirmed
                cancelling = exc
                continue
            except (OSError, EOFError, wire.ProtocolError) as exc:
                raise ConnectionError(f"the direct socket broke: {exc}") from exc
            kind = header["k"]
            if kind == "done" and fut._request_id is None:
                # A quick call: the server held its ``accepted`` back; the done names the request.
                item = header["items"][0]
                dispatcher.accepted([[cid, item["request_id"]]], item.get("version"))
            elif kind == "rejected" and not header.get("cids"):
                header = dict(header, cids=[cid])  # the socket itself was refused
            dispatcher.dispatch(header, body)
            if fut.done():
                if cancelling is not None:
                    raise cancelling
                return


class DirectPool:
    """Direct channels to one server, reused across calls (one per concurrently calling thread)."""

    def __init__(self, path: str, token: str, instance: str | None, buffer_nonce: str | None = None):
        self.path, self.token, self.instance, self.buffer_nonce = path, token, instance, buffer_nonce
        self._free: list[DirectChannel] = []
        self._lock = threading.Lock()
        self._closed = False

    def take(self) -> DirectChannel:
        with self._lock:
            if self._free:
                return self._free.pop()
        if not os.path.exists(self.path):
            raise DirectUnavailable(f"{self.path} does not exist")
        return DirectChannel(self.path, self.token, self.instance, self.buffer_nonce)

    def give_back(self, channel: DirectChannel) -> None:
        with self._lock:
            if not self._closed and len(self._free) < 8:
                self._free.append(channel)
                return
        channel.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            free, self._free = self._free, []
        for channel in free:
            channel.close()
