"""START, [ERROR], END and REPORT lines made from an invocation's row, for those not storing them.

A leased invocation that ended cleanly (:mod:`.leases`) stores only its handler's lines: its
row holds every figure its platform lines show, so they are made here when its lines are read
(the ``implicit_lines`` column; three more rows per invocation were a quarter of what storing a
map of quick items cost).  The lines are the ones the server's own path writes, from the same
functions (:mod:`kernel_workers.reports`), with the row's start and end times.

Line ids.  Readers page by id (``after``: the last id they have).  A made line gets an id that
keeps its place among the stored ones: START the id just before the first stored line (1 when
there is none), the lines after the output the ids just after the last one.  Ids are only
ever compared within one invocation, so these need not be unique across invocations.
"""

from __future__ import annotations

from kernel_workers import reports

from ...vocabulary import FAILED


def made_lines(row: dict) -> tuple[list[dict], list[dict]]:
    """(the lines before the stored ones, the lines after), as ``{id, ts, stream, line}``, for a
    row of :meth:`~..store.logs.LogsTable.implicit_lines_of`."""
    first, last = row.get("first_line"), row.get("last_line")
    start_id = 1 if first is None else first - 1
    start_line, tail = platform_lines(row)
    head = [{"id": start_id, "ts": row["started_at"], "stream": "platform", "line": start_line}]
    ended = row["ended_at"]
    next_id = start_id + 1 if last is None else last + 1
    return head, [{"id": next_id + i, "ts": ended, "stream": "platform", "line": line}
                  for i, line in enumerate(tail)]


def platform_lines(row: dict) -> tuple[str, list[str]]:
    """(its START line, its [ERROR], END and REPORT lines), from an ended invocation's row."""
    rid = row["request_id"]
    tail = []
    error = row.get("error")
    if row["status"] == FAILED and isinstance(error, dict) and error.get("errorType"):
        tail.append(reports.error_line(error))
    tail.append(reports.end_line(rid))
    tail.append(reports.report_line(rid, row_report(row), row["status"], row.get("error_type")))
    return reports.start_line(rid, row.get("lambda_version") or "$LATEST"), tail


def row_report(row: dict) -> dict:
    """The REPORT figures :func:`kernel_workers.reports.report_line` shows, from a row."""
    return {"duration_ms": row["duration_ms"] or 0.0, "billed_duration_ms": row["billed_duration_ms"],
            "memory_size_mb": row["memory_size_mb"], "max_memory_used_mb": row["max_memory_used_mb"],
            "init_duration_ms": row.get("init_duration_ms")}


def invocation_logs(store, request_id: str, after: int, limit: int) -> list[dict]:
    """An invocation's lines with id over ``after``, at most ``limit``: the stored ones, and for
    an invocation with implicit platform lines those made from its row, in their places."""
    stored = store.logs(request_id, after, limit)
    row = store.implicit_lines_of(request_id)
    if row is None:
        return stored
    head, tail = made_lines(row)
    lines = [line for line in head if line["id"] > after] + stored
    if len(stored) < limit:  # the last stored line is in this page: the lines after it follow
        lines += [line for line in tail if line["id"] > after]
    return lines[:limit]


#: stored lines read beyond ``limit`` for a function's newest lines: stored lines are in the
#: order they were written (by id), which differs from their times by up to a flush (0.25 s) of
#: a map's concurrent invocations; the newest by time are among these
CANDIDATES = 100


def function_logs(store, function: str, limit: int) -> list[dict]:
    """The newest ``limit`` lines of a function's invocations, oldest first, by time (then id):
    its stored lines and the lines made from the rows of its invocations that have them, in one
    order whatever ``limit`` is (a smaller limit gives the tail of a larger one's lines)."""
    if limit <= 0:
        return []
    lines = store.function_logs(function, 2 * limit + CANDIDATES)
    for row in store.implicit_newest(function, limit):
        head, tail = made_lines(row)
        lines.extend(dict(line, request_id=row["request_id"]) for line in head + tail)
    lines.sort(key=lambda line: (line["ts"], line["id"]))
    return lines[-limit:]
