"""Events: Event invocations and their attempts, event invoke configs, dead letters, triggers.

An Event invocation is an ``invocations`` row like any other (``invocation_type`` =
``Event``) whose payload is kept while it may run again: it is the durable queue.  Each
attempt that ended is an ``attempts`` row under the same request id; a retry moves the
row back to ``queued`` in the same transaction that records the failed attempt, so a
restart re-queues it, never loses it.  Triggers are rows (kind, function, spec, enabled,
and a JSON ``state``: a schedule's cursor, a watch's snapshot).
"""

from __future__ import annotations

import json

from ...vocabulary import QUEUED, RUNNING
from .rows import _json_or_null

_ATTEMPT_COLUMNS = ("request_id", "attempt", "status", "error_type", "error", "started_at", "ended_at",
                    "duration_ms", "billed_duration_ms", "max_memory_used_mb", "init_duration_ms")
_DEAD_LETTER_COLUMNS = ("id", "request_id", "function", "input_summary", "condition", "error_type",
                        "error_message", "attempts", "created_at", "redriven_at", "redrive_request_id")
_TRIGGER_COLUMNS = ("id", "kind", "function", "spec", "enabled", "created_at", "last_fired_at", "fired",
                    "caught_up", "state")


def _attempt_params(a: dict) -> tuple:
    return tuple(_json_or_null(a.get(c)) if c == "error" else a.get(c) for c in _ATTEMPT_COLUMNS)


def _trigger_row(row) -> dict:
    out = dict(zip(_TRIGGER_COLUMNS, tuple(row)))
    out["spec"] = json.loads(out["spec"])
    out["state"] = json.loads(out["state"]) if out["state"] else {}
    out["enabled"] = bool(out["enabled"])
    return out


