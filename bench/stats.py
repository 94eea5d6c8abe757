"""Percentile summaries shared by the benchmarks: one shape, so tables and JSON agree."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def summarize_ms(values_ms: Sequence[float] | np.ndarray) -> dict[str, float | int | None]:
    """count, p50, p95, p99, max in ms; ``None`` percentiles when there is nothing to summarise."""
    arr = np.asarray(values_ms, dtype=np.float64)
    if arr.size == 0:
        return {"count": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {
        "count": int(arr.size),
        "p50_ms": round(float(p50), 4),
        "p95_ms": round(float(p95), 4),
        "p99_ms": round(float(p99), 4),
        "max_ms": round(float(arr.max()), 4),
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or ``None`` when either is missing or the divisor is zero."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator
