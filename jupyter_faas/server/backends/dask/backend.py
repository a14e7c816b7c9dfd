"""The Dask backend: each invocation runs in a ``kernel_workers`` environment on a Dask worker.

::

    engine ─► DaskBackend.run ─► client.submit(remote.invoke, ...) ─► scheduler ─► worker
                 ▲    ▲                                                              │ task thread
                 │    └── log events "jupyter_faas-<server>" (subscribe_topic) ◄──────┤ live lines
                 └─────── the task's result: how it ended, REPORT figures ◄───────────┘

Dask is the scheduler and the transport: an environment's INIT and every invocation are
Dask tasks (``pure=False``, keyed by request id), output lines come back as Dask events
while the invocation runs, and cancel goes through ``client.run``.  The worker side
(:mod:`kernel_workers.dask_worker`) forks the environments from a zygote a worker plugin
started, and enforces the deadline and the memory limit there.

An environment handle here (:class:`DaskEnvironment`) is one environment on one worker:
its INIT task chose the worker, and its invocations ask for that worker
(``workers=[...]``, ``allow_other_workers=True``).  If the worker dies mid-invocation,
Dask re-runs the task on another worker, where the environment is started anew from the
code the task carries; the server records the attempt as a ``RETRY`` platform line, and
the invocation ends once, with the new attempt's outcome.  If the scheduler goes away,
every invocation in flight fails with a ``ServiceException`` naming its address; the
backend reconnects at the next cold start.

Placement: a version gets at most two environments busy or starting per worker thread of
the cluster (a task per invocation holds a thread while it runs; the second is queued on
the worker, so no thread waits for a round trip through the scheduler); past that, the
engine waits for one to come free.  Cold starts go to the worker with the fewest of this
server's environments busy.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections import defaultdict
from concurrent.futures import CancelledError

from ..base import Backend, Outcome, environment_key
from . import remote, view
from .cluster import open_cluster

log = logging.getLogger("jupyter_faas.server")

#: seconds to wait for the live lines a result says were sent before it
LINES_GRACE_S = 2.0
#: a busy version waits this long before admission looks again (a release looks at once)
WAIT_S = 0.05
#: invocations of a version in flight per worker thread: one running, one queued on the
#: worker, so a thread never waits for the round trip through the scheduler between two
PER_THREAD = 2

INSTALL_HINT = ("install jupyter_faas on every Dask worker (`pip install jupyter_faas`: the "
                "workers need its kernel_workers package and cloudpickle, nothing else of it), "
                "in the same Python environment the workers run")


def _service_error(message: str) -> Outcome:
    """An outcome the client raises as ServerError (Lambda's ServiceException)."""
    return Outcome("error", {"errorType": "ServiceException", "errorMessage": message})


def _we_are_cancelled(exc: BaseException) -> bool:
    """Is ``exc`` this task being cancelled (the server closing), not a Dask future's cancel?"""
    if not isinstance(exc, asyncio.CancelledError):  # a Dask future's cancel is concurrent.futures'
        return False
    cancelling = getattr(asyncio.current_task(), "cancelling", None)
    return cancelling is None or cancelling() > 0


class DaskEnvironment:
    _ids = itertools.count(1)

    def __init__(self, function: dict):
        self.name = f"dask-{os.getpid()}-{next(self._ids)}"  # its name on the worker
        self.function = function
        self.key = environment_key(function)
        self.state = "starting"     # starting | idle | busy | dead
        self.worker: str | None = None
        self.init_ms: float | None = None
        self.fresh = True
        self.init_type = "on-demand"  # what the worker's environment is told (no provisioning here)
        self.code: bytes = b""
        self.last_used = time.monotonic()
        self.run = None
        self.init_output: list = []  # (time, stream, line) printed at INIT, until taken

    @property
    def id(self) -> str:
        """What the invocation's row records: the environment and the worker it is on."""
        return f"{self.name}@{self.worker}" if self.worker else self.name


class _Run:
    """An invocation in flight: who hears its lines and its end, and what Dask has of it."""

    def __init__(self, env, request_id, on_line, done):
        self.env, self.request_id, self.on_line, self.done = env, request_id, on_line, done
        self.future = None
        self.task = None
        self.cancel_requested = False
        self.attempts = 0                        # workers it was on that left the cluster
        self.received: dict = defaultdict(int)   # attempt id -> live lines heard
        self.heard = asyncio.Event()


class DaskBackend(Backend):
    def __init__(self, scheduler: str, server_id: str, *, preload: list, idle_timeout: float,
                 buffers_dir: str | None = None, connect_timeout: float = 10.0,
                 memory_enforcement: str = "auto", memory_budget_mb: int = 0):
        self.address = scheduler
        self.server_id = server_id
        self.topic = f"jupyter_faas-{server_id}"
        self.preload = list(preload)
        self.idle_timeout = idle_timeout
        self.buffers_dir = buffers_dir
        self.connect_timeout = connect_timeout
        self.memory_enforcement = memory_enforcement   # the server's setting, applied on each worker
        self.memory_budget_setting = memory_budget_mb  # 0: from the workers' memory limits
        self.memory_budget_mb: int | None = memory_budget_mb or None
        self.client = None
        self.cluster = None
        self.scheduler_address: str | None = None
        self._connecting: asyncio.Lock | None = None
        self.all: dict[str, DaskEnvironment] = {}
        self.idle: dict[tuple, list] = defaultdict(list)
        self.runs: dict[str, _Run] = {}
        self.tasks: set = set()
        self._reaper = None
        self._closing = False
        self.threads = 1
        self.workers: set = set()
        self.identity: dict = {}   # the scheduler's view of each worker, for the cluster view
        self.last_error: str | None = None

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # ---- the cluster -------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.status == "running"

    async def connect(self) -> None:
        """Connect (or reconnect) to the scheduler and install the worker plugin; raises on failure."""
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self.connected:
                return
            if self.client is not None:
                await self._drop_client()
            from kernel_workers import dask_worker

            self.client, cluster = await open_cluster(self.address, self.connect_timeout)
            self.cluster = self.cluster or cluster
            self.scheduler_address = self.client.scheduler.address
            self.client.subscribe_topic(self.topic, self._on_event)
            self.client.subscribe_topic("all", self._on_cluster_event)
            # The workers stop idle environments themselves too, in case this server dies.
            backstop = max(2 * self.idle_timeout, 60.0)
            await self.client.register_plugin(dask_worker.plugin(self.server_id, self.preload, backstop,
                                                                 self.memory_enforcement))
            await self._refresh_cluster()
            self.last_error = None
            log.info("Dask backend connected to %s (%d worker threads)", self.scheduler_address, self.threads)

    async def _drop_client(self) -> None:
        client, self.client = self.client, None
        try:
            await client.close()
        except Exception:  # noqa: BLE001 - it is already broken
            pass

    async def _refresh_cluster(self) -> None:
        try:
            workers = (await self.client.scheduler.identity(n_workers=-1)).get("workers", {})
        except Exception:  # noqa: BLE001 - not connected; keep the last count
            return
        self.threads = max(1, sum(w.get("nthreads", 1) for w in workers.values()))
        self.workers = set(workers)
        self.identity = workers
        if not self.memory_budget_setting:
            limits = [w.get("memory_limit") or 0 for w in workers.values()]
            # 80% of the workers' memory, as the local budget is 80% of this machine's; unknown
            # (no cap) while there are no workers, or one runs without a memory limit.
            self.memory_budget_mb = (int(sum(limits) * 0.8 / (1024 * 1024))
                                     if limits and all(limits) else None)

    def _lost_message(self, why: str, ran: bool = True) -> str:
        where = self.scheduler_address or self.address
        what = "the invocation may have run partly" if ran else "the invocation did not run"
        return (f"the Dask scheduler at {where} is unreachable ({why}); {what}. Functions on the "
                f"local backend still run; this server reconnects to the cluster at the next "
                f"invocation of a Dask function.")

    # ---- events: live lines and attempts -------------------------------------------------------

    def _on_event(self, event) -> None:
        """Live lines of a running invocation, from the worker running it."""
        _, msg = event
        run = self.runs.get(msg.get("r"))
        if run is None:
            return
        lines = msg.get("l", ())
        for stream, line in lines:
            run.on_line(stream, line)
        run.received[msg.get("a")] += len(lines)
        run.heard.set()

    def _on_cluster_event(self, event) -> None:
        """The scheduler's own events: a worker that left with invocations on it (Dask sends
        them to other workers) is each one's next attempt, recorded as a platform line."""
        _, msg = event
        if not isinstance(msg, dict) or msg.get("action") != "remove-worker":
            return
        worker = msg.get("worker", "?")
        for key in msg.get("processing-tasks") or ():
            key = key if isinstance(key, str) else str(key)
            run = self.runs.get(key[len("faas-"):]) if key.startswith("faas-") else None
            if run is None:
                continue
            run.attempts += 1
            run.on_line("platform", f"RETRY RequestId: {run.request_id} attempt {run.attempts + 1}: the "
                                    f"Dask worker {worker} it was on left the cluster; Dask runs it "
                                    f"again on another worker (it may have run partly there)")

    # ---- the engine's contract -----------------------------------------------------------------

    def start_background(self) -> None:
        self._reaper = self.spawn(self._housekeeping())

    def take_idle(self, function: dict):
        idle = self.idle.get(environment_key(function))
        while idle:
            env = idle.pop()
            if env.state == "idle":
                env.state = "busy"
                return env
        return None

    def memory_pool(self, function: dict) -> tuple[str, int | None]:
        """Dask invocations count against the cluster's memory (see :mod:`..engine.admission`)."""
        return "dask", self.memory_budget_mb

    def wait_for_warm(self, function: dict) -> float | None:
        key = environment_key(function)
        busy = sum(1 for e in self.all.values() if e.key == key and e.state in ("busy", "starting"))
        return WAIT_S if busy >= PER_THREAD * self.threads else None

    def new_environment(self, function: dict) -> DaskEnvironment:
        env = DaskEnvironment(function)
        self.all[env.name] = env
        return env

    def is_starting(self, env: DaskEnvironment) -> bool:
        return env.state == "starting"

    async def start_environment(self, env: DaskEnvironment, code_for) -> Outcome | None:
        """INIT as a Dask task; the worker it ran on is the environment's.  A cluster that cannot
        be reached ends it with a ServiceException outcome (the client's ServerError)."""
        env.code = code_for(env.function)
        try:
            await self.connect()
        except Exception as exc:  # noqa: BLE001 - reported to the caller, named
            self.discard(env)
            self.last_error = str(exc)
            return _service_error(self._lost_message(f"{type(exc).__name__}: {exc}", ran=False))
        target = env.worker = self._least_loaded()  # provisional: the next cold start sees it
        future = self.client.submit(remote.start, self.server_id, env.name, self._fields(env.function),
                                    env.code, self.preload, key=f"faas-init-{env.name}", pure=False,
                                    workers=[target] if target else None, allow_other_workers=True)
        try:
            result = await future
        except BaseException as exc:  # noqa: BLE001 - every way a task can fail, named below
            self.discard(env)
            if _we_are_cancelled(exc):
                raise
            return self._task_failed(exc)
        finally:
            future.release()
        if result["kind"] != "ready":
            self.discard(env)
            return Outcome(result["kind"], result.get("header", {}), result.get("body", b""),
                           returncode=result.get("returncode"))
        if result["env_id"] != env.name:  # the worker had the name in use: it chose another
            self.all.pop(env.name, None)
            env.name = result["env_id"]
            self.all[env.name] = env
        env.worker = result["worker"]
        env.init_ms = result["init_ms"]
        env.init_output = [(result.get("ended", time.time()), stream, line)
                           for stream, line in result.get("lines", ())]
        env.state = "busy"
        return None

    def _least_loaded(self) -> str | None:
        """The worker with the fewest of this server's environments busy (then in all), so a
        version's environments spread over the cluster rather than queue on one worker's
        threads; Dask still places the task elsewhere if that worker is gone."""
        if not self.workers:
            return None
        load = {w: [0, 0] for w in self.workers}
        for env in self.all.values():
            if env.worker in load:
                load[env.worker][0] += env.state in ("busy", "starting")
                load[env.worker][1] += 1
        return min(load, key=lambda w: load[w])

    def _fields(self, function: dict) -> dict:
        """What the worker needs of a version; ``version`` is the Lambda version it runs as."""
        fields = {k: function[k] for k in ("name", "memory", "timeout", "env")}
        fields["version"] = environment_key(function)[2]   # $LATEST, or a published number
        fields["engine_version"] = function["version"]      # the code and config it loads
        fields["memory_enforcement"] = self.memory_enforcement
        return fields

    def _task_failed(self, exc: BaseException) -> Outcome:
        from distributed import KilledWorker

        text = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, ImportError) and remote.MISSING in str(exc):
            return _service_error(f"a worker of the Dask cluster {self.scheduler_address} cannot "
                                  f"import kernel_workers ({exc}): {INSTALL_HINT}.")
        if isinstance(exc, KilledWorker):
            return _service_error(f"the Dask workers of {self.scheduler_address} kept dying while "
                                  f"running this invocation ({text}); it was not retried further.")
        if isinstance(exc, (asyncio.CancelledError, CancelledError, OSError)) or not self.connected:
            return _service_error(self._lost_message(text))
        return _service_error(f"the Dask backend ({self.scheduler_address}) failed: {text}")

    def init_lines(self, env: DaskEnvironment) -> list:
        lines, env.init_output = env.init_output, []
        return lines

    def run(self, env: DaskEnvironment, request_id: str, payload: bytes, encoding: str, timeout: float,
            on_line, done, buffers: dict | None = None) -> None:
        env.state = "busy"
        run = env.run = _Run(env, request_id, on_line, done)
        self.runs[request_id] = run
        run.task = self.spawn(self._run(env, run, payload, encoding, buffers))

    async def _run(self, env: DaskEnvironment, run: _Run, payload, encoding, buffers) -> None:
        try:
            outcome = await self._invoke(env, run, payload, encoding, buffers)
        except Exception as exc:  # noqa: BLE001 - the invocation must end, whatever broke
            log.exception("Dask backend: invocation %s failed", run.request_id)
            outcome = _service_error(f"the Dask backend failed: {type(exc).__name__}: {exc}")
            env.state = "dead"
        self.runs.pop(run.request_id, None)
        env.run = None
        run.done(outcome)

    async def _invoke(self, env, run, payload, encoding, buffers) -> Outcome:
        if not self.connected:
            env.state = "dead"
            return _service_error(self._lost_message("not connected", ran=False))
        buffer_bytes = None
        if buffers is not None:
            with open(os.path.join(self.buffers_dir, os.path.basename(buffers["file"])), "rb") as f:
                buffer_bytes = f.read()
        run.future = self.client.submit(
            remote.invoke, self.server_id, self.topic, env.name, self._fields(env.function), env.code,
            self.preload, run.request_id, payload, encoding, buffers, buffer_bytes,
            key=f"faas-{run.request_id}", pure=False,
            workers=[env.worker] if env.worker else None, allow_other_workers=True)
        if run.cancel_requested:
            self.cancel(env)
        try:
            result = await run.future
        except BaseException as exc:  # noqa: BLE001 - named below
            if _we_are_cancelled(exc):
                raise
            env.state = "dead"
            if run.cancel_requested:
                return Outcome("cancelled")
            return self._task_failed(exc)
        finally:
            run.future.release()
        return await self._outcome(env, run, result)

    async def _outcome(self, env, run, result: dict) -> Outcome:
        # Every live line the result says was sent comes before its end (they travel through
        # the scheduler in order; the wait is a guard), then the lines kept for the result.
        attempt, sent = result.get("attempt"), result.get("sent", 0)
        deadline = time.monotonic() + LINES_GRACE_S
        while run.received[attempt] < sent and time.monotonic() < deadline:
            run.heard.clear()
            try:
                await asyncio.wait_for(run.heard.wait(), deadline - time.monotonic())
            except asyncio.TimeoutError:
                break
        for stream, line in result.get("lines", ()):
            run.on_line(stream, line)
        env.worker = result.get("worker") or env.worker
        header = result.get("header", {})
        if result.get("buffer_bytes") is not None and self.buffers_dir is not None:
            name = os.path.basename(header["buffers"]["file"])
            with open(os.path.join(self.buffers_dir, name), "wb") as f:
                f.write(result["buffer_bytes"])
        outcome = Outcome(result["kind"], header, result.get("body", b""),
                          duration_ms=result.get("duration_ms", 0.0),
                          max_memory_mb=result.get("max_memory_mb", 0.0), returncode=result.get("returncode"),
                          init_ms=result.get("init_ms"))   # a cold start there: a re-run elsewhere
        if result.get("reusable"):
            env.state = "idle"
        else:
            env.state = "dead"
        return outcome

    def cancel(self, env: DaskEnvironment) -> None:
        run = env.run
        if run is None:
            return
        run.cancel_requested = True
        if run.future is not None and self.connected:
            self.spawn(self._cancel(run))

    async def _cancel(self, run: _Run) -> None:
        try:
            # Kill it where it runs (or refuse it where it arrives), then drop it if still queued.
            await self.client.run(remote.cancel, self.server_id, run.request_id)
        except Exception as exc:  # noqa: BLE001 - the task's own end still comes
            log.warning("Dask backend: could not cancel %s on the workers: %s", run.request_id, exc)

    def release(self, env: DaskEnvironment) -> None:
        env.fresh = False
        env.last_used = time.monotonic()
        if env.state == "idle":
            self.idle[env.key].append(env)
        elif env.state == "dead":
            self.all.pop(env.name, None)

    def unreserve(self, env: DaskEnvironment) -> None:
        env.state = "idle"
        self.idle[env.key].append(env)

    def discard(self, env: DaskEnvironment) -> None:
        env.state = "dead"
        self.all.pop(env.name, None)

    def stop_function(self, name: str) -> None:
        gone = []
        for key in [k for k in self.idle if k[0] == name]:
            for env in self.idle.pop(key):
                if env.state == "idle":
                    gone.append(env)
        self._stop(gone)

    def _stop(self, envs: list) -> None:
        by_worker = defaultdict(list)
        for env in envs:
            env.state = "dead"
            self.all.pop(env.name, None)
            if env.worker:
                by_worker[env.worker].append(env.name)
        if by_worker and self.connected:
            self.spawn(self._stop_on_workers(by_worker))

    async def _stop_on_workers(self, by_worker: dict) -> None:
        for worker, ids in by_worker.items():
            try:
                await self.client.run(remote.stop, self.server_id, ids, workers=[worker], on_error="ignore")
            except Exception as exc:  # noqa: BLE001 - the worker may be gone; its envs went with it
                log.info("Dask backend: could not stop environments on %s: %s", worker, exc)

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, max(0.05, self.idle_timeout / 4)))
            if not self.connected:
                continue
            await self._refresh_cluster()
            now = time.monotonic()
            stale = [e for e in self.all.values() if e.state == "idle" and (
                now - e.last_used > self.idle_timeout or (e.worker and e.worker not in self.workers))]
            if stale:
                for env in stale:
                    lst = self.idle.get(env.key)
                    if lst and env in lst:
                        lst.remove(env)
                self._stop(stale)

    def stats(self) -> dict:
        states = defaultdict(int)
        for env in self.all.values():
            states[env.state] += 1
        dashboard = None
        if self.connected:
            try:
                dashboard = self.client.dashboard_link
            except Exception:  # noqa: BLE001 - no dashboard (bokeh missing, or disabled)
                dashboard = None
        workers = view.workers(self.identity if self.connected else {}, list(self.all.values()),
                               f"jupyter_faas-{self.server_id}")
        return {"backend": "dask", "scheduler": self.scheduler_address or self.address,
                "dashboard": dashboard,
                "connected": self.connected, "worker_threads": self.threads,
                "workers": workers, "environments": len(self.all),
                "memory_budget_mb": self.memory_budget_mb,
                **states, "memory_enforcement": view.enforcement(workers),
                "last_error": self.last_error}

    async def close(self) -> None:
        self._closing = True
        if self._reaper is not None:
            self._reaper.cancel()
        if self.connected:
            try:
                # Stops every environment (the runs in flight end as crashes), then the plugin.
                await asyncio.wait_for(self.client.run(remote.shutdown, self.server_id,
                                                       on_error="ignore"), 10)
            except Exception as exc:  # noqa: BLE001 - closing anyway
                log.warning("Dask backend: could not stop the environments on the workers: %s", exc)
        pending = [r.task for r in self.runs.values() if r.task is not None]
        if pending:
            await asyncio.wait(pending, timeout=5)
        for run in list(self.runs.values()):
            run.task.cancel()
            self.runs.pop(run.request_id, None)
            run.done(_service_error("the server stopped while this invocation ran on the Dask cluster"))
        if self.client is not None:
            if self.connected:
                try:
                    await self.client.unregister_worker_plugin(f"jupyter_faas-{self.server_id}")
                except Exception:  # noqa: BLE001 - best effort: shutdown already stopped the hosts
                    pass
            await self._drop_client()
        if self.cluster is not None:
            await self.cluster.close()
            self.cluster = None
