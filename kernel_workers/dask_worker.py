"""Execution environments on a Dask worker: the worker's side of the server's Dask backend.

::

    FaaS server ── client.submit(invoke, ...) ──► scheduler ──► Dask worker
        ▲                                                         │ task thread: this module
        └── log events (subscribe_topic) ◄── scheduler ◄─ log_event ┤ socketpair
                                                                    ▼
                                              zygote (python -m kernel_workers.zygote)
                                                                    │ fork
                                                                    ▼
                                               execution environments (one invocation each)

Actors, per worker process and per FaaS server (``server_id``):

- :class:`Host` holds a zygote and the environments forked from it, warm per function
  version.  The worker plugin (:func:`plugin`) starts one when the worker joins and stops it
  (and so every environment) when the worker or the server leaves; a task finding none
  starts one.
- :class:`ZygoteLink` talks to the zygote: fork requests go out under a lock, and one
  reader thread hears ``forked`` and ``exited`` (only the zygote can ``waitpid`` them).
- :class:`Environment` is one forked process; a task thread runs one invocation in it at
  a time and *is* its supervisor: a ``select`` loop over its control socket and its
  stdout/stderr pipes enforces the deadline, samples the RSS of the process tree every
  50 ms (the memory watchdog; ``RLIMIT_AS`` is the backstop), and sends each output line
  to the server as it is printed (``Worker.log_event``, batched every 50 ms).

The task functions (:func:`start`, :func:`invoke`) return plain dicts: how it ended
(``kind`` as in the server's ``Outcome``), the runtime's JSON header and opaque body,
the REPORT's figures, the worker's address, and the output lines not sent live.  They
never unpickle what an environment wrote.  :func:`cancel` and :func:`stop` run through
``client.run`` (the worker's event loop), not as tasks, so they are not queued behind
the invocations they stop.

Imports only the standard library, cloudpickle (through :mod:`.runtime`'s siblings) and,
lazily, ``distributed`` and ``psutil`` (both on every Dask worker).  The runtime, the
zygote and the wire module never import this one.
"""

from __future__ import annotations

import itertools
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

from . import memory as limits
from . import wire

#: Environment variables the zygote may inherit from the worker (never a token).
PASSTHROUGH_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "VIRTUAL_ENV",
                   "SYSTEMROOT", "LD_LIBRARY_PATH")
#: seconds between memory samples and between batches of live log lines
TICK_S = 0.05
#: lines of one invocation sent live; later ones come back with its result (never lost)
MAX_LIVE_LINES = 20_000
#: longest line kept whole (as on the local backend)
MAX_LINE = 256 * 1024
INIT_TIMEOUT_S = 30.0
#: an idle environment older than this is stopped here even if the server never says so (it
#: died, or lost the scheduler); the server's own reaper normally stops it much sooner
BACKSTOP_IDLE_S = 900.0

_HOSTS: dict[str, "Host"] = {}
_HOSTS_LOCK = threading.Lock()


# ---- the zygote --------------------------------------------------------------------------

