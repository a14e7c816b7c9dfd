"""Memory limits for execution environments: a cgroup where the machine allows, a watchdog otherwise.

Used by the supervisor of environments wherever it runs: the FaaS server for the local
backend (``jupyter_faas.server.backends.local.memory``), the task thread on a Dask worker
(:mod:`.dask_worker`).  Standard library only; ``psutil`` (which both have) is imported
when a process tree is first walked, so the runtime, zygote and wire never load it.

``cgroup`` (cgroup v1 memory controller, writable): each environment gets its own
child cgroup of the server's with ``memory.limit_in_bytes`` = the function's
memory.  The kernel counts the environment *and every process it starts*, and
OOM-kills at the limit; ``memory.max_usage_in_bytes`` (reset before each
invocation) is Max Memory Used; ``memory.oom_control``'s ``oom_kill`` says it was
the limit that killed it; ``cgroup.procs`` lists every process to kill.

``watchdog`` (anywhere else, e.g. cgroup v2 without delegation, or no root): the
supervisor samples the RSS of the environment and its descendants every
``interval`` seconds and kills it over the limit; ``RLIMIT_AS`` set in the child
is a backstop against an allocation faster than the sampler (it counts virtual
memory, so it is set well above the limit).  Max Memory Used is the larger of the
sampled peak and the process's VmHWM, which ``/proc/PID/clear_refs`` resets
before each invocation so it is per invocation in a warm environment too.

Every invocation reads and writes a few of these files, so each environment's
files are opened once and kept open (``os.pread``/``os.pwrite`` at offset 0 re-run
the kernel's handler): opening a cgroup file costs ~100 µs, a ``pread`` ~1 µs.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

log = logging.getLogger("kernel_workers.memory")
MB = 1024 * 1024


def own_memory_cgroup() -> Path | None:
    """This process's cgroup v1 memory directory, or None where there is none."""
    root = Path("/sys/fs/cgroup/memory")
    if not (root / "memory.limit_in_bytes").exists():
        return None
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):
                return root / path.lstrip("/")
    except OSError:
        return None
    return None


def kill_tree(pids: list[int], leader: int | None) -> None:
    """SIGKILL the environment's process group and every listed process.

    ``pids`` (from :meth:`WatchdogMemory.pids`) holds every process the environment
    started, daemons too: environments are child subreapers (see
    :mod:`kernel_workers.zygote`), so an orphan stays in their process tree.
    """
    if leader:
        try:
            os.killpg(leader, signal.SIGKILL)
        except OSError:
            pass
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def descendants(pid: int) -> list[int]:
    import psutil
    try:
        proc = psutil.Process(pid)
        return [pid] + [c.pid for c in proc.children(recursive=True)]
    except psutil.Error:
        return []


class _OpenFiles:
    """The files of each environment, opened on first use and closed on :meth:`close`."""

    def __init__(self):
        self.fds: dict[str, dict[tuple, int]] = {}

    def fd(self, env_id: str, path: str, flags: int) -> int:
        # Keyed by flags too: a file both reset (written) and read, such as
        # memory.max_usage_in_bytes, needs a descriptor for each.
        files = self.fds.setdefault(env_id, {})
        fd = files.get((path, flags))
        if fd is None:
            fd = files[(path, flags)] = os.open(path, flags | os.O_CLOEXEC)
        return fd

    def read(self, env_id: str, path: str) -> bytes:
        return os.pread(self.fd(env_id, path, os.O_RDONLY), 8192, 0)

    def write(self, env_id: str, path: str, data: bytes) -> None:
        os.pwrite(self.fd(env_id, path, os.O_WRONLY), data, 0)

    def close(self, env_id: str) -> None:
        for fd in self.fds.pop(env_id, {}).values():
            try:
                os.close(fd)
            except OSError:
                pass


class WatchdogMemory:
    mode = "watchdog"

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.files = _OpenFiles()

    def fork_fields(self, env_id: str, limit_mb: int) -> dict:
        # Virtual size is far above RSS (allocator arenas, thread stacks, BLAS buffers),
        # so the backstop sits well above the limit; the sampler enforces the limit itself.
        return {"rlimit_as": (limit_mb * 2 + 1024) * MB}

    def attach(self, env_id: str, pid: int) -> None:
        pass

    def cgroup_dir(self, env_id: str) -> str | None:
        """The environment's memory cgroup directory (what a leased environment reads), or None."""
        return None

    def before_invoke(self, env_id: str, pid: int) -> None:
        try:
            self.files.write(env_id, f"/proc/{pid}/clear_refs", b"5")
        except OSError:
            pass

    def sample_mb(self, env_id: str, pid: int) -> float:
        """Current RSS of the environment and its descendants, in MB."""
        import psutil
        total = 0
        for p in descendants(pid):
            try:
                total += psutil.Process(p).memory_info().rss
            except psutil.Error:
                pass
        return total / MB

    def current_mb(self, env_id: str, pid: int) -> float:
        """What the environment uses now, from any thread (a monitor's): no kept descriptor."""
        return self.sample_mb(env_id, pid)

    def hwm_mb(self, env_id: str, pid: int) -> float:
        """The environment process's peak RSS since :meth:`before_invoke` (0 once it has died)."""
        try:
            status = self.files.read(env_id, f"/proc/{pid}/status")
            at = status.find(b"VmHWM:")
            if at >= 0:
                return int(status[at + 6:status.index(b"\n", at)].split()[0]) / 1024
        except (OSError, ValueError, IndexError):
            pass
        return 0.0

    def peak_mb(self, env_id: str, pid: int, sampled_peak_mb: float,
                reported_hwm_mb: float | None = None, own_only: bool = False) -> float:
        """Max Memory Used of the invocation that just ended, in MB: the larger of the
        process's peak RSS and the sampled peak of its tree, what the watchdog enforces.
        ``reported_hwm_mb``: the peak RSS the environment read from its own
        ``/proc/self/status`` with its result (saves the supervisor a read per invocation);
        None: read it here.  ``own_only`` (an environment forked from a snapshot template)
        matters to cgroups only."""
        hwm = self.hwm_mb(env_id, pid) if reported_hwm_mb is None else float(reported_hwm_mb)
        return max(hwm, sampled_peak_mb)

    def oom_killed(self, env_id: str) -> bool:
        return False

    def pids(self, env_id: str, pid: int) -> list[int]:
        return descendants(pid)

    def release(self, env_id: str, wait_s: float = 0.0) -> None:
        """Forget a dead environment (``wait_s``: how long its cgroup may take to empty)."""
        self.files.close(env_id)

    def close(self) -> None:
        for env_id in list(self.files.fds):
            self.files.close(env_id)


