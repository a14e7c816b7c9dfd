"""The local backend: a zygote and the execution environments forked from it.

Actors (all on the server's asyncio loop, no threads):

- ``ZygoteProcess`` starts ``python -m kernel_workers.zygote`` with a clean
  environment (never the server's token), asks it to fork, and hears every exit
  status (the zygote is the environments' parent, so only it can ``waitpid``).
- ``Environment`` is one forked process running one function version, one
  invocation at a time.  The server owns its stdout/stderr pipes and reads them
  line by line, tagging each line with the invocation that is running.  An
  invocation's outcome is the first of: its result frame, its deadline (the
  server kills the whole process tree), or the process's death (exit status or
  signal from the zygote, OOM from the memory enforcer).
- ``Pool`` keeps idle environments per function version (warm starts), starts
  new ones (cold starts), and stops ones idle longer than ``idle_timeout``.  When
  none is idle, :mod:`.placement` decides whether waiting for a busy one beats a
  cold start.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from kernel_workers import wire

from .memory import kill_tree
from .placement import DEFAULT_INIT_S, VersionStats, wait_for_warm

log = logging.getLogger("jupyter_faas.server")

#: A spare's cgroup limit until it is given a function (then lowered to the function's memory).
SPARE_LIMIT_MB = 10240
#: Longest line kept whole; longer output is split into lines of this size.
MAX_LINE = 256 * 1024
#: after a timeout fires, how long to wait for a result that may already be in the socket
TIMEOUT_GRACE_S = 0.2
#: Environment variables the zygote (and so every environment) may inherit from the server.
PASSTHROUGH_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "VIRTUAL_ENV",
                   "SYSTEMROOT", "LD_LIBRARY_PATH")


class EnvironmentDied(Exception):
    pass


@dataclass
class Outcome:
    """How one invocation ended in an environment (the pool's answer to the invoker)."""

    kind: str                      # result | error | timeout | crash | oom | init_error | cancelled
    header: dict = field(default_factory=dict)
    body: bytes = b""
    duration_ms: float = 0.0
    max_memory_mb: float = 0.0
    returncode: int | None = None


class ZygoteProcess:
    def __init__(self, preload: list[str], python: str = sys.executable):
        self.preload = preload
        self.python = python
        self.proc = None
        self.sock = None
        self.buf = bytearray()
        self.hello: asyncio.Future | None = None
        self.forks: dict[str, asyncio.Future] = {}
        self.exits: dict[int, asyncio.Future] = {}
        self.alive = False

    async def start(self) -> dict:
        loop = asyncio.get_running_loop()
        parent, child = socket.socketpair()
        environ = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
        environ["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            [self.python, "-m", "kernel_workers.zygote", "--fd", str(child.fileno()),
             "--preload", ",".join(self.preload)],
            pass_fds=[child.fileno()], env=environ, stdin=subprocess.DEVNULL, close_fds=True)
        child.close()
        self.sock = parent
        self.hello = loop.create_future()
        self.alive = True
        loop.add_reader(parent.fileno(), self._readable)
        return await asyncio.wait_for(self.hello, 60)

    def _readable(self) -> None:
        try:
            data = self.sock.recv(1 << 16, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._died()
            return
        self.buf += data
        while len(self.buf) >= wire.HEADER_SIZE:
            hlen, blen = wire.lengths(bytes(self.buf[:wire.HEADER_SIZE]))
            end = wire.HEADER_SIZE + hlen + blen
            if len(self.buf) < end:
                break
            header = wire.parse_header(bytes(self.buf[wire.HEADER_SIZE:wire.HEADER_SIZE + hlen]))
            del self.buf[:end]
            self._dispatch(header)

    def _dispatch(self, header: dict) -> None:
        kind = header["k"]
        if kind == "hello":
            if header.get("failed"):
                log.warning("preload modules failed to import in the zygote: %s", header["failed"])
            if not self.hello.done():
                self.hello.set_result(header)
        elif kind == "forked":
            fut = self.forks.pop(header["env_id"], None)
            if fut and not fut.done():
                fut.set_result(header["pid"])
        elif kind == "exited":
            fut = self.exit_future(header["pid"])
            if not fut.done():
                fut.set_result(header["returncode"])

    def exit_future(self, pid: int) -> asyncio.Future:
        fut = self.exits.get(pid)
        if fut is None:
            fut = self.exits[pid] = asyncio.get_running_loop().create_future()
        return fut

    def _died(self) -> None:
        if not self.alive:
            return
        self.alive = False
        try:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
        except (ValueError, OSError):
            pass
        for fut in list(self.forks.values()) + list(self.exits.values()):
            if not fut.done():
                fut.set_exception(EnvironmentDied("the zygote process exited"))
        if self.hello and not self.hello.done():
            self.hello.set_exception(EnvironmentDied("the zygote process exited during start"))

    async def fork(self, env_id: str, fields: dict, fds: list[int]) -> int:
        fut = self.forks[env_id] = asyncio.get_running_loop().create_future()
        self.sock.setblocking(True)
        try:
            self.sock.sendall(wire.pack("fork", env_id=env_id, **fields))
            socket.send_fds(self.sock, [b"F"], fds)
        finally:
            self.sock.setblocking(False)
        return await asyncio.wait_for(fut, 30)

    def stop(self) -> None:
        self._died()
        if self.sock is not None:
            self.sock.close()  # the zygote kills its environments when this closes
        if self.proc is not None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class _FrameReader(asyncio.BufferedProtocol):
    """Frames from an environment's control socket, parsed as the bytes arrive.

    A callback per read, not a reader task awaiting three ``readexactly`` per frame: the
    frame of a quick call is one read, so the warm path costs no task wake-ups here.
    Reads go into a buffer kept for the link (a plain protocol gets a new 256 KiB bytes
    object per read: an mmap, a page fault and an munmap per invocation); a body too large
    for it is read straight into a buffer of its own size.
    """

    SCRATCH = 64 * 1024

    def __init__(self, env: "Environment"):
        self.env = env
        self.buf = bytearray(self.SCRATCH)
        self.end = 0                       # bytes of ``buf`` holding data
        self.header: dict | None = None    # the frame whose large body is arriving
        self.body: bytearray | None = None
        self.have = 0
        self.broken = False

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.body is not None:
            return memoryview(self.body)[self.have:]
        if self.end == len(self.buf):  # a header larger than the buffer: grow it
            self.buf.extend(bytes(len(self.buf)))
        return memoryview(self.buf)[self.end:]

    def buffer_updated(self, nbytes: int) -> None:
        if self.broken:
            return
        if self.body is not None:
            self.have += nbytes
            if self.have == len(self.body):
                header, body = self.header, bytes(self.body)
                self.header = self.body = None
                self.env._frame_arrived(header, body)
            return
        self.end += nbytes
        try:
            self._parse()
        except wire.ProtocolError as exc:
            self.broken = True
            self.env._link_lost(str(exc), bad_frame=True)

    def _parse(self) -> None:
        buf, at, size = self.buf, 0, self.end
        while size - at >= wire.HEADER_SIZE:
            hlen, blen = wire.lengths(bytes(buf[at:at + wire.HEADER_SIZE]))
            start = at + wire.HEADER_SIZE + hlen
            if size < start:
                break
            end = start + blen
            if size < end and end - at > len(buf):
                # Will not fit: read the rest of the body into a buffer of its own.
                self.header = wire.parse_header(buf[at + wire.HEADER_SIZE:start])
                self.body = bytearray(blen)
                self.have = size - start
                self.body[:self.have] = buf[start:size]
                at = size
                break
            if size < end:
                break
            header = wire.parse_header(buf[at + wire.HEADER_SIZE:start])
            at = end
            self.env._frame_arrived(header, bytes(buf[start:end]) if blen else b"")
        if at:  # keep the partial frame at the front
            buf[:size - at] = buf[at:size]
            self.end = size - at

    def eof_received(self):
        return False  # close the transport; connection_lost says the link is gone

    def connection_lost(self, exc) -> None:
        if not self.broken:
            self.env._link_lost(str(exc) if exc else "the environment closed its control socket")


class _Run:
    """The invocation an environment is running: who to tell, and its deadline."""

    __slots__ = ("done", "started", "timeout", "timer", "grace")

    def __init__(self, done, started: float, timeout: float):
        self.done = done          # callable(Outcome)
        self.started = started    # perf_counter() when it was sent
        self.timeout = timeout
        self.timer = None         # the deadline, then the grace after it
        self.grace = False        # the deadline passed; a result is believed by its duration


class Environment:
    _ids = itertools.count(1)

    def __init__(self, pool: "Pool", function: dict | None):
        self.pool = pool
        self.id = f"env-{os.getpid()}-{next(self._ids)}"
        self.function = function  # None for a spare until assign()
        self.key = (function["name"], function["version"]) if function else None
        self.pid: int | None = None
        self.exit: asyncio.Future | None = None
        self.state = "starting"
        self.last_used = time.monotonic()
        self.busy_since = self.last_used  # when it took its current invocation (placement)
        self.init_ms: float | None = None
        self.fresh = True
        self.writer = None  # the control socket's transport; frames come in through _FrameReader
        self._frame: asyncio.Future | None = None  # the init frame, awaited by start()
        self._run: _Run | None = None               # the invocation being run
        self._lost = False                           # the control socket is gone
        self._pipes: dict[int, tuple[str, bytearray]] = {}
        self.on_line = None          # callable(stream, line) while an invocation runs
        self.orphan_lines: list = []  # lines printed outside an invocation (e.g. at import)
        self.sampled_peak_mb = 0.0
        self.killed_for: str | None = None  # 'timeout' | 'oom' | 'cancelled'
        self.workdir = pool.workdir / self.id

    # ---- start ---------------------------------------------------------------------------

    def _setup_fields(self) -> dict:
        """The process environment of this function's environment (applied in the child)."""
        cfg = self.function
        environ = dict(self.pool.base_environ)
        environ.update({
            "AWS_LAMBDA_FUNCTION_NAME": cfg["name"],
            "AWS_LAMBDA_FUNCTION_VERSION": str(cfg["version"]),
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(cfg["memory"]),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{cfg['name']}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"{time.strftime('%Y/%m/%d')}/[{cfg['version']}]{self.id}",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "LAMBDA_TASK_ROOT": str(self.workdir),
            "TMPDIR": str(self.workdir / "tmp"),
            "PYTHONUNBUFFERED": "1",
        })
        environ.update(cfg.get("env") or {})
        return {"environ": environ, "cwd": str(self.workdir), "tmpdir": str(self.workdir / "tmp")}

    async def _fork(self, fields: dict) -> None:
        """Fork from the zygote with ``fields`` and connect its control socket and output pipes."""
        loop = asyncio.get_running_loop()
        ctl_parent, ctl_child = socket.socketpair()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            zygote = await self.pool.zygote()
            self.pid = await zygote.fork(self.id, fields, [ctl_child.fileno(), out_w, err_w])
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

    async def spawn_spare(self) -> None:
        """Fork ahead of need, with no function: joined to its cgroup (the slow part), then waiting."""
        await self._fork(self.pool.memory.fork_fields(self.id, SPARE_LIMIT_MB))
        self.state = "spare"

    def assign(self, function: dict) -> bool:
        """Make this spare an environment of ``function``; False if it cannot be (then close it)."""
        if self.state != "spare" or self.exit.done():
            return False
        self.function = function
        self.key = (function["name"], function["version"])
        self.state = "starting"
        self.busy_since = time.monotonic()
        return True

    async def start(self, code: bytes) -> Outcome | None:
        """Fork (or take over a spare) and load the code; None when ready, else the init failure."""
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        cfg = self.function
        setup = self._setup_fields()
        if self.pid is None:
            setup.update(self.pool.memory.fork_fields(self.id, cfg["memory"]))
            await self._fork(setup)
            setup = None
        else:
            # A spare: lower its cgroup limit (it is already a member) and send the rest with init.
            limits = self.pool.memory.fork_fields(self.id, cfg["memory"])
            setup.update({k: v for k, v in limits.items() if k != "cgroup_procs"})
        self._frame = loop.create_future()
        self.writer.write(wire.pack("init", code, function=cfg["name"], version=cfg["version"],
                                    memory=cfg["memory"], setup=setup, buffers_dir=self.pool.buffers_dir))
        try:
            header, body = await asyncio.wait_for(asyncio.shield(self._frame), self.pool.init_timeout)
        except (EnvironmentDied, asyncio.TimeoutError):
            self.kill("init")
            returncode = await self.wait_exit()
            self.close()
            return Outcome("crash", returncode=returncode)
        if header["k"] == "init_error":
            self.kill("init")
            await self.wait_exit()
            self.close()
            return Outcome("init_error", header, bytes(body))
        self.init_ms = (time.perf_counter() - started) * 1000
        self.pool.stats_for(self.key).observe_init(self.init_ms / 1000)
        self.pool.any_init.observe_init(self.init_ms / 1000)
        self.state = "idle"
        return None

    def _frame_arrived(self, header: dict, body: bytes) -> None:
        if self._run is not None:
            try:
                self._run_frame(header, body)
            except Exception:  # noqa: BLE001 - never let it reach the transport (it would drop the link)
                log.exception("environment %s: handling the end of an invocation failed", self.id)
            return
        if self._frame is not None and not self._frame.done():
            self._frame.set_result((header, body))

    def _link_lost(self, why: str, bad_frame: bool = False) -> None:
        self._lost = True
        if bad_frame:
            log.error("environment %s sent a bad frame (%s); stopping it", self.id, why)
            self.kill("protocol")
        if self._run is not None:
            self._run_ended()
        if self._frame is not None and not self._frame.done():
            self._frame.set_exception(EnvironmentDied(why))
        self._frame = None

    # ---- output --------------------------------------------------------------------------

    def _pipe_readable(self, fd: int) -> None:
        stream, buf = self._pipes[fd]
        # A bounded read per wake-up (64 KB is ~5,000 short lines): a function printing
        # without pause must not starve the loop (other invocations, flushes, websockets).
        for _ in range(2):
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
        """Read whatever the process wrote before its result frame, and any unterminated line."""
        for fd in list(self._pipes):
            self._pipe_readable(fd)
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
        self.on_line = on_line
        for ts, stream, line in self.orphan_lines:
            on_line(stream, line)
        self.orphan_lines.clear()
        self.pool.memory.before_invoke(self.id, self.pid)
        run = self._run = _Run(done, time.perf_counter(), timeout)
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
        self._run = None
        cpu_ms, duration_ms = header.get("cpu_ms"), header.get("duration_ms")
        self.pool.stats_for(self.key).observe_run(
            time.monotonic() - self.busy_since, None if duration_ms is None else duration_ms / 1000,
            None if cpu_ms is None else cpu_ms / 1000)
        self.drain()
        self.on_line = None
        outcome = Outcome("result" if header["k"] == "result" else "error", header, body,
                          duration_ms=header.get("duration_ms", 0.0))
        outcome.max_memory_mb = memory.peak_mb(self.id, self.pid, self.sampled_peak_mb)
        self.fresh = False
        if header["k"] == "error" and header.get("errorType") == "Runtime.OutOfMemory":
            self.kill("oom")  # a MemoryError: never reuse this heap
            asyncio.ensure_future(self._retire(outcome, run.done))
            return
        self.state = "idle"
        self.last_used = time.monotonic()
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
        asyncio.ensure_future(end())

    async def _ended(self, started: float) -> Outcome:
        memory = self.pool.memory
        duration = (time.perf_counter() - started) * 1000
        peak = memory.peak_mb(self.id, self.pid, self.sampled_peak_mb)
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
            kill_tree(self.pool.memory.pids(self.id, self.pid), self.pid)

    def close(self) -> None:
        """Forget the process (it has exited or was killed) and free what it held."""
        if self.state == "dead":
            return
        self.state = "dead"
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


class Pool:
    def __init__(self, memory, workdir: Path, preload: list[str], idle_timeout: float,
                 base_environ: dict | None = None, init_timeout: float = 10.0,
                 spares: int | None = None, buffers_dir: str | None = None):
        self.memory = memory
        #: where environments map argument buffers and write result buffers (None: in frames)
        self.buffers_dir = buffers_dir
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
        self.version_stats: dict[tuple, VersionStats] = {}
        self.any_init = VersionStats()  # cold-start time of any version, for one not yet measured
        self.cpus = os.cpu_count() or 1
        # Spares: environments forked before a function needs them, so a cold start is a
        # code load, not a fork and a cgroup join.  One per core covers back-to-back starts.
        self.spares_wanted = min(2, self.cpus) if spares is None else spares
        self.spares: list[Environment] = []
        self._spare_task = None
        self._closing = False
        self._reaper = None
        self._sampler = None

    async def zygote(self) -> ZygoteProcess:
        async with self._zygote_lock:
            if self._zygote is None or not self._zygote.alive:
                z = ZygoteProcess(self.preload)
                await z.start()
                self._zygote = z
            return self._zygote

    def start_background(self) -> None:
        self._reaper = asyncio.ensure_future(self._reap_idle())
        self._sampler = asyncio.ensure_future(self._sample_memory())
        self._fill_spares()

    def stats_for(self, key: tuple) -> VersionStats:
        stats = self.version_stats.get(key)
        if stats is None:
            stats = self.version_stats[key] = VersionStats()
        return stats

    def take_idle(self, function: dict) -> Environment | None:
        """A warm environment of this version, now marked busy, or None."""
        idle = self.idle.get((function["name"], function["version"]))
        while idle:
            env = idle.pop()
            if env.state == "idle":
                env.state = "busy"
                env.busy_since = time.monotonic()
                return env
        return None

    def wait_for_warm(self, function: dict) -> float | None:
        """Seconds until a busy environment is expected free, when that beats a cold start; else None."""
        key = (function["name"], function["version"])
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
        while self.spares:
            env = self.spares.pop()
            self._fill_spares()
            if env.assign(function):
                return env
            env.close()
        env = Environment(self, function)
        self.all[env.id] = env
        return env

    def _fill_spares(self) -> None:
        if self._spare_task is None and not self._closing and len(self.spares) < self.spares_wanted:
            self._spare_task = asyncio.ensure_future(self._make_spares())

    async def _make_spares(self) -> None:
        try:
            while len(self.spares) < self.spares_wanted and not self._closing:
                env = Environment(self, None)
                self.all[env.id] = env
                try:
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
        failure = await env.start(code_for(env.function))
        if failure is None:
            env.state = "busy"
            env.busy_since = time.monotonic()
        return failure

    async def acquire(self, function: dict, code_for) -> tuple[Environment, Outcome | None]:
        """A warm environment of this version, or a new one (cold start)."""
        env = self.take_idle(function)
        if env is not None:
            return env, None
        env = self.new_environment(function)
        return env, await self.start_environment(env, code_for)

    def release(self, env: Environment) -> None:
        if env.state == "idle":
            self.idle[env.key].append(env)

    def forget(self, env: Environment) -> None:
        self.all.pop(env.id, None)
        if env in self.spares:
            self.spares.remove(env)
        lst = self.idle.get(env.key)
        if lst and env in lst:
            lst.remove(env)

    def stop_function(self, name: str) -> None:
        """Stop the idle environments of every version of a function (it was deleted or replaced)."""
        for key in [k for k in self.idle if k[0] == name]:
            for env in self.idle.pop(key):
                env.close()

    async def _reap_idle(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, max(0.05, self.idle_timeout / 4)))
            now = time.monotonic()
            for env in [e for e in self.all.values() if e.state == "idle"]:
                if now - env.last_used > self.idle_timeout:
                    env.close()
            for env in [e for e in self.all.values() if e.state != "dead" and e.pid]:
                if env.exit is not None and env.exit.done() and env.state in ("idle", "spare"):
                    env.close()  # died while idle (e.g. a leftover thread called os._exit)
            self._fill_spares()

    async def _sample_memory(self) -> None:
        """The watchdog: RSS of busy environments, killed over their limit."""
        interval = self.memory.interval
        while True:
            await asyncio.sleep(interval)
            for env in [e for e in self.all.values() if e.state == "busy" and e.pid]:
                if self.memory.mode == "cgroup":
                    # The kernel enforces; if it killed a child of the environment, the
                    # invocation is over the limit all the same: end it now.
                    if self.memory.oom_killed(env.id):
                        env.kill("oom")
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
        return {"environments": len(self.all), **states, "memory_enforcement": self.memory.mode}

    async def close(self) -> None:
        self._closing = True
        for task in (self._reaper, self._sampler, self._spare_task):
            if task is not None:
                task.cancel()
        for env in list(self.all.values()):
            env.kill("stopped")
        for env in list(self.all.values()):
            await env.wait_exit()
            env.close()
        if self._zygote is not None:
            self._zygote.stop()
        self.memory.close()