class ZygoteLink:
    """``python -m kernel_workers.zygote`` started by this worker, and the frames it sends."""

    def __init__(self, preload: list):
        parent, child = socket.socketpair()
        environ = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
        # The zygote must find kernel_workers wherever this worker found it (an upload dir too).
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, environ.get("PYTHONPATH")) if p)
        environ["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kernel_workers.zygote", "--fd", str(child.fileno()),
             "--preload", ",".join(preload)],
            pass_fds=[child.fileno()], env=environ, stdin=subprocess.DEVNULL, close_fds=True)
        child.close()
        self.sock = parent
        self.channel = wire.BlockingChannel(parent)
        self.lock = threading.Lock()
        self.cond = threading.Condition()
        self.forked: dict[str, int] = {}
        self.exited: dict[int, int] = {}
        self.alive = True
        header, _ = self.channel.recv()
        if header["k"] != "hello":
            raise RuntimeError(f"the zygote said {header['k']!r} instead of hello")
        self.hello = header
        self.reader = threading.Thread(target=self._read, name="faas-zygote-reader", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        try:
            while True:
                header, _ = self.channel.recv()
                with self.cond:
                    if header["k"] == "forked":
                        self.forked[header["env_id"]] = header["pid"]
                    elif header["k"] == "exited":
                        self.exited[header["pid"]] = header["returncode"]
                    self.cond.notify_all()
        except (EOFError, OSError, wire.ProtocolError):
            with self.cond:
                self.alive = False
                self.cond.notify_all()

    def fork(self, env_id: str, fields: dict, fds: list) -> int:
        with self.lock:
            self.sock.sendall(wire.pack("fork", env_id=env_id, **fields))
            socket.send_fds(self.sock, [b"F"], fds)
        with self.cond:
            if not self.cond.wait_for(lambda: env_id in self.forked or not self.alive, 30):
                raise RuntimeError("the zygote did not fork within 30 s")
            if env_id not in self.forked:
                raise RuntimeError("the zygote exited")
            return self.forked.pop(env_id)

    def wait_exit(self, pid: int, timeout: float = 5.0) -> int | None:
        with self.cond:
            self.cond.wait_for(lambda: pid in self.exited or not self.alive, timeout)
            return self.exited.pop(pid, None)

    def stop(self) -> None:
        try:
            # shutdown() first: it wakes the reader thread's recv (a close alone would not, and
            # the zygote would not see the end until it returned); the zygote then kills its
            # environments and exits.
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---- live lines --------------------------------------------------------------------------

class Lines:
    """One invocation's output lines: sent to the server in batches as they come, the rest kept.

    ``topic`` None (no worker, e.g. in a test): every line is kept for the result.
    """

    def __init__(self, topic: str | None, request_id: str, attempt: str):
        self.topic, self.request_id, self.attempt = topic, request_id, attempt
        self.batch: list = []
        self.kept: list = []
        self.sent = 0
        self.last = time.monotonic()
        self.worker = _current_worker() if topic else None

    def add(self, stream: str, line: str) -> None:
        if self.worker is not None and self.sent + len(self.batch) < MAX_LIVE_LINES:
            self.batch.append([stream, line])
            if len(self.batch) >= 1000:
                self.flush()
        else:
            self.kept.append([stream, line])

    def tick(self) -> None:
        if self.batch and time.monotonic() - self.last >= TICK_S:
            self.flush()

    def flush(self) -> None:
        self.last = time.monotonic()
        if self.batch and self.worker is not None:
            self.worker.log_event(self.topic, {"r": self.request_id, "a": self.attempt, "l": self.batch})
            self.sent += len(self.batch)
        self.batch = []


def _current_worker():
    try:
        from distributed import get_worker
        return get_worker()
    except (ImportError, ValueError):
        return None


# ---- one environment ---------------------------------------------------------------------

def _key(function: dict) -> tuple:
    """Which environments can serve ``function``: its code and config (the engine's version)
    run as one Lambda version (``version``: ``$LATEST`` or a published number)."""
    return function["name"], function.get("engine_version"), function["version"]


class Environment:
    """One process forked from the host's zygote; a task thread supervises each invocation."""

    def __init__(self, host: "Host", env_id: str, function: dict):
        self.host = host
        self.id = env_id
        self.function = function
        self.key = _key(function)
        self.pid: int | None = None
        self.ctl: socket.socket | None = None
        self.decoder = wire.FrameDecoder()
        self.pipes: dict[int, tuple[str, bytearray]] = {}
        self.state = "starting"
        self.init_ms: float | None = None
        self.orphans: list = []  # lines printed outside an invocation (at import, at INIT)
        self.workdir = os.path.join(host.workdir, env_id)
        self.killed_for: str | None = None
        self.peak_before_kill_mb = 0.0  # Max Memory Used, read as it was killed
        self.reaped = False
        self.last_used = time.monotonic()

    def _fields(self) -> dict:
        cfg = self.function
        environ = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "LC_ALL", "TZ") if k in os.environ}
        environ.update({
            "AWS_LAMBDA_FUNCTION_NAME": cfg["name"],
            "AWS_LAMBDA_FUNCTION_VERSION": str(cfg["version"]),
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(cfg["memory"]),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{cfg['name']}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"{time.strftime('%Y/%m/%d')}/[{cfg['version']}]{self.id}",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "LAMBDA_TASK_ROOT": self.workdir,
            "TMPDIR": os.path.join(self.workdir, "tmp"),
            "PYTHONUNBUFFERED": "1",
        })
        environ.update(cfg.get("env") or {})
        # The environment's own cgroup (it joins it at fork), or, for the watchdog, RLIMIT_AS
        # (virtual memory) as a backstop.
        return {"environ": environ, "cwd": self.workdir, "tmpdir": os.path.join(self.workdir, "tmp"),
                **self.host.memory.fork_fields(self.id, cfg["memory"])}

    def start(self, code: bytes) -> dict | None:
        """Fork and run INIT: None when ready, else how it failed (a result dict)."""
        started = time.perf_counter()
        ctl_parent, ctl_child = socket.socketpair()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            self.pid = self.host.zygote().fork(self.id, self._fields(), [ctl_child.fileno(), out_w, err_w])
        except BaseException:
            ctl_parent.close()
            os.close(out_r)
            os.close(err_r)
            self.host.memory.release(self.id)
            raise
        finally:
            ctl_child.close()
            os.close(out_w)
            os.close(err_w)
        self.ctl = ctl_parent
        for fd, stream in ((out_r, "stdout"), (err_r, "stderr")):
            os.set_blocking(fd, False)
            self.pipes[fd] = (stream, bytearray())
        cfg = self.function
        self.ctl.sendall(wire.pack("init", code, function=cfg["name"], version=cfg["version"],
                                   memory=cfg["memory"], setup=None, buffers_dir=self.host.buffers_dir))
        got = self._pump(time.monotonic() + INIT_TIMEOUT_S, None, self.orphans.append)
        if got in ("eof", "deadline"):
            self.kill("init")
            return self._ended(started, None)
        header, body = got
        if header["k"] == "init_error":
            self.kill("init")
            self.close()
            return {"kind": "init_error", "header": header, "body": bytes(body)}
        self.init_ms = (time.perf_counter() - started) * 1000
        self.state = "idle"
        return None

    def run(self, request_id: str, payload: bytes, encoding: str, timeout: float, lines: Lines,
            buffers: dict | None) -> dict:
        self.state = "busy"
        self.killed_for = None
        self.peak_before_kill_mb = 0.0
        self.host.running[request_id] = self
        if request_id in self.host.cancelled:  # cancelled between the check and now
            self.kill("cancelled")
        try:
            return self._run(request_id, payload, encoding, timeout, lines, buffers)
        finally:
            self.host.running.pop(request_id, None)
            self.last_used = time.monotonic()

    def _run(self, request_id, payload, encoding, timeout, lines, buffers) -> dict:
        for _, stream, line in self.orphans:
            lines.add(stream, line)
        self.orphans.clear()
        self.host.memory.before_invoke(self.id, self.pid)  # VmHWM (and the cgroup's peak) per invocation
        started = time.perf_counter()
        deadline = time.monotonic() + timeout
        described = {"buffers": buffers} if buffers is not None else {}
        try:
            self.ctl.sendall(wire.pack("invoke", payload, request_id=request_id, encoding=encoding,
                                       deadline_ms=int(time.time() * 1000 + timeout * 1000), **described))
        except OSError:
            pass  # it died before it read this: the pump sees the end
        sampled = [0.0]
        got = self._pump(deadline, sampled, lambda entry: lines.add(entry[1], entry[2]), lines)
        if got == "deadline":
            got = self._pump(time.monotonic() + 0.2, sampled, lambda e: lines.add(e[1], e[2]), lines)
            if not isinstance(got, tuple) or not got[0].get("duration_ms", 1e18) <= timeout * 1000:
                self.kill("timeout")
                got = "eof"
        if got == "eof":
            return self._ended(started, sampled[0], lines)
        header, body = got
        if self.host.memory.oom_killed(self.id):  # a child was OOM-killed: the limit was hit
            self.kill("oom")
            return self._ended(started, sampled[0], lines)
        self._drain(lambda e: lines.add(e[1], e[2]))
        peak = self.host.memory.peak_mb(self.id, self.pid, sampled[0])
        out = {"kind": "result" if header["k"] == "result" else "error", "header": header,
               "body": bytes(body), "duration_ms": header.get("duration_ms", 0.0), "max_memory_mb": peak}
        if header["k"] == "error" and header.get("errorType") == "Runtime.OutOfMemory":
            self.kill("oom")  # a MemoryError: never reuse this heap
            self._reap()
            self.close()
        else:
            self.state = "idle"
        return out

    def _ended(self, started: float, sampled: float | None, lines: Lines | None = None) -> dict:
        """The process is gone or being killed: its exit status, and why it ended."""
        duration = (time.perf_counter() - started) * 1000
        memory = self.host.memory
        peak = max(memory.peak_mb(self.id, self.pid, sampled or 0.0), self.peak_before_kill_mb)
        returncode = self._reap()
        self._drain((lambda e: lines.add(e[1], e[2])) if lines else self.orphans.append)
        if self.killed_for is None and sampled is not None and memory.oom_killed(self.id):
            self.killed_for = "oom"  # the kernel killed it (or a child) at the cgroup's limit
        kind = {"timeout": "timeout", "cancelled": "cancelled", "oom": "oom"}.get(self.killed_for, "crash")
        self.close()
        return {"kind": kind, "duration_ms": duration, "max_memory_mb": peak, "returncode": returncode}

    def _pump(self, deadline: float, sampled: list | None, on_line, lines: Lines | None = None):
        """Read output and frames until a frame comes (returned), the control socket closes
        (``"eof"``) or the deadline passes (``"deadline"``); sample memory if ``sampled``."""
        limit = self.function["memory"]
        # The first sample after one tick: a quick invocation's peak is its VmHWM, read at its end.
        sampled_at = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= deadline:
                return "deadline"
            fds = [self.ctl, *self.pipes]
            try:
                ready = _readable(fds, min(TICK_S, deadline - now))
            except InterruptedError:
                continue
            for fd in ready:
                if fd is self.ctl:
                    target = self.decoder.get_buffer()
                    try:
                        n = self.ctl.recv_into(target)
                    except OSError:
                        n = 0
                    del target
                    if not n:
                        return "eof"
                    self.decoder.buffer_updated(n)
                else:
                    self._read_pipe(fd, on_line)
            frame = self.decoder.next_frame()
            if frame is not None:
                return frame
            if self.killed_for is not None:  # cancel() from another thread killed it
                return "eof"
            if sampled is not None and now - sampled_at >= TICK_S:
                sampled_at = now
                if self._over_limit(sampled, limit):
                    self.kill("oom")
                    return "eof"
            if lines is not None:
                lines.tick()

    def _over_limit(self, sampled: list, limit: int) -> bool:
        """One sample: the peak so far into ``sampled[0]``; True when the limit was hit."""
        memory = self.host.memory
        if memory.mode == "cgroup":
            # The kernel enforces it; a child it OOM-killed means the limit was hit all the same.
            # The process's own peak is kept for a crash, which leaves no VmHWM to read.
            sampled[0] = max(sampled[0], memory.hwm_mb(self.id, self.pid))
            return memory.oom_killed(self.id)
        used = memory.sample_mb(self.id, self.pid)
        sampled[0] = max(sampled[0], used)
        return used > limit

    def _read_pipe(self, fd: int, on_line) -> None:
        stream, buf = self.pipes[fd]
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            if buf:
                on_line((time.time(), stream, bytes(buf).decode("utf-8", "replace")))
            os.close(fd)
            del self.pipes[fd]
            return
        buf += data
        end = buf.rfind(b"\n")
        if end >= 0:
            chunk = bytes(buf[:end])
            del buf[:end + 1]
            for raw in chunk.split(b"\n"):
                while len(raw) > MAX_LINE:
                    on_line((time.time(), stream, raw[:MAX_LINE].decode("utf-8", "replace")))
                    raw = raw[MAX_LINE:]
                on_line((time.time(), stream, raw.decode("utf-8", "replace").rstrip("\r")))
        while len(buf) >= MAX_LINE:
            on_line((time.time(), stream, bytes(buf[:MAX_LINE]).decode("utf-8", "replace")))
            del buf[:MAX_LINE]

    def _drain(self, on_line) -> None:
        """Whatever the process printed before its frame or its end, and unterminated lines."""
        for fd in list(self.pipes):
            for _ in range(64):
                if fd not in self.pipes or not _readable([fd], 0):
                    break
                self._read_pipe(fd, on_line)
        for fd, (stream, buf) in self.pipes.items():
            if buf:
                on_line((time.time(), stream, bytes(buf).decode("utf-8", "replace")))
                buf.clear()

    def alive(self) -> bool:
        """An idle environment sends nothing: a readable control socket means it is gone."""
        try:
            return not _readable([self.ctl], 0)
        except (OSError, ValueError):
            return False

    def kill(self, reason: str) -> None:
        if self.killed_for is None:
            self.killed_for = reason
        if self.pid:
            if not self.peak_before_kill_mb:  # a dead process has no VmHWM: read it first
                self.peak_before_kill_mb = self.host.memory.peak_mb(self.id, self.pid, 0.0)
            limits.kill_tree(self.host.memory.pids(self.id, self.pid), self.pid)

    def close(self) -> None:
        if self.state == "dead":
            return
        self.state = "dead"
        if self.pid and self.killed_for is None:
            self.kill("stopped")
        for fd in list(self.pipes):
            try:
                os.close(fd)
            except OSError:
                pass
        self.pipes.clear()
        if self.ctl is not None:
            self.ctl.close()
        if self.pid and not self.reaped:
            self._reap(1.0)   # its cgroup can go only once it is empty
        self.host.memory.release(self.id, wait_s=1.0)
        self.host.forget(self)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _reap(self, timeout: float = 5.0) -> int | None:
        """Its exit status, once the zygote (its parent) has reaped it."""
        self.reaped = True
        zygote = self.host._zygote
        return zygote.wait_exit(self.pid, timeout) if zygote is not None else None


