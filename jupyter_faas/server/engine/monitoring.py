"""Monitoring: per-function statistics and per-minute metrics, as Lambda's console shows them.

What the side panel's Functions table and Metrics charts read. Everything is derived from
the invocations in the store (the store runs the SQL; this module does the arithmetic), so
the figures survive a restart and agree with the invocation list. It does not keep
counters of its own, and it does not push anything: the event feed is :mod:`.feed`.

Cost is an estimate with Lambda's public on-demand prices (x86, first tier; configurable
with ``FaaSServer.price_per_gb_second`` and ``FaaSServer.price_per_request``): a request
is billed when it ran (throttled and cancelled-while-queued invocations are not), and
GB-seconds are ``memory_size_mb / 1024 * billed_duration_ms / 1000``.
"""

from __future__ import annotations

import json
import math
import time

from ...errors import InvalidParameter, ResourceNotFound
from ...vocabulary import ERROR_STATUSES
from ..model import DEFAULT_PRICING, Pricing

#: How far back a metrics window may reach (Lambda's console offers up to weeks; a local
#: store is read per minute in Python, so one day keeps a request well under a second).
MAX_WINDOW_MINUTES = 24 * 60
#: Durations the Metrics charts plot per minute (Lambda's p50/p90/p99 statistics).
PERCENTILES = (50, 90, 99)
#: Longest an invocation can run (Lambda's 900 s): one that started this long before a
#: window can still overlap it, which matters for concurrent executions.
LONGEST_RUN_S = 900


def input_summary(payload: bytes, encoding: str, limit: int = 200, buffer_bytes: int = 0) -> str:
    """A short, safe description of an invocation's input, kept after the payload is dropped.

    JSON is shown (shortened); a pickle is never unpickled here, only measured (with its
    ``buffer_bytes`` of out-of-band buffers).
    """
    if encoding == "json":
        text = payload.decode("utf-8", errors="replace")
        try:
            text = json.dumps(json.loads(text), separators=(",", ":"))
        except ValueError:
            pass
        return text if len(text) <= limit else text[:limit - 1] + "…"
    return f"pickled arguments, {_size(len(payload) + buffer_bytes)}"


def _size(n: int) -> str:
    for unit in ("bytes", "kB", "MB"):
        if n < 1024 or unit == "MB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (what CloudWatch's pNN statistic reports) of sorted values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


