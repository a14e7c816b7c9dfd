"""A leased environment's output while the server reads it: a promoted invocation, and a death.

While leased, an environment drains its own pipes at the end of each invocation
(:mod:`kernel_workers.lease`).  Once the engine promotes a long invocation, the server reads them
as its own path does (:mod:`.environment`): when they are readable, not once a tick, so a
handler that prints fast never stalls on a full pipe.  Both sides read only under the journal's
``flock``: the server takes it without waiting, and when the environment holds it (it drains for
its end record) the server pauses for :data:`PAUSE_S` rather than spin on a readable pipe.

Before its first read of an invocation's output the server tells the environment (``reading``,
under the lock), so the environment, ending it, sends its client to the server for the end
instead of answering with only its own share of the lines.

A line the server has begun (no newline yet) stays in its buffer, never emitted cut as a whole
line: if the environment drains the rest, the first line it drained of that stream is the same
line's end, joined at the end record (:meth:`LeaseOutput.joined`); if the environment dies, the
server drains the pipes itself (:func:`drain_dead`) into the same buffers.
"""

from __future__ import annotations

import asyncio
import time

from .environment import MAX_LINE

#: how long the server leaves the pipes alone when the environment holds the output lock
PAUSE_S = 0.005


class LeaseOutput:
    """The server's reading of one leased environment's pipes for the invocation it follows."""

    def __init__(self, lease):  # lease: .leases.EnvironmentLease
        self.lease = lease
        self.request_id: str | None = None  # the promoted invocation whose lines are read
        self.on_line = None
        self._paused = None
        self._watching = False  # its readers are on the pipes (never remove the environment's own)
        self._told: str | None = None  # the request id the environment was told is being read

    def follow(self, request_id: str, on_line) -> None:
        """Read the pipes as they fill, ``on_line(stream, line)`` for ``request_id``'s lines."""
        if self.lease.ended:
            return
        self.request_id, self.on_line = request_id, on_line
        self._watch()

    def stop(self) -> None:
        """Read no more (what was begun stays in the buffers: for :meth:`joined` or a drain)."""
        self.request_id = self.on_line = None
        self._unwatch()

    def joined(self, lines: list) -> list:
        """The followed invocation ended: ``lines`` (``(time, stream, line)``, what the environment
        drained into its end record) with the line the server had begun of each stream joined
        to its end, the first drained line of that stream (or, if none, kept as it stands)."""
        self.stop()
        out = list(lines)
        for fd, (stream, buf) in self.lease.env._pipes.items():
            if not buf:
                continue
            begun = bytes(buf).decode("utf-8", "replace")
            buf.clear()
            at = next((i for i, entry in enumerate(out) if entry[1] == stream), None)
            if at is None:  # unterminated to the end: a line of its own, as the server's path keeps it
                out.insert(0, (time.time(), stream, begun))
                continue
            ts, _, rest = out[at]
            text = begun + rest
            out[at:at + 1] = [(ts, stream, text[i:i + MAX_LINE]) for i in range(0, len(text), MAX_LINE)]
        return out

    # ---- reading -----------------------------------------------------------------------------

    def _watch(self) -> None:
        self._paused = None
        self._watching = True
        loop = asyncio.get_running_loop()
        for fd in self.lease.env._pipes:
            loop.add_reader(fd, self._readable, fd)

    def _unwatch(self) -> None:
        if self._paused is not None:
            self._paused.cancel()
            self._paused = None
        if not self._watching:
            return  # the pipes may be the environment's again (the lease ended): its readers stay
        self._watching = False
        loop = asyncio.get_running_loop()
        for fd in self.lease.env._pipes:
            loop.remove_reader(fd)

    def _pause(self) -> None:
        """Leave the pipes alone for PAUSE_S, then read them again."""
        self._unwatch()
        self._paused = asyncio.get_running_loop().call_later(PAUSE_S, self._resume)

    def _resume(self) -> None:
        self._paused = None
        if self.request_id is not None and not self.lease.ended:
            self._watch()

    def _readable(self, fd: int) -> None:
        lease, env = self.lease, self.lease.env
        if fd not in env._pipes or self.request_id is None:
            return
        if lease.reader.fd is None or not lease.reader.try_lock():
            # the environment drains its pipes (its invocation is ending) or writes a start
            return self._pause()
        before = env.on_line
        try:
            lease.poll()  # under the lock: what runs cannot change while its lines are read
            if lease.running is None or lease.running[0] != self.request_id:
                # it ended: the environment drained the rest into its end record (joined there)
                self._unwatch()
                return
            if self._told != self.request_id:
                # Said before the first read, under the lock: at its end the environment then
                # knows its own lines are not all of them (kernel_workers/lease.py, "reading").
                if not lease.tell_reading(self.request_id):
                    return self._pause()
                self._told = self.request_id
            env.on_line = self.on_line
            env._pipe_readable(fd)  # complete lines out; a begun line stays in the buffer
        finally:
            env.on_line = before
            lease.reader.unlock()


def drain_dead(env) -> list:
    """What a dead leased environment's pipes hold, to their end (EOF, or nothing more to read
    now when a process it left holds a write end), as ``(time, stream, line)``; a begun line
    (the server's buffer, or unterminated at the death) is a line of its own."""
    out = []
    env.on_line = lambda stream, line: out.append((time.time(), stream, line))
    try:
        env.drain()
    finally:
        env.on_line = None
    return out
