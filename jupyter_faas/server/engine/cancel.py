"""Cancel: drop a queued invocation, kill a running one (its end is recorded as ``cancelled``)."""

from __future__ import annotations

import asyncio
import logging

from ..model import CANCELLED, QUEUED

log = logging.getLogger("jupyter_faas.server")

#: how long a REST cancel waits for the cancelled invocation's end to be stored
CANCEL_WAIT_S = 10.0


class Cancellation:
    """Mixed into :class:`~.service.Service` (``self.active``, ``self.backend``, ``self._finish``)."""

    async def cancel_and_wait(self, request_id: str, wait_s: float = CANCEL_WAIT_S) -> bool:
        """:meth:`cancel`, then wait (at most ``wait_s`` seconds) until its end is stored, so a
        read right after the answer sees it cancelled (or however it ended first)."""
        self.settle_leased([request_id])
        inv = self.active.get(request_id)
        if not self.cancel(request_id):
            return False
        if inv is not None:
            try:
                await asyncio.wait_for(asyncio.shield(inv.done), wait_s)
            except asyncio.TimeoutError:
                log.warning("invocation %s was asked to cancel but has not ended after %s s",
                            request_id, wait_s)
        return True

    def cancel(self, request_id: str) -> bool:
        """Drop a queued invocation or kill a running one; True if it was not finished."""
        self.settle_leased([request_id])  # running under a lease: now in ``active``
        inv = self.active.get(request_id)
        if inv is None:
            self.cancel_unstarted(request_id)  # sent to a leased environment, not started yet
            return False
        if inv.status == QUEUED:
            self._finish(inv, CANCELLED, {"error": {"errorType": "Cancelled",
                                                    "errorMessage": "cancelled before it started"},
                                          "error_type": "Cancelled"}, None)
            return True
        inv.cancel_requested = True
        if inv.env is not None:
            self.backend.cancel(inv.env)
        return True

