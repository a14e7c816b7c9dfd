"""The reads behind the panel's statistics and per-minute metrics (see engine/monitoring.py)."""

from __future__ import annotations

from ...vocabulary import ERROR_STATUSES, QUEUED, RUNNING, THROTTLED


class MetricsTable:
    def function_stats(self) -> list[dict]:
        """Per function, over every stored invocation: counts, in-flight, billed MB-ms."""
        rows = self.db.execute(
            "SELECT function, COUNT(*) AS invocations, "
            "SUM(status IN (?, ?)) AS errors, "
            "SUM(status = ?) AS throttles, "
            "SUM(status IN (?, ?)) AS in_flight, "
            "COUNT(billed_duration_ms) AS billed_requests, "
            "TOTAL(billed_duration_ms * memory_size_mb) AS billed_mb_ms, "
            "COUNT(duration_ms) AS timed, MAX(created_at) AS last_invoked_at "
            "FROM invocations GROUP BY function", (*ERROR_STATUSES, THROTTLED, QUEUED, RUNNING)).fetchall()
        return [dict(r) for r in rows]

    def invocations_by_version(self) -> list[dict]:
        """Per function and Lambda version that ran (``$LATEST`` for rows from before versions were
        recorded), over every stored invocation: how many, and how many failed or timed out."""
        rows = self.db.execute(
            "SELECT function, COALESCE(lambda_version, '$LATEST') AS version, COUNT(*) AS invocations, "
            "SUM(status IN (?, ?)) AS errors FROM invocations "
            # not GROUP BY version: that names the table's own column (the engine version)
            "GROUP BY function, COALESCE(lambda_version, '$LATEST')",
            tuple(ERROR_STATUSES)).fetchall()
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

