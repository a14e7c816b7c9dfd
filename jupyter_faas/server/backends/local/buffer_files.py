"""The server's directory of out-of-band buffer files (large arrays passed by file).

One directory, ``<data dir>/buffers`` (0700, files 0600), holds what
:mod:`kernel_workers.buffers` writes: ``arg-*`` files written by clients on this
machine (an invocation's argument buffers) and ``res-<request id>`` files written
by environments (a result's buffers).  A descriptor from a frame only ever names a
file *in* this directory; every name is checked before it is joined to the path.

Clients learn the directory from the (authenticated) status endpoint and prove
they share it by reading back the instance nonce the server writes here at start;
a client that cannot is remote and gets every byte inside its frames.

Lifetimes: an argument file lives while its invocation is queued or running (the
store names it in the row while queued, so a restart runs it); a result file lives
as long as its row, like the store's large-result files.  Anything else found at
start (a client that died between writing and sending, a result of an invocation
the server died under) is deleted, except spares.

Spares (``spare-*``, :data:`SPARES` of ``spare_bytes`` each): zero-filled files
with their pages already cached, which writers take and write over (see
:mod:`kernel_workers.buffers`).  A worker thread makes them once buffer files are
first used, and again whenever one was taken, so the cost of getting fresh pages
from the kernel is paid off the invocation's path; they are deleted when the server
stops.  They hold ``SPARES * spare_bytes`` of clean, reclaimable page cache (and as
much allocated disk, never written) only on a server whose clients send large
buffers: one that never sees an array pays nothing.

The server never unpickles these files; it only checks names and sizes, and
reads the bytes to forward them to a client that cannot map them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import stat
import threading
from pathlib import Path

from kernel_workers import buffers

from ....errors import InvalidParameter, ServerError

log = logging.getLogger("jupyter_faas.server")

NONCE_FILE = buffers.INSTANCE_FILE
#: Spare files kept ready: one for a call's argument and one for its result.
SPARES = 2


class BufferFiles:
    def __init__(self, directory: Path, spare_bytes: int = 0):
        self.dir = Path(directory)
        self.nonce = secrets.token_hex(16)
        self.spare_bytes = spare_bytes
        self._making_spares = False
        # Spares are made in a worker thread: the lock keeps one from landing after
        # drop_spares (the server stopping), which would leave it behind for good.
        self._spares_lock = threading.Lock()
        self._stopped = False
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.dir, 0o700)  # an existing directory too: the files are the user's data
            tmp = self.dir / f"{NONCE_FILE}.{os.getpid()}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(self.nonce)
            os.replace(tmp, self.dir / NONCE_FILE)
        except OSError as exc:
            raise ServerError(f"cannot prepare the buffer directory {self.dir}: {exc}; check the "
                              f"data dir's permissions, or pass --FaaSServer.share_buffers=False") from exc

    def info(self) -> dict:
        """What the status endpoint tells clients."""
        return {"dir": str(self.dir), "nonce": self.nonce}

    def path(self, name: str) -> Path:
        return self.dir / buffers.check_name(name)

    def check(self, descriptor, expected_name: str | None = None) -> int:
        """The bytes a descriptor's buffers hold, once its file is known to be here and long enough."""
        try:
            name = descriptor.get("file") if isinstance(descriptor, dict) else None
            if expected_name is not None and name != expected_name:
                raise buffers.BufferFileError(f"expected the buffer file {expected_name!r}, got {name!r}")
            path = self.path(name)
            end = max((offset + length for offset, length in buffers.spans_of(descriptor)), default=0)
            st = os.stat(path, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode):  # a symlink could point anywhere
                raise buffers.BufferFileError(f"{name!r} is not a regular file")
            size = st.st_size
        except (buffers.BufferFileError, OSError) as exc:
            raise InvalidParameter(
                f"the invocation's buffer file is not usable: {exc}. Files are only used between "
                f"processes of one machine; call again (a new client falls back to sending the data "
                f"inline when it cannot share {self.dir})") from exc
        if size < end:
            raise InvalidParameter(f"the buffer file {name!r} has {size} bytes, its descriptor needs {end}")
        return buffers.nbytes(descriptor)

    def views(self, descriptor) -> list:
        """Read-only views of a descriptor's buffers (to send them to a client that cannot map them)."""
        return buffers.map_views(self.path(descriptor.get("file")), descriptor, writable=False)

    def discard(self, descriptor) -> None:
        """Delete a descriptor's file, if it names one here (quietly: it may be gone already)."""
        try:
            os.unlink(self.path(descriptor.get("file")))
        except (buffers.BufferFileError, AttributeError, OSError):
            pass

    def discard_all(self, descriptors: list) -> None:
        for descriptor in descriptors:
            self.discard(descriptor)

    def replenish(self) -> None:
        """Make spares in a worker thread until there are :data:`SPARES` (a writer may have taken one)."""
        if not self.spare_bytes or self._making_spares or self._stopped:
            return
        try:
            have = sum(1 for n in os.listdir(self.dir) if n.startswith(buffers.SPARE_PREFIX)
                       and buffers.check_spare(n))
        except OSError:
            return
        if have >= SPARES:
            return
        self._making_spares = True
        made = asyncio.get_running_loop().run_in_executor(None, self._make_spares, SPARES - have)
        made.add_done_callback(self._spares_made)

    def _make_spares(self, count: int) -> None:
        for _ in range(count):
            with self._spares_lock:
                if self._stopped:
                    return
                buffers.make_spare(self.dir, buffers.SPARE_PREFIX + secrets.token_hex(8), self.spare_bytes)

    def _spares_made(self, made: asyncio.Future) -> None:
        self._making_spares = False
        if made.cancelled():
            return
        if made.exception() is not None:
            log.warning("cannot make spare buffer files in %s (%s); large buffers will be written "
                        "to new files", self.dir, made.exception())
            self.spare_bytes = 0
            return
        self.replenish()  # more may have been taken meanwhile

    def drop_spares(self) -> None:
        """Delete the spares and make no more (when stopping: they are quick to make, and hold
        memory and disk)."""
        with self._spares_lock:
            self._stopped = True
        for name in os.listdir(self.dir):
            if name.startswith(buffers.SPARE_PREFIX):
                try:
                    os.unlink(self.dir / name)
                except OSError:
                    pass

    def sweep(self, keep: set) -> int:
        """Delete every buffer file whose name is not in ``keep``, but spares (at start: nothing else runs)."""
        removed = 0
        for entry in os.scandir(self.dir):
            if (entry.name.startswith(NONCE_FILE) or entry.name in keep
                    or (entry.name.startswith(buffers.SPARE_PREFIX) and buffers.check_spare(entry.name))):
                continue
            try:
                os.unlink(entry.path)
                removed += 1
            except OSError as exc:
                log.warning("could not delete the stale buffer file %s: %s", entry.path, exc)
        return removed
