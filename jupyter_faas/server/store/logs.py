"""Log lines: every line of every invocation, in order (``seq`` per invocation)."""

from __future__ import annotations

from .rows import INVOCATION_COLUMNS, _invocation_row


class LogsTable:
    def add_logs(self, request_id: str, logs: list) -> None:
        """Append ``(ts, stream, line)`` lines of one invocation, in one transaction."""
        self.add_logs_many([(request_id, logs)])

    def add_logs_many(self, batches: list) -> None:
        """Append the lines of many invocations, ``(request_id, [(ts, stream, line)])``, in one
        transaction (the periodic flush of every running invocation's new lines)."""
        with self._tx() as db:
            db.executemany("INSERT INTO log_lines(request_id, ts, stream, line) VALUES (?, ?, ?, ?)",
                           [(request_id, ts, stream, line)
                            for request_id, logs in batches for ts, stream, line in logs])

    def logs(self, request_id: str, after: int = 0, limit: int = 10000) -> list[dict]:
        rows = self.db.execute(
            "SELECT id, ts, stream, line FROM log_lines WHERE request_id=? AND id>? ORDER BY id LIMIT ?",
            (request_id, after, limit)).fetchall()
        return [dict(r) for r in rows]

    def implicit_lines_of(self, request_id: str) -> dict | None:
        """The invocation whose platform lines are made from its row (``implicit_lines``), with
        its stored lines' first and last ids (``first_line``, ``last_line``, None if none): the
        row (:data:`.rows.INVOCATION_COLUMNS`), or None for any other invocation."""
        row = self.db.execute(
            f"SELECT {', '.join(INVOCATION_COLUMNS)} FROM invocations WHERE request_id=? AND implicit_lines=1",
            (request_id,)).fetchone()
        if row is None:
            return None
        out = _invocation_row(row)
        out["first_line"], out["last_line"] = self.db.execute(
            "SELECT min(id), max(id) FROM log_lines WHERE request_id=?", (request_id,)).fetchone()
        return out

    def implicit_newest(self, function: str, limit: int) -> list[dict]:
        """The newest ``limit`` invocations of ``function`` whose platform lines are made from
        their rows, each as :meth:`implicit_lines_of` gives it."""
        rows = self.db.execute(
            f"SELECT {', '.join(INVOCATION_COLUMNS)} FROM invocations WHERE function=? AND implicit_lines=1 "
            f"ORDER BY created_at DESC LIMIT ?", (function, limit)).fetchall()
        out = []
        for row in rows:
            inv = _invocation_row(row)
            inv["first_line"], inv["last_line"] = self.db.execute(
                "SELECT min(id), max(id) FROM log_lines WHERE request_id=?", (inv["request_id"],)).fetchone()
            out.append(inv)
        return out

    def function_logs(self, function: str, limit: int = 200) -> list[dict]:
        rows = self.db.execute(
            "SELECT * FROM (SELECT l.id, l.request_id, l.ts, l.stream, l.line FROM log_lines l "
            "JOIN invocations i ON i.request_id=l.request_id WHERE i.function=? "
            "ORDER BY l.id DESC LIMIT ?) ORDER BY id", (function, limit)).fetchall()
        return [dict(r) for r in rows]


