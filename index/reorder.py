"""Document reordering so that similar documents share blocks (an index-build option).

``bp_order`` runs recursive graph bisection (``lsr.index.kernels.bisection``)
down to ranges of ``leaf_size`` documents (the block size) and returns a
permutation: new internal doc i is original doc ``perm[i]``.
"""

from __future__ import annotations

import logging
import time

import numba
import numpy as np

from lsr.index.kernels.bisection import _bisect_level, _bisect_wide, _log2_table
from lsr.index.sparse import SparseBatch

logger = logging.getLogger(__name__)

REORDER_METHODS = ("none", "bp", "auto")
# ``auto`` reorders (bp) collections of at least this many documents. Below it a query's block-max
# pass over all blocks is cheap and exact ties keep their input order (small collections, tests).
AUTO_MIN_DOCS = 50_000


def resolve_reorder(method: str, n_docs: int) -> str:
    """``none`` or ``bp``: what ``method`` means for a collection of ``n_docs`` documents."""
    if method == "auto":
        return "bp" if n_docs >= AUTO_MIN_DOCS else "none"
    return method


def bp_order(forward: SparseBatch, n_terms: int, leaf_size: int = 16, iterations: int = 2) -> np.ndarray:
    """A document permutation from recursive graph bisection of the forward index."""
    if leaf_size < 1 or iterations < 1:
        raise ValueError(f"leaf_size and iterations must be >= 1, got {leaf_size} and {iterations}")
    n_docs = len(forward)
    perm = np.arange(n_docs, dtype=np.int64)
    ranges = [(0, n_docs)]
    level = 0
    start = time.perf_counter()
    lg = _log2_table(n_docs)
    while ranges and ranges[0][1] - ranges[0][0] > leaf_size:
        n_threads = numba.get_num_threads()
        if len(ranges) < n_threads:  # few large ranges: split each one's work
            for s, e in ranges:
                _bisect_wide(forward.indptr, forward.term_ids, perm[s:e], n_terms, iterations, lg, n_threads)
        else:
            starts = np.array([s for s, _ in ranges], dtype=np.int64)
            ends = np.array([e for _, e in ranges], dtype=np.int64)
            _bisect_level(
                forward.indptr, forward.term_ids, perm, starts, ends, n_terms, iterations, lg, n_threads
            )
        ranges = [
            half
            for s, e in ranges
            for half in ((s, (s + e) // 2), ((s + e) // 2, e))
            if half[1] - half[0] > leaf_size
        ]
        level += 1
    logger.info("graph bisection: %d docs, %d levels, %.1fs", n_docs, level, time.perf_counter() - start)
    return perm