class Monitoring:
    def __init__(self, store, pricing: Pricing = DEFAULT_PRICING, before_read=None):
        self.store = store
        #: called before every read of the store: the service folds its leases' journals
        #: (what leased environments ran is stored before it is counted)
        self.before_read = before_read or (lambda: None)
        self.pricing = pricing  # the same prices as every REPORT's cost

    def function_stats(self, environments=None) -> list[dict]:
        """Every deployed function with its configuration and its invocations' figures, and
        what ``environments(function)`` adds (the service's
        :meth:`~.provisioning.Provisioning.environments`: provisioned concurrency, snapshot)."""
        self.before_read()
        stats = {row["function"]: row for row in self.store.function_stats()}
        out = []
        for function in self.store.list_functions():
            name = function["name"]
            row = stats.get(name, {})
            timed = row.get("timed", 0)
            # Two indexed OFFSET lookups per function instead of reading every duration.
            p50 = self.store.duration_at_rank(name, max(1, math.ceil(0.50 * timed)) - 1) if timed else None
            p99 = self.store.duration_at_rank(name, max(1, math.ceil(0.99 * timed)) - 1) if timed else None
            gb_seconds = row.get("billed_mb_ms", 0.0) / 1024 / 1000
            requests = row.get("billed_requests", 0)
            out.append({
                "name": name, "version": function["version"], "memory": function["memory"],
                "timeout": function["timeout"], "concurrency": function.get("concurrency"),
                "updated_at": function["updated_at"],
                "invocations": row.get("invocations", 0), "errors": row.get("errors", 0),
                "throttles": row.get("throttles", 0), "in_flight": row.get("in_flight", 0),
                "duration_p50_ms": p50, "duration_p99_ms": p99,
                "gb_seconds": gb_seconds,
                "cost_usd": requests * self.pricing.per_request + gb_seconds * self.pricing.per_gb_second,
                "last_invoked_at": row.get("last_invoked_at"),
            })
            if environments is not None:
                try:
                    out[-1].update(environments(function))
                except ResourceNotFound:  # deleted while this ran
                    out[-1].update({"provisioned": [], "snapshot": None})
        return out

    def versions(self, versions) -> list[dict]:
        """Every deployed function's Lambda versions for the panel: published versions, aliases
        (and their weights) and its invocations split by the version that ran.  ``versions``:
        the service's :class:`~.versions.Versions`."""
        self.before_read()
        split: dict[str, list] = {}
        for row in self.store.invocations_by_version():
            split.setdefault(row["function"], []).append(
                {"version": row["version"], "invocations": row["invocations"], "errors": row["errors"] or 0})
        out = []
        for function in self.store.list_functions():
            name = function["name"]
            try:
                listed, aliased = versions.list(name), versions.aliases(name)
            except ResourceNotFound:  # deleted while this ran
                continue
            published = [{"version": v["lambda_version"], "engine_version": v["version"],
                          "description": v.get("description", ""), "published_at": v.get("published_at")}
                         for v in listed]
            aliases = [{"name": a["name"], "version": a["version"], "weights": a["weights"],
                        "description": a["description"]} for a in aliased]
            by_version = sorted(split.get(name, []), key=lambda r: _version_order(r["version"]))
            out.append({"name": name, "versions": published, "aliases": aliases,
                        "invocations_by_version": by_version})
        return out

    def prices(self) -> dict:
        return {"per_gb_second": self.pricing.per_gb_second, "per_request": self.pricing.per_request}

    def metrics(self, function: str, minutes: int, now: float | None = None) -> dict:
        """Per-minute series over the last ``minutes`` minutes, oldest first.

        ``invocations`` counts invocations created in the minute, ``errors`` those of them
        that failed or timed out, ``throttles`` those throttled; ``duration_pNN_ms`` are
        over the ones that ran; ``concurrent_executions`` is the most that were running at
        once at any moment of the minute (Lambda's ConcurrentExecutions, Maximum).
        """
        self.before_read()
        if not 1 <= minutes <= MAX_WINDOW_MINUTES:
            raise InvalidParameter(f"minutes={minutes} is out of range 1..{MAX_WINDOW_MINUTES}")
        now = time.time() if now is None else now
        end = (math.floor(now / 60) + 1) * 60  # the end of the current minute
        start = end - minutes * 60
        rows = self.store.timeline(function, start - LONGEST_RUN_S, end)
        n = minutes
        invocations, errors, throttles = [0] * n, [0] * n, [0] * n
        durations: list[list[float]] = [[] for _ in range(n)]
        errors_status = ERROR_STATUSES
        for created_at, _, _, status, duration_ms in rows:
            if created_at < start:
                continue
            b = int((created_at - start) // 60)
            invocations[b] += 1
            if status in errors_status:
                errors[b] += 1
            elif status == "throttled":
                throttles[b] += 1
            if duration_ms is not None:
                durations[b].append(duration_ms)
        series = {"function": function, "start": start, "period_s": 60,
                  "timestamps": [start + 60 * i for i in range(n)],
                  "invocations": invocations, "errors": errors, "throttles": throttles,
                  "concurrent_executions": _concurrency(rows, start, n, now)}
        for p in PERCENTILES:
            series[f"duration_p{p}_ms"] = [percentile(sorted(d), p) for d in durations]
        return series


def _version_order(version: str) -> tuple:
    """``$LATEST`` first, then published versions by number."""
    return (0, 0) if not version.isdigit() else (1, int(version))


def _concurrency(rows: list[tuple], start: float, n: int, now: float) -> list[int]:
    """The peak number of overlapping runs in each minute (a sweep over start/end events)."""
    events = []
    for _, started_at, ended_at, _, _ in rows:
        if started_at is None:
            continue
        events.append((started_at, 1))
        events.append((ended_at if ended_at is not None else now, -1))
    events.sort(key=lambda e: (e[0], e[1]))  # an end before a start at the same instant
    peaks = [0] * n
    running = 0
    minute = -1  # the last bucket whose start the sweep has passed (-1: before the window)
    for t, delta in events:
        b = int((t - start) // 60)
        while minute < min(b, n - 1):
            minute += 1
            peaks[minute] = max(peaks[minute], running)  # what was running across the boundary
        running += delta
        if 0 <= b < n:
            peaks[b] = max(peaks[b], running)
    while minute < n - 1:
        minute += 1
        peaks[minute] = max(peaks[minute], running)
    return peaks
