"""An invocation's log lines: kept for its error's tail, told to live listeners, stored in batches.

Every line of an invocation is stored (flushed every 0.25 s while it runs, at once past
5,000 unflushed lines, and with its end in the group commit), told to its listeners (the
client sessions that follow it) and to the feed.  Nothing here caps a flood: each
listener does (the session's per-socket budget; the panel feed's per-batch cap).
"""

from __future__ import annotations

import asyncio

from ..model import RUNNING
from .invocation import Invocation

#: seconds between stores of a running invocation's new lines
FLUSH_S = 0.25
#: unflushed lines that make a store at once (a flood is stored as it comes)
FLUSH_AT_LINES = 5000
#: lines of an invocation kept in memory for the tail quoted in a crash's error
TAIL_LINES = 200


class InvocationLogs:
    """Mixed into :class:`~.service.Service` (``self.store``, ``self.clock``, ``self.feed``, ``self.active``)."""

    def watch(self, request_id: str, listener) -> list | None:
        """Follow a queued or running invocation: its log lines so far, as ``(ts, stream, line)``,
        with ``listener(request_id, entry)`` told of every later line.  None once it has ended.

        The lines still in memory are stored first and read back, and the listener is added
        before the loop runs any of the invocation's code, so no line is missed or repeated.
        """
        inv = self.active.get(request_id)
        if inv is None:
            return None
        self._flush_one(inv)
        lines = [(r["ts"], r["stream"], r["line"]) for r in self.store.logs(request_id, 0, 10_000_000)]
        inv.listeners.append(listener)
        return lines

    def _log(self, inv: Invocation, stream: str, line: str) -> None:
        entry = (self.clock.time(), stream, line)
        inv.logs.append(entry)
        del inv.logs[:-TAIL_LINES]
        inv.unflushed.append(entry)
        for listener in inv.listeners:
            listener(inv.request_id, entry)
        self.feed.line(inv, entry)
        if len(inv.unflushed) >= FLUSH_AT_LINES:
            self._flush_one(inv)

    def _flush_one(self, inv: Invocation) -> None:
        if inv.unflushed:
            self.store.add_logs(inv.request_id, inv.unflushed)
            inv.unflushed = []

    async def _flush_logs(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            self._flush_running()

    def _flush_running(self) -> None:
        """Store every running invocation's new lines, all in one transaction."""
        running = [inv for inv in self.active.values() if inv.status == RUNNING and inv.unflushed]
        if running:
            self.store.add_logs_many([(inv.request_id, inv.unflushed) for inv in running])
            for inv in running:  # only once stored: a failed write keeps them for the next try
                inv.unflushed = []

