"""The SQLite store: the only module that writes SQL.

WAL mode with ``synchronous=NORMAL``: a commit is durable against the server
process being killed (the WAL is in the OS page cache) without an fsync per
invocation.  One transaction per logical write; every statement parameterised;
the schema is a list of numbered migrations applied in order and recorded in
``PRAGMA user_version``.

Tables: functions, versions (config + code hash), blobs (content-addressed code),
invocations (one row each, written before it runs), log_lines.

Large results (over :data:`INLINE_MAX` bytes) are kept as files next to the
database, named in the row's ``result_file``: SQLite writes a 100 MB blob at
~100 MB/s through its WAL (and again at checkpoint), a plain file at page-cache
speed.  The file is written before the transaction that names it commits, so a
row never points at a missing file (a crash in between leaves an unnamed file).

Large numpy-like buffers never reach the store at all: their files are in the
buffer directory (:mod:`.buffer_files`), and a row keeps only their descriptor
(``payload_buffers`` while queued, ``result_buffers``), as JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path

from ...errors import ServerError

MIGRATIONS = [
    # 1: the core schema
    """
    CREATE TABLE blobs (sha256 TEXT PRIMARY KEY, data BLOB NOT NULL);
    CREATE TABLE functions (
        name TEXT PRIMARY KEY,
        latest_version INTEGER NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE versions (
        function TEXT NOT NULL REFERENCES functions(name) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        content_sha256 TEXT NOT NULL,
        code_sha256 TEXT NOT NULL REFERENCES blobs(sha256),
        config TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (function, version)
    );
    CREATE UNIQUE INDEX versions_content ON versions(function, content_sha256);
    CREATE TABLE invocations (
        request_id TEXT PRIMARY KEY,
        function TEXT NOT NULL,
        version INTEGER NOT NULL,
        invocation_type TEXT NOT NULL,
        encoding TEXT NOT NULL,
        status TEXT NOT NULL,
        payload BLOB,
        result BLOB,
        error TEXT,
        error_type TEXT,
        created_at REAL NOT NULL,
        started_at REAL,
        ended_at REAL,
        duration_ms REAL,
        billed_duration_ms INTEGER,
        memory_size_mb INTEGER,
        max_memory_used_mb INTEGER,
        init_duration_ms REAL,
        environment_id TEXT
    );
    CREATE INDEX invocations_created ON invocations(created_at DESC);
    CREATE INDEX invocations_function ON invocations(function, created_at DESC);
    CREATE INDEX invocations_status ON invocations(status, created_at DESC);
    CREATE TABLE log_lines (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        request_id TEXT NOT NULL,
        ts REAL NOT NULL,
        stream TEXT NOT NULL,
        line TEXT NOT NULL
    );
    CREATE INDEX log_lines_request ON log_lines(request_id, id);
    """,
    # 2: the side panel's queries. Keyset paging orders by (created_at, request_id) so rows
    # with equal timestamps are neither skipped nor repeated, under each filter; duration
    # percentiles per function are an OFFSET walk along (function, duration_ms); function
    # statistics and per-minute metrics read only the covering "metrics" index. The
    # version-1 indexes are prefixes of these, so they go. The payload is dropped when an
    # invocation ends, so a short summary of the input is kept for the invocation's detail.
    """
    ALTER TABLE invocations ADD COLUMN input_summary TEXT;
    CREATE INDEX invocations_page ON invocations(created_at DESC, request_id DESC);
    CREATE INDEX invocations_function_page ON invocations(function, created_at DESC, request_id DESC);
    CREATE INDEX invocations_status_page ON invocations(status, created_at DESC, request_id DESC);
    CREATE INDEX invocations_function_status_page
        ON invocations(function, status, created_at DESC, request_id DESC);
    CREATE INDEX invocations_function_duration ON invocations(function, duration_ms);
    CREATE INDEX invocations_function_metrics ON invocations(function, created_at, status,
        started_at, ended_at, duration_ms, billed_duration_ms, memory_size_mb);
    DROP INDEX invocations_created;
    DROP INDEX invocations_function;
    DROP INDEX invocations_status;
    """,
    # 3: large results live in files (see the module docstring)
    """
    ALTER TABLE invocations ADD COLUMN result_file TEXT;
    """,
    # 4: out-of-band buffers in files of the buffer directory (see server.buffer_files): the
    # argument's while queued, the result's for good; the partial index finds the latter at start
    """
    ALTER TABLE invocations ADD COLUMN payload_buffers TEXT;
    ALTER TABLE invocations ADD COLUMN result_buffers TEXT;
    CREATE INDEX invocations_result_buffers ON invocations(result_buffers) WHERE result_buffers IS NOT NULL;
    """,
]

#: Results larger than this are written to a file, not into the database.
INLINE_MAX = 1 << 20

#: Columns of an invocation as the API shows it (payload and result are fetched apart).
INVOCATION_COLUMNS = (
    "request_id", "function", "version", "invocation_type", "encoding", "status", "error",
    "error_type", "created_at", "started_at", "ended_at", "duration_ms", "billed_duration_ms",
    "memory_size_mb", "max_memory_used_mb", "init_duration_ms", "environment_id", "input_summary")
#: Columns an invocation's end may set.
_UPDATABLE = frozenset(INVOCATION_COLUMNS) - {"request_id", "input_summary"}
TERMINAL = ("succeeded", "failed", "timed_out", "cancelled", "throttled")


class Store:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.results_dir = self.path.parent / "results"
        try:
            self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.row_factory = sqlite3.Row
            self._migrate()
        except sqlite3.Error as exc:
            raise ServerError(f"cannot open the store at {self.path}: {exc}; check the path and "
                              f"its permissions, or set FaaSServer.data_dir") from exc

    def _migrate(self) -> None:
        current = self.db.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS, start=1):
            if number <= current:
                continue
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for statement in script.split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {int(number)}")
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        self.db.close()

    def _tx(self):
        return _Transaction(self.db)

    # ---- functions and versions -------------------------------------------------------

    def deploy(self, name: str, code: bytes, config: dict) -> tuple[int, bool]:
        """Record code+config for ``name``; returns (version, created). Same content, same version."""
        code_sha = hashlib.sha256(code).hexdigest()
        config_json = json.dumps(config, sort_keys=True)
        content = hashlib.sha256(code_sha.encode() + config_json.encode()).hexdigest()
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT version FROM versions WHERE function=? AND content_sha256=?",
                             (name, content)).fetchone()
            if row is not None:
                db.execute("UPDATE functions SET latest_version=?, updated_at=? WHERE name=?",
                           (row[0], now, name))
                return row[0], False
            db.execute("INSERT OR IGNORE INTO blobs(sha256, data) VALUES (?, ?)", (code_sha, code))
            last = db.execute("SELECT MAX(version) FROM versions WHERE function=?", (name,)).fetchone()[0]
            version = (last or 0) + 1
            db.execute("INSERT INTO functions(name, latest_version, created_at, updated_at) "
                       "VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                       "latest_version=excluded.latest_version, updated_at=excluded.updated_at",
                       (name, version, now, now))
            db.execute("INSERT INTO versions(function, version, content_sha256, code_sha256, config, "
                       "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                       (name, version, content, code_sha, config_json, now))
            return version, True

    def get_function(self, name: str, version: int | None = None) -> dict | None:
        if version is None:
            row = self.db.execute(
                "SELECT v.*, f.created_at AS function_created_at FROM functions f JOIN versions v "
                "ON v.function=f.name AND v.version=f.latest_version WHERE f.name=?", (name,)).fetchone()
        else:
            row = self.db.execute(
                "SELECT v.*, f.created_at AS function_created_at FROM functions f JOIN versions v "
                "ON v.function=f.name WHERE f.name=? AND v.version=?", (name, version)).fetchone()
        return _function_row(row) if row else None

    def list_functions(self) -> list[dict]:
        rows = self.db.execute(
            "SELECT v.*, f.created_at AS function_created_at FROM functions f JOIN versions v "
            "ON v.function=f.name AND v.version=f.latest_version ORDER BY f.name").fetchall()
        return [_function_row(r) for r in rows]

    def code(self, code_sha256: str) -> bytes:
        row = self.db.execute("SELECT data FROM blobs WHERE sha256=?", (code_sha256,)).fetchone()
        return bytes(row[0]) if row else b""

    def delete_function(self, name: str) -> bool:
        with self._tx() as db:
            db.execute("DELETE FROM versions WHERE function=?", (name,))
            gone = db.execute("DELETE FROM functions WHERE name=?", (name,)).rowcount > 0
            db.execute("DELETE FROM blobs WHERE sha256 NOT IN (SELECT code_sha256 FROM versions)")
            return gone

    # ---- invocations -------------------------------------------------------------------

    def add_invocation(self, inv: dict, payload: bytes) -> None:
        """A new invocation: queued, or already running (``started_at``, ``environment_id``).

        The payload is kept only for a queued invocation: it is what a restart re-runs.
        One written as running is failed, never re-run, after a crash, so its payload
        would never be read (and for a large one the write is most of the cost).
        """
        self.add_invocations([(inv, payload)])

    def add_invocations(self, rows: list) -> None:
        """Many new invocations, ``(row, payload)`` as for :meth:`add_invocation`, in one transaction."""
        with self._tx() as db:
            db.executemany(
                "INSERT INTO invocations(request_id, function, version, invocation_type, encoding, "
                "status, payload, payload_buffers, created_at, memory_size_mb, started_at, "
                "environment_id, input_summary) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(inv["request_id"], inv["function"], inv["version"], inv["invocation_type"],
                  inv["encoding"], inv["status"], payload if inv["status"] == "queued" else None,
                  _json_or_null(inv.get("payload_buffers") if inv["status"] == "queued" else None),
                  inv["created_at"], inv["memory_size_mb"], inv.get("started_at"),
                  inv.get("environment_id"), inv.get("input_summary")) for inv, payload in rows])

    def mark_running(self, request_id: str, started_at: float, environment_id: str) -> None:
        self.write_batch([(request_id, started_at, environment_id)], [])

    def finish_invocation(self, request_id: str, fields: dict, result: bytes | None,
                          logs: list) -> None:
        """The terminal state, the result and the remaining log lines, in one transaction."""
        self.write_batch([], [(request_id, fields, result, logs)])

    def write_batch(self, running: list, finished: list) -> None:
        """Invocations started and finished, in one transaction (a group commit).

        ``running``: ``(request_id, started_at, environment_id)``; ``finished``:
        ``(request_id, fields, result, logs)``: the terminal state, the result and the
        remaining log lines (``fields["result_buffers"]``: the result's buffer descriptor).
        One commit for many invocations writes each touched page (the newest rows of the
        table and of its indexes) once, not once per invocation.
        """
        allowed = _UPDATABLE
        # Ends with the same columns (every success of a map) share one executemany.
        updates: dict[tuple, list] = {}
        lines = []
        for request_id, fields, result, logs in finished:
            cols = tuple(c for c in fields if c in allowed)
            values = [json.dumps(fields[c]) if c == "error" and fields[c] is not None else fields[c]
                      for c in cols]
            result_file = None
            if result is not None and len(result) > INLINE_MAX:
                result_file = self._write_result_file(request_id, result)  # before the row names it
                result = None
            updates.setdefault(cols, []).append(
                (*values, result, result_file, _json_or_null(fields.get("result_buffers")), request_id))
            lines.extend((request_id, ts, stream, line) for ts, stream, line in logs)
        with self._tx() as db:
            if running:
                db.executemany("UPDATE invocations SET status='running', started_at=?, environment_id=? "
                               "WHERE request_id=?", [(t, env, rid) for rid, t, env in running])
            for cols, params in updates.items():
                assignments = ", ".join(f"{c}=?" for c in cols)  # column names from the fixed set
                db.executemany(f"UPDATE invocations SET {assignments}, result=?, result_file=?, "
                               f"result_buffers=?, payload=NULL, payload_buffers=NULL "
                               f"WHERE request_id=?", params)
            if lines:
                db.executemany("INSERT INTO log_lines(request_id, ts, stream, line) VALUES (?, ?, ?, ?)",
                               lines)

    def add_logs(self, request_id: str, logs: list) -> None:
        with self._tx() as db:
            db.executemany("INSERT INTO log_lines(request_id, ts, stream, line) VALUES (?, ?, ?, ?)",
                           [(request_id, ts, stream, line) for ts, stream, line in logs])

    def get_invocation(self, request_id: str) -> dict | None:
        row = self.db.execute(f"SELECT {', '.join(INVOCATION_COLUMNS)} FROM invocations "
                              f"WHERE request_id=?", (request_id,)).fetchone()
        return _invocation_row(row) if row else None

    def _write_result_file(self, request_id: str, result: bytes) -> str:
        self.results_dir.mkdir(exist_ok=True)
        name = f"{request_id}.result"
        tmp = self.results_dir / (name + ".tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(result)
            os.replace(tmp, self.results_dir / name)
        except OSError as exc:
            raise ServerError(f"cannot write a result to {self.results_dir}: {exc}; check free space "
                              f"and permissions of the data dir") from exc
        return name

    def get_result(self, request_id: str) -> bytes | None:
        row = self.db.execute("SELECT result, result_file FROM invocations WHERE request_id=?",
                              (request_id,)).fetchone()
        if row is None:
            return None
        if row[1] is not None:
            try:
                return (self.results_dir / row[1]).read_bytes()
            except OSError:
                return None
        return bytes(row[0]) if row[0] is not None else None

    def get_result_buffers(self, request_id: str) -> dict | None:
        """The descriptor of the result's out-of-band buffers, if it has any."""
        row = self.db.execute("SELECT result_buffers FROM invocations WHERE request_id=?",
                              (request_id,)).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def get_payload(self, request_id: str) -> bytes:
        row = self.db.execute("SELECT payload FROM invocations WHERE request_id=?", (request_id,)).fetchone()
        return bytes(row[0]) if row and row[0] is not None else b""

    def get_payload_buffers(self, request_id: str) -> dict | None:
        """The descriptor of a queued invocation's argument buffers, if it has any."""
        row = self.db.execute("SELECT payload_buffers FROM invocations WHERE request_id=?",
                              (request_id,)).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def buffer_files(self) -> set:
        """Every buffer file a row still needs: queued invocations' arguments, and results."""
        rows = self.db.execute(
            "SELECT payload_buffers FROM invocations WHERE status='queued' AND payload_buffers IS NOT NULL "
            "UNION ALL SELECT result_buffers FROM invocations WHERE result_buffers IS NOT NULL").fetchall()
        return {json.loads(r[0]).get("file") for r in rows}

    def list_invocations(self, function: str | None = None, status: str | None = None,
                         limit: int = 100, before: float | None = None,
                         before_id: str | None = None) -> list[dict]:
        """Newest first. ``before``/``before_id`` is the keyset cursor: the (created_at,
        request_id) of the last row of the previous page (``before`` alone: older than it)."""
        clauses, params = [], []
        if function:
            clauses.append("function=?")
            params.append(function)
        if status:
            clauses.append("status=?")
            params.append(status)
        if before is not None and before_id is not None:
            clauses.append("(created_at, request_id) < (?, ?)")
            params.extend((before, before_id))
        elif before is not None:
            clauses.append("created_at<?")
            params.append(before)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self.db.execute(
            f"SELECT {', '.join(INVOCATION_COLUMNS)} FROM invocations {where} "
            f"ORDER BY created_at DESC, request_id DESC LIMIT ?", (*params, int(limit))).fetchall()
        return [_invocation_row(r) for r in rows]

    def add_invocations_bulk(self, rows: list[dict]) -> None:
        """Insert finished invocations in one transaction (imports, and the panel's scale test)."""
        cols = [c for c in INVOCATION_COLUMNS]
        with self._tx() as db:
            db.executemany(
                f"INSERT INTO invocations({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                [tuple(json.dumps(r[c]) if c == "error" and r.get(c) is not None else r.get(c)
                       for c in cols) for r in rows])

    # ---- monitoring (the side panel) ---------------------------------------------------------

    def function_stats(self) -> list[dict]:
        """Per function, over every stored invocation: counts, in-flight, billed MB-ms."""
        rows = self.db.execute(
            "SELECT function, COUNT(*) AS invocations, "
            "SUM(status IN ('failed', 'timed_out')) AS errors, "
            "SUM(status = 'throttled') AS throttles, "
            "SUM(status IN ('queued', 'running')) AS in_flight, "
            "COUNT(billed_duration_ms) AS billed_requests, "
            "TOTAL(billed_duration_ms * memory_size_mb) AS billed_mb_ms, "
            "COUNT(duration_ms) AS timed, MAX(created_at) AS last_invoked_at "
            "FROM invocations GROUP BY function").fetchall()
        return [dict(r) for r in rows]

    def duration_at_rank(self, function: str, rank: int) -> float | None:
        """The ``rank``-th smallest (0-based) recorded duration of ``function``."""
        row = self.db.execute(
            "SELECT duration_ms FROM invocations WHERE function=? AND duration_ms IS NOT NULL "
            "ORDER BY duration_ms LIMIT 1 OFFSET ?", (function, int(rank))).fetchone()
        return row[0] if row else None

    def timeline(self, function: str, since: float, until: float) -> list[tuple]:
        """(created_at, started_at, ended_at, status, duration_ms) of ``function``'s invocations
        created in [since, until): what per-minute metrics need. Plain tuples: a day can be
        100,000 rows, and building a dict per row would double the time."""
        cur = self.db.cursor()
        cur.row_factory = None
        return cur.execute(
            "SELECT created_at, started_at, ended_at, status, duration_ms FROM invocations "
            "WHERE function=? AND created_at>=? AND created_at<? ORDER BY created_at",
            (function, since, until)).fetchall()

    def unfinished(self) -> list[dict]:
        rows = self.db.execute(
            f"SELECT {', '.join(INVOCATION_COLUMNS)} FROM invocations "
            f"WHERE status IN ('queued', 'running') ORDER BY created_at").fetchall()
        return [_invocation_row(r) for r in rows]

    def logs(self, request_id: str, after: int = 0, limit: int = 10000) -> list[dict]:
        rows = self.db.execute(
            "SELECT id, ts, stream, line FROM log_lines WHERE request_id=? AND id>? ORDER BY id LIMIT ?",
            (request_id, after, limit)).fetchall()
        return [dict(r) for r in rows]

    def function_logs(self, function: str, limit: int = 200) -> list[dict]:
        rows = self.db.execute(
            "SELECT * FROM (SELECT l.id, l.request_id, l.ts, l.stream, l.line FROM log_lines l "
            "JOIN invocations i ON i.request_id=l.request_id WHERE i.function=? "
            "ORDER BY l.id DESC LIMIT ?) ORDER BY id", (function, limit)).fetchall()
        return [dict(r) for r in rows]


class _Transaction:
    def __init__(self, db):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")
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
