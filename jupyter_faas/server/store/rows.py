"""Row shapes shared by the tables: columns, the transaction helper and row decoders."""

from __future__ import annotations

import json

#: Results larger than this are written to a file, not into the database.
INLINE_MAX = 1 << 20

#: Columns of an invocation as the API shows it (payload and result are fetched apart).
INVOCATION_COLUMNS = (
    "request_id", "function", "version", "invocation_type", "encoding", "status", "error",
    "error_type", "created_at", "started_at", "ended_at", "duration_ms", "billed_duration_ms",
    "memory_size_mb", "max_memory_used_mb", "init_duration_ms", "environment_id", "input_summary",
    "attempts", "triggered_by", "lambda_version", "init_type")
#: Columns an invocation's end may set.
_UPDATABLE = frozenset(INVOCATION_COLUMNS) - {"request_id", "input_summary", "lambda_version"}



class _Transaction:
    """``with`` it: take ``lock`` (the store's connections write one at a time), BEGIN
    IMMEDIATE, then COMMIT (and ``committed()``) or ROLLBACK, and release ``lock``."""

    def __init__(self, db, committed=None, lock=None):
        self.db = db
        self.committed = committed
        self.lock = lock

    def __enter__(self):
        if self.lock is not None:
            self.lock.acquire()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            if self.lock is not None:
                self.lock.release()
            raise
        return self.db

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self.db.execute("COMMIT")
            else:
                self.db.execute("ROLLBACK")
        finally:
            if self.lock is not None:
                self.lock.release()
        if exc_type is None and self.committed is not None:
            self.committed()
        return False


def _function_row(row) -> dict:
    config = json.loads(row["config"])
    return {
        "name": row["function"],
        "version": row["version"],
        "code_sha256": row["code_sha256"],
        "created_at": row["function_created_at"],
        "updated_at": row["created_at"],
        **config,
    }


def _json_or_null(value) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _invocation_row(row) -> dict:
    out = dict(zip(INVOCATION_COLUMNS, tuple(row)))
    if out["error"]:
        out["error"] = json.loads(out["error"])
    return out
