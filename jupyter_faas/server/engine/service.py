"""The engine's service: functions and invocations, with no HTTP, no SQL text and no processes.

``Service`` is what the API, the protocol sessions (and later triggers and the Lambda
API) call.  The store, the backend and the clock are injected (the tests give a fake
backend and a :class:`~.clock.FakeClock`).  One path for every
invocation::

    submit ─► validate, size-check ─► row in the store (queued) ─► admission queue
           ─► slot free (global memory budget, max_concurrency, reserved concurrency)
           ─► environment (warm or cold) ─► run under deadline and memory limit
           ─► terminal state + REPORT + logs in the store ─► waiters and subscribers told

A sync submission waits at most ``throttle_wait`` seconds for a slot, then ends
``throttled``; a queued one (``map``, async) waits as long as it takes.

When a slot is free but no environment of the version is idle, the pool's
placement may say a busy one will be free sooner than a cold start would be
ready (short CPU-bound work on few cores): the invocation then stays queued and
admission looks again when an environment is released or the wait is up.

Fast path: a submission that finds no queue ahead of it, a free slot and an idle
environment is written to the store already ``running`` (one transaction instead
of two), and dispatched at once.

Group commit: starts (``running``) and ends of invocations are queued and written
in one transaction at the next turn of the loop, for every invocation that
started or ended in this one; while invocations are queued and every turn adds
more (a big map in full flow), a few more turns, so a transaction carries several.  The durability rules still hold, because nothing
waits on a timer and nobody is told early: an invocation is sent to its
environment only after its ``running`` row committed, and its waiters and
subscribers hear of its end only after its terminal row committed.  Accepting an
invocation is not deferred: ``submit`` returns only once its row is committed.

Large buffers (``files``, a :class:`~..backends.local.buffer_files.BufferFiles`): an invocation may
carry the descriptor of its argument buffers' file instead of the bytes; it is
checked (name, size) when accepted, named in the row while queued, passed to the
environment, and deleted once the end is committed.  A result's buffers come back
the same way and are named in the row for good.
Their sizes: :mod:`.sizes` (the bytes in messages, and the buffers in files, apart).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque

from kernel_workers.buffers import result_name

from ...errors import FaaSError, InvalidParameter, Throttled
from .. import model
from ..model import FAILED, QUEUED, RUNNING, SUCCEEDED, THROTTLED
from .admission import Slots
from .cancel import Cancellation
from .clock import LoopClock
from .feed import Feed
from .group_commit import GroupCommit
from .invocation import Invocation, check_group
from .logs import InvocationLogs
from .monitoring import input_summary
from .outcomes import failure, init_lines
from .queries import StoredQueries
from .recovery import recover
from .registry import Registry
from .sizes import SizeLimits
from .lambda_model import LambdaModel
from .leases import Leasing

log = logging.getLogger("jupyter_faas.server")

class Service(GroupCommit, Cancellation, InvocationLogs, StoredQueries, LambdaModel, Leasing):
    """Submit, admission, group commit, outcomes, cancel and recovery over an injected
    ``store`` (:mod:`..store`), ``backend`` (:class:`..backends.base.Backend`) and ``clock``."""

    def __init__(self, store, backend, *, memory_budget_mb: int, max_concurrency: int | None,
                 throttle_wait: float, max_payload_bytes: int, files=None, clock=None,
                 pricing: model.Pricing = model.DEFAULT_PRICING, max_buffer_bytes: int | None = None):
        self.store = store
        self.backend = backend
        self.clock = clock or LoopClock()
        self.pricing = pricing
        self.files = files  # BufferFiles, or None: every byte travels in frames
        self.slots = Slots(memory_budget_mb, max_concurrency, backend)  # backend: memory pools
        self.throttle_wait = throttle_wait
        self.sizes = SizeLimits(max_payload_bytes, max_buffer_bytes)
        self.feed = Feed()
        self.registry = Registry(store, self.feed, backend)
        self.active: dict[str, Invocation] = {}
        # Ended, with the terminal row in the next group commit: not active (nothing to
        # cancel), not yet final in the store; a re-attach waits for its end here.
        self.ending: dict[str, Invocation] = {}
        self.waiting: "OrderedDict[str, deque]" = OrderedDict()  # function -> queued invocations
        self._flusher = None
        self._recheck_at = None   # timer: admission looks again when a warm wait is up
        self._pending_running: list = []   # (inv, started_at, environment) to commit
        self._pending_finished: list = []  # (inv, fields, result, logs, report) to commit, then tell
        self._commit_scheduled = False
        #: stopping (close()): admission starts nothing more; queued invocations stay queued in
        #: the store for the next start
        self.closing = False
        # ... and once the backend is told to stop, an end is the server's own kill of a run:
        # not recorded (the row stays running; the next start fails it Runtime.ServerStopped,
        # or retries an Event), as after a crash, rather than blamed on the function
        self._killing_runs = False
        #: tasks of the engine's own (cold starts, the log flusher), owned until done: the
        #: loop keeps only weak references, and a collected task would lose an invocation
        self.tasks: set = set()
        self._init_leases()

    @property
    def max_payload_bytes(self) -> int:
        """The most bytes an invocation's payload or result may have inside a message."""
        return self.sizes.max_payload_bytes

    @property
    def running(self) -> int:
        return self.slots.running

    @property
    def memory_in_use(self) -> int:
        return self.slots.memory_in_use

    def spawn(self, coro) -> asyncio.Task:
        """Run ``coro`` as a task the engine owns until it is done."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # ---- the event feed --------------------------------------------------------------------

    def subscribe(self, callback) -> callable:
        """Call ``callback(event)`` for every change (see :mod:`.feed`); returns the unsubscriber."""
        return self.feed.subscribe(callback)

    # ---- functions (the registry) ---------------------------------------------------------

    def deploy(self, name: str, code: bytes, **config) -> dict:
        function = self.registry.deploy(name, code, **config)
        self.settings.deployed(name)  # provisioned concurrency of $LATEST follows it
        return function

    def list_functions(self) -> list[model.FunctionVersion]:
        return self.registry.list()

    def delete_function(self, name: str) -> None:
        self.registry.delete(name)
        self.revoke_leases(name)  # a deleted function runs no more, leased or not

    # ---- submit --------------------------------------------------------------------------

    def submit(self, name: str, payload: bytes, *, encoding: str = "pickle", version: int | None = None,
               invocation_type: str = "RequestResponse", queue: bool = False,
               listener=None, buffers: dict | None = None, group=None, write=None,
               init_failure: str | None = None) -> Invocation:
        """Accept an invocation: after this returns it is in the store and will run.

        ``buffers``: the descriptor of a file in the buffer directory holding the
        payload's out-of-band buffers (the pickle is ``payload``).  ``group``:
        ``(id, limit)``, at most ``limit`` invocations of the group run at once (a map's
        ``concurrency``: the server starts the next item the moment one ends).  ``write(row,
        payload)``: the store write that records it (default ``store.add_invocation``); a queue
        poller passes one that also claims the messages it carries, in the same transaction.
        ``init_failure``: the token of an INIT that failed in an environment started for the
        caller's leased map: this item fails with it (:meth:`~.leases.Leasing.claim_init_failure`;
        an unknown token: it runs as any other).
        """
        write = write or self.store.add_invocation
        inv, row = self._prepare(name, payload, encoding, version, invocation_type, queue, listener,
                                 buffers, group)
        if init_failure is not None:
            write(row, payload)
            if not self.claim_init_failure(inv, init_failure):
                self._enqueue(inv)
            return inv
        env = None
        if not self.waiting.get(inv.function["name"]) and self.slots.fits(inv.function, inv.group):
            env = self.backend.take_idle(inv.function)
        if env is None:
            write(row, payload)
            self._enqueue(inv)
            return inv
        # Fast path: accepted and running in one write, before the client hears of it.
        started_at = self.clock.time()
        try:
            write(dict(row, status=RUNNING, started_at=started_at, environment_id=env.id), payload)
        except BaseException:
            self.backend.unreserve(env)
            raise
        self.active[inv.request_id] = inv
        self.feed.invocation(inv)
        self._start(inv, env, started_at)
        return inv

    def submit_many(self, calls: list[dict]) -> list:
        """Accept many invocations with one store transaction (for a batched ``map`` on the wire).

        Each call is a dict of :meth:`submit`'s arguments (``name`` and ``payload``
        required).  Returns, per call in order, its :class:`Invocation`, or the
        :class:`~jupyter_faas.errors.FaaSError` that rejected it; every accepted one is
        in the store when this returns, so the caller may tell its client at once.
        """
        out, accepted = [], []
        init_failures = {}  # request id -> token (see submit)
        for call in calls:
            try:
                inv, row = self._prepare(call["name"], call["payload"], call.get("encoding", "pickle"),
                                         call.get("version"), call.get("invocation_type", "RequestResponse"),
                                         call.get("queue", False), call.get("listener"),
                                         call.get("buffers"), call.get("group"))
            except FaaSError as exc:
                out.append(exc)
                continue
            out.append(inv)
            accepted.append((inv, row, call["payload"]))
            if call.get("init_failure") is not None:
                init_failures[inv.request_id] = call["init_failure"]
        if not accepted:
            return out
        # Like submit()'s fast path, per item: one that finds a free slot and an idle
        # environment (and no queue ahead of it) is written already running, and sent
        # once the batch is committed: no second write, no wait for a group commit.
        rows, fast, behind = [], [], set()
        for inv, row, payload in accepted:
            function = inv.function
            env = None
            if inv.request_id in init_failures:
                rows.append((row, payload))
                continue
            if (function["name"] not in behind and not self.waiting.get(function["name"])
                    and self.slots.fits(function, inv.group)):
                env = self.backend.take_idle(function)
            if env is None:
                behind.add(function["name"])
                rows.append((row, payload))
                continue
            started_at = self.clock.time()
            self._count_slot(inv)  # counted now (the next item must see it), moved once written
            fast.append((inv, env, started_at))
            rows.append((dict(row, status=RUNNING, started_at=started_at, environment_id=env.id), payload))
        try:
            self.store.add_invocations(rows)
        except BaseException:
            for inv, env, _ in fast:
                self._release_slot(inv)
                self.backend.unreserve(env)
            raise
        loop = asyncio.get_running_loop()
        for inv, env, started_at in fast:
            inv.status = RUNNING
            self.active[inv.request_id] = inv
            self.feed.invocation(inv)
            inv.env = env
            loop.call_soon(self._dispatch, inv, env, started_at)
        for inv, _, _ in accepted:
            if inv.status == QUEUED:
                token = init_failures.get(inv.request_id)
                if token is None or not self.claim_init_failure(inv, token):
                    self._enqueue(inv, admit=False)
        self._admit()  # once for the batch, not once per item
        return out

    def _prepare(self, name, payload, encoding, version, invocation_type, queue, listener,
                 buffers=None, group=None):
        """Validate a submission; its in-memory :class:`Invocation` and its store row (queued).

        A rejected submission's buffer file is deleted: nothing else would.
        """
        try:
            inv, row = self._validate(name, payload, encoding, version, invocation_type, queue,
                                      listener, buffers)
            if group is not None:
                inv.group = check_group(group)
                row["map_group"] = list(inv.group)  # kept with a queued row: a restart keeps the cap
            return inv, row
        except FaaSError:
            if buffers is not None and self.files is not None:
                self.files.discard(buffers)
            raise

    def _validate(self, name, payload, encoding, version, invocation_type, queue, listener, buffers):
        if encoding not in ("pickle", "json"):
            raise InvalidParameter(f"encoding {encoding!r} is not 'pickle' or 'json'")
        self.sizes.check_message(len(payload))
        function = self.get_function(name, version)
        buffer_bytes = 0
        if buffers is not None:
            if encoding != "pickle":
                raise InvalidParameter("only a pickle payload can have out-of-band buffers")
            if self.files is None:
                raise InvalidParameter("this server takes no buffer files (share_buffers is off); "
                                       "send the data inside the payload")
            buffer_bytes = self.files.check(buffers)
            self.sizes.check_buffers(function, buffer_bytes)
            self.files.replenish()  # the client may have taken a spare
        inv = Invocation(model.new_request_id(), function, payload, encoding, invocation_type,
                         queue or invocation_type == "Event", self.clock.time(), buffers)
        if listener is not None:
            inv.listeners.append(listener)
        row = {"request_id": inv.request_id, "function": function["name"], "version": function["version"],
               "invocation_type": invocation_type, "encoding": encoding, "status": QUEUED,
               "created_at": inv.created_at, "memory_size_mb": function["memory"],
               "input_summary": input_summary(payload, encoding, buffer_bytes=buffer_bytes),
               "lambda_version": function.get("lambda_version", model.LATEST),
               "payload_buffers": buffers}
        return inv, row

    def _enqueue(self, inv: Invocation, admit: bool = True) -> None:
        self.active[inv.request_id] = inv
        self.feed.invocation(inv)
        if not inv.queue:
            inv.throttle_timer = self.clock.call_later(self.throttle_wait, self._throttle, inv)
        self.waiting.setdefault(inv.function["name"], deque()).append(inv)
        if self.leases:
            self.revoke_leases(idle_only=True)  # a slot is wanted: an unused lease gives its own back
        if admit:
            self._admit()

    def _admit(self) -> None:
        """Start queued invocations while slots are free, round-robin over functions."""
        if self.closing:
            return
        progress = True
        held = set()  # functions placement told to wait: starting others frees none of theirs
        while progress and self.waiting:
            progress = False
            for name in list(self.waiting):
                if name in held:
                    continue
                q = self.waiting[name]
                while q and q[0].status != QUEUED:
                    q.popleft()
                if not q:
                    del self.waiting[name]
                    continue
                if not self.slots.fits(q[0].function, q[0].group):
                    continue
                env = self.backend.take_idle(q[0].function)
                if env is None:
                    wait = self.backend.wait_for_warm(q[0].function)
                    if wait is not None:
                        self._recheck_after(wait)
                        held.add(name)
                        continue
                    env = self.backend.new_environment(q[0].function)  # started by _start_cold
                inv = q.popleft()
                self.waiting.move_to_end(name)
                self._start(inv, env)
                progress = True

    def _recheck_after(self, wait: float) -> None:
        """Run admission again in ``wait`` seconds (if no release comes first), so no wait is lost."""
        wait = max(wait, 0.002)
        if self._recheck_at is not None:
            if self._recheck_at.when <= self.clock.time() + wait:
                return
            self._recheck_at.cancel()
        self._recheck_at = self.clock.call_later(wait, self._recheck)

    def _recheck(self) -> None:
        self._recheck_at = None
        self._admit()

    def _take_slot(self, inv: Invocation) -> None:
        inv.status = RUNNING  # the lifecycle checks the move
        self._count_slot(inv)

    def _count_slot(self, inv: Invocation) -> None:
        self.slots.take(inv.function, inv.group)

    def _release_slot(self, inv: Invocation) -> None:
        """Give back what :meth:`_count_slot` counted (the invocation ended, or never ran); a
        leased one's slot is its lease's, given back when the lease ends."""
        if inv.lease is None:
            self.slots.give_back(inv.function, inv.group)

    def _start(self, inv: Invocation, env, started_at: float | None = None) -> None:
        self._take_slot(inv)
        if self.backend.is_starting(env):
            inv.task = self.spawn(self._start_cold(inv, env))
        elif started_at is None:
            # Warm: queue the running row now, so it shares the commit of the invocation
            # that just freed this environment; the commit sends it to the environment.
            inv.env = env
            self._queue_running(inv, self.clock.time(), env)
        else:
            # submit()'s fast path wrote it as running already (submit_many's does the same).
            inv.env = env
            asyncio.get_running_loop().call_soon(self._dispatch, inv, env, started_at)

    def _throttle(self, inv: Invocation) -> None:
        if inv.status != QUEUED or self.closing:
            return
        reason = self.slots.throttle_reason(inv.function)
        error = {"errorType": Throttled.error_type, "reason": reason[1],
                 "errorMessage": f"Rate Exceeded: {reason[0]} and no slot freed within "
                                 f"{self.throttle_wait:g} s. Retry later, use .map() (which queues "
                                 f"instead of throttling), or raise the limit."}
        self._finish(inv, THROTTLED, {"error": error, "error_type": Throttled.error_type}, None)

    # ---- run -----------------------------------------------------------------------------

    async def _start_cold(self, inv: Invocation, env) -> None:
        """Start a new environment for ``inv``; once it is ready, write ``inv`` as running."""
        function = inv.function
        try:
            failure = await self.backend.start_environment(env, self.environment_code)
        except Exception as exc:  # noqa: BLE001 - the invocation must end, whatever broke
            if self._killing_runs:
                return  # the server is stopping: its row stays queued for the next start
            log.exception("could not start an environment for %s", function["name"])
            self.backend.discard(env)  # never leave a half-started environment counted as starting
            self._end(inv, FAILED, {"errorType": "Runtime.StartError",
                                    "errorMessage": f"could not start an execution environment: {exc}"},
                      None, self._report(0, function["memory"], 0, None))
            return
        inv.env = env
        if self._killing_runs:
            return  # the server is stopping: its row stays queued for the next start
        if failure is not None:
            self._end_failure(inv, failure, env.init_ms)
            return
        self._queue_running(inv, self.clock.time(), env)

    def _dispatch(self, inv: Invocation, env, started_at: float) -> None:
        """Send a committed-as-running invocation to its environment; _ran hears how it ended."""
        function = inv.function
        init_ms = env.init_ms if env.fresh else None
        self.feed.invocation(inv, started_at=started_at, environment_id=env.id)
        for stream, line in init_lines(function, init_ms, self.backend.init_lines(env)):
            self._log(inv, stream, line)  # Lambda's order: INIT_START, INIT's output, START
        self._log(inv, "platform", f"START RequestId: {inv.request_id} "
                                   f"Version: {function.get('lambda_version', model.LATEST)}")
        if inv.cancel_requested:
            self.backend.cancel(env)
        self.backend.run(env, inv.request_id, inv.payload, inv.encoding, function["timeout"],
                lambda stream, line: self._log(inv, stream, line),
                lambda outcome: self._ran(inv, env, outcome, outcome.init_ms or init_ms), inv.buffers)

    def _ran(self, inv: Invocation, env, outcome, init_ms) -> None:
        if self._killing_runs:
            return  # killed by the server's stop, not by its function (see close())
        function = inv.function
        self.backend.release(env)
        if outcome.kind == "result":
            rep = self._report(outcome.duration_ms, function["memory"],
                                   round(outcome.max_memory_mb), init_ms)
            result_buffers = outcome.header.get("buffers")
            size, buffer_bytes, error = len(outcome.body), 0, None
            if result_buffers is not None:
                try:
                    if self.files is None:
                        raise InvalidParameter("this server gave the environment no buffer directory")
                    buffer_bytes = self.files.check(result_buffers, result_name(inv.request_id))
                    self.files.replenish()  # the environment may have taken a spare
                except InvalidParameter as exc:
                    error = {"errorType": "Runtime.InvalidResult",
                             "errorMessage": f"the environment described its result's buffers wrongly "
                                             f"({exc}); the result was dropped. This is a bug in the "
                                             f"runtime: please report it."}
            if error is None:
                error = self.sizes.result_error(function, size, buffer_bytes)
            if error is not None:
                if result_buffers is not None and self.files is not None:
                    self.files.discard({"file": result_name(inv.request_id)})
                self._end(inv, FAILED, error, None, rep)
                return
            self._end(inv, SUCCEEDED, None, outcome.body, rep, result_buffers)
        else:
            self._end_failure(inv, outcome, init_ms)

    def _end_failure(self, inv: Invocation, outcome, init_ms) -> None:
        if self.files is not None:  # killed or failed midway through writing its result's buffers
            self.files.discard({"file": result_name(inv.request_id)})
        tail = [line for _, s, line in inv.logs if s in ("stdout", "stderr")]
        f = failure(outcome, inv.function, inv.request_id, tail)
        if f.log_line is not None:
            self._log(inv, "platform", f.log_line)
        self._end(inv, f.status, f.error, f.body,
                  self._report(f.duration_ms, inv.function["memory"], f.peak_mb, init_ms))

    def _report(self, duration_ms, memory_mb, peak_mb, init_ms) -> dict:
        return model.report(duration_ms, memory_mb, peak_mb, init_ms, self.pricing)

    def _end(self, inv: Invocation, status: str, error: dict | None, result: bytes | None,
             rep: dict, result_buffers: dict | None = None) -> None:
        if error is not None:
            self._log(inv, "platform", f"[ERROR] {error['errorType']}: {error['errorMessage']}")
        self._log(inv, "platform", f"END RequestId: {inv.request_id}")
        self._log(inv, "platform", model.report_line(
            inv.request_id, rep, status, error and error["errorType"]))
        # how the environment that ran it was initialized (None: it never reached one)
        rep["init_type"] = inv.env.init_type if inv.env is not None else None
        fields = {k: rep[k] for k in ("duration_ms", "billed_duration_ms", "memory_size_mb",
                                      "max_memory_used_mb", "init_duration_ms", "init_type")}
        # environment_id again: where it ended (a Dask re-run moves it to another worker)
        fields.update(error=error, error_type=error and error["errorType"],
                      environment_id=None if inv.env is None else inv.env.id)
        if result_buffers is not None:
            fields["result_buffers"] = result_buffers
        self._release_slot(inv)
        self._finish(inv, status, fields, result, rep)
        self._admit()

    def _finish(self, inv: Invocation, status: str, fields: dict, result: bytes | None,
                rep: dict | None = None) -> None:
        inv.status = status  # the lifecycle checks the move
        # ended_at: now, unless the end was recorded earlier (a leased one's, in its journal)
        fields = {"ended_at": self.clock.time(), **fields, "status": status}
        logs, inv.unflushed = inv.unflushed, []
        self.active.pop(inv.request_id, None)
        self.ending[inv.request_id] = inv
        inv.payload = b""
        # The invariant: the store knows the end before anyone is told (_commit tells).
        self._pending_finished.append((inv, fields, result, logs, rep))
        self._commit_soon()

    def _tell_finished(self, inv: Invocation, fields: dict, result: bytes | None, rep) -> None:
        self.ending.pop(inv.request_id, None)
        status = inv.status
        done = {"request_id": inv.request_id, "status": status, "error": fields.get("error"),
                "report": rep, "function": inv.function["name"], "version": inv.function["version"]}
        if fields.get("result_buffers") is not None:
            done["buffers"] = fields["result_buffers"]
        if not inv.done.done():
            inv.done.set_result((done, result))
        if self.feed:
            self.feed.invocation(inv, ended_at=fields["ended_at"], **{k: fields.get(k) for k in (
                "error_type", "duration_ms", "max_memory_used_mb", "environment_id", "init_type")})

    # ---- recovery and the lifecycle of the service ----------------------------------------

    def recover(self) -> dict:
        """After a restart: re-queue what never started; fail what was running when the server
        died (it may have run partly).  Returns counts: requeued, failed, stale_buffer_files."""
        return recover(self)

    def start_background(self) -> None:
        self._flusher = self.spawn(self._flush_logs())
        self.backend.start_background()

    async def close(self) -> None:
        """Stop as a crash would leave things, minus the crash: what ended is recorded and told;
        nothing more starts (queued rows stay queued); running ones are killed with the
        backend and left ``running``, so the next start fails them ``Runtime.ServerStopped``
        (retries an Event) exactly as after a crash, instead of reporting the kill as theirs."""
        self.closing = True
        self.fold_leases()
        for lease in list(self.leases.values()):  # running under a lease: recorded as running
            for rid, start in list(lease.starts.items()):
                self._promote(lease, rid, start)
        if self._lease_tick is not None:
            self._lease_tick.cancel()
        if self._idle_revoke is not None:
            self._idle_revoke.cancel()
        if self._flusher is not None:
            self._flusher.cancel()
        if self._recheck_at is not None:
            self._recheck_at.cancel()
        self._commit()
        for inv in list(self.active.values()):
            self._flush_one(inv)
        self._killing_runs = True
        self._pending_running.clear()  # not committed as running: they stay queued, never sent
        await self.backend.close()
        self._commit()  # ends the kill brought are not recorded (_ran): normally none
        if self.files is not None:
            self.files.drop_spares()

    def stats(self) -> dict:
        return {**self.slots.stats(), "queued": sum(len(q) for q in self.waiting.values()),
                "leases": len(self.leases),
                **self.backend.stats()}


