"""Medians, spreads and percentiles, without numpy (the smoke run needs no extras)."""

from __future__ import annotations

import math
import statistics


def percentile(values, q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(reps: list) -> dict:
    """Median and spread (min, max) of one metric's repetitions."""
    return {"median": statistics.median(reps), "min": min(reps), "max": max(reps), "reps": reps}
