"""The forward index of exact weights: writing it in internal doc order, and rescoring candidates.

Layout (see ``lsr.index.rescore``):
    fwd_indptr   int64[n_docs + 1]   the terms of internal doc d are [fwd_indptr[d], fwd_indptr[d+1])
    fwd_terms    uint16 | int32      ascending within each doc
    fwd_weights  float32             the weight the encoder gave
    term_err     float64[n_terms]    max |stored weight - scale x impact| over the term's postings

A candidate's exact score is the dot product of the query (ascending terms) with its row, by a
merge of the two sorted lists, summed in float64 in ascending term order.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from lsr.index.kernels.topk import heap_drain_sorted, heap_offer, may_enter


@njit(cache=True, nogil=True, parallel=True)
def _scatter_rows(
    indptr, term_ids, weights, impacts, scale, row_start, fwd_terms, fwd_weights, term_err, n_chunks
):
    """Copy batch row r to its internal position ``row_start[r]``; raise ``term_err`` to the
    quantization error of every posting (stored weight against ``scale`` x impact). The rows are cut
    into ``n_chunks`` consecutive chunks copied in parallel, each with its own error maxima, merged at
    the end (a maximum: the same for every ``n_chunks`` >= 1)."""
    n_rows = indptr.shape[0] - 1
    n_terms = term_err.shape[0]
    errs = np.zeros((n_chunks, n_terms), np.float64)
    for c in prange(n_chunks):
        err_c = errs[c]
        for r in range(c * n_rows // n_chunks, (c + 1) * n_rows // n_chunks):
            pos = row_start[r]
            for p in range(indptr[r], indptr[r + 1]):
                t = term_ids[p]
                fwd_terms[pos] = t
                fwd_weights[pos] = weights[p]
                err = abs(np.float64(fwd_weights[pos]) - scale * np.float64(impacts[p]))
                if err > err_c[t]:
                    err_c[t] = err
                pos += 1
    for t in prange(n_terms):
        m = term_err[t]
        for c in range(n_chunks):
            if errs[c, t] > m:
                m = errs[c, t]
        term_err[t] = m


@njit(cache=True, nogil=True)
def _dot_row(fwd_indptr, fwd_terms, fwd_weights, d, q_terms, q_weights):
    """Exact score of internal doc d: float64 sum over the shared terms, ascending term order."""
    p = fwd_indptr[d]
    end = fwd_indptr[d + 1]
    i = 0
    m = q_terms.shape[0]
    score = 0.0
    while p < end and i < m:
        t = np.int64(fwd_terms[p])
        qt = np.int64(q_terms[i])
        if t == qt:
            score += np.float64(q_weights[i]) * np.float64(fwd_weights[p])
            p += 1
            i += 1
        elif t < qt:
            p += 1
        else:
            i += 1
    return score


@njit(cache=True, nogil=True)
def _rescore_one(fwd_indptr, fwd_terms, fwd_weights, docs, q_terms, q_weights, lut):
    """Exact scores of ``docs``, bit for bit _dot_row's: each doc's row looks its terms' query weights
    up in ``lut`` (float32 over the vocabulary, zero on entry and left zero) and adds every product in
    ascending term order; a term not in the query adds +0.0, which leaves a float64 sum unchanged.
    No merge: its branch per row term, mispredicted half the time, cost ~1 us per candidate."""
    for i in range(q_terms.shape[0]):
        lut[q_terms[i]] = q_weights[i]
    out = np.empty(docs.shape[0], np.float64)
    # first one term and weight per cache line of every row: independent loads, in flight together
    # (the rows lie scattered over the forward index; this pass cut rescoring 26 candidates by a third)
    sample = 0.0
    for j in range(docs.shape[0]):
        d = docs[j]
        for p in range(fwd_indptr[d], fwd_indptr[d + 1], 16):
            sample += fwd_weights[p] + np.float64(fwd_terms[p])
    if not np.isfinite(sample):  # uses the loads, so they are kept
        raise ValueError("the forward index holds a weight that is not finite")
    for j in range(docs.shape[0]):
        d = docs[j]
        score = 0.0
        for p in range(fwd_indptr[d], fwd_indptr[d + 1]):
            score += np.float64(lut[fwd_terms[p]]) * np.float64(fwd_weights[p])
        out[j] = score
    for i in range(q_terms.shape[0]):
        lut[q_terms[i]] = 0
    return out


@njit(cache=True, nogil=True, parallel=True)
def _rescore_batch(fwd_indptr, fwd_terms, fwd_weights, q_indptr, q_terms, q_weights, docs, counts, out):
    """out[q, j] = exact score of docs[q, j] for j < counts[q]."""
    for q in prange(docs.shape[0]):
        s = q_indptr[q]
        e = q_indptr[q + 1]
        for j in range(counts[q]):
            out[q, j] = _dot_row(fwd_indptr, fwd_terms, fwd_weights, docs[q, j], q_terms[s:e], q_weights[s:e])


@njit(cache=True, nogil=True)
def _error_bound(term_err, q_terms, q_weights):
    """The most a doc's exact score can differ from its quantized score (times scale) for this query."""
    total = 0.0
    for i in range(q_terms.shape[0]):
        total += np.float64(q_weights[i]) * term_err[q_terms[i]]
    return total


