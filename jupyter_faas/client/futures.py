"""``as_completed`` and ``wait`` over what ``spawn`` returns, like their ``concurrent.futures``
namesakes, plus the one thing those lack: Ctrl-C while waiting cancels what is still
running instead of leaving it to run on unobserved.
"""

from __future__ import annotations

import concurrent.futures

from .. import errors
from . import waiting
from .invocation import Invocation, InvocationFuture

FIRST_COMPLETED = concurrent.futures.FIRST_COMPLETED
FIRST_EXCEPTION = concurrent.futures.FIRST_EXCEPTION
ALL_COMPLETED = concurrent.futures.ALL_COMPLETED


def _futures(fs) -> list[InvocationFuture]:
    out = []
    for f in fs:
        if isinstance(f, Invocation):
            f = f._attach()
        if not isinstance(f, concurrent.futures.Future):
            raise errors.InvalidParameter(
                f"expected futures from f.spawn() (or Invocations), got {type(f).__name__}")
        out.append(f)
    return out


def _cancel_live(fs) -> None:
    from .function import _cancel
    _cancel([f for f in fs if isinstance(f, InvocationFuture)], wait=False)


def as_completed(fs, timeout: float | None = None):
    """Yield the futures as they finish (a ``TimeoutError`` after ``timeout`` seconds).
    Ctrl-C cancels the ones still queued or running."""
    fs = _futures(fs)
    try:
        yield from waiting.as_completed(fs, timeout)
    except KeyboardInterrupt:
        _cancel_live(fs)
        raise


def wait(fs, timeout: float | None = None, return_when: str = ALL_COMPLETED):
    """``(done, not_done)`` sets once ``return_when`` (FIRST_COMPLETED, FIRST_EXCEPTION or
    ALL_COMPLETED) holds or ``timeout`` passes.  Ctrl-C cancels what is still running."""
    if return_when not in (FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED):
        raise errors.InvalidParameter(f"return_when={return_when!r}: use faas.FIRST_COMPLETED, "
                                      f"faas.FIRST_EXCEPTION or faas.ALL_COMPLETED")
    fs = _futures(fs)
    try:
        return waiting.wait(fs, timeout, return_when)
    except KeyboardInterrupt:
        _cancel_live(fs)
        raise
