"""Log lines: every line of every invocation, in order (``seq`` per invocation)."""

from __future__ import annotations



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

    def function_logs(self, function: str, limit: int = 200) -> list[dict]:
        rows = self.db.execute(
            "SELECT * FROM (SELECT l.id, l.request_id, l.ts, l.stream, l.line FROM log_lines l "
            "JOIN invocations i ON i.request_id=l.request_id WHERE i.function=? "
            "ORDER BY l.id DESC LIMIT ?) ORDER BY id", (function, limit)).fetchall()
        return [dict(r) for r in rows]


