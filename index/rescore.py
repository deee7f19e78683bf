"""Exact rescoring: no recall lost to quantized impacts.

An index with integer impacts can keep a **forward index of exact weights** beside its postings
(``BuildOptions.forward = "float32"``): per internal document its term ids and
weights, memory-mapped, plus ``term_err[t]``, the largest quantization error of a posting of term t
(``|weight - scale x impact|``, measured at build time, so the floor of 1 and clipping are counted).

A query's exact score of doc d, ``S(d) = sum_t q_t w_dt``, and its quantized score
``Q(d) = scale x sum_t q_t impact_dt`` differ by at most ``E = sum_t q_t term_err[t]``. The search
takes the top ``k'`` of the quantized pass, rescores them exactly and keeps the best k. Every doc
left out has ``Q(d) <= Q_k'`` (the k'-th quantized score), hence ``S(d) <= Q_k' + E``; if the k-th
exact score beats that strictly (with a margin for the kernel's float32 sums), no doc left out can
reach the top k, and the result is the top-k of exhaustive exact scoring, ties broken by doc id.
Otherwise ``k'`` grows 4x and the query runs again (exact and safe modes; approx rescores its
candidates once and guarantees nothing). Rescored scores are float64 sums, returned as float32.

The weights are stored as float32, so the result equals exhaustive float scoring of the encoder's
weights; float16 would halve the weights' bytes but change near-ties against float32 scoring (and
numba has no float16 arithmetic).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from lsr.index.io import save_array
from lsr.index.kernels.invert import scatter_chunks
from lsr.index.kernels.rescore import (
    _best_k,
    _error_bound,
    _rescore_batch,
    _rescore_one,
    _rescore_postings_batch,
    _rescore_postings_one,
    _scatter_rows,
)
from lsr.index.sparse import SparseBatch

if TYPE_CHECKING:
    from lsr.index.search import Filtered, Index, SearchParams

FORWARD_CHOICES = ("none", "float32")
FORWARD_DTYPES: dict[str, type[np.floating]] = {"float32": np.float32}
ARRAYS = ("fwd_indptr", "fwd_terms", "fwd_weights", "term_err")
GROWTH = 4  # k' grows by this factor when the bound does not prove the top k


def first_depth(k: int) -> int:
    """Candidates of the first quantized pass: 2k, at least k + 16."""
    return max(2 * k, k + 16)


class ForwardWriter:
    """Writes the forward arrays during the build's second pass, rows scattered to internal order."""

    def __init__(
        self,
        tmp: Path,
        row_nnz: NDArray[np.int64],
        perm: NDArray | None,
        n_terms: int,
        dtype: str,
        scale: float,
    ):
        n_docs = len(row_nnz)
        lengths = row_nnz if perm is None else row_nnz[perm]
        self.indptr = np.zeros(n_docs + 1, np.int64)
        np.cumsum(lengths, out=self.indptr[1:])
        internal = np.arange(n_docs) if perm is None else np.argsort(perm)  # input row -> internal id
        self.row_start = self.indptr[:-1][internal]
        term_dtype = np.uint16 if n_terms <= 1 << 16 else np.int32
        nnz = int(self.indptr[-1])
        self.tmp = tmp
        self.terms = np.lib.format.open_memmap(tmp / "fwd_terms.npy", "w+", dtype=term_dtype, shape=(nnz,))
        self.weights = np.lib.format.open_memmap(
            tmp / "fwd_weights.npy", "w+", dtype=FORWARD_DTYPES[dtype], shape=(nnz,)
        )
        self.term_err = np.zeros(n_terms, np.float64)
        self.scale = float(scale)
        self.dtype = dtype

    def add(self, batch: SparseBatch, impacts: NDArray, offset: int) -> None:
        """Rows ``offset .. offset + len(batch)`` of the input, with their quantized impacts."""
        starts = self.row_start[offset : offset + len(batch)]
        _scatter_rows(
            batch.indptr,
            batch.term_ids,
            batch.weights,
            impacts,
            self.scale,
            starts,
            self.terms,
            self.weights,
            self.term_err,
            scatter_chunks(batch.nnz, len(self.term_err)),
        )

    def finish(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Flush; return (array specs for meta["arrays"], the meta ``forward`` section)."""
        specs = {}
        for name, arr in (("fwd_terms", self.terms), ("fwd_weights", self.weights)):
            arr.flush()
            specs[name] = {"dtype": str(arr.dtype), "shape": list(arr.shape)}
        del self.terms, self.weights
        specs["fwd_indptr"] = save_array(self.tmp, "fwd_indptr", self.indptr)
        specs["term_err"] = save_array(self.tmp, "term_err", self.term_err)
        section = {"dtype": self.dtype, "max_error": float(self.term_err.max(initial=0.0))}
        return specs, section


class Forward:
    """The loaded forward arrays of an index (memory-mapped)."""

    def __init__(self, arrays: dict[str, np.ndarray], scale: float):
        self.indptr = arrays["fwd_indptr"]
        self.terms = arrays["fwd_terms"]
        self.weights = arrays["fwd_weights"]
        self.term_err = arrays["term_err"]
        self.scale = float(scale)
        self._local = threading.local()  # per thread: the query-weight table of :meth:`rescore`

    @classmethod
    def from_index_arrays(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Forward | None:
        if not all(name in arrays for name in ARRAYS):
            return None
        return cls(arrays, meta["impacts"]["scale"])

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in (self.indptr, self.terms, self.weights, self.term_err)))

    def weight(self, doc: int, term: int) -> float:
        """The stored exact weight of ``term`` in internal doc ``doc`` (0 when absent)."""
        lo, hi = int(self.indptr[doc]), int(self.indptr[doc + 1])
        row = np.asarray(self.terms[lo:hi])
        i = int(np.searchsorted(row, term))
        return float(self.weights[lo + i]) if i < len(row) and row[i] == term else 0.0

    def rescore(self, docs: NDArray, terms: NDArray, weights: NDArray) -> NDArray[np.float64]:
        """Exact scores of ``docs`` for a checked query (float64, see _rescore_one)."""
        lut = getattr(self._local, "lut", None)
        if lut is None:  # one zeroed table per thread, reused: the kernel leaves it zero
            lut = self._local.lut = np.zeros(len(self.term_err), np.float32)
        return _rescore_one(self.indptr, self.terms, self.weights, docs, terms, weights, lut)

    def rescore_batch(self, queries: SparseBatch, docs: NDArray, counts: NDArray, out: NDArray) -> None:
        """out[q, j] = the exact score of docs[q, j] for j < counts[q] (checked queries)."""
        q = (queries.indptr, queries.term_ids, queries.weights)
        _rescore_batch(self.indptr, self.terms, self.weights, *q, docs, counts, out)

    def proven(
        self, exact: NDArray, last_kernel_score: float, k: int, terms: NDArray, weights: NDArray
    ) -> bool:
        """Whether no doc outside the candidates can enter the exact top k (see the module doc)."""
        if len(exact) < k:
            return False
        kth = np.partition(exact, len(exact) - k)[len(exact) - k]
        slack = 1.0 + (len(terms) + 2) * 2.0**-23  # the kernel's float32 sums of len(terms) products
        outside = float(last_kernel_score) * slack * self.scale + _error_bound(self.term_err, terms, weights)
        return bool(kth > outside)


class PostingsScores:
    """The candidates' scores for a whole query read back from an index's own posting lists (binary
    search of each candidate in each query term's list), for an index without a forward index: what
    exhaustive scoring of that index gives them, in float64 times its scale. An approx query pruned to
    its heaviest terms (``beta`` < 1, the pruned lists' query cut) finds candidates with the pruned
    query and ranks them by this score of the whole query (two-step SPLADE). With float32 impacts that
    is the encoder's exact score; with integer impacts the quantized one."""

    def __init__(self, term_ptr: NDArray, doc_ids: NDArray, impacts: NDArray, scale: float):
        self.postings = (term_ptr, doc_ids, impacts)
        self.scale = float(scale)

    def rescore(self, docs: NDArray, terms: NDArray, weights: NDArray) -> NDArray[np.float64]:
        """Scores of ``docs`` (distinct internal ids) for a checked query."""
        return _rescore_postings_one(*self.postings, docs, terms, weights) * self.scale

    def rescore_batch(self, queries: SparseBatch, docs: NDArray, counts: NDArray, out: NDArray) -> None:
        """out[q, j] = the score of docs[q, j] for j < counts[q] (checked queries)."""
        q = (queries.indptr, queries.term_ids, queries.weights)
        _rescore_postings_batch(*self.postings, *q, docs, counts, out)
        out *= self.scale

    def proven(
        self, exact: NDArray, last_kernel_score: float, k: int, terms: NDArray, weights: NDArray
    ) -> bool:
        """False: only approx (which proves nothing and stops after one pass) rescores from postings."""
        return False


def best_k(docs: NDArray, exact: NDArray, k: int) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
    """The k best by exact score, ties by lower doc id."""
    return _best_k(docs, exact, k)


def rescored_search(
    index: Index,
    terms: NDArray[np.int32],
    weights: NDArray[np.float32],
    k: int,
    params: SearchParams,
    live: NDArray[np.uint8],
    full: tuple[NDArray[np.int32], NDArray[np.float32]] | None = None,
    depth: int | None = None,
    allowed: Filtered | None = None,
) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
    """One checked query's top k by exact score (see the module doc). ``terms``/``weights`` find the
    candidates (approx: the pruned query), ``full`` (default: the same) rescores them, as two-step
    SPLADE does; ``depth``: the first k'; ``allowed``: a filter's allowed docs, the candidates scored
    by the allowed-docs kernel (the same quantized scores as block-max search over ``live``)."""
    scorer = index.scorer
    full_terms, full_weights = full or (terms, weights)
    kk = min(depth or first_depth(k), max(index.n_docs, 1))
    while True:
        if allowed is not None:
            docs, scores = index.allowed_raw(allowed, terms, weights, kk)
        else:
            docs, scores = index.search_raw(terms, weights, kk, params, live=live)
        exact = scorer.rescore(docs, full_terms, full_weights)
        done = len(docs) < kk or kk >= index.n_docs or params.mode == "approx"
        if done or scorer.proven(exact, scores[-1], k, terms, weights):
            return best_k(docs, exact, k)
        kk = min(kk * GROWTH, index.n_docs)


def rescored_batch(
    index: Index,
    queries: SparseBatch,
    k: int,
    params: SearchParams,
    threads: int | None,
    live: NDArray[np.uint8],
    full: SparseBatch | None = None,
    allowed: Filtered | None = None,
) -> list[tuple[NDArray[np.int32], NDArray[np.float32]]]:
    """:func:`rescored_search` for a batch (``full``: the unpruned batch, default ``queries``): one
    batch pass at the first depth, rescored in parallel; the queries the bound does not prove run
    again one by one, deeper."""
    full = full or queries
    scorer = index.scorer
    kk = min(first_depth(k), max(index.n_docs, 1))
    if allowed is not None:
        out_docs, out_scores, counts = index.allowed_batch_raw(allowed, queries, kk, threads)
    else:
        out_docs, out_scores, counts = index.search_batch_raw(queries, kk, params, threads, live=live)
    exact = np.zeros(out_docs.shape, np.float64)
    scorer.rescore_batch(full, out_docs, counts, exact)
    results = []
    for i in range(len(queries)):
        n = int(counts[i])
        docs, ex = out_docs[i, :n], exact[i, :n]
        terms, weights = queries.row(i)
        done = n < kk or kk >= index.n_docs or params.mode == "approx"
        if done or scorer.proven(ex, out_scores[i, n - 1], k, terms, weights):
            results.append(best_k(docs, ex, k))
        else:
            deeper = rescored_search(
                index, terms, weights, k, params, live, full.row(i), kk * GROWTH, allowed
            )
            results.append(deeper)
    return results
