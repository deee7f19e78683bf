"""Slow, obviously correct NumPy reference search: the test oracle for every kernel.

Scores are a dense (n_docs x n_terms) float64 matrix times the query vector; a
document is a candidate if it has a posting for at least one query term; the
order is score descending, then internal doc id ascending.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def dense_from_postings(term_ptr: NDArray, doc_ids: NDArray, impacts: NDArray, n_docs: int) -> NDArray:
    n_terms = len(term_ptr) - 1
    dense = np.zeros((n_docs, n_terms), dtype=np.float64)
    for t in range(n_terms):
        s, e = term_ptr[t], term_ptr[t + 1]
        dense[np.asarray(doc_ids[s:e]), t] = impacts[s:e]
    return dense


def dense_from_rows(indptr: NDArray, term_ids: NDArray, weights: NDArray, n_terms: int) -> NDArray:
    n_docs = len(indptr) - 1
    dense = np.zeros((n_docs, n_terms), dtype=np.float64)
    for d in range(n_docs):
        s, e = indptr[d], indptr[d + 1]
        dense[d, term_ids[s:e]] = weights[s:e]
    return dense


def reference_topk(
    dense: NDArray,
    q_terms: NDArray,
    q_weights: NDArray,
    k: int,
    live: NDArray | None = None,
    threshold: float = 0,
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Top-k (doc ids, scores) of one query against a dense doc-term matrix; with ``live`` (bool[n_docs])
    only live docs, with ``threshold`` only docs scoring above it."""
    q = np.zeros(dense.shape[1], dtype=np.float64)
    q[np.asarray(q_terms, dtype=np.int64)] = q_weights
    scores = dense @ q
    matched = (dense[:, np.asarray(q_terms, dtype=np.int64)] > 0).any(axis=1) & (scores > threshold)
    if live is not None:
        matched &= np.asarray(live, dtype=bool)
    candidates = np.flatnonzero(matched)
    order = np.lexsort((candidates, -scores[candidates]))[:k]
    return candidates[order], scores[candidates[order]]


def reference_budget_topk(
    dense: NDArray, q_terms: NDArray, q_weights: NDArray, k: int, block_size: int, budget: int
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Approx mode's budget: the top-k among the documents of the ``ceil(budget / block_size)`` blocks
    with the highest upper bounds (sum over query terms of weight x the term's largest impact in the
    block; ties: lower block id; only blocks with a bound > 0)."""
    n_docs = dense.shape[0]
    n_blocks = -(-n_docs // block_size)
    padded = np.zeros((n_blocks * block_size, dense.shape[1]))
    padded[:n_docs] = dense
    block_max = padded.reshape(n_blocks, block_size, -1).max(axis=1)
    q = np.zeros(dense.shape[1], dtype=np.float64)
    q[np.asarray(q_terms, dtype=np.int64)] = q_weights
    bounds = block_max @ q
    order = np.lexsort((np.arange(n_blocks), -bounds))
    chosen = [b for b in order[: max(1, -(-budget // block_size))] if bounds[b] > 0]
    allowed = np.zeros(n_docs, dtype=bool)
    for b in chosen:
        allowed[b * block_size : (b + 1) * block_size] = True
    return reference_topk(dense, q_terms, q_weights, k, live=allowed)
