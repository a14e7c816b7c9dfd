"""What a caller holds: an ``InvocationFuture`` while it runs, an ``Invocation`` record after.

Which thread runs what: the client's IO thread tells futures of acceptance, log lines and
ends; observers (:meth:`InvocationFuture.add_observer`, for live views) run there and must
not block; done callbacks (``add_done_callback``) run on the client's callback thread and
may use the whole API (see :mod:`.threads`).
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import os
import threading
import time
from collections import deque
from concurrent.futures._base import CANCELLED_AND_NOTIFIED, FINISHED, PENDING
from dataclasses import dataclass

from .. import errors
from ..vocabulary import TERMINAL
from . import threads, waiting
from .discovery import default_connection
from .remote_errors import rebuild
from .serialization import loads_result, result_buffers


@dataclass(frozen=True, repr=False)
class Report:
    """The REPORT figures of one invocation (``init_duration_ms`` is None when warm).

    ``init_type``: how the environment that ran it was initialized, Lambda's
    ``AWS_LAMBDA_INITIALIZATION_TYPE``: ``on-demand``, ``provisioned-concurrency`` (it hit an
    environment kept by provisioned concurrency: no Init Duration) or ``snap-start`` (forked
    from a snapshot after INIT); None when not known (an invocation stored before it was).

    ``str()`` and ``repr()`` give Lambda's REPORT line (``REPORT RequestId: ... Duration:
    1.23 ms Billed Duration: 2 ms Memory Size: 128 MB Max Memory Used: 13 MB``, then ``Init
    Duration`` on a cold start), followed by the estimated cost.  ``gb_seconds`` and
    ``cost_usd`` are rounded to 4 significant digits.
    """

    duration_ms: float
    billed_duration_ms: int
    memory_size_mb: int
    max_memory_used_mb: int
    init_duration_ms: float | None
    gb_seconds: float = 0.0
    cost_usd: float = 0.0
    request_id: str | None = None
    init_type: str | None = None

    @classmethod
    def from_dict(cls, d: dict | None, request_id: str | None = None) -> "Report | None":
        if not d or d.get("duration_ms") is None:
            return None
        fields = {k: d.get(k) for k in cls.__dataclass_fields__ if k in d}
        for k in ("gb_seconds", "cost_usd"):
            if fields.get(k) is not None:
                fields[k] = float(f"{fields[k]:.4g}")
        if request_id is not None:
            fields["request_id"] = request_id
        return cls(**fields)

    def __str__(self) -> str:
        parts = [f"REPORT RequestId: {self.request_id or '-'}",
                 f"Duration: {self.duration_ms:.2f} ms",
                 f"Billed Duration: {self.billed_duration_ms} ms",
                 f"Memory Size: {self.memory_size_mb} MB",
                 f"Max Memory Used: {self.max_memory_used_mb} MB"]
        if self.init_duration_ms is not None:
            parts.append(f"Init Duration: {self.init_duration_ms:.2f} ms")
        if self.gb_seconds:
            parts.append(f"Cost: ${self.cost_usd:.3g} ({self.gb_seconds:.4g} GB-s)")
        return "\t".join(parts)

    __repr__ = __str__


_settle_lock = threading.Lock()  # orders _settle against a waiter making its Event


class _Condition:
    """A future's condition whose ``threading.Condition`` is made on the first ``wait``.

    ``concurrent.futures.Future`` makes one per future: eight objects (the condition, its
    waiters' deque, five bound methods, the lock) for the garbage collector to walk, per map
    item, while a map's items are never waited on one by one.  Every ``wait`` and ``notify``
    happens with the lock held (as ``Future``'s own code does), so the condition is made under
    the lock, and a ``notify`` before any ``wait`` has no waiter to wake.
    """

    __slots__ = ("_lock", "_cond")

    def __init__(self):
        self._lock = threading.RLock()
        self._cond = None

    def __enter__(self):
        return self._lock.acquire()

    def __exit__(self, *exc) -> None:
        self._lock.release()

    def acquire(self, *args) -> bool:
        return self._lock.acquire(*args)

    def release(self) -> None:
        self._lock.release()

    def wait(self, timeout: float | None = None) -> bool:
        if self._cond is None:
            self._cond = threading.Condition(self._lock)
        return waiting.in_steps(self._cond.wait, timeout)  # Future.result() waits here

    def wait_for(self, predicate, timeout: float | None = None):
        if self._cond is None:
            self._cond = threading.Condition(self._lock)
        return self._cond.wait_for(predicate, timeout)

    def notify(self, n: int = 1) -> None:
        if self._cond is not None:
            self._cond.notify(n)

    def notify_all(self) -> None:
        if self._cond is not None:
            self._cond.notify_all()
log = logging.getLogger("jupyter_faas.client")
#: lines of live log a future keeps in memory (the store keeps every line)
LOG_LINES_KEPT = 10_000


class InvocationFuture(concurrent.futures.Future):
    """A ``concurrent.futures.Future`` for one invocation, with ``request_id``, ``status`` and
    live ``logs`` (the newest lines; ``Invocation.from_id(request_id).logs`` has all of them).

    Attributes a view may read at any time (none waits): ``function``, ``status``
    (``submitting``, ``queued``, ``running``, then the end's), ``accepted_request_id`` (None
    until the server accepted it), ``version``, ``index`` (its position in a ``map``),
    ``input_summary``, ``started``/``ended`` (``time.monotonic()``), ``report``, ``logs``,
    ``logs_skipped``, ``error`` (the server's error record).

    ``cancel()`` keeps :class:`concurrent.futures.Future`'s promise: once it returns True,
    ``cancelled()`` is True, and ``result()`` raises :class:`~jupyter_faas.errors.Cancelled`
    (also a ``concurrent.futures.CancelledError``).
    """

    def __init__(self, function: str, connection, encoding: str = "pickle"):
        # Future.__init__'s fields, with a lighter condition (see _Condition); a test checks
        # that Future has no other field to set
        self._condition = _Condition()
        self._state = PENDING
        self._result = None
        self._exception = None
        self._waiters = []
        self._done_callbacks = []
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
        #: the newest lines, a deque(maxlen=LOG_LINES_KEPT) from the first line on: what
        #: streamed live (a call through a lease streams its handler's lines, not START, END
        #: and REPORT: the store makes those from its row; ``report`` has the figures)
        self.logs: deque[str] | tuple = ()
        self.logs_skipped = 0      # lines the server did not stream (rate limit); all are stored
        self.error: dict | None = None
        self.index: int | None = None     # position in a map
        self.input_summary: str = ""
        self.started: float | None = None  # time.monotonic() when it began running
        self.ended: float | None = None
        self._observers: list = []         # on_logs callables of add_observer
        self._cancel_requested = False     # cancel() was called: cancel it once accepted
        self._cancel_error: BaseException | None = None  # what result() raises once cancelled

    @property
    def request_id(self) -> str | None:
        """The request id; waits (briefly) for the server to accept the invocation."""
        self.wait_accepted(30)
        return self._request_id

    @property
    def accepted_request_id(self) -> str | None:
        """The request id once the server accepted the invocation, else None (never waits)."""
        return self._request_id

    def wait_accepted(self, timeout: float | None = None) -> bool:
        """Wait until the server accepted (or refused) it; False if ``timeout`` passed first."""
        if self._settled:
            return True
        threads.check_may_block("waiting for a request id")
        with _settle_lock:
            if self._settled:
                return True
            if self._settled_event is None:
                self._settled_event = threading.Event()
            event = self._settled_event
        return waiting.in_steps(event.wait, timeout)

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
        if lines:
            if type(self.logs) is tuple:
                self.logs = deque(maxlen=LOG_LINES_KEPT)
            self.logs.extend(line for _, _, line in lines)
        self.logs_skipped += skipped
        for observer in self._observers:
            try:
                observer(self, lines, skipped)
            except Exception:  # noqa: BLE001 - a broken view must not break the connection
                log.exception("an observer of %r failed", self)

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
        self.report = Report.from_dict(header.get("report"), self._request_id)
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
            exc = rebuild(self.error, body, self._request_id, self.function, list(self.logs)[-50:])
            if self.status == "cancelled" and self._cancel_requested:
                self._finish_cancelled(exc)
            else:
                self.set_exception(exc)

    def _finish_cancelled(self, exc: BaseException) -> None:
        """End as cancelled (``cancelled()`` True), from any state but an end."""
        self._settle()
        with self._condition:
            if self._state in (FINISHED, CANCELLED_AND_NOTIFIED):
                return
            self.status = "cancelled"
            self.ended = time.monotonic()
            self._cancel_error = exc
            # What Future.cancel() and set_running_or_notify_cancel() do between them; cancel()
            # itself refuses a RUNNING future, and an accepted invocation is one.
            self._state = CANCELLED_AND_NOTIFIED
            for waiter in self._waiters:
                waiter.add_cancelled(self)
            self._condition.notify_all()
        self._invoke_callbacks()

    def _orphaned_by_fork(self) -> None:
        """In a forked child, this copy of the parent's future: it can never end here."""
        # The parent's threads may have held these at the fork; only this thread is left.
        self._condition = _Condition()
        self._waiters = []
        self._done_callbacks = []   # registered in the parent, and run there
        self._observers = []
        self._settled = True
        self._settled_event = None
        rid = self._request_id
        follow = (f"faas.Invocation.from_id({rid!r}) follows it from any process" if rid else
                  "it had not been accepted yet; faas.invocations() lists what the server has")
        if not self.done():
            self.status = "failed"
            self.set_exception(errors.ServerError(
                f"this future of {self.function} belongs to process {os.getppid()}, which forked "
                f"this one ({os.getpid()}); only that process follows it: {follow}"))

    # -- public --
    def add_done_callback(self, fn) -> None:
        """Call ``fn(fut)`` when it ends (at once, in this thread, if it has already ended).

        Callbacks run on the client's callback thread, in the order futures end, never on
        its IO thread: ``fn`` may use the whole API, blocking calls included.  An exception
        in ``fn`` is logged and ignored, as ``concurrent.futures`` does.
        """
        super().add_done_callback(functools.partial(_off_the_io_thread, fn))

    def add_observer(self, on_logs=None, *, on_done=None) -> None:
        """Watch it live (for views): called on the client's IO thread, so keep them quick.

        ``on_logs(fut, lines, skipped)`` for every batch of live log lines (``lines`` is
        ``[[ts, stream, line], ...]``, ``stream`` ``stdout``, ``stderr`` or ``platform``;
        ``skipped``: lines the server counted but did not stream).  ``on_done(fut)`` once when
        it ends, before done callbacks (at once if it has ended).  A jupyter_faas call that
        waits, made from either, raises :class:`~jupyter_faas.errors.FaaSError` at once; an
        exception they raise is logged and ignored.
        """
        if on_logs is not None:
            self._observers.append(on_logs)
        if on_done is not None:
            super().add_done_callback(on_done)

    def stored_logs(self) -> list[str]:
        """Every log line the server stored for it so far (one REST call); [] before it was
        accepted.  Raises :class:`~jupyter_faas.errors.ServerError` if the server is gone."""
        if self._request_id is None:
            return []
        return Invocation(self._request_id, self.function, self._connection).logs

    def result(self, timeout: float | None = None):
        """The return value, waiting up to ``timeout`` s; raises the invocation's error,
        :class:`~jupyter_faas.errors.Cancelled` if cancelled, ``TimeoutError``."""
        if not self.done():
            threads.check_may_block("fut.result()")
        if self.cancelled():
            raise self._cancelled_error()
        return super().result(timeout)

    def exception(self, timeout: float | None = None):
        """The invocation's error or None, waiting up to ``timeout`` s; raises
        :class:`~jupyter_faas.errors.Cancelled` if cancelled, ``TimeoutError``."""
        if not self.done():
            threads.check_may_block("fut.exception()")
        if self.cancelled():
            raise self._cancelled_error()
        return super().exception(timeout)

    def _cancelled_error(self) -> BaseException:
        return self._cancel_error or errors.Cancelled(f"{self.function}: cancelled",
                                                      request_id=self._request_id)

    def cancel(self) -> bool:
        """Cancel it; True if it will not run to its end, False if it already ended.

        Not sent yet: it never is.  Sent: the server is told (the moment it accepts it, if it
        has not yet), drops it if queued and kills its environment if running.  Waits up to
        30 s for the server's word; then ``cancelled()`` is True and ``result()`` raises
        :class:`~jupyter_faas.errors.Cancelled`.  Raises
        :class:`~jupyter_faas.errors.ServerError` if the server cannot be reached.
        """
        if self.cancelled():
            return True
        if self.done():
            return False
        if self._connection.withdraw(self):
            self._finish_cancelled(errors.Cancelled(
                f"{self.function}: cancelled before it was sent; it never ran"))
            return True
        threads.check_may_block("fut.cancel()")
        self._cancel_requested = True
        rid = self._request_id
        if rid is not None:
            self._connection.cancel([rid])
        # else: its ``accepted`` is on its way; the dispatcher cancels it on arrival
        waiting.wait([self], timeout=30)
        return self.cancelled()

    def __repr__(self) -> str:
        return f"<InvocationFuture {self.function} {self._request_id or '(not accepted yet)'} {self.status}>"


def _after_fork_in_child() -> None:
    global _settle_lock
    _settle_lock = threading.Lock()  # the parent's IO thread may have held it at the fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _off_the_io_thread(fn, fut) -> None:
    if threads.on_io_thread():
        threads.call_soon(fn, fut)
    else:
        fn(fut)


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
        """Follow it over the websocket (live logs while it runs, then its end).  A call of
        this process that the connection already follows is followed through its own future:
        a second watch replaced it, and that future never ended."""
        if self._future is None:
            own = self._connection._dispatcher.following.get(self.request_id)
            if own is not None and not own.done():
                self._future = own
                return own
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
        waiting.wait([fut], timeout)
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

    def _ipython_display_(self) -> None:
        """In a notebook: a live view of it (status, attempts, outcome) until it ends."""
        from ..display.events_view import EventsView
        from ..display.views import widget_frontend
        if not widget_frontend():
            print(repr(self))
            return
        EventsView(f"{self.function} {self.request_id}", lambda: [self.refresh()._row]).show()


def invocations(function: str | None = None, status: str | None = None, limit: int = 100,
                connection=None) -> list[Invocation]:
    """The newest invocations the server recorded (from every process), newest first."""
    conn = connection or default_connection()
    rows = conn.request("GET", "/faas/api/invocations",
                        params={"function": function, "status": status, "limit": limit})["invocations"]
    return [Invocation._from_row(row, conn) for row in rows]
