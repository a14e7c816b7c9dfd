"""The SQLite store: the only SQL in the project (this package).

WAL mode with ``synchronous=NORMAL``: a commit is durable against the server
process being killed (the WAL is in the OS page cache) without an fsync per
invocation.  One transaction per logical write; every statement parameterised;
the schema is a list of numbered migrations applied in order and recorded in
``PRAGMA user_version``.

Tables: functions, versions (config + code hash), blobs (content-addressed code),
invocations (one row each, written before it runs), log_lines; and what Lambda's model
adds (published versions, aliases, layer versions, settings: :mod:`.lambda_tables`).

Large results (over :data:`INLINE_MAX` bytes) are kept as files next to the
database, named in the row's ``result_file``: SQLite writes a 100 MB blob at
~100 MB/s through its WAL (and again at checkpoint), a plain file at page-cache
speed.  The file is written before the transaction that names it commits, so a
row never points at a missing file (a crash in between leaves an unnamed file).

Large numpy-like buffers never reach the store at all: their files are in the
buffer directory (:mod:`..backends.local.buffer_files`), and a row keeps only their descriptor
(``payload_buffers`` while queued, ``result_buffers``), as JSON.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from ...errors import ServerError
from .checkpoints import JOURNAL_SIZE_LIMIT, Checkpointer
from .events import EventsTable
from .functions import FunctionsTable
from .invocations import InvocationsTable
from .lambda_tables import LambdaTables
from .learned import LearnedModulesTable
from .logs import LogsTable
from .metrics import MetricsTable
from .queues import QueuesTable
from .migrations import MIGRATIONS, migrate  # noqa: F401 - MIGRATIONS: tests read it here
from .rows import INLINE_MAX, INVOCATION_COLUMNS, _Transaction  # noqa: F401


class Store(FunctionsTable, InvocationsTable, LogsTable, MetricsTable, EventsTable, LambdaTables,
            LearnedModulesTable, QueuesTable):
    """The store: one SQLite connection; its tables' methods come from one module per family."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.results_dir = self.path.parent / "results"
        try:
            self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            # Checkpoints run on a thread of their own (.checkpoints), not inside a commit.
            self.db.execute("PRAGMA wal_autocheckpoint=0")
            self.db.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
            self.db.row_factory = sqlite3.Row
            migrate(self.db)
        except sqlite3.Error as exc:
            raise ServerError(f"cannot open the store at {self.path}: {exc}; check the path and "
                              f"its permissions, or set --FaaSServer.faas_data_dir") from exc

        #: held by every write transaction, and by the checkpointer's RESTART (see .checkpoints)
        self.write_lock = threading.Lock()
        self.checkpointer = Checkpointer(str(self.path), self.write_lock)

    def close(self) -> None:
        self.checkpointer.close()
        self.db.close()

    def _tx(self, db=None):
        """A write transaction on ``db`` (default: the store's connection)."""
        return _Transaction(db or self.db, self.checkpointer.wrote, self.write_lock)
