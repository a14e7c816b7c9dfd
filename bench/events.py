"""``python -m bench.events``: event throughput of a fresh local server.

* async: N no-op events accepted with ``invoke_async_many`` (batches of 500): events/s
  accepted (on disk) and completed (the function's succeeded count reaches N);
* one event's accept -> end latency, and a schedule's ``rate(1 second)`` firing jitter;
* function URL: sequential GET requests/s through a no-op handler.

Uses only the public client and REST API; the server runs in a temporary Jupyter dir.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def noop(event):
    return None


def url_handler(event):
    return "ok"


def start_server(base: Path):
    env = dict(os.environ, JUPYTER_DATA_DIR=str(base / "data"), JUPYTER_RUNTIME_DIR=str(base / "rt"),
               JUPYTER_CONFIG_DIR=str(base / "cfg"), JUPYTER_FAAS_TOKEN="bench-events")
    env.pop("JUPYTER_FAAS_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "jupyter_faas", "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runtime = base / "rt" / "jupyter_faas-server.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            info = json.loads(runtime.read_text())
            if info["pid"] == proc.pid:
                return proc, info["url"]
        except (OSError, ValueError):
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the server did not start")


def unfinished(conn, name: str) -> bool:
    """Whether any invocation of ``name`` is still queued or running."""
    return any(conn.request("GET", "/faas/api/invocations",
                            params={"function": name, "status": s, "limit": 1})["invocations"]
               for s in ("queued", "running"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    import jupyter_faas as faas
    with tempfile.TemporaryDirectory(prefix="bench-events-") as tmp:
        proc, url = start_server(Path(tmp))
        try:
            conn = faas.connect(url, "bench-events")
            f = faas.function(noop, name="noop")
            f.invoke_async({"warm": True}).wait(60)
            t0 = time.perf_counter()
            for start in range(0, args.events, 500):
                f.invoke_async_many([{"i": i} for i in range(start, min(start + 500, args.events))])
            accepted = time.perf_counter() - t0
            while unfinished(conn, "noop"):
                time.sleep(0.02)
            done = conn.request("GET", "/faas/api/invocations",
                                params={"function": "noop", "status": "succeeded", "limit": 1000})
            assert len(done["invocations"]) == 1000
            completed = time.perf_counter() - t0
            lat = []
            for _ in range(20):
                t = time.perf_counter()
                f.invoke_async({}).wait(60)
                lat.append((time.perf_counter() - t) * 1000)
            h = faas.function(url_handler, name="url_noop")
            u = h.url(auth="none")
            urllib.request.urlopen(u.url).read()
            t = time.perf_counter()
            for _ in range(args.requests):
                urllib.request.urlopen(u.url).read()
            url_rps = args.requests / (time.perf_counter() - t)
            out = {"events": args.events,
                   "async_accepted_per_s": round(args.events / accepted),
                   "async_completed_per_s": round(args.events / completed),
                   "async_one_event_roundtrip_ms_p50": round(statistics.median(lat), 2),
                   "function_url_sequential_requests_per_s": round(url_rps)}
            print(json.dumps(out, indent=2))
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
