"""From a backend's :class:`~..backends.base.Outcome` to what is recorded: status, error, REPORT.

Pure functions, no I/O: the error bodies here are Lambda's (``errorType``,
``errorMessage``, ``stackTrace``; reference/lambda.md §1.2) with what happened and what
to do in the message.  Which status and exception class each outcome kind leads to
is the vocabulary's table (:data:`jupyter_faas.vocabulary.OUTCOMES`).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from ... import limits
from ...vocabulary import CANCELLED, FAILED, OUTCOMES, TIMED_OUT
from ..model import init_failure_error, signal_text

#: Lambda's hint for a crash, by the signal that ended the process
_SIGNAL_HINTS = {
    "SIGSEGV": " (a segmentation fault: usually a bug in a C extension or ctypes call)",
    "SIGKILL": " (killed from outside the runtime)",
    "SIGABRT": " (abort(): a failed assertion in native code)",
}


@dataclass
class Failure:
    """How a failed outcome is recorded: ``status``, Lambda's ``error`` dict, the pickled
    exception (``body``, for a handler error), the peak memory (MB) and duration (ms) for
    the REPORT, and a platform ``log_line`` to add before END (or None)."""

    status: str
    error: dict
    body: bytes | None
    peak_mb: int
    duration_ms: float
    log_line: str | None = None


def failure(outcome, function: dict, request_id: str, log_tail: list[str]) -> Failure:
    """The record of an outcome that is not a result (``outcome.kind != 'result'``).

    ``log_tail``: the invocation's last output lines, quoted when the runtime exited.
    """
    rid = request_id
    memory = function["memory"]
    peak = round(outcome.max_memory_mb)
    duration = outcome.duration_ms
    kind = outcome.kind
    status = OUTCOMES[kind].status
    body, line = None, None
    if getattr(outcome, "phase", "invoke") == "init" and kind in ("timeout", "oom", "crash"):
        # the supervisor ended INIT (over its limit, or the runtime died): no handler ran
        error = init_failure_error(kind, memory, outcome.max_memory_mb,
                                   outcome.header.get("init_limit_s"), outcome.returncode)
        tail = log_tail[-10:] if kind == "crash" else []
        error["errorMessage"] = (f"RequestId: {rid} Error: {error['errorMessage']}"
                                 + (" Last log lines:\n" + "\n".join(tail) if tail else ""))
        if kind == "oom":
            peak = error["peak_mb"]
        return Failure(status, error, None, peak, 0.0, None)
    if kind in ("error", "init_error"):
        h = outcome.header
        error = {k: h.get(k) for k in ("errorType", "errorMessage", "errorModule", "stackTrace", "stage")}
        if kind == "init_error" and error["stage"] != "init_code":
            error["stage"] = "init"
        if error["errorType"] == "Runtime.OutOfMemory":
            error["errorMessage"] = (
                f"RequestId: {rid} Error: Runtime.OutOfMemory: the handler raised MemoryError at "
                f"{peak} MB of its {memory} MB limit; the environment was replaced. Raise "
                f"memory= (up to {limits.MEMORY_MAX_MB} MB) or use less memory per call.")
            peak = max(peak, memory)
        body = outcome.body or None
    elif kind == "timeout":
        t = function["timeout"]
        error = {"errorType": OUTCOMES[kind].error_type,
                 "errorMessage": f"RequestId: {rid} Error: Task timed out after {t:.2f} seconds. "
                                 f"The environment and every process it started were killed; "
                                 f"raise timeout= (up to {limits.TIMEOUT_MAX_S} s) if it needs longer."}
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {rid} Task timed out after {t:.2f} seconds"
        duration = t * 1000
    elif kind == "oom":
        peak = max(peak, memory)
        error = {"errorType": OUTCOMES[kind].error_type,
                 "errorMessage": f"RequestId: {rid} Error: Runtime exited with error: signal: killed "
                                 f"(Runtime.OutOfMemory): the environment used {peak} MB at its peak and "
                                 f"hit its limit of {memory} MB, so it was killed. Raise memory= (up to "
                                 f"{limits.MEMORY_MAX_MB} MB) or use less memory per call.",
                 "peak_mb": peak, "limit_mb": memory}
    elif kind == "cancelled":
        error = {"errorType": OUTCOMES[kind].error_type,
                 "errorMessage": f"RequestId: {rid} was cancelled while running; its environment "
                                 f"was killed."}
    else:  # crash
        rc = outcome.returncode
        if rc is None:
            why = "the process ended with an unknown status"
        elif rc < 0:
            why = f"signal: {signal_text(rc)}"
        else:
            why = f"exit status {rc}"
        hint = _SIGNAL_HINTS.get(why.split(": ")[-1].split(" ")[0], "")
        if rc is not None and rc >= 0:
            hint = " (sys.exit() or os._exit() was called in the function)"
        tail = log_tail[-10:]
        error = {"errorType": OUTCOMES["crash"].error_type,
                 "errorMessage": f"RequestId: {rid} Error: Runtime exited with error: {why}{hint}."
                                 + (" Last log lines:\n" + "\n".join(tail) if tail else ""),
                 "returncode": rc}
    assert status in (FAILED, TIMED_OUT, CANCELLED)
    return Failure(status, error, body, peak, duration, line)


def init_lines(function: dict, init_ms: float | None, printed: list) -> list[tuple[str, str]]:
    """The log lines of a cold start before START: ``INIT_START`` and what INIT printed.

    ``printed``: ``(time, stream, line)`` the environment wrote at INIT; none when warm.
    """
    if init_ms is None:
        return []
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    return ([("platform", f"INIT_START Runtime Version: python:{python} "
                         f"Version: {function.get('lambda_version', '$LATEST')}")]
            + [(stream, line) for _, stream, line in printed])
