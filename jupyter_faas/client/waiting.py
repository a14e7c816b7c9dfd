"""Waits the main thread can be interrupted out of, whichever way the interrupt comes.

A ``KeyboardInterrupt`` reaches the main thread two ways.  A real SIGINT (Ctrl-C in a
terminal, a kernel's interrupt) also breaks the system call the thread is blocked in.
``_thread.interrupt_main()`` (a kernel's subshell, a watchdog or timer thread) only sets the
flag the interpreter checks between bytecodes: a thread blocked in C (a lock, ``poll``, a
socket read) sees it when that call returns, which for a sync call is when it ends.  So
every wait here that can be long is cut into steps of at most ``STEP_S`` on the main thread;
other threads, which no interrupt reaches, wait in one go.

The futures' waits are ``concurrent.futures.wait`` and ``as_completed`` as CPython writes
them, with their one blocking call (the waiter's event) stepped.  What an interrupt then
does (cancel, stop waiting) is the caller's business, as it is for Ctrl-C.
"""

from __future__ import annotations

import select
import threading
import time
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION
from concurrent.futures import TimeoutError as FuturesTimeout  # not the builtin one before 3.11
from concurrent.futures._base import (CANCELLED_AND_NOTIFIED, FINISHED, DoneAndNotDoneFutures,
                                      _AcquireFutures, _create_and_install_waiters)

#: how long the main thread may be blocked in C before it sees an ``interrupt_main()``
STEP_S = 0.1
_AS_COMPLETED = "_AS_COMPLETED"  # concurrent.futures' own waiter kind for as_completed


def in_steps(wait, timeout: float | None, *args):
    """``wait(*args, timeout)``, a blocking wait that returns something false once ``timeout``
    passed (``Event.wait``, ``Condition.wait``, :func:`readable`), made of steps of at most
    :data:`STEP_S` on the main thread.  Returns what the last step returned."""
    if (timeout is not None and timeout <= STEP_S) or threading.current_thread() is not threading.main_thread():
        return wait(*args, timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        step = STEP_S if deadline is None else min(STEP_S, deadline - time.monotonic())
        got = wait(*args, max(step, 0.0))
        if got or step < STEP_S:
            return got


def readable(socks, timeout: float | None) -> list:
    """Those of ``socks`` with bytes to read within ``timeout`` s (None: until one has), in one
    ``poll`` (select() refuses descriptors past 1023)."""
    poller = select.poll()
    for sock in socks:
        poller.register(sock, select.POLLIN)
    events = poller.poll(None if timeout is None else timeout * 1000)
    ready = {fd for fd, _ in events}
    return [sock for sock in socks if (sock if isinstance(sock, int) else sock.fileno()) in ready]


def recv(channel, timeout: float | None = None):
    """The next frame of ``channel`` (a ``wire.BlockingChannel``), reading only once its socket
    has bytes; raises ``TimeoutError`` (an ``OSError``, as a socket's own) when none came
    within ``timeout`` s."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        frame = channel.pending()
        if frame is not None:
            return frame
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not in_steps(readable, left, [channel.sock]):
            raise TimeoutError(f"no frame came in {timeout} s")
        channel.fill()


def wait(fs, timeout: float | None = None, return_when: str = ALL_COMPLETED) -> DoneAndNotDoneFutures:
    """``concurrent.futures.wait``, waiting in steps."""
    fs = set(fs)
    with _AcquireFutures(fs):
        done = {f for f in fs if f._state in (CANCELLED_AND_NOTIFIED, FINISHED)}
        not_done = fs - done
        if ((return_when == FIRST_COMPLETED and done) or len(done) == len(fs)
                or (return_when == FIRST_EXCEPTION
                    and any(not f.cancelled() and f.exception() is not None for f in done))):
            return DoneAndNotDoneFutures(done, not_done)
        waiter = _create_and_install_waiters(fs, return_when)
    try:
        in_steps(waiter.event.wait, timeout)
    finally:
        for f in fs:
            with f._condition:
                f._waiters.remove(waiter)
    done.update(waiter.finished_futures)
    return DoneAndNotDoneFutures(done, fs - done)


def as_completed(fs, timeout: float | None = None):
    """``concurrent.futures.as_completed``, waiting in steps."""
    end = None if timeout is None else time.monotonic() + timeout
    fs = set(fs)
    total = len(fs)
    with _AcquireFutures(fs):
        finished = [f for f in fs if f._state in (CANCELLED_AND_NOTIFIED, FINISHED)]
        pending = fs.difference(finished)
        waiter = _create_and_install_waiters(fs, _AS_COMPLETED)
    try:
        yield from _yield_finished(finished, waiter, (fs,))
        while pending:
            left = None if end is None else end - time.monotonic()
            if left is not None and left < 0:
                raise FuturesTimeout(f"{len(pending)} (of {total}) futures unfinished")
            in_steps(waiter.event.wait, left)
            with waiter.lock:
                finished = waiter.finished_futures
                waiter.finished_futures = []
                waiter.event.clear()
            finished.reverse()  # popped from the end: in the order they finished
            yield from _yield_finished(finished, waiter, (fs, pending))
    finally:
        for f in fs:
            with f._condition:
                f._waiters.remove(waiter)


def _yield_finished(finished: list, waiter, sets):
    """Pop and yield ``finished`` from its end, each first dropped from ``sets`` and rid of
    ``waiter`` (so the generator holds no future it already gave out)."""
    while finished:
        f = finished[-1]
        for s in sets:
            s.remove(f)
        with f._condition:
            f._waiters.remove(waiter)
        del f
        yield finished.pop()
