"""A lease's journal: the durable record of the invocations an environment ran for a client.

One file per lease, made by the server (``<data dir>/journal/<lease id>.jnl``, 0600), appended
to by the leased environment (:mod:`kernel_workers.lease`) and read by the server, which folds
its records into the store.  Records are :mod:`.wire` frames (JSON header, opaque body), so
the server never unpickles what an environment wrote; each is one ``write`` on an
``O_APPEND`` descriptor, so it is in the page cache, safe from the death of either process, the
moment it returns (as a commit at SQLite's synchronous=NORMAL is).  A record cut short (the
writer died inside its write) is never complete, so it reads as not written.

An invocation's output lines travel in its ``end`` record's header while they are few; a header
is metadata, refused over :data:`~.wire.MAX_HEADER_BYTES` (a corrupt journal), so an invocation that
printed more writes them first as ``lines`` records (``{request_id}``, body: the JSON list of
``[time, stream, line]``, about :data:`LINES_CHUNK_BYTES` each), in the same ``write`` as its end.

The same file is the lock that orders output (see :mod:`kernel_workers.lease`): an exclusive
``flock`` on it, taken by the environment to write a start record or drain its pipes, and by
the server (without waiting) to read a long invocation's pipes.
"""

from __future__ import annotations

import fcntl
import json
import os

from . import wire

SUFFIX = ".jnl"
#: an end record whose JSON would be larger than this carries its lines in ``lines`` records
#: (well under wire.MAX_HEADER_BYTES: the rest of the header, an error's stack trace, has room)
INLINE_BYTES = 256 << 10
#: the body of one ``lines`` record, about (bounded pieces: neither side holds one huge JSON text)
LINES_CHUNK_BYTES = 1 << 20


def lines_records(request_id: str, lines: list) -> bytes:
    """``lines`` records holding ``lines`` (``[time, stream, line]`` each), to write before the end."""
    out, chunk, size = [], [], 0
    for entry in lines:
        chunk.append(entry)
        size += len(entry[2]) + 40
        if size >= LINES_CHUNK_BYTES:
            out.append(wire.pack("lines", json.dumps(chunk, separators=(",", ":")).encode(),
                                 request_id=request_id))
            chunk, size = [], 0
    if chunk:
        out.append(wire.pack("lines", json.dumps(chunk, separators=(",", ":")).encode(),
                             request_id=request_id))
    return b"".join(out)


def parse_lines(body) -> list:
    """A ``lines`` record's lines, ``(time, stream, line)``; what is not one is left out (the
    server reads this JSON, never a pickle, as it reads headers)."""
    try:
        entries = json.loads(bytes(body))
    except ValueError:
        return []
    if not isinstance(entries, list):
        return []
    return [(e[0], e[1], e[2]) for e in entries if isinstance(e, list) and len(e) == 3
            and isinstance(e[0], (int, float)) and isinstance(e[1], str) and isinstance(e[2], str)]


class Reader:
    """The records of one journal, read incrementally from where the last read stopped."""

    def __init__(self, path: str):
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.decoder = wire.FrameDecoder()
        self.offset = 0
        self.error: wire.ProtocolError | None = None  # the bytes that were not records

    def read(self, limit: int | None = None, upto: int | None = None) -> list:
        """The records appended since the last call, as ``(header, body)``.

        ``limit``: at most this many (the rest are read by the next calls), so a reader that
        fell behind holds a bounded batch, not the whole backlog.  ``upto``: read no further
        into the file once this many of its bytes are read (records already decoded are still
        returned), so a caller that reads until a short batch stops where the file ended when
        it began, even while the writer keeps appending.

        Raises :class:`~kernel_workers.wire.ProtocolError` for bytes that are not records
        (an environment's handler wrote into the journal's descriptor), once the records
        before them were returned.
        """
        out = []
        decoder = self.decoder
        while True:
            frame = decoder.next_frame()
            while frame is not None:
                out.append(frame)
                if limit is not None and len(out) >= limit:
                    return out
                frame = decoder.next_frame()
            if self.error is not None:
                if not out:
                    raise self.error
                return out
            if upto is not None and self.offset >= upto:
                return out
            view = decoder.get_buffer()
            got = os.preadv(self.fd, [view], self.offset)
            del view
            if not got:
                return out
            self.offset += got
            try:
                decoder.buffer_updated(got)
            except wire.ProtocolError as exc:
                self.error = exc

    def try_lock(self) -> bool:
        """Take the output lock if it is free (never waits)."""
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def unlock(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class Locked:
    """``with Locked(fd):`` the output lock, waited for (the environment's side)."""

    __slots__ = ("fd",)

    def __init__(self, fd: int):
        self.fd = fd

    def __enter__(self):
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)


def create(directory: str, lease_id: str) -> str:
    """Make a new, empty journal file (0600) for ``lease_id``; its path."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.path.join(directory, lease_id + SUFFIX)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    return path


def leftovers(directory: str) -> list[str]:
    """Journal files a previous server left (oldest first): to fold at start."""
    try:
        names = [n for n in os.listdir(directory) if n.endswith(SUFFIX)]
    except FileNotFoundError:
        return []
    paths = [os.path.join(directory, n) for n in names]
    return sorted(paths, key=lambda p: os.stat(p).st_mtime)
