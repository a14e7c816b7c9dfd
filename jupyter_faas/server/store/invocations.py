"""Invocations: one row each, written before it runs; results inline or in files; buffer descriptors."""

from __future__ import annotations

import json
import os

from ...errors import ServerError
from ...vocabulary import QUEUED, RUNNING
from ..model import InvocationRow
from .rows import _UPDATABLE, INLINE_MAX, INVOCATION_COLUMNS, _invocation_row, _json_or_null


class InvocationsTable:
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
                "environment_id, input_summary, lambda_version, map_group) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(inv["request_id"], inv["function"], inv["version"], inv["invocation_type"],
                  inv["encoding"], inv["status"], payload if inv["status"] == QUEUED else None,
                  _json_or_null(inv.get("payload_buffers") if inv["status"] == QUEUED else None),
                  inv["created_at"], inv["memory_size_mb"], inv.get("started_at"),
                  inv.get("environment_id"), inv.get("input_summary"), inv.get("lambda_version"),
                  _json_or_null(inv.get("map_group") if inv["status"] == QUEUED else None))
                 for inv, payload in rows])

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
                db.executemany("UPDATE invocations SET status=?, started_at=?, environment_id=? "
                               "WHERE request_id=?", [(RUNNING, t, env, rid) for rid, t, env in running])
            for cols, params in updates.items():
                assignments = ", ".join(f"{c}=?" for c in cols)  # column names from the fixed set
                db.executemany(f"UPDATE invocations SET {assignments}, result=?, result_file=?, "
                               f"result_buffers=?, payload=NULL, payload_buffers=NULL "
                               f"WHERE request_id=?", params)
            if lines:
                db.executemany("INSERT INTO log_lines(request_id, ts, stream, line) VALUES (?, ?, ?, ?)",
                               lines)

    def add_ended(self, ended: list, skip_known: bool = False) -> None:
        """Invocations recorded in a lease's journal, already ended, in one transaction:
        ``(row, result, logs)``: the row with its terminal fields (:data:`INVOCATION_COLUMNS`,
        ``result_buffers``, and ``implicit_lines``: 1 when its START, END and REPORT lines are
        made from the row when read, not stored), the result bytes (or None), the log lines
        ``(ts, stream, line)``.
        ``skip_known``: leave out those the store has already (a journal folded again after a
        crash between the fold and the journal's removal)."""
        if skip_known and ended:
            marks = ",".join("?" * len(ended))
            known = {r[0] for r in self.db.execute(
                f"SELECT request_id FROM invocations WHERE request_id IN ({marks})",
                [row["request_id"] for row, _, _ in ended])}
            ended = [e for e in ended if e[0]["request_id"] not in known]
        cols = INVOCATION_COLUMNS
        params, lines = [], []
        for row, result, logs in ended:
            rid = row["request_id"]
            result_file = None
            if result is not None and len(result) > INLINE_MAX:
                result_file = self._write_result_file(rid, result)
                result = None
            params.append((*[json.dumps(row[c]) if c == "error" and row.get(c) is not None else row.get(c)
                             for c in cols], result, result_file, _json_or_null(row.get("result_buffers")),
                           row.get("implicit_lines")))
            lines.extend((rid, ts, stream, line) for ts, stream, line in logs)
        with self._tx() as db:
            db.executemany(
                f"INSERT OR IGNORE INTO invocations({', '.join(cols)}, result, result_file, result_buffers, "
                f"implicit_lines) VALUES ({', '.join('?' * (len(cols) + 4))})", params)
            if lines:
                db.executemany("INSERT INTO log_lines(request_id, ts, stream, line) VALUES (?, ?, ?, ?)",
                               lines)

    def get_invocation(self, request_id: str) -> InvocationRow | None:
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
            "SELECT payload_buffers FROM invocations WHERE status=? AND payload_buffers IS NOT NULL "
            "UNION ALL SELECT result_buffers FROM invocations WHERE result_buffers IS NOT NULL",
            (QUEUED,)).fetchall()
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

    def unfinished(self) -> list[InvocationRow]:
        """Queued and running rows, oldest first; a queued one with ``map_group``: ``[id, limit]``
        of the map it belongs to (None otherwise)."""
        rows = self.db.execute(
            f"SELECT {', '.join(INVOCATION_COLUMNS)}, map_group FROM invocations "
            f"WHERE status IN (?, ?) ORDER BY created_at", (QUEUED, RUNNING)).fetchall()
        out = []
        for r in rows:
            row = _invocation_row(r[:-1])
            row["map_group"] = json.loads(r[-1]) if r[-1] else None
            out.append(row)
        return out

