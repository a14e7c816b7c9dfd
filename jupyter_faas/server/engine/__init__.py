"""The engine: submit, admission, group commit, outcomes and REPORT, the registry, the feed.

No tornado, no SQL text, no subprocesses: the store, the backend and the clock are
injected (:class:`Service`'s arguments), so its rules are unit-tested with a fake
backend and a :class:`FakeClock`.
"""

from .async_queue import AsyncService
from .clock import FakeClock, LoopClock
from .monitoring import Monitoring
from .service import Service

__all__ = ["AsyncService", "FakeClock", "LoopClock", "Monitoring", "Service"]
