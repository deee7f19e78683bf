"""Gathering a filter's allowed documents into an index of their own (``lsr.index.subindex``).

The sub-index's doc ids are the allowed docs' positions among the allowed ids (ascending). Two ways:

* from the postings (any index): the allowed docs are given as bits by global doc id (bit g of byte
  g >> 3) and ``rank`` (int32 by global id); each segment's posting lists are scanned once to count,
  once to copy, one bit test per posting; the segments come in global id order, so each term's
  gathered postings ascend. Cost: every posting of the index, twice.
* from the forward index (rescoring indexes): the allowed docs' rows, transposed to term order, say
  which postings to gather; each one's impact is found in its term's posting list (galloped when
  the term has many more postings than allowed docs). Cost: about the allowed docs' forward entries
  times the log of the gap between them in a posting list.

Terms are split over the threads (``prange``); a term's postings are written by one thread only.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from lsr.index.kernels.allowed import SCAN_RATIO, _gallop


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


@njit(cache=True, nogil=True)
def _transpose_rows(fwd_indptr, fwd_terms, rows, sub_ptr, sub_docs):
    """The forward rows ``rows`` term by term: ``sub_ptr`` (int64[n_terms + 1], zero on entry) and
    ``sub_docs`` (the row's position in ``rows``, ascending within a term)."""
    for i in range(rows.shape[0]):
        for p in range(fwd_indptr[rows[i]], fwd_indptr[rows[i] + 1]):
            sub_ptr[np.int64(fwd_terms[p]) + 1] += 1
    for t in range(sub_ptr.shape[0] - 1):
        sub_ptr[t + 1] += sub_ptr[t]
    cursor = sub_ptr[:-1].copy()
    for i in range(rows.shape[0]):
        for p in range(fwd_indptr[rows[i]], fwd_indptr[rows[i] + 1]):
            t = np.int64(fwd_terms[p])
            sub_docs[cursor[t]] = i
            cursor[t] += 1


@njit(cache=True, nogil=True, parallel=True)
def _find_impacts(term_ptr, doc_ids, impacts, sub_ptr, sub_docs, rows, out_impacts):
    """The impact of each (term, doc) of the transposed rows, found in the term's posting list: a
    list at most SCAN_RATIO x as long as the term's docs there is walked, a longer one galloped.
    Returns how many were not found (0 unless the forward index and the postings disagree)."""
    missing = 0
    for t in prange(sub_ptr.shape[0] - 1):
        e = term_ptr[t + 1]
        p = term_ptr[t]
        walk = e - p <= SCAN_RATIO * (sub_ptr[t + 1] - sub_ptr[t])
        for q in range(sub_ptr[t], sub_ptr[t + 1]):
            g = rows[sub_docs[q]]
            if walk:
                while p < e and doc_ids[p] < g:
                    p += 1
            else:
                p = _gallop(doc_ids, p, e, g, 0)
            if p < e and doc_ids[p] == g:
                out_impacts[q] = impacts[p]
            else:
                missing += 1
    return missing
