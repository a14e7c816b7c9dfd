"""jupyter_faas as a benchmarked system: a real server process, driven through the public client.

The server runs as ``python -m jupyter_faas serve`` in a private set of Jupyter
directories (so it never touches the user's own server or store), with the
payload limit raised for W4 and no ``preload``: W5's numpy case finds numpy in the zygote
because the server learned it from W4's functions (learned preload).  Every
call here is a recorded, limited invocation, exactly as from a notebook.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from . import tasks
from .peers import System

#: Big enough for W4's 100 MB array plus pickle framing.
PAYLOAD_MB = 300
#: The seeded invocations are spread over this many functions; one in ten has failed.
SEEDED_FUNCTIONS = 10


class Faas(System):
    name = "jupyter_faas"

    def __init__(self, options: tuple = ()):
        self.base = Path(tempfile.mkdtemp(prefix="bench-faas-"))
        self.token = "bench-" + uuid.uuid4().hex
        self.options = options
        self.functions = {}
        self.proc = None

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def store_path(self) -> Path:
        return self.data_dir / "faas" / "faas.sqlite"

    def start(self):
        env = dict(os.environ, JUPYTER_DATA_DIR=str(self.data_dir),
                   JUPYTER_RUNTIME_DIR=str(self.base / "runtime"),
                   JUPYTER_CONFIG_DIR=str(self.base / "config"), JUPYTER_FAAS_TOKEN=self.token)
        env.pop("JUPYTER_FAAS_URL", None)
        self.log = open(self.base / "server.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_faas", "serve", f"--FaaSServer.max_payload_mb={PAYLOAD_MB}",
             *self.options],
            env=env, stdout=self.log, stderr=subprocess.STDOUT)
        runtime = self.base / "runtime" / "jupyter_faas-server.json"
        deadline = time.monotonic() + 60
        while True:
            try:
                info = json.loads(runtime.read_text())
                if info["pid"] == self.proc.pid:
                    break
            except (OSError, ValueError, KeyError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the FaaS server did not start; see {self.base / 'server.log'}")
            time.sleep(0.05)
        import jupyter_faas as faas
        self.faas = faas
        self.conn = faas.connect(info["url"], self.token)

    def close(self):
        from jupyter_faas.client import discovery
        discovery.reset()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        if hasattr(self, "log"):
            self.log.close()
        shutil.rmtree(self.base, ignore_errors=True)

    def server_rss_mb(self) -> float:
        import psutil
        return psutil.Process(self.proc.pid).memory_info().rss / 2**20

    def function(self, fn, memory=256, name=None):
        key = (fn, memory, name)
        if key not in self.functions:
            self.functions[key] = self.faas.RemoteFunction(fn, name=name or fn.__name__, memory=memory,
                                                           timeout=300, connection=self.conn)
        return self.functions[key]

    def call(self, fn, *args):
        big = any(hasattr(a, "nbytes") for a in args) or fn is tasks.big_result
        return self.function(fn, memory=2048 if big else 256)(*args)

    def map(self, fn, items):
        return self.function(fn).map(items)

    def concurrent_map(self, fn, items, concurrency):
        return self.function(fn).map(items, concurrency=concurrency)

    def cold(self, tag, with_numpy):
        """Deploy a new function and time its first result; also keep the REPORT's Init Duration."""
        fn = self.faas.RemoteFunction(tasks.make_cold(tag, with_numpy), name=f"cold_{tag}", timeout=60,
                                      connection=self.conn)
        fn.deploy()  # deploying is a one-off, like Lambda's CreateFunction; the cold start is the call
        started = time.perf_counter()
        inv = fn.invoke(1)
        elapsed = time.perf_counter() - started
        inv.result  # raises if the call failed
        self.last_init_ms = inv.report.init_duration_ms
        return elapsed

    def init_map(self, init_s, alloc_mb, n, item_s, concurrency, snapshot=True):
        """W6: a fresh version whose INIT is slow and large, mapped at ``concurrency``.

        Returns (wall s, total PSS MB of the processes holding INIT's memory, one's RSS MB):
        the environments, and with snapshots the template they were forked from.
        """
        tag = uuid.uuid4().hex[:8]
        load, handler = tasks.make_w6(tag, init_s, alloc_mb)
        fn = self.faas.RemoteFunction(handler, name=f"w6_{tag}", memory=min(10240, 2 * alloc_mb + 256),
                                      timeout=120, init=load, snapshot=snapshot, connection=self.conn,
                                      show=False)
        fn.deploy()
        started = time.perf_counter()
        out = fn.map([item_s] * n, concurrency=concurrency, show=False)
        wall = time.perf_counter() - started
        assert all(o[0] == tag and o[3] == alloc_mb * 1024 * 1024 for o in out), out[:2]
        holders = {o[1] for o in out} | ({o[2] for o in out} if snapshot else set())
        total, one = tasks.pss_mb(holders)
        self.conn.request("DELETE", f"/faas/api/functions/{fn.name}")  # its environments go
        return wall, total, one

    def request(self, path: str, **params):
        return self.conn.request("GET", path, params=params)

    def invoke_json(self, fn, event) -> dict:
        """A sync JSON invocation through the REST Invoke API (the path curl and boto3 use).

        S's log-rate run goes this way rather than through the Python client, whose
        websocket streams every line back live: see the report for why.
        """
        f = self.function(fn)
        f.deploy()
        return self.conn.request("POST", f"/faas/api/functions/{f.name}/invocations",
                                 body=json.dumps(event).encode())

    def count_log_lines(self, request_id: str, prefix: str) -> int:
        """Lines of an invocation in the store that start with ``prefix``, read through the REST API."""
        count, after = 0, 0
        while True:
            page = self.request(f"/faas/api/invocations/{request_id}/logs", after=after,
                                limit=100000)["logs"]
            if not page:
                return count
            count += sum(1 for line in page if line["line"].startswith(prefix))
            after = page[-1]["id"]


def seed_store(store_path: Path, count: int, functions: int = SEEDED_FUNCTIONS) -> float:
    """Put ``count`` finished invocations in a new store (before the server starts); seconds taken."""
    from jupyter_faas.server.store import Store
    started = time.perf_counter()
    store = Store(store_path)
    statuses = ("succeeded",) * 8 + ("failed", "timed_out")
    start = time.time() - count * 0.001
    for first in range(0, count, 5000):  # in chunks, through the store's own batched writes
        added, finished = [], []
        for i in range(first, min(count, first + 5000)):
            rid, at = str(uuid.uuid4()), start + i * 0.001
            added.append(({"request_id": rid, "function": f"seeded_{i % functions}", "version": 1,
                           "invocation_type": "RequestResponse", "encoding": "pickle",
                           "status": "queued", "created_at": at, "memory_size_mb": 128}, b""))
            finished.append((rid, {"status": statuses[i % len(statuses)], "started_at": at,
                                   "ended_at": at + 0.0005, "duration_ms": 0.5,
                                   "billed_duration_ms": 1, "max_memory_used_mb": 20}, b"", []))
        if hasattr(store, "write_batch"):
            store.add_invocations(added)
            store.write_batch([], finished)
        else:  # an engine from before batched writes (the harness also measures old commits)
            for row, payload in added:
                store.add_invocation(row, payload)
            for rid, fields, result, logs in finished:
                store.finish_invocation(rid, fields, result, logs)
    store.close()
    return time.perf_counter() - started
