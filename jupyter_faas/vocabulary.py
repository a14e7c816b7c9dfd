"""The words client, server, store and panel share, defined once.

Invocation statuses (the lifecycle's states, in the store's ``status`` column, on the
wire and in the panel)::

    queued ──► running ──► succeeded | failed | timed_out | cancelled
      │
      └──────► cancelled | throttled | failed

and one table, :data:`OUTCOMES`, from how an invocation ended in its environment (a
backend's outcome kind) to its status, Lambda's ``errorType`` and the exception class a
client raises.  The panel's TypeScript mirrors :data:`STATUSES` (``labextension/src/types.ts``;
a test checks they agree); the store's SQL takes these values as parameters.
"""

from __future__ import annotations

from typing import NamedTuple

from . import errors

QUEUED, RUNNING = "queued", "running"
SUCCEEDED, FAILED, TIMED_OUT, CANCELLED, THROTTLED = (
    "succeeded", "failed", "timed_out", "cancelled", "throttled")
#: every status, in lifecycle order
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, TIMED_OUT, CANCELLED, THROTTLED)
#: an invocation in one of these has ended for good
TERMINAL = frozenset({SUCCEEDED, FAILED, TIMED_OUT, CANCELLED, THROTTLED})
#: ended and counted as an error in metrics (Lambda's Errors metric: function errors and timeouts)
ERROR_STATUSES = (FAILED, TIMED_OUT)


class OutcomeKind(NamedTuple):
    status: str
    error_type: str | None       # Lambda's errorType (None: the runtime's header says it)
    exception: type | None       # what a client raises (None: no error)


#: outcome kind -> status -> Lambda errorType -> exception class
OUTCOMES = {
    "result": OutcomeKind(SUCCEEDED, None, None),
    "error": OutcomeKind(FAILED, None, errors.FunctionError),          # errorType: the handler's
    "init_error": OutcomeKind(FAILED, None, errors.FunctionError),     # Runtime.* from INIT
    "timeout": OutcomeKind(TIMED_OUT, errors.InvocationTimeout.error_type, errors.InvocationTimeout),
    "oom": OutcomeKind(FAILED, errors.OutOfMemory.error_type, errors.OutOfMemory),
    "crash": OutcomeKind(FAILED, errors.RuntimeExited.error_type, errors.RuntimeExited),
    "cancelled": OutcomeKind(CANCELLED, errors.Cancelled.error_type, errors.Cancelled),
    "throttled": OutcomeKind(THROTTLED, errors.Throttled.error_type, errors.Throttled),
}

