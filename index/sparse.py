"""SparseBatch: a batch of sparse vectors in CSR form, and the dtype constants.

Layout and invariants (checked by :meth:`SparseBatch.validate`):
    indptr   int64[n_rows + 1], indptr[0] == 0, non-decreasing, indptr[-1] == nnz
    term_ids int32[nnz], strictly ascending within each row, in [0, n_terms)
    weights  float32[nnz], finite and > 0
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

PTR_DTYPE = np.int64
TERM_DTYPE = np.int32
DOC_DTYPE = np.int32
WEIGHT_DTYPE = np.float32
SCORE_DTYPE = np.float32


@dataclass(frozen=True)
class SparseBatch:
    """``n_rows`` sparse vectors over a vocabulary, in CSR form."""

    indptr: NDArray[np.int64]
    term_ids: NDArray[np.int32]
    weights: NDArray[np.float32]

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    def row(self, i: int) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
        s, e = self.indptr[i], self.indptr[i + 1]
        return self.term_ids[s:e], self.weights[s:e]

    def row_nnz(self) -> NDArray[np.int64]:
        return np.diff(self.indptr)

    def slice(self, start: int, end: int) -> SparseBatch:
        """Rows ``[start, end)`` as a batch: views of the arrays, ``indptr`` rebased to 0."""
        lo, hi = self.indptr[start], self.indptr[end]
        return SparseBatch(self.indptr[start : end + 1] - lo, self.term_ids[lo:hi], self.weights[lo:hi])

    def chunks(self, rows: int) -> Iterator[SparseBatch]:
        """Consecutive batches of at most ``rows`` rows."""
        for start in range(0, len(self), rows):
            yield self.slice(start, min(start + rows, len(self)))

    @classmethod
    def empty(cls) -> SparseBatch:
        return cls(np.zeros(1, PTR_DTYPE), np.zeros(0, TERM_DTYPE), np.zeros(0, WEIGHT_DTYPE))

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[ArrayLike, ArrayLike]]) -> SparseBatch:
        """Build a batch from ``(term_ids, weights)`` pairs.

        Repeated terms within a row are summed (a query "a a b" weighs "a"
        twice); terms are sorted. Weights must be finite and > 0.
        """
        indptr = [0]
        terms: list[NDArray] = []
        weights: list[NDArray] = []
        for t, w in rows:
            t_arr, w_arr = canonical_row(np.asarray(t, dtype=np.int64), np.asarray(w, dtype=np.float64))
            terms.append(t_arr)
            weights.append(w_arr)
            indptr.append(indptr[-1] + len(t_arr))
        if not terms:
            return cls.empty()
        return cls(
            np.asarray(indptr, dtype=PTR_DTYPE),
            np.concatenate(terms).astype(TERM_DTYPE),
            np.concatenate(weights).astype(WEIGHT_DTYPE),
        )

    def validate(self, n_terms: int | None = None) -> SparseBatch:
        """Check the CSR invariants; raise ValueError naming the first violation."""
        for name, arr, dtype in (
            ("indptr", self.indptr, PTR_DTYPE),
            ("term_ids", self.term_ids, TERM_DTYPE),
            ("weights", self.weights, WEIGHT_DTYPE),
        ):
            if not isinstance(arr, np.ndarray) or arr.ndim != 1:
                raise ValueError(f"SparseBatch.{name} must be a 1-d numpy array")
            if arr.dtype != dtype:
                raise ValueError(f"SparseBatch.{name} has dtype {arr.dtype}, expected {np.dtype(dtype)}")
        ip = self.indptr
        nnz = len(self.term_ids)
        if len(ip) == 0 or ip[0] != 0 or ip[-1] != nnz or len(self.weights) != nnz:
            raise ValueError("SparseBatch: indptr must start at 0 and end at len(term_ids) == len(weights)")
        if np.any(np.diff(ip) < 0):
            raise ValueError("SparseBatch: indptr must be non-decreasing")
        if len(self.term_ids):
            if self.term_ids.min() < 0 or (n_terms is not None and self.term_ids.max() >= n_terms):
                raise ValueError(
                    f"SparseBatch: term ids must lie in [0, {n_terms}); got "
                    f"[{self.term_ids.min()}, {self.term_ids.max()}]"
                )
            step = np.diff(self.term_ids.astype(np.int64))
            row_start = np.zeros(len(self.term_ids), dtype=bool)
            row_start[ip[:-1][ip[:-1] < len(self.term_ids)]] = True
            if np.any((step <= 0) & ~row_start[1:]):
                raise ValueError("SparseBatch: term ids must be strictly ascending within each row")
        bad = ~np.isfinite(self.weights) | (self.weights <= 0)
        if np.any(bad):
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"SparseBatch: weights must be finite and > 0; got {self.weights[i]} at {i}")
        return self


def canonical_row(term_ids: NDArray, weights: NDArray) -> tuple[NDArray, NDArray]:
    """Sort a row by term id, sum repeated terms, check weights. Returns (int64, float64)."""
    if term_ids.shape != weights.shape or term_ids.ndim != 1:
        raise ValueError(
            f"term_ids and weights must be 1-d of equal length; got {term_ids.shape} and {weights.shape}"
        )
    bad = ~np.isfinite(weights) | (weights <= 0)
    if np.any(bad):
        raise ValueError(f"weights must be finite and > 0; got {weights[bad][0]!r}")
    if len(term_ids) < 2 or bool(np.all(term_ids[1:] > term_ids[:-1])):  # already canonical: no sort
        return term_ids.astype(np.int64), weights.astype(np.float64)
    order = np.argsort(term_ids, kind="stable")
    ordered = term_ids[order]
    if bool(np.all(ordered[1:] > ordered[:-1])):  # no repeats: a sort is all it needs
        return ordered.astype(np.int64), weights[order].astype(np.float64)
    uniq, inverse = np.unique(term_ids, return_inverse=True)
    summed = np.zeros(len(uniq), dtype=np.float64)
    np.add.at(summed, inverse, weights)
    return uniq, summed


def concat(batches: Sequence[SparseBatch]) -> SparseBatch:
    """Stack batches row-wise."""
    if not batches:
        return SparseBatch.empty()
    offsets = np.cumsum([0] + [b.nnz for b in batches[:-1]])
    indptr = np.concatenate([[0]] + [b.indptr[1:] + o for b, o in zip(batches, offsets, strict=True)])
    return SparseBatch(
        indptr.astype(PTR_DTYPE),
        np.concatenate([b.term_ids for b in batches]).astype(TERM_DTYPE),
        np.concatenate([b.weights for b in batches]).astype(WEIGHT_DTYPE),
    )
