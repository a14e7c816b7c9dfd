"""The direct socket: the invocation protocol over a Unix socket, for clients on this machine.

A sync call is what users feel most: the notebook thread waits for it.  Over the
websocket it crosses the client's IO thread twice and pays tornado's websocket
framing both ways; over this socket the calling thread itself writes the frame
and reads the answer, and the server parses frames straight from the socket.

The frames and their meaning are exactly the websocket's
(:class:`~jupyter_faas.server.protocol.session.InvocationSession`), but for one shortcut
and one more frame.  The shortcut: a sync call's ``accepted`` is held back ``ACCEPTED_DELAY_S``;
a call that ends within it gets only its ``done``, with ``cid`` (the client id it was sent
as) in the header, so the client knows the done is its call's and not a late one of an
earlier call or watch on this socket.

  client -> server  ``hello {token, buffers?}``  must be the first frame; ``buffers`` is the
                    server's buffer-directory nonce when the client maps buffer files
  server -> client  ``hello_ack {instance}``  (or ``rejected`` and the socket closes)
  client -> server  ``lease {function, version, want}``  lease up to ``want`` warm environments
  server -> client  ``lease_failed {count, init_failure?}``: an environment started for the map
                    could not be leased; ``init_failure``, a token: its INIT failed, and the
                    map's next item is sent the server's way with ``init_failure`` in its
                    ``invoke`` frame, to fail with that INIT's error (engine/leases.py)
  server -> client  ``leases {items: [info, ...], error?}``, then (when ``items``) a one-byte
                    message carrying one socket per item (``socket.send_fds``): the client's end
                    to each leased environment (engine/leases.py; the frames on it:
                    kernel_workers/lease.py).  ``info``: lease_id, environment_id, function,
                    version, lambda_version, memory_mb, timeout_s, pid (the environment's).  Only over this socket: the
                    descriptors need a Unix socket, and the client on this machine.

The socket lives in a private directory (0700) made for this server
(``<tmp>/jupyter_faas-direct-<pid>-*``; a starting server removes those whose server is gone),
and the token
is checked as on every other endpoint: a process of another user cannot connect,
and one of this user still needs the token.  Its path is published by the
authenticated status endpoint, never in a world-readable place.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import secrets
import shutil
import socket
import struct
import termios

from kernel_workers import wire

from ... import paths

from ...errors import FaaSError
from .session import InvocationSession

log = logging.getLogger("jupyter_faas.server")

#: a sync call that has not ended this long after it was accepted is told its request id
ACCEPTED_DELAY_S = 0.005
#: a peer that has not said hello yet may send no more than this in a frame
HELLO_MAX_BYTES = 64 << 10
#: leases wait at most this long (seconds) for a client to read what its socket holds before
#: they are passed, looking again every PASS_RETRY_S; then they are given back
PASS_WAIT_S = 5.0
PASS_RETRY_S = 0.005


class DirectSession(asyncio.BufferedProtocol, InvocationSession):
    """One client's socket.  Reads go straight into the frame decoder's buffer (a plain
    ``Protocol`` would have asyncio allocate, shrink and free a 256 KiB bytes object per
    read: three system calls per sync call)."""

    def __init__(self, service, token: str, instance: str, max_frame: int):
        self.service = service
        self.max_frame = max_frame
        self.token = token
        self.instance = instance
        self.transport = None
        self.authenticated = False
        # Until hello, a frame may be at most HELLO_MAX_BYTES (refused from its length prefix).
        self._decoder = wire.FrameDecoder(max_frame=HELLO_MAX_BYTES)
        self._held = None  # an ``accepted`` not sent yet, and its timer
        self._held_timer = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.open()

    def connection_lost(self, exc) -> None:
        if self._held_timer is not None:
            self._held_timer.cancel()
        self.on_close()

    def send(self, kind: str, body: bytes = b"", **fields) -> None:
        if self.closed or self.transport.is_closing():
            return
        if kind == "accepted":
            # Most sync calls end within a few ms: then ``done`` (which names the request)
            # is the only frame, one write and one read instead of two.  A longer call hears
            # of its acceptance after ACCEPTED_DELAY_S (for Ctrl-C and re-attach).
            self._held = (body, fields)
            self._held_timer = asyncio.get_running_loop().call_later(ACCEPTED_DELAY_S, self._send_held)
            return
        if self._held is not None:
            self._held_timer.cancel()
            held_items = self._held[1]["items"]
            if (kind == "done" and len(held_items) == 1 and len(fields["items"]) == 1
                    and fields["items"][0]["request_id"] == held_items[0][1]):
                # The held call's own end: the done stands for both, naming its client id.
                self._held = None
                fields = dict(fields, cid=held_items[0][0])
            else:
                # Log lines, or the end of another call (a watch's, an earlier call's): the
                # client must know the call is accepted first.
                self._send_held()
        self._write(kind, body, fields)

    def _send_held(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self.closed and not self.transport.is_closing():
            self._write("accepted", held[0], held[1])

    def _write(self, kind: str, body, fields: dict) -> None:
        prefix, payload = wire.pack_parts(kind, body, **fields)
        if len(payload) < 65536:
            self.transport.write(prefix + bytes(payload))  # one send for the usual small frame
        else:
            self.transport.write(prefix)
            self.transport.write(payload)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._decoder.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        if self.closed:
            return
        decoder = self._decoder
        try:
            decoder.buffer_updated(nbytes)
        except wire.FrameTooLarge as exc:
            return self._refuse("RequestTooLargeException",
                                f"a frame of {exc.size} bytes is larger than this socket takes "
                                f"({exc.limit}); raise --FaaSServer.max_payload_mb")
        except wire.ProtocolError as exc:
            return self._refuse("ProtocolError", str(exc))
        while not self.closed:
            frame = decoder.next_frame()
            if frame is None:
                return
            header, body = frame
            if self.authenticated:
                if header["k"] == "lease":
                    self._lease(header)
                else:
                    self.on_frame(header, memoryview(body))
            elif header["k"] == "hello" and secrets.compare_digest(
                    str(header.get("token", "")).encode(), self.token.encode()):
                self.authenticated = True
                decoder.max_frame = self.max_frame
                self.shares_files(header.get("buffers"))
                self.send("hello_ack", instance=self.instance)
            else:
                return self._refuse("AccessDeniedException",
                                    "a valid token is required: send hello {token} first")

    def _lease(self, header: dict) -> None:
        """Grant leases and pass each environment's socket to the client (see the module doc)."""
        self._send_held()
        want = header.get("want", 1)
        if not isinstance(want, int) or isinstance(want, bool):
            self.send("leases", items=[], error={"errorType": "InvalidParameterValueException",
                                                 "errorMessage": f"want must be an integer, not {want!r}"})
            return
        try:
            granted, starting = self.service.grant_leases(
                header.get("function"), header.get("version"), want,
                self._pass_started if header.get("start") else None)
        except FaaSError as exc:
            self.send("leases", items=[], error={"errorType": exc.error_type, "errorMessage": exc.message})
            return
        self._pass_leases(granted, starting=starting)

    def _pass_started(self, granted: list, init_failure: str | None = None) -> None:
        """An environment started for this client's map is leased (``granted``) or failed (``[]``;
        ``init_failure``: its INIT failed, the token the map's next item claims the failure with)."""
        if granted:
            self._pass_leases(granted, started=True)
        elif not self.closed and not self.transport.is_closing():
            self.send("lease_failed", count=1, **({"init_failure": init_failure} if init_failure else {}))

    def _pass_leases(self, granted: list, deadline: float | None = None, **fields) -> None:
        """Send ``leases`` and, right after it, the client's ends of the granted environments'
        sockets.  Written straight to the socket (asyncio's transport does not pass descriptors)
        and only when nothing is unread in it: a blocking write to a client that was not reading
        (its map's driver waiting on an HTTP answer from this very loop) stopped the whole
        server.  Until then it waits, up to PASS_WAIT_S; then the leases are given back."""
        if not granted:
            self.send("leases", items=[], **fields)
            return
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + PASS_WAIT_S
        granted = [(info, h) for info, h in granted if h.client_sock is not None]  # none ended meanwhile
        handles = [handle for _, handle in granted]
        sent = False
        if granted and not self.closed and not self.transport.is_closing():
            # The transport's own socket, duplicated: asyncio's wrapper does not pass descriptors.
            sock = socket.socket(fileno=os.dup(self.transport.get_extra_info("socket").fileno()))
            try:
                if self.transport.get_write_buffer_size() or _unread(sock):
                    if loop.time() < deadline:
                        loop.call_later(PASS_RETRY_S, lambda: self._pass_leases(granted, deadline, **fields))
                        return
                else:
                    # an empty socket takes the frame (at most MAX_LEASES infos, tens of KB)
                    # and the descriptors' byte without blocking
                    sock.setblocking(True)
                    sock.sendall(wire.pack("leases", items=[info for info, _ in granted], **fields))
                    socket.send_fds(sock, [b"L"], [h.client_sock.fileno() for h in handles])
                    sent = True
            except OSError as exc:
                log.warning("could not pass leases to a client: %s", exc)
            finally:
                sock.setblocking(False)
                sock.close()
        for handle in handles:
            handle.client_sock.close()  # the client's now (or nobody's: its environment sees the
            handle.client_sock = None   # socket close and gives the lease back)
        if not sent:
            self.send("leases", items=[], **fields)

    def _refuse(self, error_type: str, message: str) -> None:
        self.send("rejected", cids=[], error={"errorType": error_type, "errorMessage": message})
        self.closed = True
        self.transport.close()


def _unread(sock: socket.socket) -> int:
    """Bytes written to ``sock`` that its peer has not read yet (Linux's SIOCOUTQ)."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]


class DirectServer:
    """Listens on ``<private dir>/direct.sock`` for this server's lifetime."""

    def __init__(self, service, token: str, instance: str, max_frame: int):
        self.service = service
        self.token = token
        self.instance = instance
        self.max_frame = max_frame
        # 0700 by mkdtemp, named with this server's pid: a server that starts removes those of
        # servers that died without removing theirs (SIGKILL)
        self.dir = paths.scratch_dir("direct")
        self.path = os.path.join(self.dir, "direct.sock")
        self.server = None

    async def start(self) -> str:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_unix_server(
            lambda: DirectSession(self.service, self.token, self.instance, self.max_frame), self.path)
        os.chmod(self.path, 0o600)
        return self.path

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        shutil.rmtree(self.dir, ignore_errors=True)
