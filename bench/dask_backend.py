"""W3 through the Dask backend, beside the local backend and plain ``client.map`` on the same cluster.

    .venv/bin/python -m bench.dask_backend                 # 1, 2 and 4 worker processes, 1 thread each
    .venv/bin/python -m bench.dask_backend --threads 16    # I/O-bound work: more threads per worker
    .venv/bin/python -m bench.dask_backend --smoke

One LocalCluster of N worker processes (T threads each) is started here; the FaaS server
uses it (``--FaaSServer.dask_scheduler=<its address>``), and a plain ``distributed.Client``
maps the same sleep over it, so the three columns share a machine and a cluster.  Per
configuration: W3 (200 items sleeping 20 ms, concurrency 32), a warm-up run first; the
overhead per invocation is ``(wall - ideal) / ceil(n / slots)`` where ``slots`` is what can
run at once (``min(32, N·T)`` on Dask, 32 locally) and ``ideal = ceil(n / slots) · 20 ms``.
Then, side by side per configuration, the overhead per invocation of the Dask backend, the local
backend and plain ``client.map``, and the scaling efficiency from the fewest workers to the most
(speed-up over the ratio of slots), with the machine's core count: on a machine with fewer cores
than workers the workers share cores, which the report says.
Writes ``bench/results/dask_backend-t<threads>.md``.
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
            for label, fn, slots in ((DASK, on_dask, min(concurrency, workers * threads)),
                                     (LOCAL, on_local, concurrency)):
                walls = _timed(lambda f=fn: f.map(items, concurrency=concurrency), reps)
                rows.append(_row(label, walls, n, sleep, slots))
        finally:
            system.close()
        with Client(cluster) as client:
            def plain():
                assert client.gather(client.map(tasks.nap, items, pure=False)) == items
            rows.append(_row(PLAIN, _timed(plain, reps), n, sleep, min(concurrency, workers * threads)))
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


def efficiency(rows: list, system: str, low: int, high: int) -> float | None:
    """Scaling efficiency of ``system`` from ``low`` to ``high`` workers: the speed-up of the
    median wall over the ratio of slots (1.0 is perfect scaling); None without both runs."""
    by = {r["workers"]: r for r in rows if r["system"] == system}
    if low not in by or high not in by:
        return None
    a, b = by[low], by[high]
    return (a["wall_s"] / b["wall_s"]) / (b["slots"] / a["slots"])


DASK, LOCAL, PLAIN = ("jupyter_faas, dask backend", "jupyter_faas, local backend",
                      "plain client.map (same cluster)")


def report(rows: list, n: int, sleep: float, concurrency: int, reps: int, threads: int) -> str:
    cores = os.cpu_count()
    lines = [f"# W3 through the Dask backend ({n} x {sleep * 1000:g} ms, concurrency {concurrency}; "
             f"median of {reps})", "",
             f"This machine has {cores} cores; the workers, the scheduler, the FaaS server and the "
             f"client all share them.", "",
             "| workers x threads | system | wall s (min-max) | slots | ideal s | % of ideal | overhead ms / invocation |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['workers']} x {r['threads']} | {r['system']} | {r['wall_s']:.3f} "
                     f"({r['min_s']:.3f}-{r['max_s']:.3f}) | {r['slots']} | {r['ideal_s']:.2f} | "
                     f"{r['pct_of_ideal']:.0f}% | {r['overhead_ms']:.1f} |")
    lines += ["", "Overhead per invocation, side by side (ms; `(wall - ideal) / ceil(n / slots)`):", "",
              "| workers x threads | dask backend | local backend | plain client.map | dask - local | dask - client.map |",
              "|---|---|---|---|---|---|"]
    for workers in sorted({r["workers"] for r in rows}):
        by = {r["system"]: r["overhead_ms"] for r in rows if r["workers"] == workers}
        d, lo, pl = by.get(DASK), by.get(LOCAL), by.get(PLAIN)
        lines.append(f"| {workers} x {threads} | {d:.1f} | {lo:.1f} | {pl:.1f} | {d - lo:+.1f} | {d - pl:+.1f} |")
    counts = sorted({r["workers"] for r in rows})
    if len(counts) > 1:
        low, high = counts[0], counts[-1]
        lines.append("")
        for more in counts[1:]:
            for system in (DASK, PLAIN):
                e = efficiency(rows, system, low, more)
                lines.append(f"Scaling efficiency {low} -> {more} workers, {system}: {e * 100:.0f}% "
                             f"(speed-up {e * more / low:.2f}x of {more / low:g}x)")
        if cores is not None and high * threads > cores:
            lines.append(f"Note: {high} worker processes x {threads} thread(s) on a machine with {cores} "
                         f"cores: past {cores} the workers share cores, so this is not the scaling of "
                         f"a cluster with a core per worker.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dask_backend")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", default=None, help="write the report here (default: "
                                                  "bench/results/dask_backend-t<threads>.md, not in --smoke)")
    args = parser.parse_args(argv)
    n, sleep, concurrency = (20, 0.01, 8) if args.smoke else (200, 0.02, 32)
    reps = 1 if args.smoke else args.reps
    rows = []
    for workers in [int(w) for w in args.workers.split(",")]:
        rows += run(workers, args.threads, n, sleep, concurrency, reps)
    text = report(rows, n, sleep, concurrency, reps, args.threads)
    print(text)
    out = args.out or (None if args.smoke else
                       Path(__file__).parent / "results" / f"dask_backend-t{args.threads}.md")
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)


if __name__ == "__main__":
    main()
