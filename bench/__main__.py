"""``python -m bench``: jupyter_faas and its peers, same run, same machine.

Each system runs in its own process (``bench.one``), one after another, so they
never compete for the 2 cores.  Results go to ``bench/results/`` (or ``--out``)
as ``bench-<mode>-<time>.json`` and ``.md``, plus ``latest.json``/``latest.md``.

``--smoke`` is the CI mode: tiny sizes, jupyter_faas and ProcessPoolExecutor
only, no extras needed.  It proves the harness runs; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import report
from .workloads import FULL, SMOKE, WORKLOADS

ROOT = Path(__file__).resolve().parent.parent
ALL = ["jupyter_faas", "ProcessPoolExecutor", "multiprocessing.Pool", "loky", "Dask", "ipyparallel", "Ray"]
SMOKE_SYSTEMS = ["jupyter_faas", "ProcessPoolExecutor"]


def run_system(name: str, sizes: dict, timeout: float) -> dict:
    env = dict(os.environ)
    # Peers' workers (Dask, Ray, ipyparallel engines) must import bench.tasks by reference.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    env.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")  # keep the progress lines readable
    with tempfile.TemporaryDirectory(prefix="bench-one-") as tmp:
        out = Path(tmp) / "result.json"
        print(f"[bench] {name} …", flush=True)
        started = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-m", "bench.one", name, json.dumps(sizes), str(out)],
                                  env=env, cwd=ROOT, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"system": name, "skipped": f"did not finish within {timeout:.0f} s"}
        print(f"[bench] {name} done in {time.perf_counter() - started:.0f} s", flush=True)
        if not out.exists():
            return {"system": name, "skipped": f"its run exited with status {proc.returncode} and no results"}
        return json.loads(out.read_text())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, jupyter_faas and ProcessPoolExecutor")
    parser.add_argument("--systems", help=f"comma-separated subset of: {', '.join(ALL)}")
    parser.add_argument("--reps", type=int, help="repetitions per workload (default 3; smoke 2)")
    parser.add_argument("--workloads", help=f"comma-separated subset of: {', '.join(WORKLOADS)} "
                        "(default: all; the others are left out of the report)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"), help="results directory")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds allowed per system")
    args = parser.parse_args(argv)

    sizes = dict(SMOKE if args.smoke else FULL)
    if args.reps:
        sizes["reps"] = args.reps
    if args.workloads:
        chosen = args.workloads.split(",")
        if set(chosen) - set(WORKLOADS):
            parser.error(f"unknown workloads {sorted(set(chosen) - set(WORKLOADS))}; "
                         f"choose from {', '.join(WORKLOADS)}")
        sizes["workloads"] = [w for w in WORKLOADS if w in chosen]
    names = args.systems.split(",") if args.systems else (SMOKE_SYSTEMS if args.smoke else ALL)
    unknown = set(names) - set(ALL)
    if unknown:
        parser.error(f"unknown systems {sorted(unknown)}; choose from {', '.join(ALL)}")

    systems = {name: run_system(name, sizes, args.timeout) for name in names}
    doc = {"mode": "smoke" if args.smoke else "full", "sizes": sizes,
           "machine": {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": os.cpu_count(),
                       "python": platform.python_version(), "platform": platform.platform()},
           "systems": systems}
    doc["rows"] = report.rows(systems)
    doc["targets"] = report.targets(doc["rows"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"bench-{doc['mode']}-{time.strftime('%Y%m%d-%H%M%S')}"
    text = report.markdown(doc)
    for name in (stem, "latest"):
        (out / f"{name}.json").write_text(json.dumps(doc, indent=1))
        (out / f"{name}.md").write_text(text)
    print(text)
    print(f"[bench] wrote {out / stem}.json and .md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