# ---- the host: one zygote and its environments, per server, per worker ---------------------

class Host:
    def __init__(self, server_id: str, preload: list, idle_s: float = BACKSTOP_IDLE_S,
                 memory: "limits.WatchdogMemory | None" = None):
        self.server_id = server_id
        self.preload = preload
        self.idle_s = idle_s
        # How this worker enforces memory limits: a cgroup per environment, or the watchdog.
        self.memory = memory if memory is not None else limits.WatchdogMemory()
        self.workdir = tempfile.mkdtemp(prefix=f"jupyter_faas-dask-{server_id}-")
        self.buffers_dir = os.path.join(self.workdir, "buffers")
        os.makedirs(self.buffers_dir, mode=0o700, exist_ok=True)
        self.lock = threading.RLock()  # close() (under it in take) calls forget()
        self._zygote: ZygoteLink | None = None
        self.envs: dict[str, Environment] = {}
        self.running: dict[str, Environment] = {}
        self.cancelled: dict[str, float] = {}  # request id -> when; bounded
        self._attempts = itertools.count(1)
        self._closed = threading.Event()
        self._reaper = threading.Thread(target=self._reap, name="faas-idle-reaper", daemon=True)
        self._reaper.start()

    def _reap(self) -> None:
        """The backstop: stop environments idle longer than ``idle_s``."""
        while not self._closed.wait(min(30.0, max(1.0, self.idle_s / 4))):
            now = time.monotonic()
            with self.lock:
                stale = [e for e in self.envs.values()
                         if e.state == "idle" and now - e.last_used > self.idle_s]
                for env in stale:
                    env.state = "closing"  # take() no longer hands it out
            for env in stale:
                env.close()

    def zygote(self) -> ZygoteLink:
        with self.lock:
            if self._zygote is None or not self._zygote.alive:
                self._zygote = ZygoteLink(self.preload)
            return self._zygote

    def take(self, env_id: str, function: dict) -> Environment | None:
        """The environment ``env_id`` if it is here and idle, else any idle one of the version."""
        key = _key(function)
        with self.lock:
            candidates = [self.envs.get(env_id)] + [e for e in self.envs.values() if e.key == key]
            for env in candidates:
                if env is None or env.state != "idle":
                    continue
                if not env.alive():  # died while idle (e.g. a leftover thread called os._exit)
                    env.close()
                    continue
                env.state = "busy"
                return env
            return None

    def new(self, env_id: str, function: dict) -> Environment:
        with self.lock:
            if env_id in self.envs:  # the id is taken here by a busy one: a fresh id for this one
                env_id = f"{env_id}-{next(self._attempts)}"
            env = self.envs[env_id] = Environment(self, env_id, function)
            return env

    def forget(self, env: Environment) -> None:
        with self.lock:
            if self.envs.get(env.id) is env:
                del self.envs[env.id]

    def cancel(self, request_id: str) -> bool:
        self.cancelled[request_id] = time.monotonic()
        if len(self.cancelled) > 10_000:
            for rid in list(self.cancelled)[:5_000]:
                del self.cancelled[rid]
        env = self.running.get(request_id)
        if env is not None:
            env.kill("cancelled")
            return True
        return False

    def stop(self, env_ids) -> None:
        for env_id in env_ids:
            env = self.envs.get(env_id)
            if env is not None and env.state == "idle":
                env.close()

    def shutdown(self) -> None:
        self._closed.set()
        for env in list(self.envs.values()):
            env.close()
        if self._zygote is not None:
            self._zygote.stop()
        self.memory.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def stats(self) -> dict:
        states: dict[str, int] = {}
        for env in list(self.envs.values()):
            states[env.state] = states.get(env.state, 0) + 1
        return {"environments": len(self.envs), **states}

    def heartbeat(self) -> dict:
        """This host's environments and the memory each uses now (see :func:`heartbeat`)."""
        envs, total = [], 0.0
        for env in list(self.envs.values()):
            live = env.pid and env.state in ("idle", "busy")
            used = self.memory.current_mb(env.id, env.pid) if live else 0.0
            total += used
            envs.append({"id": env.id, "state": env.state, "memory_mb": round(used, 1)})
        return {"environments": envs, "memory_mb": round(total, 1), "memory_enforcement": self.memory.mode}


