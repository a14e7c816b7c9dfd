"""The server's model: the lifecycle's legal moves, typed records, pricing and the REPORT.

::

    queued ──► running ──► succeeded | failed | timed_out | cancelled
      │
      └──────► cancelled | throttled | failed

Invariant: an invocation's row is in the store (``queued``) before it can run,
and its terminal state is written to the store before any caller or
subscriber is told it ended.  The engine drives this machine; this module
only says which moves are legal and what a finished invocation's REPORT is.
The statuses themselves, and the table from outcome kind to status, errorType and
exception class, are the shared vocabulary (:mod:`jupyter_faas.vocabulary`).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import TypedDict

from kernel_workers import reports

from .. import limits
from ..vocabulary import (CANCELLED, FAILED, OUTCOMES, QUEUED, RUNNING, STATUSES, SUCCEEDED,  # noqa: F401
                          TERMINAL, THROTTLED, TIMED_OUT)

_MOVES = {
    QUEUED: frozenset({RUNNING, CANCELLED, THROTTLED, FAILED}),
    RUNNING: frozenset({SUCCEEDED, FAILED, TIMED_OUT, CANCELLED}),
}


#: Lambda's name for the unpublished version: the function's newest engine version
LATEST = "$LATEST"


class IllegalTransition(RuntimeError):
    """A move the lifecycle does not allow (a bug in the engine, never a user's error)."""


def check_move(current: str, new: str) -> None:
    if new not in _MOVES.get(current, ()):
        raise IllegalTransition(f"an invocation cannot go from {current!r} to {new!r}")


class FunctionVersion(TypedDict, total=False):
    """A deployed function version, as the store returns it and the API shows it."""

    name: str
    version: int                  # content-addressed: the same code and config, the same version
    code_sha256: str
    created_at: float             # the function's first deploy (s since the epoch)
    updated_at: float             # this version's deploy
    memory: int                   # MB, 128..10240
    timeout: float                # s, 1..900
    env: dict                     # the function's environment variables
    concurrency: int | None       # reserved concurrency


class InvocationRow(TypedDict, total=False):
    """An invocation as stored and shown (``GET /faas/api/invocations/{id}``); times in s, sizes in MB."""

    request_id: str
    function: str
    version: int
    invocation_type: str          # RequestResponse | Event
    encoding: str                 # pickle | json
    status: str                   # one of vocabulary.STATUSES
    error: dict | None            # Lambda's error body
    error_type: str | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    duration_ms: float | None
    billed_duration_ms: int | None
    memory_size_mb: int
    max_memory_used_mb: int | None
    init_duration_ms: float | None
    environment_id: str | None
    input_summary: str
    lambda_version: str | None    # $LATEST or a published version number (what Lambda says ran)
    init_type: str | None         # how the environment that ran it was initialized (Lambda's
                                  # AWS_LAMBDA_INITIALIZATION_TYPE): on-demand |
                                  # provisioned-concurrency | snap-start; None: it never ran


@dataclass(frozen=True)
class Pricing:
    """USD prices for the REPORT's cost and the panel's estimates: one source, configured once
    (``FaaSServer.price_per_gb_second``, ``price_per_request``).  Defaults: Lambda's
    us-east-1 x86_64 on-demand first tier (reference/lambda.md §7)."""

    per_gb_second: float = 0.0000166667
    per_request: float = 0.0000002

    def cost(self, gb_seconds: float) -> float:
        return self.per_request + gb_seconds * self.per_gb_second


DEFAULT_PRICING = Pricing()


def report(duration_ms: float, memory_size_mb: int, max_memory_used_mb: int,
           init_duration_ms: float | None, pricing: Pricing = DEFAULT_PRICING) -> dict:
    """REPORT figures as Lambda computes them (:func:`kernel_workers.reports.report`, the one
    source an environment serving a lease uses too), at ``pricing``."""
    return reports.report(duration_ms, memory_size_mb, max_memory_used_mb, init_duration_ms,
                          pricing.per_gb_second, pricing.per_request)


def stored_report(row: dict, pricing: Pricing = DEFAULT_PRICING) -> dict | None:
    """The REPORT of a stored invocation (``row``: an :class:`InvocationRow`), as :func:`report`
    gave it when it ended; None for one that never ran (throttled, cancelled while queued)."""
    billed = row.get("billed_duration_ms")
    if billed is None:
        return None
    gb_seconds = row["memory_size_mb"] / 1024 * billed / 1000
    return {"duration_ms": row["duration_ms"], "billed_duration_ms": billed,
            "memory_size_mb": row["memory_size_mb"], "max_memory_used_mb": row["max_memory_used_mb"],
            "init_duration_ms": row["init_duration_ms"], "gb_seconds": gb_seconds,
            "cost_usd": pricing.cost(gb_seconds), "init_type": row.get("init_type")}


report_line = reports.report_line  # Lambda's REPORT line, defined with the figures


def signal_text(returncode: int) -> str:
    """``SIGSEGV (-11)`` for a returncode of -11."""
    try:
        return f"{signal.Signals(-returncode).name} ({returncode})"
    except ValueError:
        return f"signal {-returncode}"


def init_failure_error(kind: str, memory_mb: int, peak_mb: float, limit_s: float | None = None,
                       returncode: int | None = None) -> dict:
    """Lambda's error for an INIT the supervisor ended (``kind``: ``timeout``, ``oom`` or
    ``crash``), without the ``RequestId: … Error:`` prefix: what the invocations that waited for
    that INIT fail with, and the ``reason`` of provisioned concurrency that could not start."""
    if kind == "timeout":
        limit = limits.INIT_TIMEOUT_S if limit_s is None else limit_s
        return {"errorType": "Runtime.InitTimeout",
                "errorMessage": f"INIT did not finish within {limit:g} s (Lambda's INIT limit), so the "
                                f"environment and every process it started were killed before the "
                                f"handler ran. Move slow work out of INIT (into the handler, which has "
                                f"timeout=, up to {limits.TIMEOUT_MAX_S} s), or make INIT faster "
                                f"(load less, or load lazily on the first call)."}
    if kind == "oom":
        peak = max(round(peak_mb), memory_mb)
        return {"errorType": "Runtime.OutOfMemory",
                "errorMessage": f"Runtime exited with error: signal: killed (Runtime.OutOfMemory) "
                                f"during INIT: INIT used {peak} MB at its peak and hit the function's "
                                f"limit of {memory_mb} MB, so the environment was killed before the "
                                f"handler ran. Raise memory= (up to {limits.MEMORY_MAX_MB} MB) or "
                                f"load less at INIT.",
                "peak_mb": peak, "limit_mb": memory_mb}
    if returncode is None:
        why = "the process ended with an unknown status"
    elif returncode < 0:
        why = f"signal: {signal_text(returncode)}"
    else:
        why = f"exit status {returncode} (sys.exit() or os._exit() was called at INIT)"
    return {"errorType": "Runtime.ExitError",
            "errorMessage": f"Runtime exited with error during INIT: {why}, before the handler ran. "
                            f"Run the INIT code with .local() to see where it stops.",
            "returncode": returncode}


new_request_id = reports.new_request_id  # made by a client of a lease too: one definition
