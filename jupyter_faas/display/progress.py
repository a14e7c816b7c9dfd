"""What a view shows, computed from futures: counts, rates, cost, and a bounded log tail.

No display code here; :mod:`.views` renders these as widgets or text.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from ..vocabulary import FAILED, THROTTLED, TIMED_OUT

#: lines a log pane holds; older ones are counted, not kept (the store keeps them all)
TAIL_LINES = 200

#: statuses the map view counts as failed (a throttled item never ran: for a map, a failure)
FAILED_STATUSES = frozenset({FAILED, TIMED_OUT, THROTTLED})


class LogTail:
    """The newest lines, fed from the IO thread, read by the display thread."""

    def __init__(self, maxlen: int = TAIL_LINES):
        self.lines: deque[str] = deque(maxlen=maxlen)
        self.total = 0        # lines received
        self.skipped = 0      # lines the server did not stream (its rate cap)
        self.version = 0      # bumps on every change, so a redraw can skip an unchanged pane
        self._lock = threading.Lock()

    def add(self, lines, prefix: str = "", skipped: int = 0) -> None:
        with self._lock:
            self.lines.extend(prefix + line for line in lines)
            self.total += len(lines)
            self.skipped += skipped
            self.version += 1

    def snapshot(self) -> tuple[list[str], int]:
        """(shown lines, how many earlier or skipped lines are not shown)."""
        with self._lock:
            shown = list(self.lines)
            return shown, self.total + self.skipped - len(shown)


class MapProgress:
    """Counts, throughput, ETA and cost of a fan-out, from its futures."""

    def __init__(self, function: str, total: int | None):
        self.function = function
        self.total = total
        self.futures: list = []
        self.started = time.monotonic()
        self.ended: float | None = None
        self.logs = LogTail()
        self.gb_seconds = 0.0
        self.cost_usd = 0.0
        self.failed: list[int] = []   # indices, in the order they failed
        self._lock = threading.Lock()
        # bound once: a bound method per item is two more objects per item for the collector
        self._on_log_bound, self._on_done_bound = self._on_log, self._on_done

    def add(self, fut) -> None:
        self.futures.append(fut)
        fut.add_observer(self._on_log_bound, on_done=self._on_done_bound)

    def _on_log(self, fut, lines, skipped) -> None:
        self.logs.add([line for _, stream, line in lines if stream != "platform"],
                      f"[{fut.index}] ", skipped)

    def _on_done(self, fut) -> None:
        with self._lock:
            if fut.report is not None:
                self.gb_seconds += fut.report.gb_seconds
                self.cost_usd += fut.report.cost_usd
            if fut.status in FAILED_STATUSES or (fut.status != "cancelled" and fut.exception() is not None):
                self.failed.append(fut.index)

    def counts(self) -> dict:
        c = {"queued": 0, "running": 0, "succeeded": 0, "failed": 0, "retrying": 0, "cancelled": 0}
        for fut in list(self.futures):
            status = fut.status
            if status in ("submitting", "queued"):
                c["queued"] += 1
            elif status in FAILED_STATUSES:
                c["failed"] += 1
            elif status in c:
                c[status] += 1
        return c

    def elapsed(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def stats(self) -> dict:
        c = self.counts()
        done = c["succeeded"] + c["failed"] + c["cancelled"]
        elapsed = self.elapsed()
        rate = done / elapsed if elapsed > 0 else 0.0
        total = self.total
        eta = (total - done) / rate if total is not None and rate > 0 and self.ended is None else None
        return {**c, "done": done, "submitted": len(self.futures), "total": total,
                "elapsed": elapsed, "rate": rate, "eta": eta,
                "gb_seconds": self.gb_seconds, "cost_usd": self.cost_usd}

    def summary(self) -> str:
        s = self.stats()
        total = s["total"] if s["total"] is not None else s["submitted"]
        parts = [f"{self.function}: {s['done']}/{total} done", f"{s['succeeded']} succeeded",
                 f"{s['failed']} failed"]
        if s["cancelled"]:
            parts.append(f"{s['cancelled']} cancelled")
        if self.ended is None:
            parts += [f"{s['running']} running", f"{s['queued']} queued"]
        parts += [f"{s['rate']:.0f} items/s", f"{fmt_seconds(s['elapsed'])}"]
        if s["eta"] is not None:
            parts.append(f"ETA {fmt_seconds(s['eta'])}")
        parts.append(f"{s['gb_seconds']:.3f} GB-s ≈ ${s['cost_usd']:.6f}")
        return " · ".join(parts)


def fmt_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(seconds), 60)
    return f"{minutes}m{sec:02d}s"


def report_text(report) -> str:
    if report is None:
        return ""
    text = (f"Duration: {report.duration_ms:.2f} ms · Billed: {report.billed_duration_ms} ms · "
            f"Memory: {report.max_memory_used_mb}/{report.memory_size_mb} MB")
    if report.init_duration_ms is not None:
        text += f" · Init: {report.init_duration_ms:.2f} ms"
    return text + f" · {report.gb_seconds:.4f} GB-s ≈ ${report.cost_usd:.7f}"


def error_text(exc: BaseException | None) -> str:
    """The error as a user wants to read it: message, then the remote traceback."""
    if exc is None:
        return ""
    details = getattr(exc, "details", {}) or {}
    text = f"{type(exc).__name__}: {exc}"
    trace = details.get("remote_traceback")
    if trace:
        text += "\n\nRemote traceback:\n" + trace
    return text
