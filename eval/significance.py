"""Paired significance tests between systems on one dataset, corrected for multiple comparisons.

Each pair of systems is compared on the per-query scores of each metric with ranx's two-sided
paired Student's t-test (the test ``ranx.compare`` runs with ``stat_test="student"``). The p-values
of one (dataset, metric) family, every pair of systems, are then corrected with Holm's step-down
method (default) or Bonferroni's. System X "beats" Y when its mean is higher and the corrected
p-value is below the level (0.05); tables mark X's cell with Y's letter.
"""

from __future__ import annotations

import string
import warnings
from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np

CORRECTIONS = ("holm", "bonferroni", "none")


def correct(p_values: Sequence[float], method: str = "holm") -> list[float]:
    """Adjusted p-values (same order). Holm: step-down, monotone; Bonferroni: m x p; both capped at 1."""
    if method not in CORRECTIONS:
        raise ValueError(f"unknown correction {method!r}; one of {list(CORRECTIONS)}")
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    if m == 0 or method == "none":
        return p.tolist()
    if method == "bonferroni":
        return np.minimum(p * m, 1.0).tolist()
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def paired_p_value(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided paired t-test p-value (ranx's); identical score vectors give 1."""
    if len(a) != len(b):
        raise ValueError(f"paired test on {len(a)} and {len(b)} queries")
    if len(a) < 2 or np.array_equal(a, b):
        return 1.0
    # imported here: ranx takes ~5 s to import (numba compilation, measured), and only a comparison of
    # two systems or more needs it
    from ranx.statistical_tests import paired_student_t_test

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy: near-constant differences
        p, _ = paired_student_t_test(a, b, max_p=1.0)
    return 1.0 if not np.isfinite(p) else float(p)


def letters(n: int) -> list[str]:
    """a, b, ..., z, then aa, ab, ... (one marker per system)."""
    chars = string.ascii_lowercase
    return [chars[i] if i < 26 else chars[i // 26 - 1] + chars[i % 26] for i in range(n)]


def compare_systems(
    systems: dict[str, tuple[list[str], dict[str, np.ndarray]]],
    metrics: Sequence[str],
    level: float = 0.05,
    correction: str = "holm",
) -> dict[str, Any]:
    """Pairwise tests for one dataset.

    Args:
        systems: label -> (query ids, {metric: per-query scores}); all on the same queries.

    Returns:
        ``{"letters": {label: letter}, "correction", "level", "metrics": {metric: {"pairs": [{"a", "b",
        "p", "p_adjusted"}], "beats": {label: [labels]}}}}``.

    Raises:
        ValueError: the systems were scored on different queries.
    """
    labels = list(systems)
    if labels:
        ref = systems[labels[0]][0]
        for lab in labels[1:]:
            if systems[lab][0] != ref:
                raise ValueError(f"systems {labels[0]!r} and {lab!r} were scored on different queries")
    out: dict[str, Any] = {
        "letters": dict(zip(labels, letters(len(labels)), strict=True)),
        "correction": correction,
        "level": level,
        "test": "paired Student t (ranx), two-sided",
        "metrics": {},
    }
    for metric in metrics:
        have = [lab for lab in labels if metric in systems[lab][1]]
        pairs = list(combinations(have, 2))
        raw = [paired_p_value(systems[a][1][metric], systems[b][1][metric]) for a, b in pairs]
        adj = correct(raw, correction)
        beats: dict[str, list[str]] = {lab: [] for lab in have}
        rows = []
        for (a, b), p, pa in zip(pairs, raw, adj, strict=True):
            ma, mb = float(systems[a][1][metric].mean()), float(systems[b][1][metric].mean())
            rows.append({"a": a, "b": b, "p": p, "p_adjusted": pa, "mean_a": ma, "mean_b": mb})
            if pa < level and ma != mb:
                (beats[a] if ma > mb else beats[b]).append(b if ma > mb else a)
        out["metrics"][metric] = {"pairs": rows, "beats": beats}
    return out
