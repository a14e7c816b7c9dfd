"""The engine's clock: wall time for records, and timers, injected so tests can drive them.

The engine asks the time (``time()``, seconds since the epoch, for rows and REPORTs)
and sets timers (``call_later(delay_s, callback, *args)`` returning a handle with
``cancel()`` and ``when`` (the clock's time it fires)).  :class:`LoopClock` is the real
one, over the running asyncio loop.  :class:`FakeClock` (like trio's ``MockClock``)
moves only when a test calls :meth:`FakeClock.advance`, so admission timeouts,
throttling and backoff are tested in microseconds, without sleeps.

Loop turns (``call_soon``) are not the clock's: the group commit counts turns, not time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time


class LoopClock:
    """Real time; timers on the running asyncio loop."""

    def time(self) -> float:
        return time.time()

    def call_later(self, delay: float, callback, *args) -> "_LoopTimer":
        return _LoopTimer(asyncio.get_running_loop(), delay, callback, args)


class _LoopTimer:
    __slots__ = ("handle", "when")

    def __init__(self, loop, delay, callback, args):
        self.when = time.time() + delay
        self.handle = loop.call_later(delay, callback, *args)

    def cancel(self) -> None:
        self.handle.cancel()


class FakeClock:
    """A clock that stands still until :meth:`advance`; timers fire in order as it passes them."""

    def __init__(self, start: float = 1_700_000_000.0):
        self.now = start
        self._timers: list = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback, *args) -> "_FakeTimer":
        timer = _FakeTimer(self.now + max(delay, 0.0), callback, args)
        heapq.heappush(self._timers, (timer.when, next(self._seq), timer))
        return timer

    def advance(self, seconds: float) -> int:
        """Move time forward, firing every timer due on the way; returns how many fired."""
        target = self.now + seconds
        fired = 0
        while self._timers and self._timers[0][0] <= target:
            when, _, timer = heapq.heappop(self._timers)
            self.now = max(self.now, when)
            if not timer.cancelled:
                timer.callback(*timer.args)
                fired += 1
        self.now = target
        return fired

    def pending(self) -> int:
        """Timers set and not yet fired or cancelled."""
        return sum(1 for *_, t in self._timers if not t.cancelled)


class _FakeTimer:
    __slots__ = ("when", "callback", "args", "cancelled")

    def __init__(self, when, callback, args):
        self.when, self.callback, self.args, self.cancelled = when, callback, args, False

    def cancel(self) -> None:
        self.cancelled = True
