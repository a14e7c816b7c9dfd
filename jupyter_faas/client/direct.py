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
  server says how the invocation ended, then re-raises.  Reads wait in steps
  (:mod:`.waiting`), so an interrupt raised from another thread is seen at once too.
- A socket that breaks after the server accepted the call hands the future to the
  connection's re-attach (``watch`` over the websocket, through a server restart too).
- A socket that cannot be used before that falls back to the websocket.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time

from kernel_workers import wire

from . import waiting
from .dispatch import Dispatcher
from .lease import REFUSED_S, DirectBroke, NotStarted, request_lease
from .lease import call as leased_call

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
            header, _ = waiting.recv(self.channel)
        except (OSError, EOFError, wire.ProtocolError) as exc:
            sock.close()
            raise DirectUnavailable(f"cannot use {path}: {exc}") from exc
        # The socket of another server (a restart, another user's path) must not take calls.
        if header["k"] != "hello_ack" or (instance and header.get("instance") != instance):
            sock.close()
            raise DirectUnavailable(f"{path} belongs to another server")
        self.sock = sock
        self._cid = itertools.count(1)
        #: leases of this socket's thread, by (function, version): see .lease
        self.leases: dict = {}
        self._called: dict = {}   # (function, version) -> when last called; a lease is asked
        self._refused: dict = {}  # on the second call, and not again soon after a refusal
        #: request ids whose end was taken from their leased environment while the server was
        #: following them too: the server's ``done`` for them is not for a later call
        self.stale: set = set()

    def close(self) -> None:
        for lease in self.leases.values():
            lease.close()
        self.leases.clear()
        try:
            self.sock.close()
        except OSError:
            pass

    def drop_lease(self, lease) -> None:
        for key, held in list(self.leases.items()):
            if held is lease:
                del self.leases[key]
        lease.close()

    def _lease_for(self, function: str, version):
        """The lease to call ``function`` through, asked for on its second call; None: go the
        server's way (none granted, or the last ask was refused a moment ago)."""
        key = (function, version)
        lease = self.leases.get(key)
        if lease is not None:
            return lease
        now = time.monotonic()
        seen = self._called.get(key)
        self._called[key] = now
        if len(self._called) > 256:
            self._called.pop(next(iter(self._called)))
        if seen is None or now - self._refused.get(key, -REFUSED_S) < REFUSED_S:
            return None
        lease = request_lease(self, function, version)
        if lease is None:
            self._refused[key] = now
            return None
        self.leases[key] = lease
        return lease

    def call(self, fut, function: str, payload, *, encoding: str, version, logs: bool,
             lease: bool = True) -> None:
        """Run one invocation to its end, telling ``fut`` of its acceptance, lines and end.

        Raises :class:`DirectUnavailable` if it could not even be sent, and
        :class:`~.lease.DirectBroke` if the socket broke after it was (``fut`` then knows
        whether the server accepted it).
        """
        # Leased only for an engine version (an int: what a notebook handle calls; a qualifier
        # may move).  A call with arrays in a buffer file goes the server's way: the server plans its spare
        # files around the large calls it sees (measured: leased 100 MB calls left W4 a slow
        # repetition and slowed the next cold start), and 0.3 ms saved is nothing beside the copy.
        try:
            lease = (self._lease_for(function, version)
                     if lease and isinstance(version, int) and not payload.buffers else None)
        except (OSError, EOFError, wire.ProtocolError) as exc:
            # the socket broke while asking for a lease (the server is gone): nothing of the
            # call was sent, so the websocket may take it (and find the next server)
            raise DirectUnavailable(f"could not ask for a lease: {exc}") from exc
        if lease is not None:
            try:
                leased_call(self, lease, fut, payload, encoding=encoding, logs=logs)
                return
            except NotStarted:
                self.drop_lease(lease)  # nothing of it was recorded: the server's way below
            except DirectBroke:
                raise
            except (OSError, EOFError, wire.ProtocolError) as exc:
                raise DirectBroke(exc) from exc
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
                    self.channel.send("cancel", request_ids=[fut._request_id])
                    cancel_sent = True
                header, body = waiting.recv(self.channel, CANCEL_WAIT_S if cancel_sent else None)
            except KeyboardInterrupt as exc:
                if cancelling is not None:
                    raise  # a second Ctrl-C: stop waiting for the cancel to be confirmed
                cancelling = exc
                continue
            except (OSError, EOFError, wire.ProtocolError) as exc:
                raise DirectBroke(exc, cancelling) from exc
            kind = header["k"]
            if kind == "done" and self.stale:
                # the server's end of a call a leased environment answered first: not this one
                # (dropped with its bytes, so the others' offsets in the body stay right)
                items, parts, offset = [], [], 0
                view = memoryview(body)
                for item in header["items"]:
                    n = item["nbytes"]
                    if item["request_id"] in self.stale:
                        self.stale.discard(item["request_id"])
                    else:
                        items.append(item)
                        parts.append(view[offset:offset + n])
                    offset += n
                if not items:
                    continue
                header, body = dict(header, items=items), b"".join(parts)
            if kind == "done" and fut._request_id is None:
                if header.get("cid") != cid:
                    # Not this call's: a late end of an earlier call or watch on this socket
                    # (a map's leased item the server was following too), sent before it.
                    continue
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
        #: a finished map's leases, by (function, version), for the next map of it: back-to-back
        #: maps (a loop over batches) then skip the grant (a journal, a socket pair and two
        #: descriptor passes per lease) and never race their own leases' return to the pool.
        #: The server revokes one unused for 2 s (its environment closes the socket).
        self._kept: dict[tuple, list] = {}
        self._lock = threading.Lock()
        self._closed = False

    def keep_leases(self, key: tuple, leases: list) -> None:
        """Keep a finished map's idle ``leases`` (:class:`.lease.ClientLease`) for the next;
        those kept for other versions that the server revoked meanwhile are closed (a notebook
        that redefines its function maps new versions: the old ones' sockets would stay open)."""
        gone = []
        with self._lock:
            if self._closed:
                gone = list(leases)
            else:
                for other, held in list(self._kept.items()):
                    usable = [lease for lease in held if lease.usable()]
                    gone += [lease for lease in held if lease not in usable]
                    if usable:
                        self._kept[other] = usable
                    else:
                        del self._kept[other]
                self._kept.setdefault(key, []).extend(leases)
        for lease in gone:
            lease.close()

    def kept_leases(self, key: tuple, want: int) -> list:
        """Up to ``want`` kept leases of ``key`` still usable: one whose socket has anything to
        read was revoked or its environment died (it would only say so), so it is closed."""
        with self._lock:
            kept = self._kept.pop(key, [])
        usable = []
        for lease in kept:
            if len(usable) < want and lease.usable():
                usable.append(lease)
            else:
                lease.close()
        return usable

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
            kept, self._kept = self._kept, {}
        for channel in free:
            channel.close()
        for leases in kept.values():
            for lease in leases:
                lease.close()
