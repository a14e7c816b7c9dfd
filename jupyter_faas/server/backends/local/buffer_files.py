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
the server died under, spares) is deleted (:meth:`BufferFiles.sweep`); while the
server runs, what no row and no live invocation names and nothing touched for a while
is (:meth:`BufferFiles.stale`, swept by :func:`..engine.recovery.sweep_periodically`).

Spares (``spare-<bytes>-<random>``): files with their pages already cached, zeros or
a spent argument's file no process maps any more, which writers take and write over
(see :mod:`kernel_workers.buffers`), so the cost of getting fresh pages from the
kernel (hundreds of ms for 100 MB on a VM whose host takes back freed memory) is paid
off the invocation's path.  They follow recent use (:meth:`BufferFiles.plan`): as
large as the largest buffer file of the last ``keep_s`` seconds; while large files keep
coming (:data:`ACTIVE_S`), :data:`RUN_SPARES` plus two per large file used in the last
:data:`BURST_S` seconds are made (from the first large file on: a run of large calls
starts with one, and the spares must be there before its next calls), else
:data:`MIN_SPARES`; at most :data:`MAX_SPARES`, within ``budget`` bytes in all.  Those
made are kept (within that) until ``keep_s`` (the pool's idle timeout) passes without a
large buffer, so the next run starts with them; none on a server that saw no large
buffer for ``keep_s``, or ever.  A thread of their own makes them, one at a time,
whenever fewer are ready than that, and :meth:`BufferFiles.replenish` (each large call,
and the pool's reaper) deletes those the plan no longer wants (too small, too many for
the budget, or all after ``keep_s``).  Large calls back to back reuse their arguments' files;
each large result needs fresh pages (it stays, with its row), so a long enough run of
them outpaces the thread: a writer that finds no spare takes one still being made
(``.partial``, see :mod:`kernel_workers.buffers`) and shares its fresh pages with the
thread, or else writes into fresh pages itself.

Fresh pages are the machine's scarcest thing here (on a VM whose host takes freed memory
back, ~2 ms a MB of a core, and they slow every other process getting fresh pages, like
a cold start's fork), so the thread makes spares when nothing more urgent wants them: it
pauses, between 2 MB reads, while an environment starts (:meth:`BufferFiles.hold`; a
cold start's latency is the pool's promise) unless a large argument is in flight (then
the burst it belongs to needs the spares more), and for :data:`YIELD_S` after, and after
a writer takes a spare while another is ready (a run of large calls back to back then
writes without a maker beside it).  The directory is watched (:mod:`.dir_watch`): a client
writing a large argument is seen as it starts writing, not when its invocation arrives.

An environment does not take a spare itself: it asks for its result's file
(:meth:`BufferFiles.provide`), which is a spare renamed, or a file this process
makes.  Either way the result's page cache was charged to the server when it was
first touched, never to the function's memory cgroup: a large result does not
count against the function's Max Memory Used, nor push it towards its limit.

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
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kernel_workers import buffers

from ....errors import InvalidParameter, ServerError
from .dir_watch import DirWatch

log = logging.getLogger("jupyter_faas.server")

NONCE_FILE = buffers.INSTANCE_FILE
#: Spares kept while large buffers are in use: one for a call's argument, one for its result.
MIN_SPARES = 2
#: ... and made while large buffers keep coming: this many, plus two per large file of the
#: last BURST_S (a run of large calls is likely to follow its first; each result keeps a spare)
RUN_SPARES = 4
#: At most this many, however many large calls come back to back.
MAX_SPARES = 8
#: Two spares per large buffer file used within this many seconds.
BURST_S = 10.0
#: ... while the burst goes on: once no large buffer came for this long, no more than
#: MIN_SPARES are made (those ready are kept), so the spares of a burst that ended are not
#: made after it (100 MB of fresh pages costs a core ~250 ms here, which cold starts share)
ACTIVE_S = 2.0
#: Spares made at once, in a thread of their own: two make them faster, but their page faults
#: then slow the writers down more than the spares they add save (measured on 2 cores)
MAKERS = 1
#: Spares are not made for this long after an environment started or a writer took a spare
#: (cold starts come in runs, and so do large calls: the next is likely within this).
YIELD_S = 0.03
#: A large argument counts as in flight (its invocation queued or running) at most this long.
IN_FLIGHT_S = 60.0
#: Spare sizes are rounded up to this.
SPARE_ROUND = 1 << 20
#: The uses remembered (each a name, a time and a size).
RECENT_KEPT = 64


class BufferFiles:
    def __init__(self, directory: Path, budget: int = 0, keep_s: float = 300.0, clock=time.monotonic):
        self.dir = Path(directory)
        self.nonce = secrets.token_hex(16)
        #: the most bytes the spares may hold together (0: no spares)
        self.budget = budget
        self.keep_s = keep_s
        self.clock = clock
        #: large buffer files used lately: name -> (time, file size)
        self._recent: "OrderedDict[str, tuple[float, int]]" = OrderedDict()
        self._making = 0  # spares being made by worker threads
        #: the thread that makes spares (its own: it may be busy for a while)
        self._makers = ThreadPoolExecutor(MAKERS, "spare-buffers")
        self._dropping = False  # a worker thread is deleting spares
        #: what the last plan said: (the largest recent file, the size of spares made, count)
        self._plan = (0, 0, 0)
        self._cap = 0  # the most spares the budget holds (of the plan's size)
        self._wanted = 0  # spares kept: those the plan makes, and those made still kept
        #: argument files whose invocation ended: name -> pids() of its environment
        self._ran: dict = {}
        #: large argument files seen, whose invocation has not ended: name -> time seen
        #: (a plain dict: discard() runs in worker threads too; each operation is atomic)
        self._in_flight: dict = {}
        #: set while the spare maker may go on; cleared while environments start (``_holds``)
        #: and until ``_until`` (time.monotonic()) after that or after a writer took a spare
        self._go = threading.Event()
        self._go.set()
        self._holds = 0
        self._until = 0.0
        self._resume = None
        self._watch: DirWatch | None = None
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
        """What the status endpoint tells clients: the directory and its nonce, and the spares
        (ready, being made, wanted by recent use)."""
        return {"dir": str(self.dir), "nonce": self.nonce, "spares": len(self.spares()),
                "spares_making": self._making, "spares_wanted": self._wanted,
                "spares_paused": not self._go.is_set()}

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
        self._used(name, end)
        if expected_name is None and end >= buffers.THRESHOLD:
            self._flying(name)  # an argument: in flight until discarded
        return buffers.nbytes(descriptor)

    def views(self, descriptor) -> list:
        """Read-only views of a descriptor's buffers (to send them to a client that cannot map them)."""
        return buffers.map_views(self.path(descriptor.get("file")), descriptor, writable=False)

    def discard(self, descriptor) -> None:
        """Delete a descriptor's file, if it names one here (quietly: it may be gone already);
        a spent argument's file that no process maps any more becomes a spare if one is wanted."""
        try:
            name = descriptor.get("file")
            self._in_flight.pop(name, None)
            path = self.path(name)
            if self._recycled(name, path):
                return
            os.unlink(path)
        except (buffers.BufferFileError, AttributeError, OSError):
            pass

    def ran(self, name, pids) -> None:
        """The environment that mapped the argument file ``name`` finished with it: ``pids()``
        lists its processes, which must not map the file any more when it is recycled."""
        if isinstance(name, str):
            self._ran[name] = pids
            while len(self._ran) > RECENT_KEPT:
                self._ran.pop(next(iter(self._ran)), None)

    def _recycled(self, name: str, path: Path) -> bool:
        """Rename a spent argument's file to a spare, when spares of its size are wanted and no
        process of the environment that ran it maps it: a private mapping of a file shows
        what is written to it later, so a file still mapped is never written again.  (Its
        cached pages are as good as a new spare's, and cost nothing to make; one spare too
        many goes at the next :meth:`replenish`, a made one first.)"""
        pids = self._ran.pop(name, None)
        needed, _, count = self._plan
        if pids is None or not count:
            return False
        size = os.stat(path, follow_symlinks=False).st_size
        if size < needed or len(buffers.spares_in(self.dir)) > self._cap or _maps(pids(), name):
            return False
        os.rename(path, self.dir / buffers.spare_name(size, secrets.token_hex(8)))
        return True

    def discard_all(self, descriptors: list) -> None:
        for descriptor in descriptors:
            self.discard(descriptor)

    # ---- result files --------------------------------------------------------------------

    def provide(self, name: str, nbytes: int, done) -> None:
        """Make ``name`` a file of at least ``nbytes`` bytes with its pages cached by this
        process; ``done(ok)`` is called on the loop once it is there (at once when a spare
        fits, else after a worker thread made it)."""
        self._used(name, nbytes)
        try:
            path = self.path(name)
        except buffers.BufferFileError:
            done(False)
            return
        if buffers.take_spare(self.dir, path, nbytes, fitting_only=True):
            self._taken()
            self.replenish()
            done(True)
            return
        made = asyncio.get_running_loop().run_in_executor(None, self._make_file, name, nbytes)
        made.add_done_callback(lambda f: done(not f.cancelled() and f.exception() is None))
        self.replenish()

    def _make_file(self, name: str, nbytes: int) -> None:
        with self._spares_lock:
            if self._stopped:
                raise ServerError("the server is stopping")
        buffers.make_spare(self.dir, name, nbytes)

    # ---- spares --------------------------------------------------------------------------

    def _used(self, name: str, size: int) -> None:
        if size < buffers.THRESHOLD:
            return
        self._recent.pop(name, None)
        self._recent[name] = (self.clock(), size)
        while len(self._recent) > RECENT_KEPT:
            self._recent.popitem(last=False)

    def plan(self) -> tuple[int, int, int]:
        """``(needed, size, count)``: spares of at least ``needed`` bytes are wanted, ``count``
        of them, made ``size`` bytes long (``(0, 0, 0)``: none)."""
        now = self.clock()
        while self._recent and now - next(iter(self._recent.values()))[0] > self.keep_s:
            self._recent.popitem(last=False)
        if not self._recent or self.budget < SPARE_ROUND:
            self._plan = (0, 0, 0)
            return self._plan
        largest = max(size for _, size in self._recent.values())
        size = min(-(-largest // SPARE_ROUND) * SPARE_ROUND, self.budget // SPARE_ROUND * SPARE_ROUND)
        newest = max(t for t, _ in self._recent.values())
        burst = (sum(1 for t, _ in self._recent.values() if now - t <= BURST_S)
                 if now - newest <= ACTIVE_S else 0)
        self._cap = min(MAX_SPARES, max(1, self.budget // size))
        count = min(RUN_SPARES + 2 * burst if burst else MIN_SPARES, self._cap)
        self._plan = (min(largest, size), size, count)
        return self._plan

    def replenish(self) -> None:
        """Bring the spares to :meth:`plan` in worker threads: delete those it no longer
        wants (too small, too many), and make the missing ones (:data:`MAKERS` at a time)."""
        if self._stopped:
            return
        needed, size, count = self.plan()
        spares = buffers.spares_in(self.dir)
        # Smallest first: one too many is a made spare (rounded up) before a reused file.
        big_enough = [name for s, name in spares if s >= needed] if count else []
        # Those ready are kept (as many as fit the budget) until keep_s passes without a large
        # buffer: the next run of large calls starts with them, and freeing them would give
        # their pages back for nothing.  Only making more stops when a run ends.
        drop = [name for s, name in spares if s < needed or not count] + big_enough[self._cap:]
        self._wanted = max(count, min(len(big_enough), self._cap)) if count else 0
        loop = asyncio.get_running_loop()
        if drop and not self._dropping:
            self._dropping = True
            loop.run_in_executor(None, self._drop, drop).add_done_callback(self._dropped)
        for _ in range(min(count - len(big_enough) - self._making, MAKERS - self._making)):
            self._making += 1
            loop.run_in_executor(self._makers, self._make_spare, size).add_done_callback(self._spare_made)

    def _drop(self, names: list) -> None:
        for name in names:
            try:
                os.unlink(self.dir / name)
            except OSError:
                pass  # taken meanwhile

    def _dropped(self, done: asyncio.Future) -> None:
        self._dropping = False

    def _make_spare(self, size: int) -> None:
        # Takeable while its pages are read in; then under a name no writer takes, and renamed
        # to a spare's unless the server stopped meanwhile.
        tag = secrets.token_hex(8)
        making = f"{buffers.SPARE_PREFIX}making-{tag}"
        if not buffers.make_spare(self.dir, making, size, partial=buffers.partial_name(size, tag),
                                  pace=self._pace):
            return  # a writer took it before it was finished
        with self._spares_lock:
            if self._stopped:
                os.unlink(self.dir / making)
            else:
                os.rename(self.dir / making, self.dir / buffers.spare_name(size, tag))

    def _spare_made(self, made: asyncio.Future) -> None:
        self._making -= 1
        failed = None if made.cancelled() else made.exception()
        if made.cancelled() or self._stopped:
            return  # (a spare being made when the server stopped was deleted under it)
        if failed is not None:
            log.warning("cannot make spare buffer files in %s (%s); large buffers will be written "
                        "to new files", self.dir, failed)
            self.budget = 0
            return
        self.replenish()  # more may have been taken meanwhile

    def spares(self) -> list:
        """``[(size, name)]`` of the spares ready now."""
        return buffers.spares_in(self.dir)

    # ---- when spares are made ------------------------------------------------------------

    def watch(self) -> None:
        """Watch the directory: a large argument counts as used when its writer starts."""
        if self._watch is None and not self._stopped:
            self._watch = DirWatch(self.dir, "arg-", self._argument_seen)

    def _argument_seen(self, name: str) -> None:
        if name in self._in_flight:
            return
        try:
            size = os.stat(self.path(name), follow_symlinks=False).st_size
        except (buffers.BufferFileError, OSError):
            return  # gone already
        if size >= buffers.THRESHOLD:  # (a new file is sized before it is written)
            self._used(name, size)
            self._flying(name)
            self._taken()
            self.replenish()

    def _flying(self, name: str) -> None:
        self._in_flight[name] = time.monotonic()
        if len(self._in_flight) > RECENT_KEPT:
            oldest = min(list(self._in_flight.items()), key=lambda item: item[1])[0]
            self._in_flight.pop(oldest, None)

    def _argument_in_flight(self) -> bool:
        now = time.monotonic()
        for name, seen in list(self._in_flight.items()):
            if now - seen > IN_FLIGHT_S:  # its end never seen (a client died before submitting)
                self._in_flight.pop(name, None)
        return bool(self._in_flight)

    def hold(self) -> bool:
        """An environment starts: no spare is made until it is ready (:meth:`release`, when
        this returns True) and :data:`YIELD_S` after, unless a large argument is in flight."""
        if self._stopped or self._argument_in_flight():
            return False
        self._holds += 1
        self._go.clear()
        return True

    def release(self) -> None:
        self._holds -= 1
        self._pause_for(YIELD_S)

    def _taken(self) -> None:
        """A writer took a spare: while another is ready, the next writer likely follows."""
        if self.spares():
            self._pause_for(YIELD_S)

    def _pause_for(self, delay: float) -> None:
        now = time.monotonic()
        self._until = max(self._until, now + delay)
        if self._holds:
            return  # the last release pauses again
        if self._stopped or now >= self._until:
            self._go.set()
            return
        self._go.clear()
        if self._resume is None:
            self._resume = asyncio.get_running_loop().call_later(self._until - now, self._resumed)

    def _resumed(self) -> None:
        self._resume = None
        self._pause_for(0.0)

    def _pace(self) -> None:
        """Called by the maker before each read: wait while paused; stop if the server stops."""
        self._go.wait()
        if self._stopped:
            raise ServerError("the server is stopping")  # (its file was deleted: read no more)

    def drop_spares(self) -> None:
        """Delete the spares and make no more (when stopping: they are quick to make, and hold
        memory and disk)."""
        with self._spares_lock:
            self._stopped = True
        self._go.set()  # a paused maker ends (its spare is deleted below)
        if self._watch is not None:
            self._watch.close()
        self._makers.shutdown(wait=False, cancel_futures=True)
        for name in os.listdir(self.dir):
            if name.startswith(buffers.SPARE_PREFIX):
                try:
                    os.unlink(self.dir / name)
                except OSError:
                    pass

    # ---- orphans -------------------------------------------------------------------------

    def sweep(self, keep: set) -> int:
        """Delete every buffer file whose name is not in ``keep``, spares too (at start: nothing
        else runs, and a spare of the last run may hold a spent argument's bytes)."""
        return self.delete([e.name for e in os.scandir(self.dir)
                            if not e.name.startswith(NONCE_FILE) and e.name not in keep])

    def stale(self, older_than: float, live: set) -> list:
        """Names of the ``arg-`` and ``res-`` files not in ``live`` that nothing touched for
        ``older_than`` seconds (a writer renames a spare, then writes it: both touch it)."""
        cutoff = time.time() - older_than
        found = []
        for entry in os.scandir(self.dir):
            if not entry.name.startswith(("arg-", "res-")) or entry.name in live:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if max(st.st_mtime, st.st_ctime) < cutoff:
                found.append(entry.name)
        return found

    def delete(self, names: list) -> int:
        removed = 0
        for name in names:
            try:
                os.unlink(self.dir / name)
                removed += 1
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("could not delete the stale buffer file %s: %s", self.dir / name, exc)
        return removed


def _maps(pids: list, name: str) -> bool:
    """Whether any of ``pids`` maps a file called ``name`` (unreadable maps count as yes)."""
    needles = (f"/{name}\n".encode(), f"/{name} (deleted)\n".encode())
    for pid in pids:
        try:
            with open(f"/proc/{pid}/maps", "rb") as f:
                maps = f.read()
            if needles[0] in maps or needles[1] in maps:
                return True
        except FileNotFoundError:
            continue  # gone
        except OSError:
            return True
    return False
