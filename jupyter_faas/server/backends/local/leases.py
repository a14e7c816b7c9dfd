"""The local backend's side of a lease: an idle environment handed to one client for a while.

:func:`grant` makes the lease's journal (:mod:`kernel_workers.journal`) and a socket pair, and
sends the environment its end with read ends of its own output pipes (the ``lease`` frame, then
the descriptors, as the zygote's fork); the client's end is returned for the engine to pass on.
While leased the server does not read the environment's pipes (the environment drains them at
the end of each invocation: :mod:`kernel_workers.lease`), except for a promoted invocation, whose
lines :meth:`EnvironmentLease.follow` reads as they come, under the journal's lock
(:mod:`.lease_output`), and at the environment's death, when the server drains them to their end.

:class:`EnvironmentLease` reads the journal for the engine (``poll`` then ``take``), knows which
invocation runs (its ``start`` without an ``end``), answers the environment's ``result_file``
for it, and says when the lease ended: the environment's ``lease_ended`` (the client let go, or
a revoke) or its death, with the :class:`~..base.Outcome` of what was running.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import socket
import time

from kernel_workers import journal, wire

from ..base import Outcome
from .lease_output import LeaseOutput, drain_dead

log = logging.getLogger("jupyter_faas.server")

#: a leased environment's pipes hold this much before a print blocks (the kernel's maximum
#: without privileges): the environment drains them at the end of each invocation
PIPE_BYTES = 1 << 20


class EnvironmentLease:
    def __init__(self, env, lease_id: str, path: str, client_sock: socket.socket):
        self.env = env
        self.id = lease_id
        self.path = path
        self.reader = journal.Reader(path)
        self.client_sock = client_sock   # the client's end, until the engine passed it on
        self.records: list = []          # read, not yet taken by the engine
        self.running: tuple | None = None  # (request_id, start header) of what runs now
        self.ended = False
        #: the engine's callback: on_end(lease) once the lease is over (the environment gave
        #: it back, or died: then ``death`` is set, and its Outcome's ``output`` is what the
        #: pipes held)
        self.on_end = None
        self.output = LeaseOutput(self)  # a promoted invocation's lines, read as they come
        #: () -> None: fold now (an invocation with an argument buffers' file ended, or one
        #: whose output the server read: its client waits for the server's done)
        self.on_fold = None
        self.death: asyncio.Future | None = None  # resolves to the running one's Outcome
        self.broken: str | None = None   # why the journal could not be read
        #: the INIT this lease's environment had not reported yet, sent with the lease (its
        #: first invocation carries it: kernel_workers/lease.py); ``init_lines`` of its output
        #: lines were the environment's orphan lines, taken once that invocation starts
        self.carries_init = False
        self.init_lines = 0

    # ---- the journal -----------------------------------------------------------------------

    def poll(self, limit: int | None = None, upto: int | None = None) -> int:
        """Read the records appended since the last poll (kept for :meth:`take`): at most
        ``limit``, and no further into the journal than ``upto`` bytes (:meth:`journal_size`),
        as :meth:`kernel_workers.journal.Reader.read`.  Returns how many were read."""
        if self.reader.fd is None or self.broken:
            return 0
        try:
            records = self.reader.read(limit, upto)
        except wire.ProtocolError:
            records = []
        if self.reader.error is not None:
            # Only the environment writes there: its handler wrote over the journal.  Its
            # records cannot be trusted from here on; what it ran ends with its death.
            self.broken = f"the journal of lease {self.id} is corrupt ({self.reader.error})"
            log.error("%s; stopping environment %s", self.broken, self.env.id)
            self.env.kill("protocol")
        for header, _ in records:
            if header["k"] == "start":
                self.running = (header.get("request_id"), header)
                if self.carries_init and header.get("init"):
                    # its first invocation carries INIT (duration, lines): no other one may
                    self.carries_init = False
                    self.env.fresh = False
                    del self.env.orphan_lines[:self.init_lines]
            elif header["k"] == "end":
                self.running = None
        self.records.extend(records)
        return len(records)

    def journal_size(self) -> int:
        """The journal's length now, in bytes (where a fold in batches stops reading)."""
        return 0 if self.reader.fd is None else os.fstat(self.reader.fd).st_size

    def take(self) -> list:
        records, self.records = self.records, []
        return records

    def follow(self, request_id: str, on_line) -> None:
        """Read the running ``request_id``'s output as it comes (it was promoted): each complete
        line to ``on_line(stream, line)``; a line begun waits for its end."""
        self.output.follow(request_id, on_line)

    def unfollow(self, lines: list) -> list:
        """The followed invocation ended with ``lines`` drained by the environment: those lines,
        with the server's begun line of each stream joined to its end."""
        return self.output.joined(lines)

    # ---- the environment's frames ----------------------------------------------------------

    def result_file(self, header: dict) -> None:
        """The leased environment asks for its running invocation's result file."""
        self.poll()
        rid = self.running[0] if self.running else None
        self.env._result_file(header, rid)

    def tell_reading(self, request_id: str) -> bool:
        """Say ``reading`` to the environment before the server first reads ``request_id``'s
        output (under the output lock: kernel_workers/lease.py); False when the frame could not
        be written whole at once (its control socket is full), and then nothing may be read."""
        writer = self.env.writer
        if self.ended or writer is None or writer.is_closing() or writer.get_write_buffer_size():
            return False
        writer.write(wire.pack("reading", request_id=request_id))
        return not writer.get_write_buffer_size()

    def revoke(self) -> None:
        """Ask the environment to give the lease back after what it runs (``lease_ended``)."""
        if not self.ended and self.env.writer is not None and not self.env.writer.is_closing():
            self.env.writer.write(wire.pack("revoke", lease_id=self.id))

    def given_back(self) -> None:
        """The environment's ``lease_ended``: every record is written."""
        self._end(None)

    def lost(self) -> None:
        """The environment died (or its link broke) while leased."""
        if self.ended:
            return
        started = self.running[1].get("t") if self.running else None
        loop = asyncio.get_running_loop()
        self.death = loop.create_future()

        async def outcome():
            out = await _death_outcome(self.env, started)
            if not self.death.done():
                self.death.set_result(out)
        self.env.pool.spawn(outcome())
        self._end(self.death)

    def _end(self, death) -> None:
        if self.ended:
            return
        self.ended = True
        self.output.stop()
        # The journal's last records are read by the engine's fold (on_end), in batches: not
        # here all at once (a client letting go after a map can leave thousands unread).
        env = self.env
        env.lease = None
        env.on_line = None
        if death is None and env.state == "leased":
            _take_pipes_back(env)
            env.state = "idle"
            env.last_used = time.monotonic()
        if self.on_end is not None:
            self.on_end(self)

    def close(self) -> None:
        """The engine has folded every record: forget the journal."""
        self.reader.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass
        if self.client_sock is not None:
            self.client_sock.close()
            self.client_sock = None
        # the output reader refers back to this lease: without the link both are freed now,
        # not when the cycle collector next runs (every lease's journal buffer meanwhile)
        self.output.on_line = None
        self.output.lease = None