def host(server_id: str, preload: list | None = None, idle_s: float = BACKSTOP_IDLE_S,
         memory_mode: str = "auto") -> Host:
    """This worker's host for ``server_id``, made on first use.  ``memory_mode`` is the server's
    ``memory_enforcement``: ``auto`` (a cgroup where this worker may make one, else the
    watchdog), ``cgroup`` (raises where it may not) or ``watchdog``."""
    with _HOSTS_LOCK:
        h = _HOSTS.get(server_id)
        if h is None:
            tag = f"dask-{server_id}-{os.getpid()}"
            if memory_mode != "watchdog":
                limits.sweep_dead("dask-")
            memory = limits.make(memory_mode, tag)
            if memory is None:
                raise RuntimeError(
                    f"memory_enforcement='cgroup' but the Dask worker {_address() or os.getpid()} has no "
                    f"writable cgroup v1 memory controller (cgroup v2 without delegation, or not root); "
                    f"start the FaaS server with --FaaSServer.memory_enforcement=auto (a cgroup where a "
                    f"worker allows it, else its RSS watchdog) or =watchdog")
            h = _HOSTS[server_id] = Host(server_id, list(preload or []), idle_s, memory)
        return h


# ---- the tasks and the client.run functions the server calls --------------------------------

def _address() -> str | None:
    worker = _current_worker()
    return worker.address if worker is not None else None


