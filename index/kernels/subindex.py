"""Gathering a filter's allowed documents into an index of their own (``lsr.index.subindex``).

The allowed docs are given as bits by global doc id (bit g of byte g >> 3) and their positions
among the allowed ids (``rank``, int32 by global id), which become the sub-index's doc ids. Each
segment's posting lists are scanned once to count, once to copy, one bit test per posting; the
segments come in global id order, so each term's gathered postings ascend. Terms are split over
the threads (``prange``); a term's postings are written by one thread only.
"""

from __future__ import annotations

from numba import njit, prange


@njit(cache=True, nogil=True, parallel=True)
def _count_allowed(term_ptr, doc_ids, base, bits, counts):
    """Add to ``counts[t]`` the postings of term t whose doc (global id ``base + doc``) is allowed."""
    for t in prange(term_ptr.shape[0] - 1):
        c = 0
        for p in range(term_ptr[t], term_ptr[t + 1]):
            g = doc_ids[p] + base
            c += (bits[g >> 3] >> (g & 7)) & 1
        counts[t] += c


@njit(cache=True, nogil=True, parallel=True)
def _copy_allowed(term_ptr, doc_ids, impacts, base, bits, rank, cursor, out_docs, out_impacts):
    """Append term t's allowed postings at ``cursor[t]`` (advanced past them): the doc's rank among
    the allowed ids, and its impact."""
    for t in prange(term_ptr.shape[0] - 1):
        q = cursor[t]
        for p in range(term_ptr[t], term_ptr[t + 1]):
            g = doc_ids[p] + base
            if (bits[g >> 3] >> (g & 7)) & 1:
                out_docs[q] = rank[g]
                out_impacts[q] = impacts[p]
                q += 1
        cursor[t] = q


@njit(cache=True, nogil=True, parallel=True)
def _gather_rows(indptr, terms, weights, rows, out_indptr, out_terms, out_weights):
    """Forward rows ``rows`` (ascending doc ids) copied one after the other (``out_indptr``)."""
    for i in prange(rows.shape[0]):
        s = indptr[rows[i]]
        o = out_indptr[i]
        for j in range(out_indptr[i + 1] - o):
            out_terms[o + j] = terms[s + j]
            out_weights[o + j] = weights[s + j]
