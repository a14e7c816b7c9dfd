"""Fixtures: real FaaS servers in subprocesses, isolated by their own Jupyter dirs.

Every server a test starts is stopped by the fixture, and the session ends by
checking that no execution environment or zygote outlived its server.
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
import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Every process a test server of this session had (zygotes, environments): none may outlive it.
SEEN: list = []


def map_futures(fn) -> list:
    """The futures ``fn``'s maps make from now on (a map returns results only): a list that
    fills as ``fn._submit_items`` makes them."""
    futures: list = []
    original = fn._submit_items

    def keep(indexed_args, view, group=None, leased=None):
        out = original(indexed_args, view, group, leased)
        futures.extend(out)
        return out
    fn._submit_items = keep
    return futures


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.02, what: str | None = None):
    """Poll ``predicate()`` until it returns something truthy, and return that.

    The tests' one way to wait for something to happen: a condition with a deadline,
    never a sleep that hopes it was long enough.  Fails the test (naming ``what``, or
    the predicate) when ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for "
                                 f"{what or getattr(predicate, '__name__', predicate)}")
        time.sleep(interval)


class ServerProcess:
    def __init__(self, base: Path, *options: str, env: dict | None = None):
        self.base = base
        self.options = options
        self.token = "test-token-" + base.name
        self.env = dict(os.environ, JUPYTER_DATA_DIR=str(base / "data"),
                        JUPYTER_RUNTIME_DIR=str(base / "runtime"), JUPYTER_FAAS_TOKEN=self.token,
                        JUPYTER_CONFIG_DIR=str(base / "config"), **(env or {}))
        self.env.pop("JUPYTER_FAAS_URL", None)
        self.proc = None

    @property
    def runtime_file(self) -> Path:
        return self.base / "runtime" / "jupyter_faas-server.json"

    def start(self) -> "ServerProcess":
        log = open(self.base / f"server-{time.monotonic_ns()}.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "jupyter_faas", "serve", *self.options],
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                info = json.loads(self.runtime_file.read_text())
                if info["pid"] == self.proc.pid:
                    self.url = info["url"]
                    return self
            except (OSError, ValueError):
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.returncode}")
            time.sleep(0.05)
        raise RuntimeError("server did not start")

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            return []

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        kids = self.descendants()
        SEEN.extend(kids)
        self.proc.send_signal(sig)
        self.proc.wait(20)
        gone, alive = psutil.wait_procs(kids, timeout=10)
        assert not alive, f"processes outlived the server: {alive}"

    def kill(self) -> list:
        """SIGKILL the server (a crash); returns its descendants to check they die too."""
        kids = self.descendants()
        SEEN.extend(kids)
        self.proc.kill()
        self.proc.wait(10)
        return kids


@pytest.fixture
def make_server(tmp_path_factory):
    started = []

    def make(*options, env=None):
        server = ServerProcess(tmp_path_factory.mktemp("faas"), *options, env=env)
        started.append(server)
        return server.start()
    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = ServerProcess(tmp_path_factory.mktemp("faas"), "--FaaSServer.throttle_wait=0.5").start()
    yield s
    s.stop()


@pytest.fixture
def conn(server):
    import jupyter_faas as faas
    from jupyter_faas.client import discovery
    c = faas.connect(server.url, server.token)
    yield c
    discovery.reset()


@pytest.fixture(scope="session", autouse=True)
def no_leftover_processes():
    yield
    gone, alive = psutil.wait_procs(SEEN, timeout=10)
    assert not alive, f"processes outlived their test server: {alive}"