def start(server_id: str, env_id: str, function: dict, code: bytes, preload: list) -> dict:
    """Task: a new environment of ``function`` on this worker (fork + INIT)."""
    h = host(server_id, preload, memory_mode=function.get("memory_enforcement", "auto"))
    env = h.new(env_id, function)
    failure = env.start(code)
    if failure is not None:
        return dict(failure, worker=_address(), lines=[[s, line] for _, s, line in env.orphans])
    lines = [[stream, line] for _, stream, line in env.orphans]  # the server logs them before START
    env.orphans.clear()
    return {"kind": "ready", "worker": _address(), "env_id": env.id, "init_ms": env.init_ms,
            "pid": env.pid, "lines": lines, "ended": time.time()}


def invoke(server_id: str, topic: str | None, env_id: str, function: dict, code: bytes, preload: list,
           request_id: str, payload: bytes, encoding: str, buffers: dict | None = None,
           buffer_bytes: bytes | None = None) -> dict:
    """Task: one invocation in the environment ``env_id`` (or, when it is not on this worker
    any more, e.g. the task was re-run after its worker died, a new one: a cold start)."""
    h = host(server_id, preload, memory_mode=function.get("memory_enforcement", "auto"))
    worker = _address()
    attempt = f"{worker}#{os.getpid()}#{time.monotonic_ns()}"  # its live lines' tag
    lines = Lines(topic, request_id, attempt)
    base = {"worker": worker, "attempt": attempt}
    if request_id in h.cancelled:
        return dict(base, kind="cancelled", sent=0, lines=[])
    env = h.take(env_id, function)
    init_ms = None
    if env is None:
        env = h.new(env_id, function)
        failure = env.start(code)
        if failure is not None:
            for _, s, line in env.orphans:
                lines.add(s, line)
            lines.flush()
            return dict(failure, **base, sent=lines.sent, lines=lines.kept)
        env.state = "busy"
        init_ms = env.init_ms
        # Lambda's line before INIT's output; the server reports this Init Duration (a task
        # re-run here after its worker died, or moved here by Dask, starts its environment anew).
        lines.add("platform", f"INIT_START Runtime Version: python:{sys.version_info[0]}."
                              f"{sys.version_info[1]} Version: {function['version']}")
    if buffers is not None:
        name = os.path.basename(buffers["file"])
        with open(os.path.join(h.buffers_dir, name), "wb") as f:
            f.write(buffer_bytes or b"")
    try:
        out = env.run(request_id, payload, encoding, function["timeout"], lines, buffers)
    finally:
        if buffers is not None:
            try:
                os.unlink(os.path.join(h.buffers_dir, os.path.basename(buffers["file"])))
            except OSError:
                pass
    result_buffers = out.get("header", {}).get("buffers")
    if result_buffers is not None:  # the result's out-of-band buffers, read back for the server
        path = os.path.join(h.buffers_dir, os.path.basename(result_buffers["file"]))
        with open(path, "rb") as f:
            out["buffer_bytes"] = f.read()
        os.unlink(path)
    lines.flush()
    return dict(out, **base, env_id=env.id, reusable=env.state == "idle", init_ms=init_ms,
                sent=lines.sent, lines=lines.kept)


