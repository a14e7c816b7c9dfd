"""The threads the client owns, and what may run on them.

- The **IO thread** (one per :class:`~.connection.Connection`) runs the network: every
  REST call and websocket frame goes through its asyncio loop.  Nothing on it may wait
  for it, so a blocking jupyter_faas call made there (from an observer of a future) raises
  :class:`~jupyter_faas.errors.FaaSError` at once instead of wedging the client:
  :func:`check_may_block`.
- The **callback thread** (one per process, started on first use) runs the callables given
  to ``InvocationFuture.add_done_callback`` for futures that end on the IO thread, in the
  order they ended.  A callback may therefore use the whole API, blocking calls too.

After a fork the child has neither thread (only the forking thread survives): each is made
again on first use in the child, never shared with the parent.
"""

from __future__ import annotations

import logging
import os
import queue
import threading

from .. import errors

log = logging.getLogger("jupyter_faas.client")
_owned = threading.local()


def mark_io_thread() -> None:
    """Called first thing on an IO thread."""
    _owned.io = True


def on_io_thread() -> bool:
    return getattr(_owned, "io", False)


def check_may_block(what: str) -> None:
    """Raise at once if the caller is an IO thread, where waiting for the network never ends."""
    if on_io_thread():
        raise errors.FaaSError(
            f"{what} cannot wait on the client's IO thread (it is the thread that would answer). "
            f"This code runs in an observer of a future (add_observer), which must not block; "
            f"use fut.add_done_callback instead, whose callbacks run on their own thread")


class _CallbackRunner:
    """One daemon thread that runs done-callbacks handed over by the IO thread."""

    def __init__(self):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, fn, fut) -> None:
        self._queue.put((fn, fut))
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="jupyter_faas-callbacks",
                                                    daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        while True:
            fn, fut = self._queue.get()
            run_callback(fn, fut)


def run_callback(fn, fut) -> None:
    try:
        fn(fut)
    except Exception:  # noqa: BLE001 - as concurrent.futures does: a bad callback is logged
        log.exception("exception calling callback for %r", fut)


_callbacks = _CallbackRunner()


def call_soon(fn, fut) -> None:
    """Run ``fn(fut)`` on the callback thread."""
    _callbacks.submit(fn, fut)


def _after_fork_in_child() -> None:
    global _callbacks
    # The parent's queued callbacks are the parent's to run; the child starts empty.
    _callbacks = _CallbackRunner()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