@njit(cache=True, nogil=True)
def _forward_allowed_query(
    fwd_indptr, fwd_terms, fwd_weights, allowed, q_terms, q_weights, lut, k, out_docs, out_scores
):
    """Top-k of the ``allowed`` docs by exact score, each doc's forward row looked up in ``lut`` (float32
    over the vocabulary, zero on entry and left zero): the query weight of each of the doc's terms.
    Only the doc's terms that are query terms add (as _dot_row: float64 products, ascending term
    order), so the scores equal rescoring's bit for bit; docs sharing no term with the query are no
    candidates. Returns the hit count, best first (score desc, doc id asc)."""
    for i in range(q_terms.shape[0]):
        lut[q_terms[i]] = q_weights[i]
    hs = np.empty(k, np.float64)
    hd = np.empty(k, np.int32)
    size = 0
    for a in range(allowed.shape[0]):
        d = allowed[a]
        score = 0.0
        hit = False
        for p in range(fwd_indptr[d], fwd_indptr[d + 1]):
            w = lut[fwd_terms[p]]
            if w != 0:
                score += np.float64(w) * np.float64(fwd_weights[p])
                hit = True
        if hit and may_enter(hs, size, k, score):
            size = heap_offer(hs, hd, size, k, score, d)
    for i in range(q_terms.shape[0]):
        lut[q_terms[i]] = 0
    scores = np.empty(k, np.float64)
    n = heap_drain_sorted(hs, hd, size, scores, out_docs)
    for j in range(n):
        out_scores[j] = np.float32(scores[j])
    return n


@njit(cache=True, nogil=True)
def _forward_allowed_one(fwd_indptr, fwd_terms, fwd_weights, n_terms, allowed, q_terms, q_weights, k):
    out_docs = np.empty(k, np.int32)
    out_scores = np.empty(k, np.float32)
    lut = np.zeros(n_terms, np.float32)
    n = _forward_allowed_query(
        fwd_indptr, fwd_terms, fwd_weights, allowed, q_terms, q_weights, lut, k, out_docs, out_scores
    )
    return out_docs[:n], out_scores[:n]


@njit(cache=True, nogil=True, parallel=True)
def _forward_allowed_batch(
    fwd_indptr,
    fwd_terms,
    fwd_weights,
    n_terms,
    allowed,
    q_indptr,
    q_terms,
    q_weights,
    k,
    n_workers,
    out_docs,
    out_scores,
    out_counts,
):
    """Queries in parallel: worker c takes queries c, c + n_workers, ... with its own table."""
    n_queries = q_indptr.shape[0] - 1
    for c in prange(n_workers):
        lut = np.zeros(n_terms, np.float32)
        for q in range(c, n_queries, n_workers):
            s = q_indptr[q]
            e = q_indptr[q + 1]
            out_counts[q] = _forward_allowed_query(
                fwd_indptr,
                fwd_terms,
                fwd_weights,
                allowed,
                q_terms[s:e],
                q_weights[s:e],
                lut,
                k,
                out_docs[q],
                out_scores[q],
            )


@njit(cache=True, nogil=True)
def _best_k(docs, exact, k):
    """The k best of the candidates ``docs`` (distinct) by exact score (float64), ties by lower doc
    id: (int32 docs, float32 scores), best first."""
    k = min(k, docs.shape[0])
    hs = np.empty(k, np.float64)
    hd = np.empty(k, np.int64)
    size = 0
    for j in range(docs.shape[0]):
        size = heap_offer(hs, hd, size, k, exact[j], np.int64(docs[j]))
    scores = np.empty(k, np.float64)
    out = np.empty(k, np.int64)
    n = heap_drain_sorted(hs, hd, size, scores, out)
    return out[:n].astype(np.int32), scores[:n].astype(np.float32)


@njit(cache=True, nogil=True)
def _postings_dot(term_ptr, doc_ids, impacts, docs, order, q_terms, q_weights, out):
    """out[j] = the score of docs[j] read from the posting lists: for each query term in ascending
    order, each candidate (visited by ascending doc id through ``order``) is found by binary search
    in the rest of the term's list, and ``w x impact`` is added as a float64 product (as _dot_row)."""
    for j in range(docs.shape[0]):
        out[j] = 0.0
    for i in range(q_terms.shape[0]):
        t = q_terms[i]
        w = np.float64(q_weights[i])
        lo = term_ptr[t]
        hi = term_ptr[t + 1]
        for j in range(order.shape[0]):
            if lo >= hi:
                break
            d = docs[order[j]]
            a = lo
            b = hi
            while a < b:
                m = (a + b) >> 1
                if doc_ids[m] < d:
                    a = m + 1
                else:
                    b = m
            lo = a
            if a < hi and doc_ids[a] == d:
                out[order[j]] += w * np.float64(impacts[a])


@njit(cache=True, nogil=True)
def _rescore_postings_one(term_ptr, doc_ids, impacts, docs, q_terms, q_weights):
    """Scores of ``docs`` (distinct internal ids) for a checked query, from the postings: float64 sums
    of ``w x impact`` in ascending term order (in units of the index's scale)."""
    out = np.empty(docs.shape[0], np.float64)
    _postings_dot(term_ptr, doc_ids, impacts, docs, np.argsort(docs), q_terms, q_weights, out)
    return out


@njit(cache=True, nogil=True, parallel=True)
def _rescore_postings_batch(term_ptr, doc_ids, impacts, q_indptr, q_terms, q_weights, docs, counts, out):
    """out[q, j] = the postings score of docs[q, j] for j < counts[q] (see _rescore_postings_one)."""
    for q in prange(docs.shape[0]):
        s = q_indptr[q]
        e = q_indptr[q + 1]
        n = counts[q]
        row = docs[q, :n]
        _postings_dot(
            term_ptr, doc_ids, impacts, row, np.argsort(row), q_terms[s:e], q_weights[s:e], out[q, :n]
        )
