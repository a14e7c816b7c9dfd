"""The workloads W1–W6 and S, each measured on one started system.

A workload returns ``{metric: [value per repetition]}``; the runner turns those
into medians and spreads.  Results are checked (value and order) so a system
cannot look fast by being wrong.  Nothing here asserts on a time.
"""

from __future__ import annotations

import math
import time
import uuid

from . import tasks
from .peers import NotApplicable
from .stats import percentile

FULL = {"reps": 3, "w1_calls": 1000, "w1_warmup": 50, "w2_items": 10_000, "w3_items": 200,
        "w3_sleep": 0.02, "w3_concurrency": 32, "w4_mb": 100, "w5_reps": 5,
        "s_invocations": 100_000, "s_log_lines": 100_000, "s_list_calls": 20,
        "w6_init_s": 1.0, "w6_alloc_mb": 500, "w6_items": 16, "w6_item_s": 0.05, "w6_concurrency": 8}
SMOKE = {"reps": 2, "w1_calls": 30, "w1_warmup": 5, "w2_items": 40, "w3_items": 16,
         "w3_sleep": 0.01, "w3_concurrency": 8, "w4_mb": 1, "w5_reps": 2,
         "s_invocations": 300, "s_log_lines": 300, "s_list_calls": 3,
         "w6_init_s": 0.1, "w6_alloc_mb": 20, "w6_items": 4, "w6_item_s": 0.01, "w6_concurrency": 2}

#: Every workload, in the order they run (``--workloads`` picks a subset; S is jupyter_faas's only).
WORKLOADS = ["W1", "W2", "W3", "W4", "W5", "W6", "S"]

#: (workload, metric, unit, which way is better, what it means) — every row of the report.
METRICS = [
    ("W1", "p50_us", "µs", "lower", "warm sync round trip of f(x)=x+1, median call"),
    ("W1", "p90_us", "µs", "lower", "… 90th percentile"),
    ("W1", "p99_us", "µs", "lower", "… 99th percentile"),
    ("W2", "items_per_s", "items/s", "higher", "map of a no-op, one invocation per item, in order"),
    ("W3", "wall_s", "s", "lower", "items sleeping, bounded concurrency: wall time"),
    ("W3", "pct_of_ideal", "%", "higher", "ideal wall time (ceil(n/c)·sleep) / wall time"),
    ("W4", "arg_MBps", "MB/s", "higher", "numpy array as the argument"),
    ("W4", "result_MBps", "MB/s", "higher", "numpy array as the result"),
    ("W5", "trivial_ms", "ms", "lower", "new worker/function to first result, trivial function"),
    ("W5", "numpy_ms", "ms", "lower", "… a function importing numpy (preloaded where the system can; jupyter_faas: learned)"),
    ("W5", "trivial_init_ms", "ms", "lower", "the REPORT's Init Duration, trivial"),
    ("W5", "numpy_init_ms", "ms", "lower", "the REPORT's Init Duration, numpy"),
    ("W6", "wall_s", "s", "lower", "INIT (1 s, 500 MB) then map 16 × 50 ms at concurrency 8, fresh "
                                   "version/pool: wall"),
    ("W6", "pss_ratio", "×", "lower", "… total PSS of the processes holding INIT's memory (workers; "
                                      "environments and their template) / the RSS of one"),
    ("W6", "nosnap_wall_s", "s", "lower", "… jupyter_faas with snapshot=False: wall"),
    ("W6", "nosnap_pss_ratio", "×", "lower", "… jupyter_faas with snapshot=False: PSS ratio"),
    ("S", "list_newest_ms", "ms", "lower", "list the newest 100 of the seeded invocations (REST)"),
    ("S", "list_function_ms", "ms", "lower", "… filtered by function"),
    ("S", "list_status_ms", "ms", "lower", "… filtered by status"),
    ("S", "list_deep_ms", "ms", "lower", "… a page halfway down the store (keyset cursor)"),
    ("S", "server_rss_first_mb", "MB", "lower", "server RSS after the first W2 repetition"),
    ("S", "server_rss_growth_mb", "MB", "lower", "server RSS growth over the later W2 repetitions"),
    ("S", "log_lines_per_s", "lines/s", "higher", "lines one invocation prints and the store keeps"),
    ("S", "log_lines_kept_pct", "%", "higher", "share of printed lines in the store"),
]


