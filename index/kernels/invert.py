"""Forward (CSR, doc-major) to inverted (CSC, term-major) scatter.

Rows arrive in doc order, so writing each posting at its term's fill cursor
keeps doc ids ascending within every posting list without a sort, unless a
reordering maps rows to other ids (then ``_sort_postings`` restores the order).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _scatter_postings(indptr, term_ids, impacts, new_ids, fill_pos, out_doc_ids, out_impacts):
    """Row r of the batch becomes doc new_ids[r]. With ascending new ids (no reordering) the lists come
    out sorted; a reordering permutation needs _sort_postings after."""
    for r in range(indptr.shape[0] - 1):
        d = new_ids[r]
        for p in range(indptr[r], indptr[r + 1]):
            t = term_ids[p]
            pos = fill_pos[t]
            out_doc_ids[pos] = d
            out_impacts[pos] = impacts[p]
            fill_pos[t] = pos + 1


@njit(cache=True, nogil=True)
def _sort_postings(term_ptr, doc_ids, impacts):
    """Sort every posting list by doc id, carrying impacts along."""
    for t in range(term_ptr.shape[0] - 1):
        s = term_ptr[t]
        e = term_ptr[t + 1]
        if e - s < 2:
            continue
        order = np.argsort(doc_ids[s:e])
        doc_ids[s:e] = doc_ids[s:e][order]
        impacts[s:e] = impacts[s:e][order]
