"""W3 through the Dask backend, beside the local backend and plain ``client.map`` on the same cluster.

    .venv/bin/python -m bench.dask_backend                 # 1 and 2 worker processes, 1 thread each
    .venv/bin/python -m bench.dask_backend --threads 16    # I/O-bound work: more threads per worker
    .venv/bin/python -m bench.dask_backend --smoke

One LocalCluster of N worker processes (T threads each) is started here; the FaaS server
uses it (``--FaaSServer.dask_scheduler=<its address>``), and a plain ``distributed.Client``
maps the same sleep over it, so the three columns share a machine and a cluster.  Per
configuration: W3 (200 items sleeping 20 ms, concurrency 32), a warm-up run first; the
overhead per invocation is ``(wall - ideal) / ceil(n / slots)`` where ``slots`` is what can
run at once (``min(32, N·T)`` on Dask, 32 locally) and ``ideal = ceil(n / slots) · 20 ms``.
Writes ``bench/results/dask_backend.md``.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from pathlib import Path

from . import tasks
from .faas import Faas


def _timed(fn, reps: int) -> list[float]:
    fn()  # warm-up: environments started, workers warm
    walls = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - started)
    return walls


def run(workers: int, threads: int, n: int, sleep: float, concurrency: int, reps: int) -> list[dict]:
    from distributed import Client, LocalCluster

    items = [sleep] * n
    rows = []
    with LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True,
                      dashboard_address=":0") as cluster:
        system = Faas(options=(f"--FaaSServer.dask_scheduler={cluster.scheduler_address}",))
        system.start()
        try:
            faas = system.faas
            on_dask = faas.RemoteFunction(tasks.nap, name="w3_dask", timeout=60, backend="dask",
                                          connection=system.conn)
            on_local = faas.RemoteFunction(tasks.nap, name="w3_local", timeout=60, backend="local",
                                           connection=system.conn)
            for label, fn, slots in (("jupyter_faas, dask backend", on_dask, min(concurrency, workers * threads)),
                                     ("jupyter_faas, local backend", on_local, concurrency)):
                walls = _timed(lambda f=fn: f.map(items, concurrency=concurrency), reps)
                rows.append(_row(label, walls, n, sleep, slots))
        finally:
            system.close()
        with Client(cluster) as client:
            def plain():
                assert client.gather(client.map(tasks.nap, items, pure=False)) == items
            rows.append(_row("plain client.map (same cluster)", _timed(plain, reps), n, sleep,
                             workers * threads))
    for row in rows:
        row.update(workers=workers, threads=threads)
    return rows


def _row(label, walls, n, sleep, slots) -> dict:
    wall = statistics.median(walls)
    rounds = math.ceil(n / slots)
    ideal = rounds * sleep
    return {"system": label, "wall_s": wall, "min_s": min(walls), "max_s": max(walls), "slots": slots,
            "ideal_s": ideal, "pct_of_ideal": ideal / wall * 100,
            "overhead_ms": (wall - ideal) / rounds * 1000}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dask_backend")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    n, sleep, concurrency = (20, 0.01, 8) if args.smoke else (200, 0.02, 32)
    rows = []
    for workers in [int(w) for w in args.workers.split(",")]:
        rows += run(workers, args.threads, n, sleep, concurrency, 1 if args.smoke else args.reps)
    lines = [f"# W3 through the Dask backend ({n} x {sleep * 1000:g} ms, concurrency {concurrency}; "
             f"{os.cpu_count()} cores; median of {args.reps})", "",
             "| workers x threads | system | wall s (min-max) | slots | ideal s | % of ideal | overhead ms / invocation |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['workers']} x {r['threads']} | {r['system']} | {r['wall_s']:.3f} "
                     f"({r['min_s']:.3f}-{r['max_s']:.3f}) | {r['slots']} | {r['ideal_s']:.2f} | "
                     f"{r['pct_of_ideal']:.0f}% | {r['overhead_ms']:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.smoke:
        out = Path(__file__).parent / "results" / f"dask_backend-t{args.threads}.md"
        out.parent.mkdir(exist_ok=True)
        out.write_text(text)


if __name__ == "__main__":
    main()