def w1(system, sizes):
    out = {"p50_us": [], "p90_us": [], "p99_us": []}
    for i in range(sizes["w1_warmup"]):
        assert system.call(tasks.inc, i) == i + 1
    for _ in range(sizes["reps"]):
        times = []
        for i in range(sizes["w1_calls"]):
            started = time.perf_counter()
            result = system.call(tasks.inc, i)
            times.append((time.perf_counter() - started) * 1e6)
            assert result == i + 1
        for q in (50, 90, 99):
            out[f"p{q}_us"].append(percentile(times, q))
    return out


def w2(system, sizes, after_rep=None):
    n = sizes["w2_items"]
    items = list(range(n))
    system.map(tasks.inc, items[:100])  # warm the workers, as in W1
    rates = []
    for _ in range(sizes["reps"]):
        started = time.perf_counter()
        results = system.map(tasks.noop, items)
        rates.append(n / (time.perf_counter() - started))
        assert len(results) == n and all(r is None for r in results)
        if after_rep is not None:
            after_rep()
    check = system.map(tasks.inc, items[:1000])
    assert check == [x + 1 for x in items[:1000]], "results out of order"
    return {"items_per_s": rates}


def w3(system, sizes):
    n, t, c = sizes["w3_items"], sizes["w3_sleep"], sizes["w3_concurrency"]
    ideal = math.ceil(n / c) * t
    items = [t] * n
    system.concurrent_map(tasks.nap, items, c)  # a warm-up run starts the workers
    walls = []
    for _ in range(sizes["reps"]):
        started = time.perf_counter()
        results = system.concurrent_map(tasks.nap, items, c)
        walls.append(time.perf_counter() - started)
        assert results == items
    return {"wall_s": walls, "pct_of_ideal": [ideal / w * 100 for w in walls]}


def w4(system, sizes):
    import numpy
    nbytes = sizes["w4_mb"] * 1_000_000
    mb = nbytes / 1e6
    array = numpy.ones(nbytes, dtype="uint8")
    assert system.call(tasks.nbytes, array) == nbytes  # warm-up, both ways
    assert len(system.call(tasks.big_result, nbytes)) == nbytes
    arg, res = [], []
    for _ in range(sizes["reps"]):
        started = time.perf_counter()
        system.call(tasks.nbytes, array)
        arg.append(mb / (time.perf_counter() - started))
        started = time.perf_counter()
        got = system.call(tasks.big_result, nbytes)
        res.append(mb / (time.perf_counter() - started))
        assert got.nbytes == nbytes
    return {"arg_MBps": arg, "result_MBps": res}


def w5(system, sizes):
    out = {"trivial_ms": [], "numpy_ms": [], "trivial_init_ms": [], "numpy_init_ms": []}
    for _ in range(sizes["w5_reps"]):
        for kind, with_numpy in (("trivial", False), ("numpy", True)):
            seconds = system.cold(f"{kind}_{uuid.uuid4().hex[:8]}", with_numpy)
            out[f"{kind}_ms"].append(seconds * 1000)
            init = getattr(system, "last_init_ms", None)
            if init is not None:
                out[f"{kind}_init_ms"].append(init)
    return {k: v for k, v in out.items() if v}