def cancel(server_id: str, request_id: str) -> bool:
    """client.run: kill the environment running ``request_id`` here (or refuse it if it comes)."""
    return host(server_id).cancel(request_id)


def stop(server_id: str, env_ids: list) -> None:
    """client.run: stop these idle environments (the server reaped them or the function changed)."""
    h = _HOSTS.get(server_id)
    if h is not None:
        h.stop(env_ids)


def shutdown(server_id: str) -> None:
    """client.run: stop this server's zygote and every environment on this worker."""
    with _HOSTS_LOCK:
        h = _HOSTS.pop(server_id, None)
    if h is not None:
        h.shutdown()


def stats(server_id: str) -> dict:
    h = _HOSTS.get(server_id)
    return h.stats() if h is not None else {"environments": 0}


def heartbeat(server_id: str) -> dict:
    """The worker metric the plugin adds (``metrics["jupyter_faas-<server id>"]`` of every
    heartbeat): the server reads it from the scheduler for its cluster view, at no extra
    round trip to the workers."""
    h = _HOSTS.get(server_id)
    return h.heartbeat() if h is not None else {"environments": [], "memory_mb": 0.0}


def plugin(server_id: str, preload: list, idle_s: float = BACKSTOP_IDLE_S, memory_mode: str = "auto"):
    """The worker plugin that starts a :class:`Host` (and its zygote) on each worker and stops
    it with the worker.  Its class is made here (``distributed`` is imported only now) and
    ships by value, so a worker that lacks ``kernel_workers`` can still take it: it logs why,
    and the server's first invocation there names what to install."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class JupyterFaaSHost(WorkerPlugin):
        name = f"jupyter_faas-{server_id}"

        def __init__(self):
            self.server_id = server_id
            self.preload = list(preload)
            self.idle_s = idle_s
            self.memory_mode = memory_mode

        def setup(self, worker):
            try:
                import kernel_workers.dask_worker as dw
            except ImportError as exc:  # a task there reports it, with what to install
                import logging
                logging.getLogger("distributed.worker").warning(
                    "jupyter_faas: this worker cannot import kernel_workers (%s); install "
                    "jupyter_faas on it to run FaaS functions here", exc)
                return
            worker.metrics[self.name] = lambda _worker, sid=self.server_id: dw.heartbeat(sid)
            try:
                dw.host(self.server_id, self.preload, self.idle_s, self.memory_mode).zygote()
            except RuntimeError as exc:  # each invocation sent here fails with this, named
                import logging
                logging.getLogger("distributed.worker").warning("jupyter_faas: %s", exc)

        def teardown(self, worker):
            worker.metrics.pop(self.name, None)
            try:
                import kernel_workers.dask_worker as dw
            except ImportError:
                return
            dw.shutdown(self.server_id)

    return JupyterFaaSHost()


def _readable(fds: list, timeout: float) -> list:
    """The descriptors (ints or objects with fileno()) of ``fds`` ready to read within ``timeout``
    seconds.  poll(), not select(): a Dask worker's descriptor numbers can pass select()'s 1024."""
    poller = select.poll()
    by_fd = {}
    for f in fds:
        fd = f if isinstance(f, int) else f.fileno()
        by_fd[fd] = f
        poller.register(fd, select.POLLIN)
    return [by_fd[fd] for fd, _ in poller.poll(max(0, timeout) * 1000)]
