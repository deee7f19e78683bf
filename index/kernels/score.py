"""Exhaustive term-at-a-time scoring over CSC posting lists.

Layout (see ``lsr.index.builder``):
    term_ptr  int64[n_terms + 1]   postings of term t are [term_ptr[t], term_ptr[t+1])
    doc_ids   int32[n_postings]    ascending within each term
    impacts   uint8 | uint16 | float32 [n_postings], > 0

A query is (q_terms int32[m], q_weights float32[m]) with distinct terms in
[0, n_terms) and weights > 0. Scores accumulate in a float32 array of n_docs
entries, in query-term order. Because every contribution is > 0, a document
matched by the query has a score > 0: the second pass over the same postings
collects each matched document once (``acc[d] > 0``) and resets its slot, so the
accumulator is clean again without a pass over all n_docs. A document is offered to
the heap only if it is live (``live`` uint8[n_docs], 1 = live; an empty array: all
live, the plain index) and its score beats ``threshold`` (the k-th score found in an
earlier segment of a live index, 0 otherwise: a document of a later segment ranks
below an earlier one at equal score, so it must beat the threshold strictly). For queries whose
lists hold more than n_docs / SCAN_RATIO postings, one sequential scan of the
accumulator (then a memset, when a batch worker reuses it) is cheaper, and gives the same heap: offers arrive
in another order, but the heap's total order (score, then doc id) decides. That scan
reads only the chunks of CHUNK documents whose largest live score reaches the k-th
largest of the chunks' maxima (a lower bound on the k-th best score).

Indices into the accumulator and the lists are unsigned (``np.uint32(doc)``, ranges
from 0): numba wraps negative signed indices around, and that test on every posting
kept LLVM from vectorizing and cost about half of the scoring loop's time.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from lsr.index.kernels.topk import heap_drain_sorted, heap_offer, may_enter

# default: collect by scanning all n_docs accumulator slots once the query has more than
# n_docs / SCAN_RATIO postings (0: never scan)
SCAN_RATIO = 8
# documents per chunk of the accumulator's scan (_collect_scan)
CHUNK = 16


@njit(cache=True, nogil=True)
def _score_query(
    term_ptr,
    doc_ids,
    impacts,
    q_terms,
    q_weights,
    acc,
    hs,
    hd,
    k,
    out_docs,
    out_scores,
    scan_ratio,
    live,
    thr,
    reuse,
):
    """Score one query; write its top-k (best first) into out_*; return how many. ``reuse``: the
    accumulator serves another query after this one, so it is left zero (a single query's is dropped)."""
    n_postings = 0
    for i in range(q_terms.shape[0]):
        t = q_terms[i]
        docs = doc_ids[term_ptr[t] : term_ptr[t + 1]]
        imps = impacts[term_ptr[t] : term_ptr[t + 1]]
        w = q_weights[i]
        for j in range(docs.shape[0]):
            acc[np.uint32(docs[j])] += w * np.float32(imps[j])
        n_postings += docs.shape[0]
    if n_postings * scan_ratio > acc.shape[0]:
        # long lists: one sequential scan of the accumulator beats revisiting the postings
        size = _collect_scan(acc, hs, hd, k, live, thr)
        if reuse:
            acc[:] = 0
        return heap_drain_sorted(hs, hd, size, out_scores, out_docs)
    size = 0
    all_live = live.shape[0] == 0
    for i in range(q_terms.shape[0]):
        t = q_terms[i]
        docs = doc_ids[term_ptr[t] : term_ptr[t + 1]]
        for j in range(docs.shape[0]):
            d = np.uint32(docs[j])
            s = acc[d]
            if s > 0:
                if s > thr and (all_live or live[d]) and may_enter(hs, size, k, s):
                    size = heap_offer(hs, hd, size, k, s, docs[j])
                acc[d] = 0
    return heap_drain_sorted(hs, hd, size, out_scores, out_docs)


@njit(cache=True, nogil=True)
def _chunk_maxima(acc, live):
    """int32[ceil(n / CHUNK)]: each chunk's largest score of a live document, as its float32 bits
    (scores are >= 0, so their bits order as the scores do; integer maxima vectorize, float ones
    do not). Without deletions the full chunks take a loop of exactly CHUNK steps, which LLVM
    unrolls and vectorizes (DL pool, 24,884 documents: 3.9 against 5.0 us); with them, that loop's
    select was slower than a loop to the chunk's end, so they keep it."""
    bits = acc.view(np.int32)
    n = np.uint64(bits.shape[0])
    chunk = np.uint64(CHUNK)
    n_chunks = (n + chunk - np.uint64(1)) // chunk
    out = np.empty(n_chunks, np.int32)
    if live.shape[0] == 0:
        n_full = n // chunk
        for c in range(n_full):
            lo = np.uint64(c) * chunk
            m = np.int32(0)
            for d in range(CHUNK):
                m = max(m, bits[lo + np.uint64(d)])
            out[c] = m
        if n_full < n_chunks:
            m = np.int32(0)
            for d in range(n_full * chunk, n):
                m = max(m, bits[d])
            out[n_full] = m
        return out
    for c in range(n_chunks):
        lo = np.uint64(c) * chunk
        m = np.int32(0)
        for d in range(lo, min(lo + chunk, n)):
            m = max(m, bits[d] if live[d] else np.int32(0))
        out[c] = m
    return out


@njit(cache=True, nogil=True)
def _kth_largest(values, k):
    """The k-th largest of ``values`` (int32 >= 0), 0 when there are fewer than k: a min-heap of k."""
    top = np.zeros(k, np.int32)
    for c in range(values.shape[0]):
        v = values[c]
        if v > top[0]:
            top[0] = v
            i = 0
            while True:
                child = 2 * i + 1
                if child >= k:
                    break
                if child + 1 < k and top[child + 1] < top[child]:
                    child += 1
                if top[child] >= top[i]:
                    break
                top[child], top[i] = top[i], top[child]
                i = child
    return top[0]


@njit(cache=True, nogil=True)
def _collect_scan(acc, hs, hd, k, live, thr):
    """Offer the accumulator's matched documents to the heap; return its size. Only chunks whose
    largest live score reaches the k-th largest chunk maximum are read: k live documents (one per
    such chunk) score at least that much, so no document of another chunk can enter the top k."""
    cmax = _chunk_maxima(acc, live)
    low = max(_kth_largest(cmax, k), np.int32(1))  # 1: the bits of the smallest score > 0
    n = np.uint64(acc.shape[0])
    chunk = np.uint64(CHUNK)
    all_live = live.shape[0] == 0
    size = 0
    for c in range(cmax.shape[0]):
        if cmax[c] < low:
            continue
        lo = np.uint64(c) * chunk
        for d in range(lo, min(lo + chunk, n)):
            s = acc[d]
            if s > thr and (all_live or live[d]) and may_enter(hs, size, k, s):
                size = heap_offer(hs, hd, size, k, s, np.int32(d))
    return size


@njit(cache=True, nogil=True)
def _search_one(term_ptr, doc_ids, impacts, n_docs, q_terms, q_weights, k, scan_ratio, live, thr):
    """One query on the calling thread (releases the GIL: callers may run it in threads)."""
    acc = np.zeros(n_docs, dtype=np.float32)
    hs = np.empty(k, dtype=np.float32)
    hd = np.empty(k, dtype=np.int32)
    out_docs = np.empty(k, dtype=np.int32)
    out_scores = np.empty(k, dtype=np.float32)
    n = _score_query(
        term_ptr,
        doc_ids,
        impacts,
        q_terms,
        q_weights,
        acc,
        hs,
        hd,
        k,
        out_docs,
        out_scores,
        scan_ratio,
        live,
        thr,
        False,
    )
    return out_docs[:n], out_scores[:n]


@njit(cache=True, nogil=True, parallel=True)
def _search_batch(
    term_ptr,
    doc_ids,
    impacts,
    n_docs,
    q_indptr,
    q_terms,
    q_weights,
    k,
    n_workers,
    out_docs,
    out_scores,
    out_counts,
    scan_ratio,
    live,
    thresholds,
):
    """Queries in parallel: worker c takes queries c, c + n_workers, ... and owns one accumulator;
    ``thresholds`` float32[n_queries]: each query's starting threshold."""
    n_queries = q_indptr.shape[0] - 1
    for c in prange(n_workers):
        acc = np.zeros(n_docs, dtype=np.float32)
        hs = np.empty(k, dtype=np.float32)
        hd = np.empty(k, dtype=np.int32)
        for q in range(c, n_queries, n_workers):
            s = q_indptr[q]
            e = q_indptr[q + 1]
            out_counts[q] = _score_query(
                term_ptr,
                doc_ids,
                impacts,
                q_terms[s:e],
                q_weights[s:e],
                acc,
                hs,
                hd,
                k,
                out_docs[q],
                out_scores[q],
                scan_ratio,
                live,
                thresholds[q],
                True,
            )
