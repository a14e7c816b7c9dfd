"""``python -m bench.triggers``: local queues and file events on a fresh local server.

* queue: N messages sent with ``send_batch``, then drained by a no-op subscriber with batch
  size 10: messages/s from the subscription's creation until ``len(q) == 0``;
* file: the time from a file's close to the start of the invocation it triggered (the
  invocation row's ``started_at``), over several files written one after another.

Uses only the public client and REST API; the server runs in a temporary Jupyter dir.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.events import start_server


def noop(event):
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--files", type=int, default=20)
    args = parser.parse_args()
    import jupyter_faas as faas
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        proc, url = start_server(base)
        try:
            faas.connect(url, "bench-events")
            q = faas.queue("bench")
            q.send_batch([str(i) for i in range(args.messages)])
            f = faas.function(noop, name="queue_noop")
            f.deploy()
            f(None)  # warm
            started = time.perf_counter()
            f.subscribe(q, batch_size=10)
            while len(q):
                time.sleep(0.01)
            elapsed = time.perf_counter() - started
            print(f"queue: {args.messages} messages through a no-op subscriber (batch 10) in {elapsed:.2f} s: "
                  f"{args.messages / elapsed:,.0f} messages/s")

            watched = base / "watched"
            watched.mkdir()
            g = faas.function(noop, name="file_noop")
            g(None)  # warm
            g.on_file(watched, pattern="*.txt")
            latencies = []
            for i in range(args.files):
                with open(watched / f"f{i}.txt", "w") as fh:
                    fh.write("x" * 100)
                closed = time.time()
                while True:
                    rows = faas.invocations(function="file_noop", limit=1)
                    if rows and rows[0]._row.get("triggered_by") == "file" and rows[0]._row.get("started_at") \
                            and len(faas.invocations(function="file_noop", limit=1000)) >= i + 2:
                        break
                    time.sleep(0.005)
                newest = max((r._row for r in faas.invocations(function="file_noop", limit=1000)
                              if r._row.get("triggered_by") == "file"), key=lambda r: r["created_at"])
                latencies.append((newest["started_at"] - closed) * 1000)
            print(f"file: close -> invocation start over {args.files} files: median "
                  f"{statistics.median(latencies):.0f} ms, min {min(latencies):.0f}, max {max(latencies):.0f} ms")
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
