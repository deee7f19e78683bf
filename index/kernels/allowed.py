"""Scoring only the allowed documents of a selective filter, straight from the posting lists.

A filter that allows few documents (``allowed`` int32[n], ascending internal doc ids, deleted docs
already removed) is cheaper to serve by intersecting each query term's posting list with that list
than by ordering every block of the collection: per term, the shorter of the two lists is walked and
the longer one is galloped (exponential then binary search), so a term costs about
``min(len) x log(max(len) / min(len))`` steps. Scores accumulate per allowed document in ascending
query-term order, ``w * impact`` as every other kernel adds them, so the scores are bit-identical to
exhaustive search and the top-k (score descending, then doc id) is exactly the filtered exhaustive
top-k, in every mode.

The segments of a live index are handled with ``base`` (a segment's first global doc id): the
allowed ids are global, the postings local, and documents enter the shared heap with global ids.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from lsr.index.kernels.topk import heap_drain_sorted, heap_offer, may_enter

# a term with at most this many postings per allowed doc is scanned whole (a bit test per posting,
# about 1 ns) rather than galloped (an exponential and a binary search per allowed doc)
SCAN_RATIO = 16


@njit(cache=True, nogil=True, inline="always")
def _gallop(arr, lo, end, target, shift):
    """The first position p in [lo, end) with arr[p] - shift >= target (end if none)."""
    if lo >= end or arr[lo] - shift >= target:
        return lo
    step = 1
    while lo + step < end and arr[lo + step] - shift < target:
        lo += step
        step *= 2
    hi = min(lo + step, end)  # arr[lo] < target <= arr[hi] (or hi == end)
    lo += 1
    while lo < hi:
        mid = (lo + hi) >> 1
        if arr[mid] - shift < target:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def _allowed_segment(postings, allowed, base, bits, rank, q_terms, q_weights, acc, hs, hd, size, k):
    """Score the allowed docs of one segment (``allowed``: their global ids, all in this segment, the
    first at position ``rank[allowed[0]]`` of all allowed ids) into ``acc`` (float32[len(allowed)],
    zero on entry and left zero), offer them to the heap; return its size. ``bits`` (bit g of byte
    g >> 3, global ids) and ``rank`` (int32 by global id: position among the allowed ids) let a term
    with at most SCAN_RATIO x as many postings as allowed docs be scanned whole, one bit test per
    posting; a longer list is galloped, one search per allowed doc."""
    term_ptr, doc_ids, impacts = postings
    n = allowed.shape[0]
    if n == 0:
        return size
    first = rank[allowed[0]]
    for i in range(q_terms.shape[0]):
        t = q_terms[i]
        w = q_weights[i]
        s = term_ptr[t]
        e = term_ptr[t + 1]
        if e - s <= SCAN_RATIO * n:  # walk the postings, test each doc's bit
            for p in range(s, e):
                g = doc_ids[p] + base
                if (bits[g >> 3] >> (g & 7)) & 1:
                    acc[rank[g] - first] += w * np.float32(impacts[p])
        else:  # walk the allowed ids, gallop the postings
            p = s
            for a in range(n):
                d = allowed[a] - base
                p = _gallop(doc_ids, p, e, d, 0)
                if p == e:
                    break
                if doc_ids[p] == d:
                    acc[a] += w * np.float32(impacts[p])
    for a in range(n):
        score = acc[a]
        if score > 0:
            if may_enter(hs, size, k, score):
                size = heap_offer(hs, hd, size, k, score, allowed[a])
            acc[a] = 0
    return size


@njit(cache=True, nogil=True)
def _allowed_query(
    segs, n_terms, bases, allowed, allowed_ptr, bits, rank, q_terms, q_weights, k, ws, out_docs, out_scores
):
    """One query over segments ``segs`` (a typed list of their (term_ptr, doc_ids, impacts));
    ``n_terms``, ``bases`` per segment; segment i's allowed ids are
    ``allowed[allowed_ptr[i]:allowed_ptr[i + 1]]``."""
    acc, hs, hd = ws
    size = 0
    for i in range(len(segs)):
        m = np.searchsorted(q_terms, n_terms[i])
        lo = allowed_ptr[i]
        hi = allowed_ptr[i + 1]
        size = _allowed_segment(
            segs[i],
            allowed[lo:hi],
            bases[i],
            bits,
            rank,
            q_terms[:m],
            q_weights[:m],
            acc[: hi - lo],
            hs,
            hd,
            size,
            k,
        )
    return heap_drain_sorted(hs, hd, size, out_scores, out_docs)


@njit(cache=True, nogil=True)
def _allowed_workspace(n_allowed, k):
    return np.zeros(n_allowed, np.float32), np.empty(k, np.float32), np.empty(k, np.int32)


@njit(cache=True, nogil=True)
def _allowed_search_one(segs, n_terms, bases, allowed, allowed_ptr, bits, rank, q_terms, q_weights, k):
    ws = _allowed_workspace(allowed.shape[0], k)
    out_docs = np.empty(k, np.int32)
    out_scores = np.empty(k, np.float32)
    n = _allowed_query(
        segs,
        n_terms,
        bases,
        allowed,
        allowed_ptr,
        bits,
        rank,
        q_terms,
        q_weights,
        k,
        ws,
        out_docs,
        out_scores,
    )
    return out_docs[:n], out_scores[:n]


@njit(cache=True, nogil=True, parallel=True)
def _allowed_search_batch(
    segs,
    n_terms,
    bases,
    allowed,
    allowed_ptr,
    bits,
    rank,
    q_indptr,
    q_terms,
    q_weights,
    k,
    n_workers,
    out_docs,
    out_scores,
    out_counts,
):
    """Queries in parallel: worker c takes queries c, c + n_workers, ... with its own accumulator."""
    n_queries = q_indptr.shape[0] - 1
    for c in prange(n_workers):
        ws = _allowed_workspace(allowed.shape[0], k)
        for q in range(c, n_queries, n_workers):
            s = q_indptr[q]
            e = q_indptr[q + 1]
            out_counts[q] = _allowed_query(
                segs,
                n_terms,
                bases,
                allowed,
                allowed_ptr,
                bits,
                rank,
                q_terms[s:e],
                q_weights[s:e],
                k,
                ws,
                out_docs[q],
                out_scores[q],
            )


@njit(cache=True, nogil=True)
def _posting_sums(term_ptr, terms, cap):
    """The postings of ``terms`` (int32[m]), and the sum of min(postings, ``cap``) over them: what the
    cost model of a filtered query reads (lsr.index.search.Filtered.costs)."""
    total = 0
    capped = 0
    for i in range(terms.shape[0]):
        df = term_ptr[terms[i] + 1] - term_ptr[terms[i]]
        total += df
        capped += min(df, cap)
    return total, capped