class EventsTable:
    # ---- Event invocations ---------------------------------------------------------------

    def add_events(self, rows: list) -> None:
        """New Event invocations, ``(row, payload)``, queued, in one transaction (accepted = on disk)."""
        with self._tx() as db:
            _insert_events(db, rows)

    def requeue_event(self, attempt: dict, logs: list) -> None:
        """A failed attempt that will be retried: its record, its last log lines, and the row
        back to ``queued`` (payload kept), in one transaction."""
        rid = attempt["request_id"]
        with self._tx() as db:
            db.execute(f"INSERT OR REPLACE INTO attempts({', '.join(_ATTEMPT_COLUMNS)}) "
                       f"VALUES ({', '.join('?' * len(_ATTEMPT_COLUMNS))})", _attempt_params(attempt))
            db.execute("UPDATE invocations SET status=?, attempts=?, started_at=NULL, environment_id=NULL "
                       "WHERE request_id=?", (QUEUED, attempt["attempt"], rid))
            if logs:
                db.executemany("INSERT INTO log_lines(request_id, ts, stream, line) VALUES (?, ?, ?, ?)",
                               [(rid, ts, stream, line) for ts, stream, line in logs])

    def event_ended(self, attempt: dict | None, attempts: int, dead_letter: dict | None) -> None:
        """An Event invocation's end (its terminal row is already written): the last attempt's
        record, the count, and its dead letter if it failed with no on-failure destination."""
        with self._tx() as db:
            rid = dead_letter["request_id"] if attempt is None else attempt["request_id"]
            if attempt is not None:
                db.execute(f"INSERT OR REPLACE INTO attempts({', '.join(_ATTEMPT_COLUMNS)}) "
                           f"VALUES ({', '.join('?' * len(_ATTEMPT_COLUMNS))})", _attempt_params(attempt))
            db.execute("UPDATE invocations SET attempts=? WHERE request_id=?", (attempts, rid))
            if dead_letter is not None:
                d = dead_letter
                db.execute("INSERT INTO dead_letters(request_id, function, payload, input_summary, "
                           "condition, error_type, error_message, attempts, created_at) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (d["request_id"], d["function"], d["payload"], d.get("input_summary"),
                            d["condition"], d.get("error_type"), d.get("error_message"), d["attempts"],
                            d["created_at"]))

    def attempts(self, request_id: str) -> list[dict]:
        rows = self.db.execute(f"SELECT {', '.join(_ATTEMPT_COLUMNS)} FROM attempts WHERE request_id=? "
                               f"ORDER BY attempt", (request_id,)).fetchall()
        out = []
        for r in rows:
            a = dict(zip(_ATTEMPT_COLUMNS, tuple(r)))
            a["error"] = json.loads(a["error"]) if a["error"] else None
            out.append(a)
        return out

    def running_events(self) -> list[dict]:
        """Event invocations that were running (their end not recorded) when the server stopped."""
        rows = self.db.execute("SELECT request_id, function, version, attempts, created_at, started_at "
                               "FROM invocations WHERE status=? AND invocation_type='Event'",
                               (RUNNING,)).fetchall()
        return [dict(r) for r in rows]

    def queued_event_attempts(self) -> dict:
        """Attempts recorded so far per queued Event invocation (those a restart re-queues)."""
        rows = self.db.execute("SELECT request_id, attempts FROM invocations WHERE status=? AND "
                               "invocation_type='Event'", (QUEUED,)).fetchall()
        return {r[0]: r[1] or 0 for r in rows}

    # ---- event invoke config -------------------------------------------------------------

    def put_event_config(self, function: str, config: dict, now: float) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO event_configs(function, config, updated_at) VALUES (?, ?, ?)",
                       (function, json.dumps(config), now))

    def get_event_config(self, function: str) -> dict | None:
        row = self.db.execute("SELECT config FROM event_configs WHERE function=?", (function,)).fetchone()
        return json.loads(row[0]) if row else None

    # ---- dead letters --------------------------------------------------------------------

    def dead_letters(self, function: str | None = None, limit: int = 100,
                     include_redriven: bool = False) -> list[dict]:
        clauses, params = [], []
        if function:
            clauses.append("function=?")
            params.append(function)
        if not include_redriven:
            clauses.append("redriven_at IS NULL")
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self.db.execute(f"SELECT {', '.join(_DEAD_LETTER_COLUMNS)} FROM dead_letters {where} "
                               f"ORDER BY id DESC LIMIT ?", (*params, int(limit))).fetchall()
        return [dict(zip(_DEAD_LETTER_COLUMNS, tuple(r))) for r in rows]

    def dead_letter_payloads(self, ids: list[int]) -> list[tuple]:
        """``(id, function, payload)`` of entries not yet redriven."""
        out = []
        for i in ids:
            row = self.db.execute("SELECT id, function, payload FROM dead_letters WHERE id=? AND "
                                  "redriven_at IS NULL", (int(i),)).fetchone()
            if row is not None:
                out.append((row[0], row[1], bytes(row[2]) if row[2] is not None else b"null"))
        return out

    def mark_redriven(self, pairs: list[tuple], now: float) -> None:
        """``(dead letter id, new request id)`` pairs."""
        with self._tx() as db:
            db.executemany("UPDATE dead_letters SET redriven_at=?, redrive_request_id=? WHERE id=?",
                           [(now, rid, i) for i, rid in pairs])

    # ---- triggers ------------------------------------------------------------------------

    def add_trigger(self, t: dict) -> None:
        with self._tx() as db:
            db.execute(f"INSERT INTO triggers({', '.join(_TRIGGER_COLUMNS)}) "
                       f"VALUES ({', '.join('?' * len(_TRIGGER_COLUMNS))})",
                       (t["id"], t["kind"], t["function"], json.dumps(t["spec"]), int(t["enabled"]),
                        t["created_at"], t.get("last_fired_at"), t.get("fired", 0), t.get("caught_up", 0),
                        _json_or_null(t.get("state") or {})))

    def triggers(self, function: str | None = None, kind: str | None = None) -> list[dict]:
        clauses, params = [], []
        if function:
            clauses.append("function=?")
            params.append(function)
        if kind:
            clauses.append("kind=?")
            params.append(kind)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self.db.execute(f"SELECT {', '.join(_TRIGGER_COLUMNS)} FROM triggers {where} "
                               f"ORDER BY created_at", params).fetchall()
        return [_trigger_row(r) for r in rows]

    def get_trigger(self, trigger_id: str) -> dict | None:
        row = self.db.execute(f"SELECT {', '.join(_TRIGGER_COLUMNS)} FROM triggers WHERE id=?",
                              (trigger_id,)).fetchone()
        return _trigger_row(row) if row else None

    def update_trigger(self, trigger_id: str, **fields) -> None:
        allowed = {"enabled", "last_fired_at", "fired", "caught_up", "state"}
        cols = [c for c in fields if c in allowed]
        values = [_json_or_null(fields[c]) if c == "state" else
                  (int(fields[c]) if c == "enabled" else fields[c]) for c in cols]
        with self._tx() as db:
            db.execute(f"UPDATE triggers SET {', '.join(f'{c}=?' for c in cols)} WHERE id=?",
                       (*values, trigger_id))

    def fired_trigger(self, trigger_id: str, at: float, state: dict, caught_up: bool, rows: list) -> None:
        """A trigger fired: its Event invocations (as :meth:`add_events`) and its new cursor, in one
        transaction, so a restart neither fires it twice nor loses the firing."""
        with self._tx() as db:
            _insert_events(db, rows)
            db.execute("UPDATE triggers SET last_fired_at=?, fired=fired+?, caught_up=caught_up+?, state=? "
                       "WHERE id=?", (at, len(rows), int(caught_up), _json_or_null(state), trigger_id))

    def delete_trigger(self, trigger_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM triggers WHERE id=?", (trigger_id,))

    def set_triggered_by(self, request_id: str, what: str, trigger_id: str | None = None,
                         at: float | None = None) -> None:
        """Name what made an invocation that was submitted as a direct call (a function URL);
        with ``trigger_id``, that trigger fired at ``at`` (seconds since the epoch): its
        ``fired`` count and ``last_fired_at``, in the same transaction."""
        with self._tx() as db:
            db.execute("UPDATE invocations SET triggered_by=? WHERE request_id=?", (what, request_id))
            if trigger_id is not None:
                db.execute("UPDATE triggers SET last_fired_at=?, fired=fired+1 WHERE id=?", (at, trigger_id))


def _insert_events(db, rows: list) -> None:
    """Queued Event invocations, ``(row, payload)``, inside the caller's transaction."""
    db.executemany(
        "INSERT INTO invocations(request_id, function, version, invocation_type, encoding, "
        "status, payload, created_at, memory_size_mb, input_summary, attempts, triggered_by, "
        "lambda_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
        [(r["request_id"], r["function"], r["version"], r["invocation_type"], r["encoding"],
          QUEUED, payload, r["created_at"], r["memory_size_mb"], r.get("input_summary"),
          r.get("triggered_by"), r.get("lambda_version")) for r, payload in rows])
