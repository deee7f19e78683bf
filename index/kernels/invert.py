"""Forward (CSR, doc-major) to inverted (CSC, term-major) scatter.

Rows arrive in doc order, so writing each posting at its term's fill cursor
keeps doc ids ascending within every posting list without a sort.
"""

from __future__ import annotations

from numba import njit


@njit(cache=True, nogil=True)
def _scatter_postings(indptr, term_ids, impacts, doc_offset, fill_pos, out_doc_ids, out_impacts):
    for r in range(indptr.shape[0] - 1):
        d = doc_offset + r
        for p in range(indptr[r], indptr[r + 1]):
            t = term_ids[p]
            pos = fill_pos[t]
            out_doc_ids[pos] = d
            out_impacts[pos] = impacts[p]
            fill_pos[t] = pos + 1
