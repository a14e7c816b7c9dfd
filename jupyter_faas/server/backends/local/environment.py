"""One local execution environment: a process forked from the zygote, one invocation at a time.

The server owns its stdout/stderr pipes and reads them line by line, tagging each
line with the invocation that is running.  An invocation's outcome is the first of:
its result frame, its deadline (the whole process tree is killed), or the process's
death (exit status or signal from the zygote, OOM from the memory enforcer).  Frames
from its control socket are parsed by :class:`kernel_workers.wire.FrameDecoder`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import shutil
import socket
import time

from kernel_workers import wire

from ..base import Outcome, environment_key
from .memory import kill_tree
from .zygote import EnvironmentDied

log = logging.getLogger("jupyter_faas.server")

#: A spare's cgroup limit until it is given a function (then lowered to the function's memory).
SPARE_LIMIT_MB = 10240
#: Longest line kept whole; longer output is split into lines of this size.
MAX_LINE = 256 * 1024
#: after a timeout fires, how long to wait for a result that may already be in the socket
TIMEOUT_GRACE_S = 0.2


class _FrameReader(asyncio.BufferedProtocol):
    """The control socket's frames, parsed as the bytes arrive (reads go straight into the decoder).

    A callback per read, not a reader task awaiting three ``readexactly`` per frame: the
    frame of a quick call is one read, so the warm path costs no task wake-ups here.
    """

    def __init__(self, env: "Environment"):
        self.env = env
        self.decoder = wire.FrameDecoder()
        self.broken = False

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.decoder.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        if self.broken:
            return
        decoder = self.decoder
        try:
            decoder.buffer_updated(nbytes)
        except wire.ProtocolError as exc:
            self.broken = True
            self.env._link_lost(str(exc), bad_frame=True)
            return
        frame = decoder.next_frame()
        while frame is not None:
            self.env._frame_arrived(*frame)
            frame = decoder.next_frame()

    def eof_received(self):
        return False  # close the transport; connection_lost says the link is gone

    def connection_lost(self, exc) -> None:
        if not self.broken:
            self.env._link_lost(str(exc) if exc else "the environment closed its control socket")


class _Run:
    """The invocation an environment is running: who to tell, and its deadline."""

    __slots__ = ("request_id", "arg_file", "done", "started", "timeout", "timer", "grace")

    def __init__(self, request_id: str, arg_file, done, started: float, timeout: float):
        self.request_id = request_id
        self.arg_file = arg_file  # the name of its argument buffers' file, if it has one
        self.done = done          # callable(Outcome)
        self.started = started    # perf_counter() when it was sent
        self.timeout = timeout
        self.timer = None         # the deadline, then the grace after it
        self.grace = False        # the deadline passed; a result is believed by its duration


class Environment:
    _ids = itertools.count(1)

    def __init__(self, pool, function: dict | None):  # pool: the owning .pool.Pool
        self.pool = pool
        self.id = f"env-{os.getpid()}-{next(self._ids)}"
        self.function = function  # None for a spare until assign()
        self.key = environment_key(function) if function else None
        self.provisioned = False  # kept started by provisioned concurrency (never reaped while wanted)
        self.retire = False  # was provisioned, no longer wanted: stopped once it is idle
        #: how it was initialized: its AWS_LAMBDA_INITIALIZATION_TYPE (on-demand,
        #: provisioned-concurrency, snap-start); what the invocation rows it serves record
        self.init_type = "on-demand"
        #: forked from a snapshot template: INIT's pages are the template's (see :mod:`.snapshots`)
        self.forked_from_template = False
        self.pid: int | None = None
        self.exit: asyncio.Future | None = None
        self.state = "starting"
        self.last_used = time.monotonic()
        self.busy_since = self.last_used  # when it took its current invocation (placement)
        self.init_ms: float | None = None
        self.fresh = True
        self.writer = None  # the control socket's transport; frames come in through _FrameReader
        self.ctl = None     # the control socket itself (a lease's descriptors are sent on it)
        self.lease = None   # a .leases.EnvironmentLease while leased to a client
        self._frame: asyncio.Future | None = None  # the init frame, awaited by start()
        self._run: _Run | None = None               # the invocation being run
        self._lost = False                           # the control socket is gone
        self._pipes: dict[int, tuple[str, bytearray]] = {}
        self.on_line = None          # callable(stream, line) while an invocation runs
        self.orphan_lines: list = []  # lines printed outside an invocation (e.g. at import)
        self.sampled_peak_mb = 0.0
        self.peak_before_kill_mb = 0.0  # Max Memory Used, read as the invocation was killed
        self.killed_for: str | None = None  # 'timeout' | 'oom' | 'cancelled'
        self.workdir = pool.workdir / self.id
        self.ready_header: dict = {}  # the ready frame (imports, a template's fork-safety)

    # ---- start ---------------------------------------------------------------------------

    def _setup_fields(self, from_snapshot: bool = False) -> dict:
        """The process environment of this function's environment (applied in the child)."""
        cfg = self.function
        environ = dict(self.pool.base_environ)
        self.init_type = ("provisioned-concurrency" if self.provisioned
                          else "snap-start" if from_snapshot else "on-demand")
        environ.update({
            "AWS_LAMBDA_FUNCTION_NAME": cfg["name"],
            "AWS_LAMBDA_FUNCTION_VERSION": self.key[2],
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(cfg["memory"]),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{cfg['name']}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"{time.strftime('%Y/%m/%d')}/[{self.key[2]}]{self.id}",
            "AWS_LAMBDA_INITIALIZATION_TYPE": self.init_type,
            "LAMBDA_TASK_ROOT": str(self.workdir),
            "TMPDIR": str(self.workdir / "tmp"),
            "PYTHONUNBUFFERED": "1",
        })
        environ.update(cfg.get("env") or {})
        return {"environ": environ, "cwd": str(self.workdir), "tmpdir": str(self.workdir / "tmp")}

    async def _fork(self, fields: dict, via=None, template_link=None) -> None:
        """Fork from the zygote (or ``via``, a version's template) with ``fields`` and connect
        its control socket and output pipes; ``template_link``: the socket it serves forks on
        if it becomes a template (see :mod:`.snapshots`)."""
        loop = asyncio.get_running_loop()
        ctl_parent, ctl_child = socket.socketpair()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        fds = [ctl_child.fileno(), out_w, err_w]
        if template_link is not None:
            fds.append(template_link.fileno())
        try:
            zygote = via or await self.pool.zygote()
            self.pid = await zygote.fork(self.id, fields, fds)
        except BaseException:
            ctl_parent.close()
            os.close(out_r)
            os.close(err_r)
            raise
        finally:
            ctl_child.close()
            os.close(out_w)
            os.close(err_w)
        self.exit = zygote.exit_future(self.pid)
        for fd, stream in ((out_r, "stdout"), (err_r, "stderr")):
            os.set_blocking(fd, False)
            self._pipes[fd] = (stream, bytearray())
            loop.add_reader(fd, self._pipe_readable, fd)
        self.writer, _ = await loop.create_connection(lambda: _FrameReader(self), sock=ctl_parent)
        self.ctl = ctl_parent

    async def spawn_spare(self) -> None:
        """Fork ahead of need, with no function: joined to its cgroup (the slow part), then waiting."""
        await self._fork(self.pool.memory.fork_fields(self.id, SPARE_LIMIT_MB))
        self.state = "spare"

    def assign(self, function: dict) -> bool:
        """Make this spare an environment of ``function``; False if it cannot be (then close it)."""
        if self.state != "spare" or self.exit.done():
            return False
        self.function = function
        self.key = environment_key(function)
        self.state = "starting"
        self.busy_since = time.monotonic()
        return True

    async def start(self, code: bytes, template_link=None) -> Outcome | None:
        """Fork (or take over a spare) and load the code; None when ready, else the init failure.

        A version with snapshots forks from its template (INIT already done: see
        :mod:`.snapshots`); ``template_link`` makes this environment a template candidate.
        """
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        cfg = self.function
        via, waited_ms, extra = None, 0.0, {}
        if template_link is not None:
            extra["template"] = True
        elif self.pid is None and self.pool.snapshots.wanted(cfg):
            via, failure, waited_ms = await self.pool.snapshots.template_for(self, code)
            if failure is not None:  # the template's INIT failed: so does this cold start
                self.init_ms = (time.perf_counter() - started) * 1000
                self.close()
                return failure
            if via is not None:
                started = time.perf_counter()  # Init Duration: the fork (and INIT if it waited for it)
                code, extra["snapshot"] = b"", True
                self.orphan_lines[:0] = self.pool.snapshots.init_lines(self.key)
        setup = self._setup_fields(via is not None)
        self.forked_from_template = via is not None
        if self.pid is None:
            setup.update(self.pool.memory.fork_fields(self.id, cfg["memory"]))
            await self._fork(setup, via, template_link)
            setup = None
        else:
            # A spare: lower its cgroup limit (it is already a member) and send the rest with init.
            limits = self.pool.memory.fork_fields(self.id, cfg["memory"])
            setup.update({k: v for k, v in limits.items() if k != "cgroup_procs"})
        self._frame = loop.create_future()
        # a link lost after INIT gave up waiting is reported by _init_ended, not as unretrieved
        self._frame.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.writer.write(wire.pack("init", code, function=cfg["name"], version=self.key[2],
                                    memory=cfg["memory"], setup=setup, buffers_dir=self.pool.buffers_dir,
                                    ask_files=self.pool.files is not None, **extra))
        try:
            header, body = await asyncio.wait_for(asyncio.shield(self._frame), self.pool.init_timeout)
        except (EnvironmentDied, asyncio.TimeoutError) as exc:
            return await self._init_ended(isinstance(exc, asyncio.TimeoutError), started)
        if header["k"] == "init_error":
            self.kill("init")
            await self.wait_exit()
            return self._init_failed(Outcome("init_error", header, bytes(body)), started)
        self.ready_header = header
        self.init_ms = (time.perf_counter() - started) * 1000 + waited_ms
        self.pool.learn_imports(header.get("imported") or ())
        self.pool.stats_for(self.key).observe_init(self.init_ms / 1000)
        self.pool.any_init.observe_init(self.init_ms / 1000)
        self.state = "idle"
        return None

    async def _init_ended(self, timed_out: bool, started: float) -> Outcome:
        """INIT ran over the INIT limit (``timed_out``), or the process died in it: killed by
        the memory limit (the kernel's OOM killer, or the watchdog) or by anything else."""
        memory = self.pool.memory
        # read while the process lives (a dead one has no VmHWM; its cgroup keeps its peak)
        peak = max(memory.peak_mb(self.id, self.pid, self.sampled_peak_mb), self.sampled_peak_mb)
        self.kill("timeout" if timed_out else "init")
        returncode = await self.wait_exit()
        if timed_out:
            outcome = Outcome("timeout", {"init_limit_s": self.pool.init_timeout})
        elif self.killed_for == "oom" or memory.oom_killed(self.id):
            outcome = Outcome("oom")
        else:
            outcome = Outcome("crash", returncode=returncode)
        outcome.max_memory_mb = peak
        return self._init_failed(outcome, started)

    def _init_failed(self, outcome: Outcome, started: float) -> Outcome:
        """Close this environment after a failed INIT; ``outcome`` carries INIT's output."""
        self.drain()
        self.init_ms = (time.perf_counter() - started) * 1000
        outcome.phase = "init"
        outcome.init_output, self.orphan_lines = self.orphan_lines, []
        self.close()
        return outcome

    def _frame_arrived(self, header: dict, body: bytes) -> None:
        if self.lease is not None:
            try:
                if header["k"] == "lease_ended":
                    self.lease.given_back()
                elif header["k"] == "result_file":
                    self.lease.result_file(header)
                elif header["k"] in ("buffers_spent", "fold") and self.lease.on_fold is not None:
                    self.lease.on_fold()  # fold now: a spent argument file, or an end to tell
            except Exception:  # noqa: BLE001 - never let it reach the transport
                log.exception("environment %s: handling a frame of its lease failed", self.id)
            return
        if self._run is not None:
            try:
                if header["k"] == "result_file":
                    self._result_file(header, self._run.request_id)
                    return
                self._run_frame(header, body)
            except Exception:  # noqa: BLE001 - never let it reach the transport (it would drop the link)
                log.exception("environment %s: handling the end of an invocation failed", self.id)
            return
        if self._frame is not None and not self._frame.done():
            self._frame.set_result((header, body))

    def _link_lost(self, why: str, bad_frame: bool = False) -> None:
        self._lost = True
        if self.lease is not None:
            self.lease.lost()
        if bad_frame:
            log.error("environment %s sent a bad frame (%s); stopping it", self.id, why)
            self.kill("protocol")
        if self._run is not None:
            self._run_ended()
        if self._frame is not None and not self._frame.done():
            self._frame.set_exception(EnvironmentDied(why))
        self._frame = None

    # ---- output --------------------------------------------------------------------------

    def _pipe_readable(self, fd: int, to_end: bool = False) -> None:
        stream, buf = self._pipes[fd]
        # A bounded read per wake-up (64 KB is ~5,000 short lines): a function printing
        # without pause must not starve the loop (other invocations, flushes, websockets).
        # ``to_end``: what the pipe holds now, all of it (drain).
        for _ in (itertools.count() if to_end else range(2)):
            try:
                data = os.read(fd, 1 << 15)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                self._emit_partial(fd)
                asyncio.get_running_loop().remove_reader(fd)
                os.close(fd)
                del self._pipes[fd]
                return
            buf += data
            self._emit_lines(stream, buf)

    def _emit_lines(self, stream: str, buf: bytearray) -> None:
        end = buf.rfind(b"\n")
        if end >= 0:
            # Split the complete lines in one pass (deleting line by line from the front
            # of the buffer is quadratic in a 64 KB read of short lines).
            chunk = bytes(buf[:end])
            del buf[:end + 1]
            for raw in chunk.split(b"\n"):
                while len(raw) > MAX_LINE:
                    self._line(stream, raw[:MAX_LINE].decode("utf-8", "replace"))
                    raw = raw[MAX_LINE:]
                self._line(stream, raw.decode("utf-8", "replace").rstrip("\r"))
        while len(buf) >= MAX_LINE:  # an unterminated line that is already too long
            self._line(stream, bytes(buf[:MAX_LINE]).decode("utf-8", "replace"))
            del buf[:MAX_LINE]

    def _emit_partial(self, fd: int) -> None:
        stream, buf = self._pipes[fd]
        if buf:
            self._line(stream, bytes(buf).decode("utf-8", "replace"))
            buf.clear()

    def _line(self, stream: str, line: str) -> None:
        if self.on_line is not None:
            self.on_line(stream, line)
        else:
            self.orphan_lines.append((time.time(), stream, line))
            del self.orphan_lines[:-1000]

    def drain(self) -> None:
        """Read whatever the process wrote before its result frame, and any unterminated line.

        All of it, not a wake-up's bounded read: a pipe holds up to 1 MB once the environment
        was leased (.leases.PIPE_BYTES), so a handler may print that much and answer before the
        loop read any of it; what a bounded read left went to the next invocation."""
        for fd in list(self._pipes):
            self._pipe_readable(fd, to_end=True)
        for fd in list(self._pipes):
            self._emit_partial(fd)

    # ---- run -----------------------------------------------------------------------------

    def run(self, request_id: str, payload: bytes, encoding: str, timeout: float, on_line,
            done, buffers: dict | None = None) -> None:
        """Send one invocation; ``done(outcome)`` is called once, with how it ended.
        ``buffers`` describes its argument buffers' file, if any.

        Callbacks, not a task per invocation: the result frame is settled in the read
        callback that parsed it, so a warm invocation costs no task wake-ups here.  Only
        an end that must wait for the process's exit status (timeout, crash, OOM,
        cancel) runs as a task.
        """
        loop = asyncio.get_running_loop()
        self.state = "busy"
        self.sampled_peak_mb = 0.0
        self.peak_before_kill_mb = 0.0
        self.on_line = on_line
        for ts, stream, line in self.orphan_lines:  # what the engine did not take as INIT lines
            on_line(stream, line)
        self.orphan_lines.clear()
        self.pool.memory.before_invoke(self.id, self.pid)
        run = self._run = _Run(request_id, buffers and buffers.get("file"), done, time.perf_counter(),
                               timeout)
        deadline_ms = int(time.time() * 1000 + timeout * 1000)
        described = {"buffers": buffers} if buffers is not None else {}
        prefix, body = wire.pack_parts("invoke", payload, request_id=request_id, encoding=encoding,
                                       deadline_ms=deadline_ms, **described)
        if len(body) < 65536:
            self.writer.write(prefix + body)  # one send for the common, small call
        else:
            # Two writes, not writelines(): that joins prefix and body, one more copy of a
            # large payload before the transport buffers what the socket did not take.
            self.writer.write(prefix)
            self.writer.write(body)
        run.timer = loop.call_later(timeout, self._deadline_passed, run)
        if self._lost:  # it died (or was cancelled) before this was sent
            self._run_ended()

    def _result_file(self, header: dict, running: str | None) -> None:
        """The environment asks for its result's file (``running``: the request id it runs): the
        pool's buffer files make it (its pages charged to the server, not to this environment's
        memory), then say ``ok``."""
        files = self.pool.files
        name = f"res-{header.get('request_id')}"
        nbytes = header.get("nbytes")
        if (files is None or running is None or name != f"res-{running}" or not isinstance(nbytes, int)
                or not 0 < nbytes <= self.pool.max_buffer_bytes(self.function)):
            self.writer.write(wire.pack("result_file", ok=False))  # it writes a new file itself
            return
        run, lease = self._run, self.lease

        def made(ok: bool) -> None:
            still = (lease is not None and self.lease is lease and lease.running
                     and lease.running[0] == running) or (lease is None and self._run is run)
            if still and not self._lost:
                self.writer.write(wire.pack("result_file", ok=ok))
            elif ok:  # it ended (killed, cancelled) while the file was made
                files.discard({"file": name})
        files.provide(name, nbytes, made)

    def _deadline_passed(self, run: _Run) -> None:
        if self._run is not run:
            return
        # A busy loop can fire the timer before reading a result that is already waiting in
        # the socket: give the reader a moment, and believe the environment's own clock
        # about how long the handler ran (see _run_frame).
        run.grace = True
        run.timer = asyncio.get_running_loop().call_later(TIMEOUT_GRACE_S, self._grace_over, run)

    def _grace_over(self, run: _Run) -> None:
        if self._run is run:
            self.kill("timeout")
            self._run_ended()

    def _run_frame(self, header: dict, body: bytes) -> None:
        run = self._run
        run.timer.cancel()
        if run.grace and not header.get("duration_ms", float("inf")) <= run.timeout * 1000:
            self.kill("timeout")
            self._run_ended()
            return
        memory = self.pool.memory
        if memory.oom_killed(self.id):
            self.kill("oom")  # a child was OOM-killed: the invocation hit the limit
            self._run_ended()
            return
        peak = memory.peak_mb(self.id, self.pid, self.sampled_peak_mb,
                              reported_hwm_mb=header.get("hwm_mb"), own_only=self.forked_from_template)
        limit = self.function["memory"]
        memory_error = header["k"] == "error" and header.get("errorType") == "Runtime.OutOfMemory"
        if peak > limit and not memory_error:
            if memory.mode != "cgroup":
                # its RSS went over the limit between two of the watchdog's samples: over what
                # the watchdog enforces, so over its limit, as if a sample had caught it
                self.peak_before_kill_mb = peak
                self.kill("oom")
                self._run_ended()
                return
            # the kernel held the cgroup (what the environment allocated itself) under the
            # limit; the rest of its RSS is pages it shares with the zygote, charged to it
            peak = limit
        self._run = None
        if "imported" in header:  # the first invocation's imports (learned preload)
            self.pool.learn_imports(header["imported"])
        cpu_ms, duration_ms = header.get("cpu_ms"), header.get("duration_ms")
        self.pool.stats_for(self.key).observe_run(
            time.monotonic() - self.busy_since, None if duration_ms is None else duration_ms / 1000,
            None if cpu_ms is None else cpu_ms / 1000)
        self.drain()
        self.on_line = None
        outcome = Outcome("result" if header["k"] == "result" else "error", header, body,
                          duration_ms=header.get("duration_ms", 0.0))
        outcome.max_memory_mb = peak
        self.fresh = False
        if memory_error:
            self.kill("oom")  # a MemoryError: never reuse this heap
            self.pool.spawn(self._retire(outcome, run.done))
            return
        self.state = "idle"
        self.last_used = time.monotonic()
        if run.arg_file is not None and self.pool.files is not None:
            env_id, pid = self.id, self.pid
            self.pool.files.ran(run.arg_file, lambda: self.pool.memory.pids(env_id, pid))
        run.done(outcome)

    async def _retire(self, outcome: Outcome, done) -> None:
        await self.wait_exit()
        self.close()
        done(outcome)

    def _run_ended(self) -> None:
        """The process is gone or being killed: wait for its status, then say why it ended."""
        run, self._run = self._run, None
        run.timer.cancel()

        async def end():
            run.done(await self._ended(run.started))
        self.pool.spawn(end())

    async def _ended(self, started: float) -> Outcome:
        memory = self.pool.memory
        duration = (time.perf_counter() - started) * 1000
        peak = max(memory.peak_mb(self.id, self.pid, self.sampled_peak_mb,
                                  own_only=self.forked_from_template), self.peak_before_kill_mb)
        returncode = await self.wait_exit()
        self.drain()
        self.on_line = None
        oom = self.killed_for == "oom" or memory.oom_killed(self.id)
        kind = {"timeout": "timeout", "cancelled": "cancelled"}.get(self.killed_for, "oom" if oom else "crash")
        self.close()
        return Outcome(kind, duration_ms=duration, max_memory_mb=peak, returncode=returncode)

    async def wait_exit(self) -> int | None:
        if self.exit is None:
            return None
        try:
            return await asyncio.wait_for(asyncio.shield(self.exit), 5)
        except (asyncio.TimeoutError, EnvironmentDied):
            return None

    def kill(self, reason: str) -> None:
        if self.killed_for is None:
            self.killed_for = reason
        if self.pid:
            if self._run is not None and not self.peak_before_kill_mb:
                # Max Memory Used must be read while the process lives: a dead one has no
                # VmHWM, and its cgroup was charged only for the pages it allocated itself
                # (not those it shares with the zygote), which is ~1 MB for a small handler.
                self.peak_before_kill_mb = self.pool.memory.peak_mb(
                    self.id, self.pid, self.sampled_peak_mb, own_only=self.forked_from_template)
            kill_tree(self.pool.memory.pids(self.id, self.pid), self.pid)

    def close(self) -> None:
        """Forget the process (it has exited or was killed) and free what it held."""
        if self.state == "dead":
            return
        self.state = "dead"
        if self.lease is not None:
            self.lease.lost()
        if self.pid and self.killed_for is None and not self.exit.done():
            self.kill("stopped")
        for fd in list(self._pipes):
            try:
                asyncio.get_running_loop().remove_reader(fd)
                os.close(fd)
            except OSError:
                pass
        self._pipes.clear()
        if self.writer is not None:
            self.writer.close()
        self.pool.memory.release(self.id)
        self.pool.forget(self)
        shutil.rmtree(self.workdir, ignore_errors=True)