async def _death_outcome(env, started_wall: float | None) -> Outcome:
    """How the invocation running in a leased environment that died ended (the server's own
    reading, as :meth:`.environment.Environment._ended` makes for an invocation it sent)."""
    memory = env.pool.memory
    peak = max(memory.peak_mb(env.id, env.pid, env.sampled_peak_mb, own_only=env.forked_from_template),
               env.peak_before_kill_mb)
    returncode = await env.wait_exit()
    # to their end: what it printed just before dying (sys.exit, os._exit, a kill) is in them,
    # and a begun line the server held is finished there; the engine logs them to what ran
    output = drain_dead(env)
    oom = env.killed_for == "oom" or memory.oom_killed(env.id)
    kind = {"timeout": "timeout", "cancelled": "cancelled"}.get(env.killed_for, "oom" if oom else "crash")
    duration = (time.time() - started_wall) * 1000 if started_wall else 0.0
    env.close()
    return Outcome(kind, duration_ms=duration, max_memory_mb=peak, returncode=returncode, output=output)


def _take_pipes_back(env) -> None:
    loop = asyncio.get_running_loop()
    for fd in env._pipes:
        loop.add_reader(fd, env._pipe_readable, fd)
        env._pipe_readable(fd)  # what a background thread printed after the last invocation


#: INIT output a lease frame carries at most (the rest is summed up in one line)
INIT_LINES_BYTES = 1 << 20


def init_record(env, init_start: str | None) -> dict | None:
    """The cold start ``env`` has not reported in an invocation yet (``fresh``): ``{ms, lines}``,
    its Init Duration and its INIT lines (``INIT_START``, then what INIT printed: its orphan
    lines), for the lease's first invocation to carry, as the server's path's first one does."""
    if not env.fresh or env.init_ms is None or not init_start:
        return None
    lines, size = [[time.time(), "platform", init_start]], 0
    for n, (ts, stream, line) in enumerate(env.orphan_lines):
        size += len(line) + 32
        if size > INIT_LINES_BYTES:
            lines.append([ts, "platform", f"[{len(env.orphan_lines) - n} more INIT lines not kept]"])
            break
        lines.append([ts, stream, line])
    return {"ms": env.init_ms, "lines": lines}


def grant(env, lease_id: str, directory: str, fields: dict) -> EnvironmentLease | None:
    """Lease the idle environment ``env`` (the pool reserved it); None if its control socket
    cannot take the frame now (then it is still the pool's, idle).  ``fields["init_start"]``:
    the ``INIT_START`` line of the function, logged first by the invocation that carries a cold
    start the environment has not reported yet (see :func:`init_record`)."""
    ctl = env.ctl
    if ctl is None or env.writer is None or env.writer.get_write_buffer_size():
        return None
    path = journal.create(directory, lease_id)
    client, theirs = socket.socketpair()
    loop = asyncio.get_running_loop()
    for fd in env._pipes:
        env._pipe_readable(fd)   # lines printed since the last invocation stay orphans (INIT's)
        loop.remove_reader(fd)
        try:
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:
            pass
    pipes = [os.dup(fd) for fd in env._pipes]
    fields = dict(fields)
    init = init_record(env, fields.pop("init_start", None))
    frame = wire.pack("lease", **dict(fields, lease_id=lease_id, journal=path,
                                      cgroup=env.pool.memory.cgroup_dir(env.id),
                                      own_only=env.forked_from_template, init_type=env.init_type,
                                      init=init))
    try:
        ctl.setblocking(True)
        try:
            ctl.sendall(frame)
            socket.send_fds(ctl, [b"L"], [theirs.fileno(), *pipes])
        finally:
            ctl.setblocking(False)
    except OSError as exc:
        log.warning("could not lease environment %s: %s", env.id, exc)
        client.close()
        os.unlink(path)
        for fd in env._pipes:
            loop.add_reader(fd, env._pipe_readable, fd)
        return None
    finally:
        theirs.close()
        for fd in pipes:
            os.close(fd)
    lease = EnvironmentLease(env, lease_id, path, client)
    if init is not None:
        lease.carries_init, lease.init_lines = True, len(env.orphan_lines)
    env.lease = lease
    env.state = "leased"
    return lease
