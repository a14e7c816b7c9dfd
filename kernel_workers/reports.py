"""Lambda's request ids and REPORT (figures and log lines), defined once for every process that makes them.

The server makes them for every invocation it runs (``jupyter_faas.server.model`` delegates
here); an environment serving a lease (:mod:`kernel_workers.lease`) makes the very same ones
for the invocations a client sends it directly, so the client and the store see one REPORT.
Formats: the ``REPORT``/``START``/``END`` lines as Lambda writes them (reference/lambda.md §3).
Standard library only, like the rest of the runtime.
"""

from __future__ import annotations

import math
import os
import time

#: what the REPORT's status part says, by the invocation's status (vocabulary's names)
TIMED_OUT = "timed_out"
FAILED = "failed"


def report(duration_ms: float, memory_size_mb: int, max_memory_used_mb: int,
           init_duration_ms: float | None, per_gb_second: float, per_request: float) -> dict:
    """REPORT figures as Lambda computes them: billed = ceil(init + duration) to 1 ms, at least
    1; ``gb_seconds`` = memory (GB) × billed (s); ``cost_usd`` = ``per_request`` +
    ``gb_seconds`` × ``per_gb_second`` (USD)."""
    billed = max(1, math.ceil(duration_ms + (init_duration_ms or 0.0)))
    gb_seconds = memory_size_mb / 1024 * billed / 1000
    return {
        "duration_ms": round(duration_ms, 2),
        "billed_duration_ms": billed,
        "memory_size_mb": memory_size_mb,
        "max_memory_used_mb": max_memory_used_mb,
        "init_duration_ms": None if init_duration_ms is None else round(init_duration_ms, 2),
        "gb_seconds": gb_seconds,
        "cost_usd": per_request + gb_seconds * per_gb_second,
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


def start_line(request_id: str, lambda_version: str) -> str:
    return f"START RequestId: {request_id} Version: {lambda_version}"


def end_line(request_id: str) -> str:
    return f"END RequestId: {request_id}"


def error_line(error: dict) -> str:
    return f"[ERROR] {error['errorType']}: {error['errorMessage']}"


def new_request_id() -> str:
    """A request id: a UUID (as Lambda's are) of version 7, ordered by creation time.

    The store's primary-key index then grows at one end, like the table, instead of
    taking each new id on a random page: fewer pages written per invocation, and the
    pages written stay in cache however many invocations are stored.
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = value & ~(0xF << 76) | 0x7 << 76   # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62   # RFC 4122 variant
    h = f"{value:032x}"  # the UUID's canonical text, without building a uuid.UUID
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
