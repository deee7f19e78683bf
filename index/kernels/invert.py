"""Forward (CSR, doc-major) to inverted (CSC, term-major) scatter.

Rows arrive in doc order, so writing each posting at its term's fill cursor
keeps doc ids ascending within every posting list without a sort, unless a
reordering maps rows to other ids (then ``_sort_postings`` restores the order).

The parallel scatter is a counting sort: the batch's rows are cut into consecutive chunks, each
chunk counts its postings per term, a term's postings of chunk c start after those of chunks
0..c-1, and the chunks then scatter in parallel. Within a term every posting lands where the
serial row-by-row scatter puts it, so the output does not depend on the number of chunks.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange


@njit(cache=True, nogil=True)
def _scatter_rows_at(indptr, term_ids, impacts, new_ids, lo, hi, cursor, out_doc_ids, out_impacts):
    """Rows [lo, hi) of the batch at their terms' cursors (advanced)."""
    for r in range(lo, hi):
        d = new_ids[r]
        for p in range(indptr[r], indptr[r + 1]):
            t = term_ids[p]
            pos = cursor[t]
            out_doc_ids[pos] = d
            out_impacts[pos] = impacts[p]
            cursor[t] = pos + 1


@njit(cache=True, nogil=True, parallel=True)
def _scatter_postings(indptr, term_ids, impacts, new_ids, fill_pos, out_doc_ids, out_impacts, n_chunks):
    """Row r of the batch becomes doc new_ids[r], its postings written at their terms' cursors
    ``fill_pos`` (advanced past the batch). The rows are cut into ``n_chunks`` consecutive chunks
    scattered in parallel (a counting sort; the same output for every ``n_chunks`` >= 1). With
    ascending new ids (no reordering) the lists come out sorted; a reordering permutation needs
    _sort_postings after."""
    n_rows = indptr.shape[0] - 1
    n_terms = fill_pos.shape[0]
    cursors = np.zeros((n_chunks, n_terms), np.int64)
    for c in prange(n_chunks):
        lo = c * n_rows // n_chunks
        hi = (c + 1) * n_rows // n_chunks
        row = cursors[c]
        for p in range(indptr[lo], indptr[hi]):
            row[term_ids[p]] += 1
    for t in prange(n_terms):  # counts -> each chunk's first position per term
        pos = fill_pos[t]
        for c in range(n_chunks):
            n = cursors[c, t]
            cursors[c, t] = pos
            pos += n
        fill_pos[t] = pos
    for c in prange(n_chunks):
        lo = c * n_rows // n_chunks
        hi = (c + 1) * n_rows // n_chunks
        _scatter_rows_at(indptr, term_ids, impacts, new_ids, lo, hi, cursors[c], out_doc_ids, out_impacts)


@njit(cache=True, nogil=True, parallel=True)
def _sort_postings(term_ptr, doc_ids, impacts):
    """Sort every posting list by doc id, carrying impacts along (terms in parallel; a list's doc ids are
    distinct, so its order is unique). A list sorts one int64 key per posting, doc id << 32 | its
    position, then gathers its impacts by the positions (a plain sort of keys beats an argsort)."""
    for t in prange(term_ptr.shape[0] - 1):
        s = term_ptr[t]
        e = term_ptr[t + 1]
        if e - s < 2:
            continue
        keys = np.empty(e - s, np.int64)
        for i in range(e - s):
            keys[i] = (np.int64(doc_ids[s + i]) << 32) | i
        keys.sort()
        old = impacts[s:e].copy()
        for i in range(e - s):
            doc_ids[s + i] = keys[i] >> 32
            impacts[s + i] = old[keys[i] & 0xFFFFFFFF]


@njit(cache=True, nogil=True, parallel=True)
def _quantize_linear(weights, scale, max_impact, out):
    """``out[i] = clip(rint(float64(weights[i]) / scale), 1, max_impact)``: numpy's
    ``np.clip(np.rint(w.astype(float64) / scale), 1, max)`` element by element, in parallel."""
    for i in prange(weights.shape[0]):
        q = np.rint(np.float64(weights[i]) / scale)
        if q < 1.0:
            q = 1.0
        elif q > max_impact:
            q = max_impact
        out[i] = q


def scatter_chunks(nnz: int, n_terms: int) -> int:
    """How many row chunks a parallel scatter of ``nnz`` postings over ``n_terms`` terms uses: one per
    numba thread, fewer when the per-chunk arrays over the vocabulary would outweigh the postings."""
    return max(1, min(numba.get_num_threads(), nnz // (4 * max(n_terms, 1))))