def w6(system, sizes):
    """A slow, large INIT fanned out: wall and memory, with snapshots (and without, for ours)."""
    out = {}
    args = (sizes["w6_init_s"], sizes["w6_alloc_mb"], sizes["w6_items"], sizes["w6_item_s"],
            sizes["w6_concurrency"])
    for prefix, snapshot in (("", True), ("nosnap_", False)):
        if prefix and system.name != "jupyter_faas":
            continue
        walls, ratios = [], []
        for _ in range(sizes["reps"]):
            wall, total_pss, one_rss = system.init_map(*args, snapshot=snapshot)
            walls.append(wall)
            ratios.append(total_pss / one_rss)
        out[f"{prefix}wall_s"], out[f"{prefix}pss_ratio"] = walls, ratios
    return out


def scale(system, sizes):
    """S, for jupyter_faas only: listing at scale, and how many log lines survive."""
    out = {}
    # Seeded: s_invocations rows over 10 functions, one in ten failed (bench.faas.seed_store).
    tenth = min(100, sizes["s_invocations"] // 10)
    expect = {"list_newest_ms": min(100, sizes["s_invocations"]), "list_function_ms": tenth,
              "list_status_ms": tenth, "list_deep_ms": min(100, sizes["s_invocations"] // 2)}
    # seeded 1 ms apart: halfway down is half the count's milliseconds before the newest
    newest = system.request("/faas/api/invocations", limit=1)["invocations"][0]
    halfway = {"before": newest["created_at"] - sizes["s_invocations"] * 0.0005,
               "before_id": newest["request_id"]}
    for metric, params in (("list_newest_ms", {}), ("list_function_ms", {"function": "seeded_3"}),
                           ("list_status_ms", {"status": "failed"}), ("list_deep_ms", halfway)):
        times = []
        for _ in range(sizes["s_list_calls"]):
            started = time.perf_counter()
            rows = system.request("/faas/api/invocations", limit=100, **params)["invocations"]
            times.append((time.perf_counter() - started) * 1000)
            assert len(rows) == expect[metric], f"expected {expect[metric]} rows for {params}, got {len(rows)}"
        out[metric] = times
    n = sizes["s_log_lines"]
    rates, kept = [], []
    for _ in range(sizes["reps"]):
        started = time.perf_counter()
        done = system.invoke_json(tasks.chatty, n)
        elapsed = time.perf_counter() - started
        assert done["status"] == "succeeded" and done["result"] == n, done
        stored = system.count_log_lines(done["request_id"], "log line ")
        rates.append(stored / elapsed)
        kept.append(stored / n * 100)
    out["log_lines_per_s"] = rates
    out["log_lines_kept_pct"] = kept
    return out


def run_all(system, sizes, scale_too: bool) -> dict:
    """Every workload on one system: {workload: {metric: reps} | {"n/a": reason} | {"error": text}}."""
    results = {}
    rss = []
    after_rep = (lambda: rss.append(system.server_rss_mb())) if scale_too else None
    plan = [("W1", lambda: w1(system, sizes)), ("W2", lambda: w2(system, sizes, after_rep)),
            ("W3", lambda: w3(system, sizes)), ("W4", lambda: w4(system, sizes)),
            ("W5", lambda: w5(system, sizes)), ("W6", lambda: w6(system, sizes))]
    if scale_too:
        plan.append(("S", lambda: scale(system, sizes)))
    chosen = sizes.get("workloads")
    if chosen is not None:
        plan = [(name, run) for name, run in plan if name in chosen]
    for name, run in plan:
        started = time.perf_counter()
        try:
            results[name] = run()
        except NotApplicable as exc:
            results[name] = {"n/a": str(exc)}
        except Exception as exc:  # noqa: BLE001 - one failing workload must not lose the others
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"  {system.name} {name}: {time.perf_counter() - started:.1f} s", flush=True)
    if scale_too and len(rss) >= 1 and isinstance(results.get("S"), dict) and "error" not in results["S"]:
        results["S"]["server_rss_first_mb"] = [rss[0]]
        results["S"]["server_rss_growth_mb"] = [rss[-1] - rss[0]]
    return results
