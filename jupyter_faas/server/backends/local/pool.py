"""The local backend's pool: warm environments per function version, cold starts, spares, reaping.

``Pool`` keeps idle environments per function version (warm starts), starts new
ones (cold starts, from a spare forked ahead of need when there is one), and stops
ones idle longer than ``idle_timeout``; at scale to zero (nothing left, nothing run for
``idle_timeout``) it stops the spares too.  When none is idle, :mod:`.placement` decides
whether waiting for a busy one beats a cold start.  It is the local implementation
of :class:`~jupyter_faas.server.backends.base.Backend`; all of it runs on the
server's asyncio loop, with no threads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections import OrderedDict, defaultdict
from pathlib import Path

from .... import limits
from ...model import init_failure_error
from ..base import Backend, Outcome, environment_key
from .environment import SPARE_LIMIT_MB, Environment
from .leases import grant
from .placement import DEFAULT_INIT_S, VersionStats, wait_for_warm
from .snapshots import Snapshots
from .zygote import ZygoteProcess

log = logging.getLogger("jupyter_faas.server")

#: modules never learned for preload (the runtime's own; the zygote has them)
NOT_LEARNED = frozenset({"kernel_workers", "cloudpickle", "jupyter_faas", "__main__"})
#: versions whose placement statistics are kept (least recently run out): a server that has
#: run thousands of versions keeps the ones in use; one dropped is measured again if it returns
VERSION_STATS_KEPT = 512


class Pool(Backend):
    def __init__(self, memory, workdir: Path, preload: list[str], idle_timeout: float,
                 base_environ: dict | None = None, init_timeout: float = limits.INIT_TIMEOUT_S,
                 spares: int | None = None, files=None, max_buffer_bytes: int | None = None,
                 learned: list | None = None, on_learned=None, preload_budget_mb: float = 0.0,
                 on_unlearned=None, journal_dir: str | None = None):
        self.memory = memory
        #: where leases' journals are made (None: this pool leases no environment)
        self.journal_dir = journal_dir
        #: the buffer directory (a :class:`.buffer_files.BufferFiles`; None: buffers travel in
        #: frames), where environments map argument buffers and have their results' files made
        self.files = files
        self.buffers_dir = str(files.dir) if files is not None else None
        self._max_buffer_bytes = max_buffer_bytes  # None: the function's memory
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.preload = preload
        self.idle_timeout = idle_timeout
        self.init_timeout = init_timeout
        self.base_environ = base_environ or {}
        self._zygote: ZygoteProcess | None = None
        self._zygote_lock = asyncio.Lock()
        self.idle: dict[tuple, list[Environment]] = defaultdict(list)
        self.all: dict[str, Environment] = {}
        self.version_stats: "OrderedDict[tuple, VersionStats]" = OrderedDict()
        self.version_stats_kept = VERSION_STATS_KEPT  # FaaSServer.versions_kept
        self.any_init = VersionStats()  # cold-start time of any version, for one not yet measured
        self.cpus = os.cpu_count() or 1
        # Spares: environments forked before a function needs them, so a cold start is a
        # code load, not a fork and a cgroup join.  One per core covers back-to-back starts.
        self.spares_wanted = min(2, self.cpus) if spares is None else spares
        self.spares: list[Environment] = []
        self._spare_task = None
        #: the last time an invocation took or started an environment: at scale to zero (no
        #: environment of any function, none of this for idle_timeout), spares are stopped too
        self.last_active = time.monotonic()
        self._closing = False
        self._reaper = None
        self._sampler = None
        #: tasks of its own (an environment's end, a retirement): owned until done, so the
        #: loop cannot collect one mid-run (it keeps only weak references to tasks)
        self.tasks: set = set()
        #: templates per version: cold starts fork from a process that already ran INIT
        self.snapshots = Snapshots(self)
        #: learned preload: modules functions imported, which the zygote imports in the
        #: background while its RSS stays under ``preload_budget_mb`` (0: not learned)
        self.preload_budget_mb = preload_budget_mb
        self.learned: list[str] = [m for m in (learned or []) if m not in preload]
        self.on_learned = on_learned  # callable(names): persist them (the store)
        self.on_unlearned = on_unlearned  # callable(names): forget them (the zygote cannot import them)
        #: provisioned concurrency: environment key -> (function, count, code_for)
        self.provisioned_wanted: dict[tuple, tuple] = {}
        self.provision_failed: dict[tuple, str] = {}  # key -> why INIT failed (not retried)
        self._provision_waiters: dict[tuple, list] = defaultdict(list)  # key -> futures
        #: callable(name, engine version, what): environments of a version changed in a way a
        #: monitor shows ("provisioned": one came up or failed; "snapshot": a template was
        #: made or refused).  app.py points it at the event feed.
        self.on_change = None

    def spawn(self, coro) -> asyncio.Task:
        """Run ``coro`` as a task the pool owns until it is done."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def zygote(self) -> ZygoteProcess:
        async with self._zygote_lock:
            if self._zygote is None or not self._zygote.alive:
                z = ZygoteProcess(self.preload, learned=self.learned if self.preload_budget_mb else [],
                                  budget_mb=self.preload_budget_mb, on_preloaded=self._preloaded)
                await z.start()
                self._zygote = z
            return self._zygote

    def start_background(self) -> None:
        if self.files is not None:
            self.files.watch()  # large arguments seen as their writing starts
        self._reaper = self.spawn(self._reap_idle())
        self._sampler = self.spawn(self._sample_memory())
        self._fill_spares()

    def stats_for(self, key: tuple) -> VersionStats:
        """The placement statistics of a version (bounded: ``version_stats_kept``)."""
        stats = self.version_stats.get(key)
        if stats is None:
            stats = self.version_stats[key] = VersionStats()
            while len(self.version_stats) > self.version_stats_kept:
                self.version_stats.popitem(last=False)
        else:
            self.version_stats.move_to_end(key)
        return stats

    def max_buffer_bytes(self, function: dict) -> int:
        """The largest result buffers a function's environment may have a file made for (the
        engine's limit: larger ones are refused when the result arrives)."""
        return self._max_buffer_bytes or function["memory"] * 1024 * 1024

    def take_idle(self, function: dict) -> Environment | None:
        """A warm environment of this version, now marked busy, or None.  A provisioned one
        first (Lambda serves from provisioned concurrency before it scales on demand)."""
        key = environment_key(function)
        idle = self.idle.get(key)
        if idle and key in self.provisioned_wanted:
            for i in range(len(idle) - 1, -1, -1):
                if idle[i].provisioned and idle[i].state == "idle":
                    return self._reserve(idle.pop(i))
        while idle:
            env = idle.pop()
            if env.state == "idle":
                return self._reserve(env)
        return None

    def _reserve(self, env: Environment) -> Environment:
        env.state = "busy"
        env.busy_since = self.last_active = time.monotonic()
        return env

    # ---- leases (see .leases) -------------------------------------------------------------

    def can_lease(self, function: dict) -> bool:
        return self.journal_dir is not None

    def lease(self, function: dict, lease_id: str, fields: dict, env: Environment | None = None):
        """Lease an idle warm environment of ``function`` to a client: a
        :class:`.leases.EnvironmentLease`, or None when none is idle (or it cannot be leased now).
        ``env``: this one, just started for the lease and still reserved (None: it is idle again)."""
        if self.journal_dir is None:
            if env is not None:
                self.unreserve(env)
            return None
        if env is None:
            env = self.take_idle(function)
        if env is None:
            return None
        lease = None
        try:
            lease = grant(env, lease_id, self.journal_dir, fields)
        finally:
            if lease is None:
                self.unreserve(env)
        return lease

    def end_lease(self, lease) -> None:
        """The engine has folded a lease that ended: its environment (if it lives) is idle again."""
        lease.close()
        env = lease.env
        if env.state == "idle":
            self.release(env)

    def lease_ran(self, lease, arg_file: str) -> None:
        """A leased invocation with an argument buffers' file ended: the file may be reused once
        no process of the environment maps it."""
        if self.files is not None and lease.env.pid:
            env_id, pid = lease.env.id, lease.env.pid
            self.files.ran(arg_file, lambda: self.memory.pids(env_id, pid))

    def kill_leased(self, lease, reason: str) -> None:
        """Kill a leased environment (its running invocation's deadline passed, or it was cancelled)."""
        lease.env.kill(reason)

    def wait_for_warm(self, function: dict) -> float | None:
        """Seconds until a busy environment is expected free, when that beats a cold start; else None."""
        key = environment_key(function)
        busy, starting = [], []
        for env in self.all.values():
            if env.key == key:
                if env.state == "busy":
                    busy.append(env.busy_since)
                elif env.state == "starting":
                    starting.append(env.busy_since)
        return wait_for_warm(self.version_stats.get(key), busy, starting, time.monotonic(), self.cpus,
                             self.any_init.init_s or DEFAULT_INIT_S)

    def new_environment(self, function: dict) -> Environment:
        """A cold start, counted at once (state ``starting``) so placement sees it before it runs."""
        self.last_active = time.monotonic()
        # A version with a snapshot forks from its template, not from the zygote's spares.
        while self.spares and not self.snapshots.wanted(function):
            env = self.spares.pop()
            # After this cold start has begun: forking a spare runs a little on the loop first.
            asyncio.get_running_loop().call_soon(self._fill_spares)
            if env.assign(function):
                return env
            env.close()
        env = Environment(self, function)
        self.all[env.id] = env
        return env

    def scaled_to_zero(self) -> bool:
        """No environment of any function, none wanted, and no invocation for ``idle_timeout``:
        then spares are not kept either (the zygote stays, so the next cold start only forks)."""
        return (not self.provisioned_wanted
                and time.monotonic() - self.last_active > self.idle_timeout
                and all(e.state in ("spare", "dead") for e in self.all.values()))

    def _fill_spares(self) -> None:
        if (self._spare_task is None and not self._closing and len(self.spares) < self.spares_wanted
                and not self.scaled_to_zero()):
            self._spare_task = self.spawn(self._make_spares())

    async def _make_spares(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            while len(self.spares) < self.spares_wanted and not self._closing:
                env = Environment(self, None)
                self.all[env.id] = env
                try:
                    # Its memory cgroup made in a worker thread first (spawn_spare then finds it):
                    # making one took 3-12 ms here after a run of large buffers (0.05 ms
                    # otherwise), which on the loop held up the cold start that took the spare.
                    await loop.run_in_executor(None, self.memory.fork_fields, env.id, SPARE_LIMIT_MB)
                    await env.spawn_spare()
                except Exception as exc:  # noqa: BLE001 - spares are an optimisation; cold starts still work
                    log.warning("could not fork a spare environment (%s); cold starts will fork", exc)
                    env.close()
                    return
                self.spares.append(env)
        finally:
            self._spare_task = None

    async def start_environment(self, env: Environment, code_for) -> Outcome | None:
        """Fork and load a :meth:`new_environment`; None when it is ready (and busy), else the failure."""
        # Spare buffer files are not made meanwhile: their fresh pages would slow the fork's.
        held = self.files is not None and self.files.hold()
        try:
            failure = await env.start(code_for(env.function))
        finally:
            if held:
                self.files.release()
        if failure is None:
            env.state = "busy"
            env.busy_since = time.monotonic()
        return failure

    def learn_imports(self, names) -> None:
        """Learned preload: modules an environment imported (at INIT or its first invocation)
        that the zygote lacks are persisted and imported by the zygote in the background."""
        if not self.preload_budget_mb:
            return
        new = [n for n in names if n not in NOT_LEARNED and n not in sys.stdlib_module_names
               and n not in self.learned and n not in self.preload]
        if not new:
            return
        self.learned.extend(new)
        try:
            if self.on_learned is not None:
                self.on_learned(new)
            if self._zygote is not None and self._zygote.alive:
                self._zygote.preload_learned(new)
        except Exception:  # noqa: BLE001 - an optimisation: the invocation's end matters more
            log.exception("could not learn the imports %s for preload", new)

    def _preloaded(self, header: dict) -> None:
        """The zygote imported a learned module: spares forked before it lack it, so they go."""
        if header["ok"]:
            log.info("zygote preloaded %s (learned; zygote RSS %.0f MB)", header["module"],
                     header["rss_mb"])
            for env in list(self.spares):
                env.close()
            self._fill_spares()
        elif (header.get("error") or "").startswith("over the preload budget"):
            log.info("zygote did not preload %s: %s", header["module"], header.get("error"))
        else:
            # Not importable from the zygote's path (e.g. learned before environments reported
            # only modules it can import): forgotten, so no later start tries it again.
            log.debug("zygote could not preload %s (%s); forgetting it", header["module"],
                      header.get("error"))
            name = header["module"]
            if name in self.learned:
                self.learned.remove(name)
            try:
                if self.on_unlearned is not None:
                    self.on_unlearned([name])
            except Exception:  # noqa: BLE001 - an optimisation
                log.exception("could not forget the learned module %s", name)

    def init_lines(self, env: Environment) -> list:
        """What the environment printed at INIT (its template's, for one forked from a snapshot)."""
        lines, env.orphan_lines = env.orphan_lines, []
        return lines

    def is_starting(self, env: Environment) -> bool:
        return env.state == "starting"

    def run(self, env: Environment, request_id: str, payload: bytes, encoding: str, timeout: float,
            on_line, done, buffers: dict | None = None) -> None:
        env.run(request_id, payload, encoding, timeout, on_line, done, buffers)

    def cancel(self, env: Environment) -> None:
        env.kill("cancelled")

    def release(self, env: Environment) -> None:
        if env.state == "idle":
            if env.retire:  # provisioned, and no longer wanted while it ran or started
                env.close()
                return
            self.idle[env.key].append(env)

    def unreserve(self, env: Environment) -> None:
        env.state = "idle"
        self.release(env)

    def discard(self, env: Environment) -> None:
        env.close()

    def forget(self, env: Environment) -> None:
        self.all.pop(env.id, None)
        if env in self.spares:
            self.spares.remove(env)
        lst = self.idle.get(env.key)
        if lst is not None:
            if env in lst:
                lst.remove(env)
            if not lst:  # a version with no idle environment keeps no entry
                del self.idle[env.key]

    def stop_function(self, name: str) -> None:
        """Stop the idle environments of every version of a function (it was deleted or replaced)."""
        for key in [k for k in self.provisioned_wanted if k[0] == name]:
            del self.provisioned_wanted[key]
            self._provision_changed(key)
        for key in [k for k in self.idle if k[0] == name]:
            for env in self.idle.pop(key):
                env.close()
        self.snapshots.stop_function(name)

    async def _reap_idle(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, max(0.05, self.idle_timeout / 4)))
            now = time.monotonic()
            for env in [e for e in self.all.values() if e.state == "idle"]:
                if now - env.last_used > self.idle_timeout and not (
                        env.provisioned and env.key in self.provisioned_wanted):
                    env.close()
            for env in [e for e in self.all.values() if e.state != "dead" and e.pid]:
                if env.exit is not None and env.exit.done() and env.state in ("idle", "spare"):
                    env.close()  # died while idle (e.g. a leftover thread called os._exit)
            self.snapshots.reap(self.idle_timeout)
            if self.files is not None:
                self.files.replenish()  # spare buffer files follow recent use (none when idle)
            if self.spares and self.scaled_to_zero():
                log.info("no environment and no invocation for %g s: stopping the %d spare "
                         "environments", self.idle_timeout, len(self.spares))
                for env in list(self.spares):
                    env.close()
            self._fill_spares()
            for key in list(self.provisioned_wanted):
                self._top_up(key)  # replace a provisioned environment that died or was killed

    # ---- provisioned concurrency ---------------------------------------------------------

    def provision(self, function: dict, count: int, code_for) -> None:
        """Keep ``count`` environments of ``function`` started (see Backend.provision)."""
        self.last_active = time.monotonic()
        key = environment_key(function)
        self.provision_failed.pop(key, None)
        if count > 0:
            self.provisioned_wanted[key] = (function, count, code_for)
        else:
            self.provisioned_wanted.pop(key, None)
        kept = [e for e in self.all.values() if e.key == key and e.provisioned and e.state != "dead"]
        # Idle ones first: they go now; a busy or starting one goes when it is done (release).
        kept.sort(key=lambda e: e.state == "idle")
        for env in kept[max(count, 0):]:
            env.provisioned = False  # no longer wanted: stopped, not left for idle_timeout
            env.retire = True
            if env.state == "idle":
                env.close()
        self._top_up(key)
        self._provision_changed(key)

    def provisioned_environments(self, function: dict) -> list[dict]:
        key = environment_key(function)
        return [{"id": e.id, "busy": e.state in ("busy", "leased")} for e in self.all.values()
                if e.key == key and e.provisioned and e.state in ("idle", "busy", "leased")]

    def provision_failure(self, function: dict) -> str | None:
        return self.provision_failed.get(environment_key(function))

    async def wait_provisioned(self, function: dict) -> None:
        key = environment_key(function)
        while True:
            wanted = self.provisioned_wanted.get(key)
            if (wanted is None or key in self.provision_failed or self._closing
                    or len(self.provisioned_environments(function)) >= wanted[1]):
                return
            waiter = asyncio.get_running_loop().create_future()
            self._provision_waiters[key].append(waiter)
            try:
                await waiter
            finally:
                waiters = self._provision_waiters.get(key)
                if waiters and waiter in waiters:
                    waiters.remove(waiter)
                if not waiters:
                    self._provision_waiters.pop(key, None)

    def _provision_changed(self, key: tuple) -> None:
        """A provisioned environment of ``key`` came up or failed, or the count changed."""
        for waiter in self._provision_waiters.pop(key, []):
            if not waiter.done():
                waiter.set_result(None)
        self.changed(key, "provisioned")

    def changed(self, key: tuple, what: str) -> None:
        if self.on_change is not None:
            try:
                self.on_change(key[0], key[1], what)
            except Exception:  # noqa: BLE001 - a monitor must not break environments
                log.exception("telling monitors that %s of %s changed failed", what, key)

    def snapshot_state(self, function: dict) -> dict | None:
        return self.snapshots.state(function)

    def _top_up(self, key: tuple) -> None:
        wanted = self.provisioned_wanted.get(key)
        if wanted is None or self._closing or key in self.provision_failed:
            return
        function, count, code_for = wanted
        have = sum(1 for e in self.all.values() if e.key == key and e.provisioned and e.state != "dead")
        for _ in range(count - have):
            env = self.new_environment(function)
            env.provisioned = True
            self.spawn(self._start_provisioned(env, code_for))

    async def _start_provisioned(self, env: Environment, code_for) -> None:
        try:
            failure = await self.start_environment(env, code_for)
        except Exception:  # noqa: BLE001 - retried at the next reaper tick
            log.exception("could not start a provisioned environment of %s", env.key)
            env.close()
            return
        if failure is not None:
            if failure.kind == "init_error":
                error = failure.header
            else:  # the INIT limit, the memory limit, or the runtime died: as invocations say it
                error = init_failure_error(failure.kind, env.function["memory"], failure.max_memory_mb,
                                           failure.header.get("init_limit_s"), failure.returncode)
            why = f"{error.get('errorType') or failure.kind}: {error.get('errorMessage') or failure.kind}"
            log.warning("a provisioned environment of %s failed its INIT: %s", env.key, why)
            self.provision_failed[env.key] = why
            self._provision_changed(env.key)
            return
        env.fresh = False  # initialized ahead of any invocation: no Init Duration in a REPORT
        self.unreserve(env)
        self._provision_changed(env.key)

    async def _sample_memory(self) -> None:
        """The watchdog: RSS of busy environments, killed over their limit."""
        interval = self.memory.interval
        while True:
            await asyncio.sleep(interval)
            # busy, and starting (INIT is under the function's memory limit too)
            for env in [e for e in self.all.values() if e.state in ("busy", "starting", "leased") and e.pid
                        and e.function is not None]:
                if self.memory.mode == "cgroup":
                    # The kernel enforces; if it killed a child of the environment, the
                    # invocation is over the limit all the same: end it now.
                    if self.memory.oom_killed(env.id):
                        env.kill("oom")
                        continue
                    # The process's own peak, for an invocation whose process dies on its own
                    # (a crash leaves no VmHWM to read; the cgroup counts only the pages it
                    # did not share with the zygote).
                    env.sampled_peak_mb = max(env.sampled_peak_mb, self.memory.hwm_mb(env.id, env.pid))
                    continue
                used = self.memory.sample_mb(env.id, env.pid)
                env.sampled_peak_mb = max(env.sampled_peak_mb, used)
                if used > env.function["memory"]:
                    log.info("environment %s uses %.0f MB over its %d MB limit; killing it",
                             env.id, used, env.function["memory"])
                    env.kill("oom")

    def stats(self) -> dict:
        states = defaultdict(int)
        for env in self.all.values():
            states[env.state] += 1
        zygote = self._zygote
        return {"environments": len(self.all), **states, "memory_enforcement": self.memory.mode,
                "version_stats": len(self.version_stats),
                **self.snapshots.stats(),
                "preloaded_learned": sorted(m for m, why in (zygote.preloaded if zygote else {}).items()
                                            if why is None)}

    async def close(self) -> None:
        self._closing = True
        for task in (self._reaper, self._sampler, self._spare_task):
            if task is not None:
                task.cancel()
        for template in list(self.snapshots.templates.values()):
            template.link.stop()
        for env in list(self.all.values()):
            env.kill("stopped")
        for env in list(self.all.values()):
            await env.wait_exit()
            env.close()
        if self._zygote is not None:
            self._zygote.stop()
        self.memory.close()

