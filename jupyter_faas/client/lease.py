"""Sync calls through a leased environment: the warm path with two process hops, not four.

A thread that keeps calling the same function asks the server (over its direct socket:
:mod:`jupyter_faas.server.protocol.direct`) for a lease on an idle warm environment of it, and
gets a socket to that environment.  Each call then goes straight there and its answer comes
straight back; the environment records it in the lease's journal before running it and before
answering, and the server folds the journal into its store (:mod:`jupyter_faas.server.engine.leases`;
the frames: :mod:`kernel_workers.lease`).  Everything else stays as on the server's path:

- A call that has not ended after ``WATCH_AFTER_S`` is *watched* through the server too
  (``watch``): the server then follows it as its own, so its lines stream live, Ctrl-C
  cancels it (the server kills the environment) and the view shows it.
- An end the environment cannot judge alone (``ended``: timed out, over its memory; or a
  call whose output the server read as it came, so only the server has every line), and a
  lease that breaks mid-call (the environment died, or was killed for the call), are asked of
  the server (``watch``), which knows from the journal whether it started and how it ended.
- A call the environment never started (``not_started``, or the server has no record of it) was
  never accepted: it goes the server's way, as if there had been no lease.
"""

from __future__ import annotations

import socket
import time

from kernel_workers import reports, wire

from . import waiting
from .dispatch import Dispatcher

#: a leased call not ended after this long is followed through the server as well
WATCH_AFTER_S = 0.005
#: after a refused lease request, calls go the server's way this long before asking again
REFUSED_S = 0.5


class NotStarted(Exception):
    """The leased environment never started the call (nothing was recorded): send it otherwise."""


class DirectBroke(ConnectionError):
    """The direct socket to the server broke after the call was sent: the connection follows
    the call over the websocket instead.  ``interrupted``: the KeyboardInterrupt that came
    while waiting, for the connection to raise once it does (an interrupt is never lost)."""

    def __init__(self, exc: BaseException, interrupted: BaseException | None = None):
        super().__init__(f"the direct socket broke: {exc}")
        self.interrupted = interrupted


class ClientLease:
    """The client's end of one lease: the socket to its environment, and what it is for."""

    def __init__(self, info: dict, sock: socket.socket):
        self.info = info
        self.sock = sock
        self.channel = wire.BlockingChannel(sock)
        #: request ids whose end came from the server instead: the environment's done is stale
        self.stale: set = set()

    @property
    def version(self):
        return self.info["version"]

    def usable(self) -> bool:
        """Nothing unread on it, buffered or on its socket: an idle lease the environment still
        serves (a revoked or dead one's socket reads its last frames, or its end)."""
        if self.channel.pending_bytes():
            return False
        try:
            return not waiting.readable([self.sock], 0)
        except OSError:
            return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def request_lease(direct, function: str, version) -> ClientLease | None:
    """Ask the server over ``direct`` (a :class:`.direct.DirectChannel`, idle) for one lease."""
    channel = direct.channel
    channel.send("lease", function=function, version=version, want=1)
    channel.buffered = False  # the descriptors follow the answer: read no byte past it
    try:
        header, _ = waiting.recv(channel)
        while header["k"] != "leases":  # a late frame of an earlier call (its log lines)
            header, _ = waiting.recv(channel)
        leases = take_leases(direct, header)
    finally:
        channel.buffered = True
    for extra in leases[1:]:
        extra.close()
    return leases[0] if leases else None


def take_leases(direct, header: dict) -> list[ClientLease]:
    """The leases a ``leases`` frame announced, with their sockets (the one-byte message of
    descriptors that follows it on ``direct``'s socket, read unbuffered)."""
    items = header.get("items") or []
    if not items:
        return []
    _, fds, _, _ = socket.recv_fds(direct.sock, 1, len(items))
    out = []
    for info, fd in zip(items, fds):
        sock = socket.socket(fileno=fd)
        sock.setblocking(True)
        out.append(ClientLease(info, sock))
    return out


