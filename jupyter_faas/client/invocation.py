"""What a caller holds: an ``InvocationFuture`` while it runs, an ``Invocation`` record after."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections import deque
from dataclasses import dataclass

from .. import errors
from .remote_errors import rebuild
from .serialization import loads_result, result_buffers


@dataclass(frozen=True)
class Report:
    """The REPORT figures of one invocation (``init_duration_ms`` is None when warm)."""

    duration_ms: float
    billed_duration_ms: int
    memory_size_mb: int
    max_memory_used_mb: int
    init_duration_ms: float | None
    gb_seconds: float = 0.0
    cost_usd: float = 0.0

    @classmethod
    def from_dict(cls, d: dict | None) -> "Report | None":
        if not d or d.get("duration_ms") is None:
            return None
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__ if k in d})


TERMINAL = frozenset({"succeeded", "failed", "timed_out", "cancelled", "throttled"})
_settle_lock = threading.Lock()  # orders _settle against a waiter making its Event
#: lines of live log a future keeps in memory (the store keeps every line)
LOG_LINES_KEPT = 10_000


class InvocationFuture(concurrent.futures.Future):
    """A ``concurrent.futures.Future`` for one invocation, with ``request_id``, ``status`` and
    live ``logs`` (the newest lines; ``Invocation.from_id(request_id).logs`` has all of them).
    """

    def __init__(self, function: str, connection, encoding: str = "pickle"):
        super().__init__()
        self.function = function
        self._connection = connection
        self._encoding = encoding
        self._request_id: str | None = None
        # Accepted, failed or done: what ``request_id`` waits for.  The Event is made only
        # for a waiter that comes early (one per future cost a second Condition per map item).
        self._settled = False
        self._settled_event: threading.Event | None = None
        self.version = None
        self.status = "submitting"
        self.report: Report | None = None
        self.logs: deque[str] = deque(maxlen=LOG_LINES_KEPT)
        self.logs_skipped = 0      # lines the server did not stream (rate limit); all are stored
        self.error: dict | None = None
        self.index: int | None = None     # position in a map
        self.input_summary: str = ""
        self.started: float | None = None  # time.monotonic() when it began running
        self.ended: float | None = None
        self._observers: list = []         # callables(future, lines) for live views

    @property
    def request_id(self) -> str | None:
        """The request id; waits (briefly) for the server to accept the invocation."""
        self.wait_accepted(30)
        return self._request_id

    def wait_accepted(self, timeout: float | None = None) -> bool:
        """Wait until the server accepted (or refused) it; False if ``timeout`` passed first."""
        if self._settled:
            return True
        with _settle_lock:
            if self._settled:
                return True
            if self._settled_event is None:
                self._settled_event = threading.Event()
            event = self._settled_event
        return event.wait(timeout)

    def _settle(self) -> None:
        # Not the Future's condition: a notify there wakes result(timeout) waiters, which
        # would then time out early.
        with _settle_lock:
            self._settled = True
            event = self._settled_event
        if event is not None:
            event.set()

    # -- called from the IO thread --
    def _accepted(self, request_id: str, version) -> None:
        self._request_id = request_id
        self.version = version
        self.status = "queued"
        self.set_running_or_notify_cancel()
        self._settle()

    def _log_lines(self, lines, skipped: int = 0) -> None:
        for _, stream, line in lines:
            if stream == "platform" and line.startswith("START ") and self.status == "queued":
                self.status = "running"
                self.started = time.monotonic()
        self.logs.extend(line for _, _, line in lines)
        self.logs_skipped += skipped
        for observer in self._observers:
            observer(self, lines, skipped)

    def _fail(self, exc: BaseException) -> None:
        self._settle()
        if not self.done():
            self.status = "failed"
            self.ended = time.monotonic()
            self.set_exception(exc)

    def _done(self, header: dict, body: bytes) -> None:
        self._settle()
        if self.done():
            return
        self.status = header["status"]
        self.report = Report.from_dict(header.get("report"))
        self.error = header.get("error")
        self.ended = time.monotonic()
        if self.status == "succeeded":
            if self._encoding == "json":
                import json
                value = json.loads(body) if body else None
            else:
                try:
                    data, buffers = result_buffers(header.get("buffers"), body, self._connection.buffer_dir,
                                                   self.function, self._request_id)
                    value = loads_result(data, self.function, self._request_id, buffers)
                except errors.SerializationError as exc:
                    self.set_exception(exc)
                    return
            self.set_result(value)
        else:
            self.set_exception(rebuild(self.error, body, self._request_id, self.function,
                                       list(self.logs)[-50:]))

    # -- public --
    def cancel(self) -> bool:
        """Cancel: drop it if queued, kill its environment if running. False once finished."""
        if self.done():
            return False
        if self._request_id is not None:
            self._connection.cancel([self._request_id])
            try:
                self.exception(timeout=30)
            except concurrent.futures.TimeoutError:
                pass
            return self.status == "cancelled"
        return super().cancel()

    def __repr__(self) -> str:
        return f"<InvocationFuture {self.function} {self._request_id or '(not accepted yet)'} {self.status}>"


class Invocation:
    """One invocation as the server records it: status, result, logs and REPORT.

    ``Invocation.from_id(request_id)`` works from any process, including a new
    kernel after a restart: ``status`` and ``logs`` so far while it runs, and
    ``result`` (which waits for the end), ``error`` and ``report`` when it is done.
    """

    def __init__(self, request_id: str, function: str, connection, row: dict | None = None,
                 future: InvocationFuture | None = None):
        self.request_id = request_id
        self.function = function
        self._connection = connection
        self._row = row or {}
        self._future = future

    @classmethod
    def _from_future(cls, fut: InvocationFuture) -> "Invocation":
        return cls(fut.request_id, fut.function, fut._connection, future=fut)

    @classmethod
    def from_id(cls, request_id: str, connection=None) -> "Invocation":
        from .connection import default_connection
        conn = connection or default_connection()
        row = conn.request("GET", f"/faas/api/invocations/{request_id}")
        return cls(request_id, row["function"], conn, row)

    @classmethod
    def _from_row(cls, row: dict, connection) -> "Invocation":
        return cls(row["request_id"], row["function"], connection, row)

    # -- state --
    @property
    def status(self) -> str:
        """queued, running, succeeded, failed, timed_out, cancelled or throttled (live)."""
        if self._future is not None:
            return self._future.status
        if self._row.get("status") not in TERMINAL:
            self.refresh()
        return self._row.get("status", "unknown")

    def refresh(self) -> "Invocation":
        self._row = self._connection.request("GET", f"/faas/api/invocations/{self.request_id}")
        return self

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def attempts(self) -> int:
        """Attempts that ran (an async invocation's first try plus its retries so far)."""
        if self._row.get("attempts") is None or self._row.get("status") not in TERMINAL:
            self.refresh()
        if self._row.get("attempts") is None:  # a direct call: one attempt once it started
            return int(self._row.get("started_at") is not None)
        return self._row["attempts"]

    @property
    def report(self) -> "Report | None":
        if self._future is not None:
            return self._future.report
        return Report.from_dict(self._row)

    def _attach(self) -> InvocationFuture:
        """Follow it over the websocket (live logs while it runs, then its end)."""
        if self._future is None:
            fut = InvocationFuture(self.function, self._connection, self._row.get("encoding", "pickle"))
            fut._accepted(self.request_id, self._row.get("version"))
            if self._row.get("status") == "running":
                fut.status, fut.started = "running", time.monotonic()
            self._connection.watch({self.request_id: fut}, logs=self._row.get("status") not in TERMINAL)
            self._future = fut
        return self._future

    def wait(self, timeout: float | None = None) -> "Invocation":
        """Block until it ends (Ctrl-C stops waiting; the invocation keeps running)."""
        fut = self._attach()
        concurrent.futures.wait([fut], timeout)
        if not fut.done():
            raise TimeoutError(f"invocation {self.request_id} is still {fut.status} after {timeout} s")
        return self

    def get(self, timeout: float | None = None):
        """The return value, waiting for the end; raises the invocation's error if it failed."""
        return self.wait(timeout)._future.result()

    @property
    def result(self):
        """The return value (waits for the end); raises the invocation's error if it failed."""
        return self.get()

    @property
    def error(self) -> BaseException | None:
        """The exception it failed with (waits for the end), or None."""
        return self.wait()._future.exception()

    @property
    def logs(self) -> list[str]:
        """Every log line so far, START to REPORT, as stored by the server."""
        lines, after = [], 0
        while True:
            rows = self._connection.request("GET", f"/faas/api/invocations/{self.request_id}/logs",
                                            params={"after": after, "limit": 100000})["logs"]
            lines.extend(r["line"] for r in rows)
            if len(rows) < 100000:
                return lines
            after = rows[-1]["id"]

    def cancel(self) -> bool:
        """Drop it if queued, kill it if running; False if it had already ended."""
        reply = self._connection.request("POST", f"/faas/api/invocations/{self.request_id}/cancel")
        if self._future is None:
            self.refresh()
        return reply["cancelled"]

    def __repr__(self) -> str:
        return f"<Invocation {self.function} {self.request_id} {self.status}>"


def invocations(function: str | None = None, status: str | None = None, limit: int = 100,
                connection=None) -> list[Invocation]:
    """The newest invocations the server recorded (from every process), newest first."""
    from .connection import default_connection
    conn = connection or default_connection()
    rows = conn.request("GET", "/faas/api/invocations",
                        params={"function": function, "status": status, "limit": limit})["invocations"]
    return [Invocation._from_row(row, conn) for row in rows]
