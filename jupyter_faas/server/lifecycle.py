"""The invocation lifecycle: one small state machine with no I/O.

::

    queued ──► running ──► succeeded | failed | timed_out | cancelled
      │
      └──────► cancelled | throttled

Invariant: an invocation's row is in the store (``queued``) before it can run,
and its terminal state is written to the store before any caller or
subscriber is told it ended.  The invoker drives this machine; this module
only says which moves are legal and what a finished invocation's REPORT is.
"""

from __future__ import annotations

import math
import os
import time
import uuid

QUEUED, RUNNING = "queued", "running"
SUCCEEDED, FAILED, TIMED_OUT, CANCELLED, THROTTLED = (
    "succeeded", "failed", "timed_out", "cancelled", "throttled")
TERMINAL = frozenset({SUCCEEDED, FAILED, TIMED_OUT, CANCELLED, THROTTLED})

_MOVES = {
    QUEUED: frozenset({RUNNING, CANCELLED, THROTTLED, FAILED}),
    RUNNING: frozenset({SUCCEEDED, FAILED, TIMED_OUT, CANCELLED}),
}

#: us-east-1 x86_64 on-demand prices (reference/lambda.md §7).
PRICE_PER_GB_SECOND = 0.0000166667
PRICE_PER_REQUEST = 0.0000002


class IllegalTransition(RuntimeError):
    pass


def check_move(current: str, new: str) -> None:
    if new not in _MOVES.get(current, ()):
        raise IllegalTransition(f"an invocation cannot go from {current!r} to {new!r}")


def status_for_error(error_type: str) -> str:
    if error_type == "Sandbox.Timedout":
        return TIMED_OUT
    if error_type == "Cancelled":
        return CANCELLED
    return FAILED


def report(duration_ms: float, memory_size_mb: int, max_memory_used_mb: int,
           init_duration_ms: float | None) -> dict:
    """REPORT figures as Lambda computes them: billed = ceil(init + duration) to 1 ms."""
    billed = max(1, math.ceil(duration_ms + (init_duration_ms or 0.0)))
    gb_seconds = memory_size_mb / 1024 * billed / 1000
    return {
        "duration_ms": round(duration_ms, 2),
        "billed_duration_ms": billed,
        "memory_size_mb": memory_size_mb,
        "max_memory_used_mb": max_memory_used_mb,
        "init_duration_ms": None if init_duration_ms is None else round(init_duration_ms, 2),
        "gb_seconds": gb_seconds,
        "cost_usd": PRICE_PER_REQUEST + gb_seconds * PRICE_PER_GB_SECOND,
    }


def report_line(request_id: str, rep: dict, status: str | None = None,
                error_type: str | None = None) -> str:
    """The REPORT log line, tab-separated as Lambda writes it."""
    parts = [f"REPORT RequestId: {request_id}",
             f"Duration: {rep['duration_ms']:.2f} ms",
             f"Billed Duration: {rep['billed_duration_ms']} ms",
             f"Memory Size: {rep['memory_size_mb']} MB",
             f"Max Memory Used: {rep['max_memory_used_mb']} MB"]
    if rep.get("init_duration_ms") is not None:
        parts.append(f"Init Duration: {rep['init_duration_ms']:.2f} ms")
    if status == TIMED_OUT:
        parts.append("Status: timeout")
    elif status == FAILED and error_type and error_type.startswith("Runtime."):
        parts.append(f"Status: error\tError Type: {error_type}")
    return "\t".join(parts) + "\t"


def new_request_id() -> str:
    """A request id: a UUID (as Lambda's are) of version 7, ordered by creation time.

    The store's primary-key index then grows at one end, like the table, instead of
    taking each new id on a random page: fewer pages written per invocation, and the
    pages written stay in cache however many invocations are stored.
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = value & ~(0xF << 76) | 0x7 << 76   # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62   # RFC 4122 variant
    return str(uuid.UUID(int=value))
