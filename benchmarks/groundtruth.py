"""Exact top-k ground truth and recall against it.

Ground truth is exhaustive scoring in float64 (SciPy sparse products of the float32
weights read from the JSONL files), ranked by score descending with ties broken by
document position (the order of the documents file), the rule our own scorer uses.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from lsr.index.sparse import SparseBatch
from lsr.index.topk import top_k

logger = logging.getLogger(__name__)

_QUERY_CHUNK = 16


def term_major_matrix(docs: SparseBatch, n_terms: int, dtype: type = np.float64):
    """The documents as a SciPy CSR matrix of shape (n_terms, n_docs): row t is term t's posting list."""
    from scipy import sparse

    doc_major = sparse.csr_matrix(
        (docs.weights.astype(dtype), docs.term_ids, docs.indptr), shape=(len(docs), n_terms)
    )
    return doc_major.T.tocsr()


def query_matrix(queries: SparseBatch, n_terms: int, dtype: type = np.float64):
    from scipy import sparse

    return sparse.csr_matrix(
        (queries.weights.astype(dtype), queries.term_ids, queries.indptr), shape=(len(queries), n_terms)
    )


def topk_row(scores: NDArray, docs: NDArray, k: int) -> NDArray[np.int64]:
    """Top-``k`` of one sparse score row: score descending, then doc ascending; only scores > 0."""
    return top_k(scores, k, docs, positive=True)[0]


def exact_topk(docs: SparseBatch, queries: SparseBatch, n_terms: int, k: int) -> list[NDArray[np.int64]]:
    """Exact top-``k`` document positions of every query (a list: queries may match fewer than k)."""
    matrix = term_major_matrix(docs, n_terms)
    qmat = query_matrix(queries, n_terms)
    out: list[NDArray[np.int64]] = []
    for start in range(0, len(queries), _QUERY_CHUNK):
        block = (qmat[start : start + _QUERY_CHUNK] @ matrix).tocsr()
        for i in range(block.shape[0]):
            lo, hi = block.indptr[i], block.indptr[i + 1]
            out.append(topk_row(block.data[lo:hi], block.indices[lo:hi], k))
    return out


def recall_at_k(truth: Sequence[NDArray[np.int64]], found: Sequence[Sequence[int]], k: int) -> float:
    """Mean over queries with a non-empty truth of |found[:k] & truth[:k]| / |truth[:k]|."""
    values = []
    for t, f in zip(truth, found, strict=True):
        top = set(np.asarray(t)[:k].tolist())
        if top:
            values.append(len(top & set(list(f)[:k])) / len(top))
    return float(np.mean(values)) if values else 1.0


def identical_fraction(a: Sequence[Sequence[int]], b: Sequence[Sequence[int]], k: int) -> float:
    """Share of queries whose top-``k`` lists are identical, order included."""
    same = [list(x)[:k] == list(y)[:k] for x, y in zip(a, b, strict=True)]
    return float(np.mean(same)) if same else 1.0
