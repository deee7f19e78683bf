"""Per-query latency, measured the same way by ``lsr search --stats`` and ``lsr eval``.

Each query runs alone on the calling thread after warm-up queries (so JIT
compilation and first-touch page faults of the memory-mapped index are excluded).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def time_queries(run_one: Callable[[int], object], n_queries: int, warmup: int = 3) -> np.ndarray:
    """Milliseconds per call of ``run_one(i)`` for i in range(n_queries), after ``warmup`` calls."""
    for i in range(min(warmup, n_queries)):
        run_one(i)
    ms = np.empty(n_queries, dtype=np.float64)
    for i in range(n_queries):
        t0 = time.perf_counter()
        run_one(i)
        ms[i] = (time.perf_counter() - t0) * 1e3
    return ms


def latency_summary(ms: np.ndarray) -> dict[str, float]:
    """mean, p50, p99 (ms) and the one-thread queries/s they imply."""
    if len(ms) == 0:
        return {}
    return {
        "mean": float(ms.mean()),
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
        "qps_one_thread": float(1e3 / ms.mean()) if ms.mean() > 0 else float("inf"),
        "n_queries": int(len(ms)),
    }
