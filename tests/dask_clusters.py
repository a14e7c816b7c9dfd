"""Real Dask clusters for the Dask backend's tests: ``dask scheduler`` and ``dask worker`` as
separate processes on loopback (the other kind, a LocalCluster, the server starts itself
with ``--FaaSServer.dask_scheduler=local:N``).

Workers run with ``--no-nanny`` and one thread, so the worker *is* the process a test kills.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

BIN = Path(sys.executable).parent

#: A `dask worker` whose Python cannot import kernel_workers (as on a machine without jupyter_faas).
NO_KERNEL_WORKERS = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "kernel_workers" or name.startswith("kernel_workers."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _Block())
from distributed.cli.dask_worker import main
sys.argv[0] = "dask worker"
main()
"""


class NetNamespace:
    """A network namespace joined to this one by a veth pair: ``host_ip`` here, ``ip`` inside.
    Needs root (``ip netns``); :meth:`create` returns None where the machine does not allow it."""

    def __init__(self, name: str, subnet: int):
        self.name = name
        self.host_ip, self.ip = f"10.231.{subnet}.1", f"10.231.{subnet}.2"
        self.veth = f"{name[:8]}h"

    @classmethod
    def create(cls) -> "NetNamespace | None":
        ns = cls(f"faas{os.getpid() % 100000}", os.getpid() % 250 + 1)
        peer = f"{ns.veth[:-1]}w"
        steps = [["ip", "netns", "add", ns.name],
                 ["ip", "link", "add", ns.veth, "type", "veth", "peer", "name", peer],
                 ["ip", "link", "set", peer, "netns", ns.name],
                 ["ip", "addr", "add", f"{ns.host_ip}/24", "dev", ns.veth],
                 ["ip", "link", "set", ns.veth, "up"],
                 ["ip", "netns", "exec", ns.name, "ip", "addr", "add", f"{ns.ip}/24", "dev", peer],
                 ["ip", "netns", "exec", ns.name, "ip", "link", "set", peer, "up"],
                 ["ip", "netns", "exec", ns.name, "ip", "link", "set", "lo", "up"]]
        for step in steps:
            if subprocess.run(step, capture_output=True).returncode != 0:
                ns.delete()
                return None
        return ns

    def delete(self) -> None:
        subprocess.run(["ip", "link", "del", self.veth], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


class ExternalCluster:
    def __init__(self, base: Path):
        self.base = base
        self.base.mkdir(parents=True, exist_ok=True)
        self.file = base / "scheduler.json"
        self.scheduler = None
        self.workers: list[subprocess.Popen] = []
        self.seen: list = []

    def _log(self, name: str):
        return open(self.base / f"{name}-{time.monotonic_ns()}.log", "wb")

    def start_scheduler(self, host: str = "127.0.0.1") -> str:
        self.scheduler = subprocess.Popen(
            [str(BIN / "dask"), "scheduler", "--host", host, "--port", "0", "--no-dashboard",
             "--scheduler-file", str(self.file)], stdout=self._log("scheduler"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.address = json.loads(self.file.read_text())["address"]
                return self.address
            except (OSError, ValueError, KeyError):
                time.sleep(0.1)
        raise RuntimeError("dask scheduler did not start")

    def add_worker(self, name: str, without_kernel_workers: bool = False,
                   netns: NetNamespace | None = None) -> subprocess.Popen:
        args = ["--scheduler-file", str(self.file), "--nthreads", "1", "--no-nanny",
                "--no-dashboard", "--name", name, "--host", netns.ip if netns else "127.0.0.1"]
        if without_kernel_workers:
            cmd = [sys.executable, "-c", NO_KERNEL_WORKERS, *args]
        else:
            cmd = [str(BIN / "dask"), "worker", *args]
        if netns is not None:
            cmd = ["ip", "netns", "exec", netns.name, *cmd]
        env = dict(os.environ)
        env.pop("JUPYTER_FAAS_TOKEN", None)
        proc = subprocess.Popen(cmd, stdout=self._log(name), stderr=subprocess.STDOUT, env=env)
        self.workers.append(proc)
        return proc

    def wait_workers(self, n: int, timeout: float = 30) -> None:
        from distributed import Client
        with Client(self.address, timeout=timeout) as client:
            client.wait_for_workers(n, timeout=timeout)

    def descendants(self) -> list:
        out = []
        for proc in [self.scheduler, *self.workers]:
            if proc is None:
                continue
            try:
                p = psutil.Process(proc.pid)
                out.append(p)
                out.extend(p.children(recursive=True))
            except psutil.Error:
                pass
        return out

    def kill_worker(self, proc: subprocess.Popen) -> list:
        """SIGKILL a worker; returns its zygote and environments, which must die with it."""
        try:
            kids = psutil.Process(proc.pid).children(recursive=True)
        except psutil.Error:
            kids = []
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        return kids

    def stop(self) -> None:
        procs = self.descendants()
        for proc in [*self.workers, self.scheduler]:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [*self.workers, self.scheduler]:
            if proc is not None:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        gone, alive = psutil.wait_procs(procs, timeout=10)
        for p in alive:
            p.kill()
        assert not alive, f"processes outlived the Dask cluster: {alive}"
