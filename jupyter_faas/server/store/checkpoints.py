"""WAL checkpoints on a thread of their own, off every commit's path.

SQLite's automatic checkpoint runs inside the commit that pushes the WAL past 1,000
pages: that commit copies the WAL into the database and fsyncs it (``synchronous=NORMAL``
syncs at checkpoints only), a few milliseconds on the event loop's thread once every ~100
invocations.  That was the warm path's p99.  Here the writer's connection has automatic
checkpoints off and a :class:`Checkpointer` runs ``PRAGMA wal_checkpoint(PASSIVE)`` on a
second connection, in a thread, shortly after commits: a passive checkpoint never blocks
the writer, and ``sqlite3`` releases the GIL while it copies and syncs.

Durability is unchanged: a commit is durable once its frames are in the WAL (the OS page
cache), checkpointed or not; a crash before a checkpoint replays the WAL at open.

Bounded: a WAL that a passive checkpoint could not empty (commits arriving all the time)
keeps growing (the writer starts the WAL over only when a transaction begins with every
frame copied); past :data:`RESTART_FRAMES` the thread also runs a ``RESTART`` checkpoint
between two of the store's write transactions (it takes the store's write lock), holding
the writers up for the moment it copies the last frames; the next commit starts the WAL
from its beginning (``journal_size_limit`` then trims the file).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

log = logging.getLogger("jupyter_faas.server")

#: seconds a checkpoint waits after the commit that woke it, so one covers many commits
BATCH_S = 0.1
#: passive checkpoints in a row, while each leaves frames behind
CATCH_UP_RUNS = 3
#: WAL frames (pages) past which a RESTART checkpoint makes the writer start the WAL over
RESTART_FRAMES = 4_096  # 16 MB of 4 KiB pages
#: bytes the WAL file is trimmed to when it starts over
JOURNAL_SIZE_LIMIT = 64 << 20


class Checkpointer:
    """Checkpoints the WAL of the database at ``path`` on a daemon thread.

    :meth:`wrote` (called after each commit, cheap) wakes it; it waits :data:`BATCH_S`
    to gather more commits, then checkpoints.  ``checkpoints`` counts completed runs (the
    tests wait on it).  :meth:`close` stops the thread after one last checkpoint.
    """

    def __init__(self, path: str, write_lock=None, batch_s: float = BATCH_S):
        self.path = path
        #: the store's write lock (``Store.write_lock``): a RESTART holds SQLite's write lock
        #: while it copies the last frames, so it takes this one first, and the store's writers
        #: wait on it (woken at once) instead of in SQLite's busy handler (whole-ms sleeps)
        self.write_lock = write_lock
        self.batch_s = batch_s
        self.checkpoints = 0
        self.last: tuple | None = None  # (busy, WAL frames, frames checkpointed) of the last run
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def wrote(self) -> None:
        """A commit added to the WAL: checkpoint soon.  Starts the thread on first use."""
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._stopping:
                    self._thread = threading.Thread(target=self._run, name="faas-wal-checkpoint",
                                                    daemon=True)
                    self._thread.start()
        if not self._wake.is_set():
            self._wake.set()

    def close(self) -> None:
        with self._lock:
            self._stopping = True
            thread = self._thread
            self._wake.set()
        if thread is not None:
            thread.join(10)

    def _run(self) -> None:
        # No busy wait: a RESTART that finds a reader mid-query gives up at once and is tried
        # again after the next commits, rather than holding the writers up while it waits.
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=0)
        try:
            while True:
                self._wake.wait()
                if self._stopping:  # (read after the wait: close() sets it before waking us)
                    self._checkpoint(db, "PASSIVE")
                    return
                # Gather: the commits of the next batch_s are covered by this checkpoint.
                time.sleep(self.batch_s)
                with self._lock:  # close() sets _stopping and wakes under it: no wake is lost
                    if not self._stopping:
                        self._wake.clear()
                # Again while commits keep coming: each run copies only what the last one
                # missed, so it soon catches up, and the writer's next commit starts the WAL
                # over (it can only when every frame was copied).
                # A run copies the frames there were when it began; those committed meanwhile
                # are the next run's, fewer each time.  Caught up when a run finds no new frame.
                before = -1
                for _ in range(CATCH_UP_RUNS):
                    self._checkpoint(db, "PASSIVE")
                    if self.last is None or self.last[1] <= before:
                        break
                    before = self.last[1]
                else:
                    if self.last[1] > RESTART_FRAMES:
                        self._restart(db)
        finally:
            db.close()

    def _restart(self, db) -> None:
        if self.write_lock is None:
            self._checkpoint(db, "RESTART")
            return
        with self.write_lock:  # between two of the store's transactions: it never finds one open
            self._checkpoint(db, "RESTART")

    def _checkpoint(self, db, mode: str) -> None:
        try:
            # fetchall: a statement left open would hold a read lock, and the writer could
            # never start the WAL over
            self.last = tuple(db.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()[0])
            self.checkpoints += 1
        except sqlite3.OperationalError as exc:  # busy or locked: the next commit wakes it again
            log.debug("a WAL checkpoint of %s could not run now: %s", self.path, exc)
        except sqlite3.Error as exc:  # nothing is lost: the WAL keeps every commit
            log.warning("a WAL checkpoint of %s failed: %s", self.path, exc)
