"""Score fusion of a sparse and a dense score list over the same candidates of one query.

* ``convex-minmax``: ``w * mm(dense) + (1 - w) * mm(sparse)``, min-max normalized per query;
* ``convex-zscore``: the same with z-scores (mean 0, standard deviation 1 per query);
* ``rrf``: reciprocal rank fusion, ``w / (60 + rank_dense) + (1 - w) / (60 + rank_sparse)``
  (ranks from 1; with w = 0.5 this is RRF up to a factor 2).

``w`` is the dense weight in [0, 1]: 0 keeps the sparse order, 1 the dense order. Bruch et
al. (arXiv 2210.11934) find the tuned convex combination beats RRF; the weight is tuned on a
dev split (``lsr tune-fusion``) and stored in the index's dense meta. numpy only.
"""

from __future__ import annotations

import numpy as np

FUSION_METHODS = ("convex-minmax", "convex-zscore", "rrf")
RRF_K = 60


def check_fusion(method: str, weight: float) -> None:
    if method not in FUSION_METHODS:
        raise ValueError(f"fusion method {method!r} is not one of {list(FUSION_METHODS)}")
    if not (isinstance(weight, (int, float)) and 0.0 <= float(weight) <= 1.0):
        raise ValueError(f"fusion weight {weight!r} must lie in [0, 1] (the dense share)")


def minmax(scores: np.ndarray) -> np.ndarray:
    """(s - min) / (max - min); all equal (or one score): all 0, so the other list decides."""
    s = np.asarray(scores, dtype=np.float64)
    if len(s) == 0:
        return s
    lo, hi = s.min(), s.max()
    return (s - lo) / (hi - lo) if hi > lo else np.zeros_like(s)


def zscore(scores: np.ndarray) -> np.ndarray:
    """(s - mean) / std; a constant list: all 0."""
    s = np.asarray(scores, dtype=np.float64)
    if len(s) == 0:
        return s
    std = s.std()
    return (s - s.mean()) / std if std > 0 else np.zeros_like(s)


def ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of each score, descending; ties broken by position (earlier first)."""
    s = np.asarray(scores, dtype=np.float64)
    order = np.lexsort((np.arange(len(s)), -s))
    out = np.empty(len(s), dtype=np.float64)
    out[order] = np.arange(1, len(s) + 1)
    return out


def fuse(
    sparse: np.ndarray, dense: np.ndarray, method: str = "convex-minmax", weight: float = 0.5
) -> np.ndarray:
    """Fused float64 scores of one query's candidates (``sparse[i]`` and ``dense[i]`` score candidate i).

    Raises:
        ValueError: unknown method, weight outside [0, 1], or lists of different lengths.
    """
    check_fusion(method, weight)
    sparse, dense = np.asarray(sparse), np.asarray(dense)
    if sparse.shape != dense.shape or sparse.ndim != 1:
        raise ValueError(
            f"sparse scores {sparse.shape} and dense scores {dense.shape} must be two "
            "lists of the same length"
        )
    w = float(weight)
    if method == "convex-minmax":
        return w * minmax(dense) + (1 - w) * minmax(sparse)
    if method == "convex-zscore":
        return w * zscore(dense) + (1 - w) * zscore(sparse)
    return w / (RRF_K + ranks(dense)) + (1 - w) / (RRF_K + ranks(sparse))


def fused_order(
    sparse: np.ndarray, dense: np.ndarray, method: str = "convex-minmax", weight: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """(positions sorted by fused score descending, ties by sparse order, i.e. position; fused scores)."""
    fused = fuse(sparse, dense, method, weight)
    order = np.lexsort((np.arange(len(fused)), -fused))
    return order, fused
