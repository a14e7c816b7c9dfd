"""The group commit: starts and ends of invocations written together, then acted on.

Starts (``running``) and ends of invocations are queued and written in one transaction
at the next turn of the loop, for every invocation that started or ended in this one.
It once waited a few more turns while a map was in flow, to carry more rows per
transaction: that added milliseconds before each next start (W3: 68-76% of ideal against
83-87% without) and won no measurable W2 throughput, so it commits at the next turn.

The durability rules hold because the acting happens only after the commit
(:meth:`GroupCommit._committed`): an invocation is sent to its environment only after its
``running`` row committed, and its waiters and subscribers hear of its end only after its
terminal row committed.  Accepting an invocation is not deferred: ``submit`` returns only
once its row is committed.

Written on the event loop's thread.  A writer thread (SQLite releases the GIL) was tried
and measured slower on 2 cores: the other core is busy with the client and the
environments, and the GIL hand-offs cost more than the overlap won.
"""

from __future__ import annotations

import asyncio
import logging

from ..model import FAILED
from .invocation import Invocation

log = logging.getLogger("jupyter_faas.server")


class GroupCommit:
    """Mixed into :class:`~.service.Service` (its ``_pending_*`` and ``_commit_scheduled`` state,
    ``store``, ``backend``, ``files``, ``_dispatch``, ``_tell_finished``, ``_end``)."""

    def _queue_running(self, inv: Invocation, started_at: float, env) -> None:
        """Write it as running with the next group commit, which then sends it to ``env``."""
        self._pending_running.append((inv, started_at, env))
        self._commit_soon()

    def _commit_soon(self) -> None:
        if not self._commit_scheduled:
            self._commit_scheduled = True
            asyncio.get_running_loop().call_soon(self._commit)

    def _commit(self) -> None:
        """Write every queued start and end in one transaction, then release who waits on them."""
        self._commit_scheduled = False
        running, self._pending_running = self._pending_running, []
        finished, self._pending_finished = self._pending_finished, []
        if not running and not finished:
            return
        try:
            self.store.write_batch([(inv.request_id, t, env.id) for inv, t, env in running],
                                   [(inv.request_id, fields, result, logs)
                                    for inv, fields, result, logs, _ in finished])
        except Exception as exc:  # noqa: BLE001 - reported to each waiter in _committed
            self._committed(running, finished, exc)
            return
        self._committed(running, finished, None)

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
