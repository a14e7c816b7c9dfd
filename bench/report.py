"""Turn per-system results into the JSON document, the markdown table, ratios and target checks."""

from __future__ import annotations

from .stats import summary
from .workloads import METRICS

FAAS = "jupyter_faas"


def _cell(system: dict, workload: str, metric: str):
    results = (system.get("results") or {}).get(workload)
    if results is None:
        return None
    if "n/a" in results:
        return {"note": "n/a: " + results["n/a"]}
    if "error" in results:
        return {"note": "error: " + results["error"]}
    if metric not in results:
        return None
    return summary(results[metric])


def rows(systems: dict) -> list[dict]:
    """One row per metric with every system's median and spread (or why it has none)."""
    out = []
    for workload, metric, unit, better, meaning in METRICS:
        cells = {name: _cell(rec, workload, metric) for name, rec in systems.items()
                 if "skipped" not in rec}
        out.append({"workload": workload, "metric": metric, "unit": unit, "better": better,
                    "meaning": meaning, "systems": cells})
    return out


def _median(row, name):
    cell = row["systems"].get(name)
    return cell["median"] if cell and "median" in cell else None


def advantage(row, peer):
    """How many times better jupyter_faas is than ``peer`` on this row (>1: better), or None."""
    ours, theirs = _median(row, FAAS), _median(row, peer)
    if not ours or not theirs:
        return None
    return theirs / ours if row["better"] == "lower" else ours / theirs


def targets(table: list[dict]) -> list[dict]:
    """The issue's targets, each with its measured value and whether it is met."""
    by = {(r["workload"], r["metric"]): r for r in table}

    def med(key, name=FAAS):
        row = by.get(key)
        return _median(row, name) if row else None

    checks = []

    def check(name, value, limit, ok, unit=""):
        checks.append({"target": name, "value": value, "limit": limit,
                       "met": None if value is None else ok(value), "unit": unit})

    def least(key, name=FAAS):  # the worst repetition of a higher-is-better figure
        cell = by.get(key, {}).get("systems", {}).get(name)
        return cell.get("min") if cell else None

    # The performance issue's targets (issue 14), each a ratio in one run.
    w1, ppe, ray = med(("W1", "p50_us")), med(("W1", "p50_us"), "ProcessPoolExecutor"), med(("W1", "p50_us"), "Ray")
    check("W1 p50 ≤ 2× ProcessPoolExecutor", w1 / ppe if w1 and ppe else None, 2, lambda v: v <= 2, "×")
    w1_99 = med(("W1", "p99_us"))
    check("W1 p99 ≤ 3× our own p50", w1_99 / w1 if w1 and w1_99 else None, 3, lambda v: v <= 3, "×")
    check("W1 p50 ≤ ¼ Ray", w1 / ray if w1 and ray else None, 0.25, lambda v: v <= 0.25, "×")
    w2, ppe2 = med(("W2", "items_per_s")), med(("W2", "items_per_s"), "ProcessPoolExecutor")
    check("W2 ≥ ProcessPoolExecutor items/s", w2 / ppe2 if w2 and ppe2 else None, 1, lambda v: v >= 1, "×")
    check("W3 ≥ 85% of ideal", med(("W3", "pct_of_ideal")), 85, lambda v: v >= 85, "%")
    for way in ("arg", "result"):
        v, r = least(("W4", f"{way}_MBps")), med(("W4", f"{way}_MBps"), "Ray")
        check(f"W4 {way} ≥ 2 GB/s on every repetition (slowest)", v, 2000, lambda x: x >= 2000, "MB/s")
        v = med(("W4", f"{way}_MBps"))
        check(f"W4 {way} ≥ Ray", v / r if v and r else None, 1, lambda x: x >= 1, "×")
    check("W5 trivial cold start ≤ 10 ms", med(("W5", "trivial_ms")), 10, lambda v: v <= 10, "ms")
    check("W5 numpy cold start ≤ 15 ms (learned preload)", med(("W5", "numpy_ms")), 15, lambda v: v <= 15, "ms")
    init_s = 1.0  # the full run's INIT; a smoke run's targets mean nothing anyway
    check("W6 wall ≤ 1.6 s (INIT paid once)", med(("W6", "wall_s")), 1.6 * init_s, lambda v: v <= 1.6, "s")
    check("W6 total PSS ≤ 1.5 × one environment's", med(("W6", "pss_ratio")), 1.5, lambda v: v <= 1.5, "×")
    for m in ("list_newest_ms", "list_function_ms", "list_status_ms", "list_deep_ms"):
        check(f"S {m} < 10 ms", med(("S", m)), 10, lambda v: v < 10, "ms")
    check("S server RSS not growing (≤ 5 MB over later W2 reps)", med(("S", "server_rss_growth_mb")), 5,
          lambda v: v <= 5, "MB")
    return checks


def _fmt(v: float) -> str:
    if v is None:
        return "–"
    a = abs(v)
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def markdown(doc: dict) -> str:
    systems = [n for n, rec in doc["systems"].items() if "skipped" not in rec]
    lines = [f"# jupyter_faas benchmark ({doc['mode']})", "",
             f"{doc['machine']['when']} · {doc['machine']['cpus']} CPUs · Python {doc['machine']['python']}"
             f" · {doc['sizes']['reps']} repetitions; cells are median (min–max).", ""]
    lines.append("| workload | metric | " + " | ".join(systems) + " |")
    lines.append("|---|---|" + "---|" * len(systems))
    for row in doc["rows"]:
        cells = []
        for name in systems:
            cell = row["systems"].get(name)
            if cell is None:
                cells.append("–")
            elif "note" in cell:
                cells.append(cell["note"][:60])
            else:
                cells.append(f"{_fmt(cell['median'])} ({_fmt(cell['min'])}–{_fmt(cell['max'])})")
        better = "↓" if row["better"] == "lower" else "↑"
        lines.append(f"| {row['workload']} | {row['metric']} ({row['unit']}, {better}) | " + " | ".join(cells) + " |")
    peers = [n for n in systems if n != FAAS]
    if FAAS in systems and peers:
        lines += ["", "## jupyter_faas against each peer (×; above 1 means jupyter_faas is better)", "",
                  "| workload | metric | " + " | ".join(peers) + " |", "|---|---|" + "---|" * len(peers)]
        for row in doc["rows"]:
            ratios = [advantage(row, p) for p in peers]
            if any(r is not None for r in ratios):
                lines.append(f"| {row['workload']} | {row['metric']} | "
                             + " | ".join("–" if r is None else f"{r:.2f}" for r in ratios) + " |")
    lines += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for t in doc["targets"]:
        met = {True: "yes", False: "**no**", None: "–"}[t["met"]]
        lines.append(f"| {t['target']} | {_fmt(t['value'])} {t['unit']} | {met} |")
    skipped = {n: rec["skipped"] for n, rec in doc["systems"].items() if "skipped" in rec}
    if skipped:
        lines += ["", "## Skipped", ""] + [f"- {n}: {why}" for n, why in skipped.items()]
    lines += ["", "## Metrics", ""] + [f"- {r['workload']} {r['metric']}: {r['meaning']}" for r in doc["rows"]]
    return "\n".join(lines) + "\n"
