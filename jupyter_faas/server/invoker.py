"""The service layer: functions and invocations, with no knowledge of HTTP.

``Service`` is what handlers (REST and websocket) call.  One path for every
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

Large buffers (``files``, a :class:`~.buffer_files.BufferFiles`): an invocation may
carry the descriptor of its argument buffers' file instead of the bytes; it is
checked (name, size, the payload limit counts it) when accepted, named in the row
while queued, passed to the environment, and deleted once the end is committed.
A result's buffers come back the same way and are named in the row for good.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque

from kernel_workers.buffers import result_name

from .. import limits
from ..errors import FaaSError, InvalidParameter, PayloadTooLarge, ResourceNotFound, Throttled
from . import lifecycle
from .lifecycle import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, THROTTLED
from .monitoring import input_summary

log = logging.getLogger("jupyter_faas.server")

#: loop turns a group commit may wait for more starts and ends, while invocations are
#: queued and each turn adds some
COMMIT_DEFER_TURNS = 3


class Invocation:
    """An accepted invocation while the server holds it in memory (queued or running)."""

    __slots__ = ("request_id", "function", "payload", "buffers", "encoding", "invocation_type", "status",
                 "queue", "throttle_at", "done", "task", "env", "logs", "unflushed", "listeners",
                 "created_at", "cancel_requested", "group")

    def __init__(self, request_id, function, payload, encoding, invocation_type, queue, buffers=None):
        self.request_id = request_id
        self.function = function
        self.payload = payload
        self.buffers = buffers  # the descriptor of the argument buffers' file, or None
        self.group = None  # (group id, limit): at most ``limit`` of its group run at once
        self.encoding = encoding
        self.invocation_type = invocation_type
        self.status = QUEUED
        self.queue = queue
        self.throttle_at = None
        self.done = asyncio.get_running_loop().create_future()
        self.task = None
        self.env = None
        self.logs: list = []        # every line of this invocation, for the tail in errors
        self.unflushed: list = []   # lines not yet in the store
        self.listeners: list = []   # callables(request_id, lines) for live logs
        self.created_at = time.time()
        self.cancel_requested = False


class Service:
    def __init__(self, store, pool, *, memory_budget_mb: int, max_concurrency: int | None,
                 throttle_wait: float, max_payload_bytes: int, files=None):
        self.store = store
        self.pool = pool
        self.files = files  # BufferFiles, or None: every byte travels in frames
        self.memory_budget_mb = memory_budget_mb
        self.max_concurrency = max_concurrency
        self.throttle_wait = throttle_wait
        self.max_payload_bytes = max_payload_bytes
        self.active: dict[str, Invocation] = {}
        # Ended, with the terminal row in the next group commit: not active (nothing to
        # cancel), not yet final in the store; a re-attach waits for its end here.
        self.ending: dict[str, Invocation] = {}
        self.waiting: "OrderedDict[str, deque]" = OrderedDict()  # function -> queued invocations
        self.running_by_function: dict[str, int] = {}
        self.running_by_group: dict[str, int] = {}  # a map's concurrency, kept by the server
        self.running = 0
        self.memory_in_use = 0
        self._code_cache: dict[str, bytes] = {}
        # (name, version or None for the latest) -> function: a map's every item needs it, and
        # only deploy and delete (through this service) change it.  Shared, never mutated.
        self._functions: dict[tuple, dict] = {}
        self._flusher = None
        self._recheck_at = None   # TimerHandle: admission looks again when a warm wait is up
        self._pending_running: list = []   # (inv, started_at, environment id, future) to commit
        self._pending_finished: list = []  # (inv, fields, result, logs, report) to commit, then tell
        self._commit_scheduled = False
        self._commit_seen = 0      # starts and ends queued when the commit last looked
        self._commit_deferred = 0  # turns it has waited for more
        self.subscribers: list = []  # callables(event: dict) told of every change (panel, feeds)

    # ---- the event feed --------------------------------------------------------------------

    def subscribe(self, callback) -> callable:
        """Call ``callback(event)`` for every function and invocation change and every log line.

        Events are dicts with a ``type``: ``function`` {name, version, action},
        ``invocation`` {request_id, function, version, status, ...timing}, and
        ``log`` {request_id, function, line: [ts, stream, text]}.  Callbacks run on the
        server's loop and must not block; they batch for their own transport.
        Returns the function that unsubscribes.
        """
        self.subscribers.append(callback)
        return lambda: self.subscribers.remove(callback) if callback in self.subscribers else None

    def _emit(self, event: dict) -> None:
        for callback in list(self.subscribers):
            try:
                callback(event)
            except Exception:  # noqa: BLE001 - one broken subscriber must not break invocations
                log.exception("event subscriber failed; unsubscribing it")
                self.subscribers.remove(callback)

    def _emit_invocation(self, inv: "Invocation", **fields) -> None:
        if self.subscribers:
            self._emit({"type": "invocation", "request_id": inv.request_id,
                        "function": inv.function["name"], "version": inv.function["version"],
                        "status": inv.status, "created_at": inv.created_at, **fields})

    @property
    def backlog(self) -> bool:
        """Are invocations waiting for a slot (a big map in flow: throughput over latency)?"""
        return bool(self.waiting)

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

    # ---- functions -----------------------------------------------------------------------

    def deploy(self, name: str, code: bytes, memory=limits.MEMORY_DEFAULT_MB,
               timeout=limits.TIMEOUT_DEFAULT_S, env=None, concurrency=None) -> dict:
        limits.check_name(name)
        config = limits.check_config(memory, timeout, env, concurrency)
        if not code:
            raise InvalidParameter("the function's code is empty; deploy a pickled callable")
        version, created = self.store.deploy(name, code, config)
        self._forget_function(name)
        function = self.store.get_function(name, version)
        function["created"] = created
        self._emit({"type": "function", "name": name, "version": version, "action": "deployed"})
        return function

    def get_function(self, name: str, version: int | None = None) -> dict:
        function = self._functions.get((name, version))
        if function is None:
            function = self.store.get_function(name, version)
            if function is not None:
                self._functions[(name, version)] = function
        if function is None:
            which = f"{name}:{version}" if version is not None else name
            raise ResourceNotFound(f"Function not found: {which}. Deploy it first "
                                   f"(@faas.function or %%lambda), or check `jupyter faas ls`.")
        return function

    def list_functions(self) -> list[dict]:
        return self.store.list_functions()

    def delete_function(self, name: str) -> None:
        self.get_function(name)
        self.store.delete_function(name)
        self._forget_function(name)
        self.pool.stop_function(name)
        self._emit({"type": "function", "name": name, "version": None, "action": "deleted"})

    def _forget_function(self, name: str) -> None:
        for key in [k for k in self._functions if k[0] == name]:
            del self._functions[key]

    def _code(self, function: dict) -> bytes:
        sha = function["code_sha256"]
        code = self._code_cache.get(sha)
        if code is None:
            code = self._code_cache[sha] = self.store.code(sha)
        return code

    # ---- submit --------------------------------------------------------------------------

    def submit(self, name: str, payload: bytes, *, encoding: str = "pickle", version: int | None = None,
               invocation_type: str = "RequestResponse", queue: bool = False,
               listener=None, buffers: dict | None = None, group=None) -> Invocation:
        """Accept an invocation: after this returns it is in the store and will run.

        ``buffers``: the descriptor of a file in the buffer directory holding the
        payload's out-of-band buffers (the pickle is ``payload``).  ``group``:
        ``(id, limit)``, at most ``limit`` invocations of the group run at once (a map's
        ``concurrency``: the server starts the next item the moment one ends).
        """
        inv, row = self._prepare(name, payload, encoding, version, invocation_type, queue, listener,
                                 buffers, group)
        env = None
        if not self.waiting.get(inv.function["name"]) and self._fits(inv.function, inv.group):
            env = self.pool.take_idle(inv.function)
        if env is None:
            self.store.add_invocation(row, payload)
            self._enqueue(inv)
            return inv
        # Fast path: accepted and running in one write, before the client hears of it.
        started_at = time.time()
        try:
            self.store.add_invocation(dict(row, status=RUNNING, started_at=started_at,
                                           environment_id=env.id), payload)
        except BaseException:
            env.state = "idle"
            self.pool.release(env)
            raise
        self.active[inv.request_id] = inv
        self._emit_invocation(inv)
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
        if not accepted:
            return out
        # Like submit()'s fast path, per item: one that finds a free slot and an idle
        # environment (and no queue ahead of it) is written already running, and sent
        # once the batch is committed: no second write, no wait for a group commit.
        rows, fast, behind = [], [], set()
        for inv, row, payload in accepted:
            function = inv.function
            env = None
            if (function["name"] not in behind and not self.waiting.get(function["name"])
                    and self._fits(function, inv.group)):
                env = self.pool.take_idle(function)
            if env is None:
                behind.add(function["name"])
                rows.append((row, payload))
                continue
            started_at = time.time()
            self._take_slot(inv)
            fast.append((inv, env, started_at))
            rows.append((dict(row, status=RUNNING, started_at=started_at, environment_id=env.id), payload))
        try:
            self.store.add_invocations(rows)
        except BaseException:
            for inv, env, _ in fast:
                self._return_slot(inv)
                env.state = "idle"
                self.pool.release(env)
            raise
        loop = asyncio.get_running_loop()
        for inv, env, started_at in fast:
            self.active[inv.request_id] = inv
            self._emit_invocation(inv)
            inv.env = env
            loop.call_soon(self._dispatch, inv, env, started_at)
        for inv, _, _ in accepted:
            if inv.status == QUEUED:
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
                inv.group = _check_group(group)
            return inv, row
        except FaaSError:
            if buffers is not None and self.files is not None:
                self.files.discard(buffers)
            raise

    def _validate(self, name, payload, encoding, version, invocation_type, queue, listener, buffers):
        if encoding not in ("pickle", "json"):
            raise InvalidParameter(f"encoding {encoding!r} is not 'pickle' or 'json'")
        size = len(payload)
        if buffers is not None:
            if encoding != "pickle":
                raise InvalidParameter("only a pickle payload can have out-of-band buffers")
            if self.files is None:
                raise InvalidParameter("this server takes no buffer files (share_buffers is off); "
                                       "send the data inside the payload")
            size += self.files.check(buffers)
            self.files.replenish()  # the client may have taken a spare
        if size > self.max_payload_bytes:
            raise PayloadTooLarge(
                f"the payload is {size} bytes; the limit is {self.max_payload_bytes} bytes. "
                f"Pass less data per call (e.g. a path instead of the data), or raise the limit "
                f"with --FaaSServer.max_payload_mb=...")
        function = self.get_function(name, version)
        inv = Invocation(lifecycle.new_request_id(), function, payload, encoding, invocation_type,
                         queue or invocation_type == "Event", buffers)
        if listener is not None:
            inv.listeners.append(listener)
        row = {"request_id": inv.request_id, "function": function["name"], "version": function["version"],
               "invocation_type": invocation_type, "encoding": encoding, "status": QUEUED,
               "created_at": inv.created_at, "memory_size_mb": function["memory"],
               "input_summary": input_summary(payload, encoding, buffer_bytes=size - len(payload)),
               "payload_buffers": buffers}
        return inv, row

    def _enqueue(self, inv: Invocation, admit: bool = True) -> None:
        self.active[inv.request_id] = inv
        self._emit_invocation(inv)
        if not inv.queue:
            inv.throttle_at = time.monotonic() + self.throttle_wait
            asyncio.get_running_loop().call_later(self.throttle_wait, self._throttle, inv)
        self.waiting.setdefault(inv.function["name"], deque()).append(inv)
        if admit:
            self._admit()

    def _fits(self, function: dict, group=None) -> bool:
        if self.max_concurrency is not None and self.running >= self.max_concurrency:
            return False
        if group is not None and self.running_by_group.get(group[0], 0) >= group[1]:
            return False
        if self.running and self.memory_in_use + function["memory"] > self.memory_budget_mb:
            return False
        reserved = function.get("concurrency")
        if reserved is not None and self.running_by_function.get(function["name"], 0) >= reserved:
            return False
        return True

    def _admit(self) -> None:
        """Start queued invocations while slots are free, round-robin over functions."""
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
                if not self._fits(q[0].function, q[0].group):
                    continue
                env = self.pool.take_idle(q[0].function)
                if env is None:
                    wait = self.pool.wait_for_warm(q[0].function)
                    if wait is not None:
                        self._recheck_after(wait)
                        held.add(name)
                        continue
                    env = self.pool.new_environment(q[0].function)  # started by _start_cold
                inv = q.popleft()
                self.waiting.move_to_end(name)
                self._start(inv, env)
                progress = True

    def _recheck_after(self, wait: float) -> None:
        """Run admission again in ``wait`` seconds (if no release comes first), so no wait is lost."""
        loop = asyncio.get_running_loop()
        when = loop.time() + max(wait, 0.002)
        if self._recheck_at is not None:
            if self._recheck_at.when() <= when:
                return
            self._recheck_at.cancel()
        self._recheck_at = loop.call_at(when, self._recheck)

    def _recheck(self) -> None:
        self._recheck_at = None
        self._admit()

    def _take_slot(self, inv: Invocation) -> None:
        lifecycle.check_move(inv.status, RUNNING)
        inv.status = RUNNING
        name = inv.function["name"]
        self.running += 1
        self.memory_in_use += inv.function["memory"]
        self.running_by_function[name] = self.running_by_function.get(name, 0) + 1
        if inv.group is not None:
            gid = inv.group[0]
            self.running_by_group[gid] = self.running_by_group.get(gid, 0) + 1

    def _return_slot(self, inv: Invocation) -> None:
        """Undo :meth:`_take_slot` for an invocation that was never written as running."""
        inv.status = QUEUED
        self._release_slot(inv)

    def _release_slot(self, inv: Invocation) -> None:
        """Give back what :meth:`_take_slot` counted (the invocation ended, or never ran)."""
        self.running -= 1
        self.memory_in_use -= inv.function["memory"]
        self.running_by_function[inv.function["name"]] -= 1
        if inv.group is not None:
            gid = inv.group[0]
            left = self.running_by_group[gid] - 1
            if left:
                self.running_by_group[gid] = left
            else:
                del self.running_by_group[gid]  # groups come and go with maps: keep none idle

    def _start(self, inv: Invocation, env, started_at: float | None = None) -> None:
        self._take_slot(inv)
        if env.state == "starting":
            inv.task = asyncio.ensure_future(self._start_cold(inv, env))
        elif started_at is None:
            # Warm: queue the running row now, so it shares the commit of the invocation
            # that just freed this environment; the commit sends it to the environment.
            inv.env = env
            self._queue_running(inv, time.time(), env)
        else:
            # submit()'s fast path wrote it as running already (submit_many's does the same).
            inv.env = env
            asyncio.get_running_loop().call_soon(self._dispatch, inv, env, started_at)

    # ---- group commit --------------------------------------------------------------------

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
        except Exception as exc:  # noqa: BLE001 - reported to each waiter below
            log.exception("could not write %d started and %d finished invocations to the store",
                          len(running), len(finished))
            for inv, _, env in running:
                # Never run what the store does not know is running.
                env.state = "idle"
                self.pool.release(env)
                self._end(inv, FAILED, {"errorType": "ServerError",
                                        "errorMessage": f"the server could not record the start of "
                                                        f"this invocation ({exc}); it did not run"},
                          None, lifecycle.report(0, inv.function["memory"], 0, None))
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

    def _throttle(self, inv: Invocation) -> None:
        if inv.status != QUEUED:
            return
        reserved = inv.function.get("concurrency")
        if reserved is not None and self.running_by_function.get(inv.function["name"], 0) >= reserved:
            reason = (f"the function's reserved concurrency ({reserved}) is in use",
                      "ReservedFunctionConcurrentInvocationLimitExceeded")
        else:
            reason = ("the server's concurrency limit (memory budget "
                      f"{self.memory_budget_mb} MB, max_concurrency {self.max_concurrency}) is in use",
                      "ConcurrentInvocationLimitExceeded")
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
            failure = await self.pool.start_environment(env, self._code)
        except Exception as exc:  # noqa: BLE001 - the invocation must end, whatever broke
            log.exception("could not start an environment for %s", function["name"])
            env.close()  # never leave a half-started environment counted as starting
            self._end(inv, FAILED, {"errorType": "Runtime.StartError",
                                    "errorMessage": f"could not start an execution environment: {exc}"},
                      None, lifecycle.report(0, function["memory"], 0, None))
            return
        inv.env = env
        if failure is not None:
            self._end_failure(inv, failure, env.init_ms)
            return
        self._queue_running(inv, time.time(), env)

    def _dispatch(self, inv: Invocation, env, started_at: float) -> None:
        """Send a committed-as-running invocation to its environment; _ran hears how it ended."""
        function = inv.function
        init_ms = env.init_ms if env.fresh else None
        self._emit_invocation(inv, started_at=started_at)
        self._log(inv, "platform", f"START RequestId: {inv.request_id} Version: {function['version']}")
        if inv.cancel_requested:
            env.kill("cancelled")
        env.run(inv.request_id, inv.payload, inv.encoding, function["timeout"],
                lambda stream, line: self._log(inv, stream, line),
                lambda outcome: self._ran(inv, env, outcome, init_ms), inv.buffers)

    def _ran(self, inv: Invocation, env, outcome, init_ms) -> None:
        function = inv.function
        self.pool.release(env)
        if outcome.kind == "result":
            rep = lifecycle.report(outcome.duration_ms, function["memory"],
                                   round(outcome.max_memory_mb), init_ms)
            result_buffers = outcome.header.get("buffers")
            size, error = len(outcome.body), None
            if result_buffers is not None:
                try:
                    if self.files is None:
                        raise InvalidParameter("this server gave the environment no buffer directory")
                    size += self.files.check(result_buffers, result_name(inv.request_id))
                    self.files.replenish()  # the environment may have taken a spare
                except InvalidParameter as exc:
                    error = {"errorType": "Runtime.InvalidResult",
                             "errorMessage": f"the environment described its result's buffers wrongly "
                                             f"({exc}); the result was dropped. This is a bug in the "
                                             f"runtime: please report it."}
            limit = self.max_payload_bytes
            if error is None and size > limit:
                error = {"errorType": "Function.ResponseSizeTooLarge",
                         "errorMessage": f"the result is {size} bytes; the limit is {limit} "
                                         f"bytes. Return less data (e.g. write it to a file and return "
                                         f"the path), or raise --FaaSServer.max_payload_mb"}
            if error is not None:
                if result_buffers is not None and self.files is not None:
                    self.files.discard({"file": result_name(inv.request_id)})
                self._end(inv, FAILED, error, None, rep)
                return
            self._end(inv, SUCCEEDED, None, outcome.body, rep, result_buffers)
        else:
            self._end_failure(inv, outcome, init_ms)

    def _end_failure(self, inv: Invocation, outcome, init_ms) -> None:
        function = inv.function
        rid = inv.request_id
        if self.files is not None:  # killed or failed midway through writing its result's buffers
            self.files.discard({"file": result_name(rid)})
        memory = function["memory"]
        peak = round(outcome.max_memory_mb)
        body = None
        if outcome.kind in ("error", "init_error"):
            h = outcome.header
            error = {k: h.get(k) for k in ("errorType", "errorMessage", "errorModule", "stackTrace",
                                          "stage")}
            if outcome.kind == "init_error":
                error["stage"] = "init"
            if error["errorType"] == "Runtime.OutOfMemory":
                error["errorMessage"] = (
                    f"RequestId: {rid} Error: Runtime.OutOfMemory: the handler raised MemoryError at "
                    f"{peak} MB of its {memory} MB limit; the environment was replaced. Raise "
                    f"memory= (up to {limits.MEMORY_MAX_MB} MB) or use less memory per call.")
                peak = max(peak, memory)
            body = outcome.body or None
            status = FAILED
        elif outcome.kind == "timeout":
            t = function["timeout"]
            error = {"errorType": "Sandbox.Timedout",
                     "errorMessage": f"RequestId: {rid} Error: Task timed out after {t:.2f} seconds. "
                                     f"The environment and every process it started were killed; "
                                     f"raise timeout= (up to {limits.TIMEOUT_MAX_S} s) if it needs longer."}
            self._log(inv, "platform", f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {rid} "
                                       f"Task timed out after {t:.2f} seconds")
            outcome.duration_ms = t * 1000
            status = lifecycle.TIMED_OUT
        elif outcome.kind == "oom":
            peak = max(peak, memory)
            error = {"errorType": "Runtime.OutOfMemory",
                     "errorMessage": f"RequestId: {rid} Error: Runtime exited with error: signal: killed "
                                     f"(Runtime.OutOfMemory): the environment used {peak} MB at its peak and "
                                     f"hit its limit of {memory} MB, so it was killed. Raise memory= (up to "
                                     f"{limits.MEMORY_MAX_MB} MB) or use less memory per call.",
                     "peak_mb": peak, "limit_mb": memory}
            status = FAILED
        elif outcome.kind == "cancelled":
            error = {"errorType": "Cancelled",
                     "errorMessage": f"RequestId: {rid} was cancelled while running; its environment "
                                     f"was killed."}
            status = CANCELLED
        else:  # crash
            rc = outcome.returncode
            if rc is None:
                why = "the process ended with an unknown status"
            elif rc < 0:
                why = f"signal: {_signal_text(rc)}"
            else:
                why = f"exit status {rc}"
            hint = {
                "SIGSEGV": " (a segmentation fault: usually a bug in a C extension or ctypes call)",
                "SIGKILL": " (killed from outside the runtime)",
                "SIGABRT": " (abort(): a failed assertion in native code)",
            }.get(why.split(": ")[-1].split(" ")[0], "")
            if rc is not None and rc >= 0:
                hint = " (sys.exit() or os._exit() was called in the function)"
            tail = [line for _, s, line in inv.logs if s in ("stdout", "stderr")][-10:]
            error = {"errorType": "Runtime.ExitError",
                     "errorMessage": f"RequestId: {rid} Error: Runtime exited with error: {why}{hint}."
                                     + (" Last log lines:\n" + "\n".join(tail) if tail else ""),
                     "returncode": rc}
            status = FAILED
        rep = lifecycle.report(outcome.duration_ms, memory, peak, init_ms)
        self._end(inv, status, error, body, rep)

    def _end(self, inv: Invocation, status: str, error: dict | None, result: bytes | None,
             rep: dict, result_buffers: dict | None = None) -> None:
        if error is not None:
            self._log(inv, "platform", f"[ERROR] {error['errorType']}: {error['errorMessage']}")
        self._log(inv, "platform", f"END RequestId: {inv.request_id}")
        self._log(inv, "platform", lifecycle.report_line(
            inv.request_id, rep, status, error and error["errorType"]))
        fields = {k: rep[k] for k in ("duration_ms", "billed_duration_ms", "memory_size_mb",
                                      "max_memory_used_mb", "init_duration_ms")}
        fields["error"] = error
        fields["error_type"] = error and error["errorType"]
        if result_buffers is not None:
            fields["result_buffers"] = result_buffers
        self._release_slot(inv)
        self._finish(inv, status, fields, result, rep)
        self._admit()

    def _finish(self, inv: Invocation, status: str, fields: dict, result: bytes | None,
                rep: dict | None = None) -> None:
        lifecycle.check_move(inv.status, status)
        inv.status = status
        fields = dict(fields, status=status, ended_at=time.time())
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
        if self.subscribers:
            self._emit_invocation(inv, ended_at=fields["ended_at"], error_type=fields.get("error_type"),
                                  duration_ms=fields.get("duration_ms"),
                                  max_memory_used_mb=fields.get("max_memory_used_mb"))

    # ---- logs ----------------------------------------------------------------------------

    def _log(self, inv: Invocation, stream: str, line: str) -> None:
        entry = (time.time(), stream, line)
        inv.logs.append(entry)
        del inv.logs[:-200]
        inv.unflushed.append(entry)
        for listener in inv.listeners:
            listener(inv.request_id, entry)
        if self.subscribers:
            self._emit({"type": "log", "request_id": inv.request_id, "function": inv.function["name"],
                        "line": entry})
        if len(inv.unflushed) >= 5000:
            self._flush_one(inv)

    def _flush_one(self, inv: Invocation) -> None:
        if inv.unflushed:
            self.store.add_logs(inv.request_id, inv.unflushed)
            inv.unflushed = []

    async def _flush_logs(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            for inv in list(self.active.values()):
                if inv.status == RUNNING:
                    self._flush_one(inv)

    # ---- cancel, queries, lifecycle of the service ---------------------------------------

    def cancel(self, request_id: str) -> bool:
        """Drop a queued invocation or kill a running one; True if it was not finished."""
        inv = self.active.get(request_id)
        if inv is None:
            return False
        if inv.status == QUEUED:
            self._finish(inv, CANCELLED, {"error": {"errorType": "Cancelled",
                                                    "errorMessage": "cancelled before it started"},
                                          "error_type": "Cancelled"}, None)
            return True
        inv.cancel_requested = True
        if inv.env is not None:
            inv.env.kill("cancelled")
        return True

    def get_invocation(self, request_id: str) -> dict:
        row = self.store.get_invocation(request_id)
        if row is None:
            raise ResourceNotFound(f"no invocation with request id {request_id!r}; list the recorded ones "
                                   f"with faas.invocations()")
        return row

    def recover(self) -> dict:
        """After a restart: re-queue what never started; fail what was running when we died."""
        requeued = failed = 0
        for row in self.store.unfinished():
            if row["status"] == QUEUED:
                function = self.store.get_function(row["function"], row["version"])
                if function is not None:
                    rid = row["request_id"]
                    inv = Invocation(rid, function, self.store.get_payload(rid), row["encoding"],
                                     row["invocation_type"], True, self.store.get_payload_buffers(rid))
                    inv.created_at = row["created_at"]
                    self._enqueue(inv)
                    requeued += 1
                    continue
            error = {"errorType": "Runtime.ServerStopped",
                     "errorMessage": "the FaaS server stopped while this invocation was "
                                     f"{row['status']}; it may have run partly. Invoke it again."}
            self.store.finish_invocation(row["request_id"], {
                "status": FAILED, "ended_at": time.time(), "error": error,
                "error_type": error["errorType"]}, None, [])
            failed += 1
        swept = self.files.sweep(self.store.buffer_files()) if self.files is not None else 0
        return {"requeued": requeued, "failed": failed, "stale_buffer_files": swept}

    def start_background(self) -> None:
        self._flusher = asyncio.ensure_future(self._flush_logs())
        self.pool.start_background()

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        if self._recheck_at is not None:
            self._recheck_at.cancel()
        self._commit()
        for inv in list(self.active.values()):
            self._flush_one(inv)
        await self.pool.close()
        self._commit()
        if self.files is not None:
            self.files.drop_spares()

    def stats(self) -> dict:
        return {"running": self.running, "queued": sum(len(q) for q in self.waiting.values()),
                "memory_in_use_mb": self.memory_in_use, "memory_budget_mb": self.memory_budget_mb,
                "max_concurrency": self.max_concurrency, **self.pool.stats()}


def _signal_text(returncode: int) -> str:
    import signal
    try:
        return f"{signal.Signals(-returncode).name} ({returncode})"
    except ValueError:
        return f"signal {-returncode}"


def _check_group(group) -> tuple:
    """``[id, limit]`` from the wire, checked: a map's concurrency cap."""
    try:
        gid, limit = group
    except (TypeError, ValueError):
        raise InvalidParameter(f"group {group!r} is not [id, limit]") from None
    if not isinstance(gid, str) or not gid or len(gid) > 100:
        raise InvalidParameter("a group id is a non-empty string of at most 100 characters")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise InvalidParameter(f"group limit {limit!r} is not a whole number >= 1")
    return gid, limit
