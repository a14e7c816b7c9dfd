"""What a caller holds: an ``InvocationFuture`` while it runs, an ``Invocation`` record after."""

from __future__ import annotations

import concurrent.futures
import threading
from dataclasses import dataclass

from .. import errors
from .remote_errors import rebuild
from .serialization import loads_result


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


class InvocationFuture(concurrent.futures.Future):
    """A ``concurrent.futures.Future`` for one invocation, with ``request_id`` and live ``logs``."""

    def __init__(self, function: str, connection, encoding: str = "pickle"):
        super().__init__()
        self.function = function
        self._connection = connection
        self._encoding = encoding
        self._request_id: str | None = None
        self._accepted_event = threading.Event()
        self.version = None
        self.status = "submitting"
        self.report: Report | None = None
        self.logs: list[str] = []
        self.error: dict | None = None

    @property
    def request_id(self) -> str | None:
        """The request id; waits (briefly) for the server to accept the invocation."""
        self._accepted_event.wait(30)
        return self._request_id

    # -- called from the IO thread --
    def _accepted(self, request_id: str, version) -> None:
        self._request_id = request_id
        self.version = version
        self.status = "queued"
        self.set_running_or_notify_cancel()
        self._accepted_event.set()

    def _log_lines(self, lines) -> None:
        self.logs.extend(line for _, _, line in lines)

    def _fail(self, exc: BaseException) -> None:
        self._accepted_event.set()
        if not self.done():
            self.status = "failed"
            self.set_exception(exc)

    def _done(self, header: dict, body: bytes) -> None:
        self.status = header["status"]
        self.report = Report.from_dict(header.get("report"))
        self.error = header.get("error")
        if self.done():
            return
        if self.status == "succeeded":
            if self._encoding == "json":
                import json
                value = json.loads(body) if body else None
            else:
                try:
                    value = loads_result(body, self.function, self._request_id)
                except errors.SerializationError as exc:
                    self.set_exception(exc)
                    return
            self.set_result(value)
        else:
            self.set_exception(rebuild(self.error, body, self._request_id, self.function, self.logs))

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


class Invocation:
    """A finished (or running) invocation: status, result, logs and REPORT.

    ``Invocation.from_id(request_id)`` loads one from the server, from any process.
    """

    def __init__(self, request_id: str, function: str, status: str, report: Report | None,
                 connection, value=None, exception: BaseException | None = None):
        self.request_id = request_id
        self.function = function
        self.status = status
        self.report = report
        self._connection = connection
        self._value = value
        self._exception = exception
        self._logs = None

    @classmethod
    def _from_future(cls, fut: InvocationFuture) -> "Invocation":
        exc = fut.exception()
        return cls(fut.request_id, fut.function, fut.status, fut.report, fut._connection,
                   None if exc else fut.result(), exc)

    @classmethod
    def from_id(cls, request_id: str, connection=None) -> "Invocation":
        from .connection import default_connection
        conn = connection or default_connection()
        row = conn.request("GET", f"/faas/api/invocations/{request_id}")
        value = exception = None
        if row["status"] == "succeeded":
            resp = conn.request("GET", f"/faas/api/invocations/{request_id}/result", raw=True)
            if row["encoding"] == "json":
                import json
                value = json.loads(resp.body) if resp.body else None
            else:
                value = loads_result(resp.body, row["function"], request_id)
        elif row["status"] not in ("queued", "running"):
            exception = rebuild(row["error"], b"", request_id, row["function"])
        return cls(request_id, row["function"], row["status"], Report.from_dict(row), conn, value, exception)

    @property
    def result(self):
        """The return value; raises the invocation's error if it failed."""
        if self._exception is not None:
            raise self._exception
        return self._value

    @property
    def error(self) -> BaseException | None:
        return self._exception

    @property
    def logs(self) -> list[str]:
        """Every log line, START to REPORT, as stored by the server."""
        if self._logs is None or self.status in ("queued", "running"):
            rows = self._connection.request("GET", f"/faas/api/invocations/{self.request_id}/logs")
            self._logs = [r["line"] for r in rows["logs"]]
        return self._logs

    def __repr__(self) -> str:
        return f"<Invocation {self.function} {self.request_id} {self.status}>"