def call(direct, lease: ClientLease, fut, payload, *, encoding: str, logs: bool) -> None:
    """Run one invocation through ``lease`` to its end, telling ``fut`` as the server's path does.

    Raises :class:`NotStarted` when it never started (then nothing of it exists anywhere), and
    :class:`DirectBroke` when the server's socket broke while it was asked about the call.
    """
    rid = reports.new_request_id()
    cid = next(direct._cid)
    dispatcher = Dispatcher(cancel=lambda rids: direct.channel.send("cancel", request_ids=rids))
    dispatcher.expect(cid, fut)
    item = [rid, len(payload.data), getattr(fut, "input_summary", "") or ""]
    if payload.buffers:
        item.append(payload.buffers)
    try:
        lease.channel.send("invoke", payload.data, encoding=encoding, items=[item])
    except OSError as exc:
        raise NotStarted(f"the leased environment is gone: {exc}") from exc
    accepted = False
    watching = False     # the server was asked to follow it (its answer counts from then on)
    watch_at = time.monotonic() + WATCH_AFTER_S
    lease_open = True
    cancelling = None
    told_ended = False   # the environment said ``ended``: no done of its own will come

    def accept():
        nonlocal accepted
        if not accepted:
            accepted = True
            dispatcher.accepted([[cid, rid]], lease.version)

    def to_server(kind: str, **fields) -> None:
        try:
            direct.channel.send(kind, **fields)
        except OSError as exc:
            raise DirectBroke(exc, cancelling) from exc

    def watch():
        nonlocal watching
        if not watching:
            watching = True
            to_server("watch", request_ids=[rid], logs=logs)

    while True:
        try:
            if cancelling is not None and not watching:
                watch()
            source, header, body = _next(direct, lease if lease_open else None, watching,
                                         None if watching or cancelling else max(0.0, watch_at - time.monotonic()))
        except KeyboardInterrupt as exc:
            if cancelling is not None:
                raise
            cancelling = exc
            fut._cancel_requested = True
            try:
                lease.channel.send("cancel", request_ids=[rid])
            except OSError:
                pass
            accept()
            to_server("cancel", request_ids=[rid])
            continue
        except DirectBroke:
            raise
        except (OSError, EOFError, wire.ProtocolError) as exc:
            if getattr(exc, "faas_source", None) != "lease":
                raise DirectBroke(exc, cancelling) from exc
            lease_open = False  # the environment died or closed: the server knows what ran
            direct.drop_lease(lease)
            watch()
            continue
        if source is None:  # still running: follow it through the server as well
            accept()
            watch()
            continue
        kind = header["k"]
        if source == "lease":
            if kind == "done":
                mine = None
                for entry in header["items"]:
                    if entry["request_id"] == rid:
                        mine = entry
                    else:
                        lease.stale.discard(entry["request_id"])
                if mine is None:
                    continue
                accept()
                if watching:
                    direct.stale.add(rid)  # the server's done for it comes later: not for the next call
                    mine.pop("init_logs", None)  # the server sent them live, before its START
                dispatcher.dispatch(header, body)
            elif kind == "ended":
                if rid not in header.get("request_ids", ()):
                    continue
                told_ended = True
                accept()
                watch()  # the server judges it (or has lines it alone read); its done is the answer
                continue
            elif kind == "not_started":
                if rid in header.get("request_ids", ()):
                    if cancelling is not None:
                        fut._finish_cancelled(fut._cancelled_error())
                        raise cancelling
                    direct.drop_lease(lease)
                    raise NotStarted("the leased environment did not start it")
                continue
        else:
            if kind == "unknown" and rid in header.get("request_ids", ()):
                if not lease_open:
                    if cancelling is not None:
                        fut._finish_cancelled(fut._cancelled_error())
                        raise cancelling
                    raise NotStarted("the leased environment ended before it started the call")
                watching = False  # not in its journal yet: ask again a little later
                watch_at = time.monotonic() + 0.05
                continue
            if kind == "done":
                if not any(entry["request_id"] == rid for entry in header["items"]):
                    continue
                accept()
                if not told_ended:
                    lease.stale.add(rid)  # the environment's own done (if it sends one) is stale
            dispatcher.dispatch(header, body)
        if fut.done():
            if cancelling is not None:
                raise cancelling
            return


def _next(direct, lease, watching: bool, timeout: float | None):
    """The next frame from the lease (or, when watching, the server): ``(source, header, body)``;
    ``(None, None, None)`` when ``timeout`` passed first.  A broken socket's error carries
    ``faas_source``.  Waits in steps (:mod:`.waiting`): an interrupt_main() is seen at once."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if lease is not None:
            while True:
                frame = lease.channel.pending()
                if frame is None:
                    break
                if frame[0]["k"] == "done" and all(e["request_id"] in lease.stale for e in frame[0]["items"]):
                    for e in frame[0]["items"]:
                        lease.stale.discard(e["request_id"])
                    continue
                return ("lease", *frame)
        if watching:
            frame = direct.channel.pending()
            if frame is not None:
                return ("direct", *frame)
        socks = ([lease.sock] if lease is not None else []) + ([direct.sock] if watching else [])
        if not socks:
            return None, None, None
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready = waiting.in_steps(waiting.readable, left, socks)
        if not ready:
            return None, None, None
        for sock in ready:
            channel = lease.channel if lease is not None and sock is lease.sock else direct.channel
            try:
                channel.fill()
            except (OSError, EOFError, wire.ProtocolError) as exc:
                exc.faas_source = "lease" if channel is not direct.channel else "direct"
                raise
