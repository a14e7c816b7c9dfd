"""The group commit: starts and ends of invocations written together, then acted on.

Starts (``running``) and ends of invocations are queued and written in one transaction
at the next turn of the loop, for every invocation that started or ended in this one;
while invocations are queued and every turn adds more (a big map in full flow), a few
more turns, so a transaction carries several.

Where it is written: with a backlog (a map in flow, where the loop is the bottleneck)
the batch goes to the store's writer thread (``store.submit_batch``, see
``store/writer.py``) and the loop goes on parsing frames and sending results while
SQLite works; the next batch gathers meanwhile and goes when this one is done (one at a
time, so a start is never written after its own end).  Without one (a lone call) it is
written inline: a hand-off to a thread would only add latency.

The durability rules hold either way, because the acting happens only after the commit
(:meth:`GroupCommit._committed`): an invocation is sent to its environment only after its
``running`` row committed, and its waiters and subscribers hear of its end only after its
terminal row committed.  Accepting an invocation is not deferred: ``submit`` returns only
once its row is committed.
"""

from __future__ import annotations

import asyncio
import logging

from ..model import FAILED
from .invocation import Invocation

log = logging.getLogger("jupyter_faas.server")

#: loop turns a group commit may wait for more starts and ends, while invocations are
#: queued and each turn adds some
COMMIT_DEFER_TURNS = 3


class GroupCommit:
    """Mixed into :class:`~.service.Service` (its ``_pending_*``, ``_commit_*`` and ``_writing``
    state, ``store``, ``backend``, ``files``, ``backlog``, ``_dispatch``, ``_tell_finished``, ``_end``)."""

    def _queue_running(self, inv: Invocation, started_at: float, env) -> None:
        """Write it as running with the next group commit, which then sends it to ``env``."""
        self._pending_running.append((inv, started_at, env))
        self._commit_soon()

    def _commit_soon(self) -> None:
        if not self._commit_scheduled:
            self._commit_scheduled = True
            self._commit_seen = len(self._pending_running) + len(self._pending_finished)
            self._commit_deferred = 0
            asyncio.get_running_loop().call_soon(self._commit_turn)

    def _commit_turn(self) -> None:
        # With a backlog (invocations waiting for a slot: a big map), throughput is what
        # counts: while each loop turn adds starts and ends, let the next turn's join this
        # transaction, a few turns at most.  With none (a lone call, or a client that keeps
        # a window of N in flight and waits on each end) every turn of delay is latency.
        pending = len(self._pending_running) + len(self._pending_finished)
        if (self.backlog and pending > self._commit_seen
                and self._commit_deferred < COMMIT_DEFER_TURNS):
            self._commit_seen = pending
            self._commit_deferred += 1
            asyncio.get_running_loop().call_soon(self._commit_turn)
            return
        self._commit()

    def _commit(self, inline: bool = False) -> None:
        """Write every queued start and end in one transaction, then release who waits on them.

        ``inline``: write it on this thread even with a backlog (closing).  While a batch is
        being written on the store's thread this does nothing: that batch's end commits
        what gathered meanwhile.
        """
        self._commit_scheduled = False
        if self._writing is not None:
            return
        running, self._pending_running = self._pending_running, []
        finished, self._pending_finished = self._pending_finished, []
        if not running and not finished:
            return
        started = [(inv.request_id, t, env.id) for inv, t, env in running]
        ended = [(inv.request_id, fields, result, logs) for inv, fields, result, logs, _ in finished]
        submit = getattr(self.store, "submit_batch", None)
        if self.backlog and not inline and submit is not None:
            self._writing = asyncio.wrap_future(submit(started, ended))
            self._writing.add_done_callback(lambda fut: self._written(fut, running, finished))
            return
        try:
            self.store.write_batch(started, ended)
        except Exception as exc:  # noqa: BLE001 - reported to each waiter in _committed
            self._committed(running, finished, exc)
            return
        self._committed(running, finished, None)

    def _written(self, fut: asyncio.Future, running: list, finished: list) -> None:
        self._writing = None
        exc = fut.exception() if not fut.cancelled() else RuntimeError("the store's writer stopped")
        self._committed(running, finished, exc)
        if self._pending_running or self._pending_finished:
            self._commit_soon()

    def _committed(self, running: list, finished: list, exc: BaseException | None) -> None:
        """Act on a batch once the store has it (``exc`` None) or failed to write it."""
        if exc is not None:
            log.error("could not write %d started and %d finished invocations to the store: %s",
                      len(running), len(finished), exc, exc_info=exc)
            for inv, _, env in running:
                # Never run what the store does not know is running.
                self.backend.unreserve(env)
                self._end(inv, FAILED, {"errorType": "ServerError",
                                        "errorMessage": f"the server could not record the start of "
                                                        f"this invocation ({exc}); it did not run"},
                          None, self._report(0, inv.function["memory"], 0, None))
            # The ends are not told: the store does not know them (the invariant).
            return
        for inv, t, env in running:
            # Durable before it runs: after a crash a running invocation is failed, never re-run.
            self._dispatch(inv, env, t)
        for inv, fields, result, _, rep in finished:
            self._tell_finished(inv, fields, result, rep)
        spent = [inv.buffers for inv, *_ in finished if inv.buffers is not None]
        if spent and self.files is not None:
            # No row names them any more.  Freeing 100 MB of page cache takes milliseconds:
            # a worker thread does it, after the waiters were told.
            for inv, *_ in finished:
                inv.buffers = None
            asyncio.get_running_loop().run_in_executor(None, self.files.discard_all, spent)

    async def _commit_all(self) -> None:
        """Wait for the batch on the store's thread, then write what is queued, inline."""
        while self._writing is not None:
            await asyncio.wait([self._writing])
            await asyncio.sleep(0)  # let _written run
        self._commit(inline=True)
