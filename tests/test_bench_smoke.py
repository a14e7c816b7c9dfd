"""The benchmark harness cannot rot: its smoke mode runs end to end and writes every row.

Nothing here looks at a time: CI machines are shared and slow; the numbers are
only checked to exist and be positive.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.workloads import METRICS

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(600)
def test_smoke_writes_every_workload_row(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    doc = json.loads((tmp_path / "latest.json").read_text())
    assert doc["mode"] == "smoke"
    assert set(doc["systems"]) == {"jupyter_faas", "ProcessPoolExecutor"}
    assert not any("skipped" in rec for rec in doc["systems"].values()), doc["systems"]
    assert [(r["workload"], r["metric"]) for r in doc["rows"]] == [(m[0], m[1]) for m in METRICS]
    for row in doc["rows"]:
        cell = row["systems"]["jupyter_faas"]
        assert cell is not None and "median" in cell, (row["workload"], row["metric"], cell)
        assert cell["median"] >= 0 and len(cell["reps"]) >= 1
        peer = row["systems"]["ProcessPoolExecutor"]
        if row["workload"] in ("W1", "W2", "W3", "W4") or row["metric"] in ("trivial_ms", "numpy_ms"):
            assert peer is not None and peer["median"] > 0, (row["workload"], row["metric"], peer)
    assert {t["target"] for t in doc["targets"]} >= {
        "W1 p50 ≤ 2× ProcessPoolExecutor", "W1 p99 ≤ 3× our own p50", "W3 ≥ 85% of ideal",
        "W4 result ≥ 2 GB/s on every repetition (slowest)", "W5 trivial cold start ≤ 10 ms"}

    md = (tmp_path / "latest.md").read_text()
    assert md == (next(tmp_path.glob("bench-smoke-*.md"))).read_text()
    assert "| workload | metric | jupyter_faas | ProcessPoolExecutor |" in md
    for workload, metric, *_ in METRICS:
        assert f"| {workload} | {metric} (" in md, (workload, metric)
    assert "## Targets" in md


@pytest.mark.timeout(600)
def test_dask_backend_smoke_reports_every_system_side_by_side_and_the_scaling(tmp_path):
    """bench.dask_backend: W3 on the Dask backend, the local backend and plain client.map, per
    number of workers; the overheads side by side, the scaling efficiency, the machine's cores."""
    out = tmp_path / "dask.md"
    proc = subprocess.run([sys.executable, "-m", "bench.dask_backend", "--smoke", "--workers", "1,2",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    md = out.read_text()
    assert md in proc.stdout
    import os
    assert f"This machine has {os.cpu_count()} cores" in md
    for workers in (1, 2):
        for system in ("jupyter_faas, dask backend", "jupyter_faas, local backend",
                       "plain client.map (same cluster)"):
            assert f"| {workers} x 1 | {system} | " in md, (workers, system)
        side = next(line for line in md.splitlines() if line.startswith(f"| {workers} x 1 | ")
                    and line.count("|") == 7)
        assert all(cell.strip() for cell in side.split("|")[2:-1]), side
    assert "Scaling efficiency 1 -> 2 workers, jupyter_faas, dask backend: " in md
    assert "Scaling efficiency 1 -> 2 workers, plain client.map (same cluster): " in md
