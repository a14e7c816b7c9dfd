"""A thread that writes group commits while the event loop goes on.

With a map in full flow the server's loop is the bottleneck, and about a third of its
time was spent inside SQLite committing batches of starts and ends.  ``sqlite3`` releases
the GIL while SQLite works, so a batch written on this thread runs beside the loop (on
the other core) instead of in it.  The engine decides when (:meth:`Store.submit_batch`:
only with a backlog; a lone call's end is written inline, where a thread's hand-off
would only add latency) and keeps the durability rules: it dispatches the batch's starts
and tells its ends only in the future's callback, after the commit.

The thread has its own connection, so a read on the loop's connection never sees a
batch before it committed.  Two connections must never wait on each other inside
SQLite (its busy handler sleeps whole milliseconds), so every write transaction of
either takes :attr:`Writer.lock` first (:class:`~.rows._Transaction`).
"""

from __future__ import annotations

import concurrent.futures
import sqlite3
import threading


class Writer:
    """One thread, one connection, one batch at a time, for the store at ``path``."""

    def __init__(self, path: str):
        self.path = path
        #: held by every write transaction of the store, on either connection
        self.lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None

    def submit(self, write, *args) -> concurrent.futures.Future:
        """Run ``write(db, *args)`` on the writer thread with its connection; a future of its end."""
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="faas-store-writer")
        return self._pool.submit(self._run, write, args)

    def _run(self, write, args):
        if self._db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer's job
            self._db = db
        return write(self._db, *args)

    def close(self) -> None:
        """Wait for the batch being written, then stop the thread and close its connection."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._db is not None:
            self._db.close()
            self._db = None