class CgroupV1Memory(WatchdogMemory):
    mode = "cgroup"

    def __init__(self, parent: Path, interval: float = 0.05):
        super().__init__(interval)
        self.parent = parent
        self._oom_baseline: dict[str, int] = {}
        self._oom_seen: dict[str, int] = {}  # the count last read, the next invocation's baseline
        self._leftover: set[str] = set()     # cgroups of dead environments not empty yet when released

    @classmethod
    def create(cls, tag: str, logger: logging.Logger = log) -> "CgroupV1Memory | None":
        """A child cgroup ``jupyter_faas-<tag>`` of this process's, for its environments; None
        where the memory controller is not there (cgroup v2) or not writable (no root)."""
        own = own_memory_cgroup()
        if own is None:
            return None
        parent = own / f"jupyter_faas-{tag}"
        try:
            parent.mkdir(exist_ok=True)
            probe = parent / "probe"
            probe.mkdir(exist_ok=True)
            (probe / "memory.limit_in_bytes").write_text(str(256 * MB))
            probe.rmdir()
        except OSError as exc:
            logger.info("memory cgroups not writable here (%s); using the RSS watchdog", exc)
            try:
                parent.rmdir()
            except OSError:
                pass
            return None
        return cls(parent)

    def _dir(self, env_id: str) -> Path:
        return self.parent / env_id

    def fork_fields(self, env_id: str, limit_mb: int) -> dict:
        self._remove_leftovers()
        d = self._dir(env_id)
        d.mkdir(exist_ok=True)
        (d / "memory.limit_in_bytes").write_text(str(limit_mb * MB))
        try:  # no swap escape where swap accounting exists
            (d / "memory.memsw.limit_in_bytes").write_text(str(limit_mb * MB))
        except OSError:
            pass
        return {"cgroup_procs": str(d / "cgroup.procs")}

    def cgroup_dir(self, env_id: str) -> str | None:
        return str(self._dir(env_id))

    def before_invoke(self, env_id: str, pid: int) -> None:
        super().before_invoke(env_id, pid)
        # An environment OOM-killed while idle is gone, so the count read at the end of
        # its last invocation is still current: no read needed on the warm path.
        seen = self._oom_seen.get(env_id)
        self._oom_baseline[env_id] = self._oom_kills(env_id) if seen is None else seen
        try:
            self.files.write(env_id, self._path(env_id, "memory.max_usage_in_bytes"), b"0")
        except OSError:
            pass

    def _path(self, env_id: str, name: str) -> str:
        return f"{self.parent}/{env_id}/{name}"

    def sample_mb(self, env_id: str, pid: int) -> float:
        try:
            return int(self.files.read(env_id, self._path(env_id, "memory.usage_in_bytes"))) / MB
        except (OSError, ValueError):
            return 0.0

    def current_mb(self, env_id: str, pid: int) -> float:
        # The cgroup is charged only for the pages the environment allocated itself (not those
        # it shares with the zygote): the larger of that and its RSS, as for Max Memory Used.
        try:
            charged = int((self._dir(env_id) / "memory.usage_in_bytes").read_bytes()) / MB
        except (OSError, ValueError):
            charged = 0.0
        return max(charged, WatchdogMemory.sample_mb(self, env_id, pid))

    def peak_mb(self, env_id: str, pid: int, sampled_peak_mb: float,
                reported_hwm_mb: float | None = None, own_only: bool = False) -> float:
        # The cgroup is charged only for pages the environment itself allocated (pages
        # shared copy-on-write with the zygote stay charged to the zygote), so report the
        # larger of that and the process's own peak RSS, as Lambda's figure includes the
        # runtime.  ``own_only``: a fork of a snapshot template, whose RSS holds every page
        # INIT loaded (charged to the template): only the cgroup's figure, what its limit counts.
        try:
            usage = int(self.files.read(env_id, self._path(env_id, "memory.max_usage_in_bytes"))) / MB
        except (OSError, ValueError):
            usage = None
        if own_only and usage is not None:
            return usage
        hwm = super().peak_mb(env_id, pid, sampled_peak_mb, reported_hwm_mb)
        return hwm if usage is None else max(hwm, usage)

    def _oom_kills(self, env_id: str) -> int:
        count = 0
        try:
            text = self.files.read(env_id, self._path(env_id, "memory.oom_control"))
            at = text.find(b"\noom_kill ")
            if at >= 0:
                count = int(text[at + 10:].split()[0])
        except (OSError, ValueError, IndexError):
            pass
        self._oom_seen[env_id] = count
        return count

    def oom_killed(self, env_id: str) -> bool:
        """Did the kernel OOM-kill any process of the environment during this invocation?

        It kills the largest process in the cgroup, which may be a child the handler
        started rather than the environment itself; either way the limit was hit.
        """
        return self._oom_kills(env_id) > self._oom_baseline.get(env_id, 0)

    def pids(self, env_id: str, pid: int) -> list[int]:
        try:
            found = [int(p) for p in (self._dir(env_id) / "cgroup.procs").read_text().split()]
        except OSError:
            found = []
        return found or descendants(pid)

    def release(self, env_id: str, wait_s: float = 0.0) -> None:
        """Forget a dead environment and remove its cgroup.  A process it started may still be
        exiting (killed with it, reaped by the zygote): the cgroup is removed once empty, within
        ``wait_s`` seconds, else at a later release or fork (never while a process is in it)."""
        self._oom_baseline.pop(env_id, None)
        self._oom_seen.pop(env_id, None)
        self.files.close(env_id)
        deadline = time.monotonic() + wait_s
        while not self._remove(env_id) and time.monotonic() < deadline:
            time.sleep(0.01)
        self._remove_leftovers()

    def _remove(self, env_id: str) -> bool:
        try:
            self._dir(env_id).rmdir()
        except FileNotFoundError:
            pass
        except OSError:  # EBUSY: a process is still in it
            self._leftover.add(env_id)
            return False
        self._leftover.discard(env_id)
        return True

    def _remove_leftovers(self) -> None:
        for env_id in list(self._leftover):
            self._remove(env_id)

    def close(self) -> None:
        super().close()
        for child in self.parent.glob("*/"):
            try:
                child.rmdir()
            except OSError:
                pass
        try:
            self.parent.rmdir()
        except OSError:
            pass


def sweep_dead(prefix: str) -> None:
    """Remove the cgroups ``jupyter_faas-<prefix>...-<pid>`` that processes now dead left beside
    this process's (a Dask worker killed with SIGKILL cannot remove its own)."""
    own = own_memory_cgroup()
    if own is None:
        return
    try:
        found = list(own.glob(f"jupyter_faas-{prefix}*-*"))
    except OSError:
        return
    for parent in found:
        pid = parent.name.rsplit("-", 1)[1]
        if not pid.isdigit() or os.path.exists(f"/proc/{pid}"):
            continue
        for child in [*parent.glob("*/"), parent]:
            try:
                child.rmdir()
            except OSError:
                pass


def make(mode: str, tag: str, logger: logging.Logger = log):
    """``auto``: a cgroup where writable, else the watchdog; ``watchdog``: the watchdog;
    ``cgroup``: a cgroup, or None where there is none (the caller says what to do)."""
    if mode in ("auto", "cgroup"):
        enforcer = CgroupV1Memory.create(tag, logger)
        if enforcer is not None or mode == "cgroup":
            return enforcer
    return WatchdogMemory()
