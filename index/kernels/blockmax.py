"""Block-max pruned search, BMP-style (Mallia, Suel, Tonellotto, SIGIR 2024), in numba.

Documents are cut into blocks of B consecutive internal ids (block b holds docs
[b*B, (b+1)*B)). Two views of the same (term, block) pairs:

    term-major  tb_ptr  int64[n_terms + 1]   pairs of term t: [tb_ptr[t], tb_ptr[t+1])
                tb_block int32[n_pairs]      block id, ascending within a term
                tb_max   uint8[n_pairs]      block-max impact, in units of `ub_ratio` impacts
    block-major bt_ptr  int64[n_blocks + 1]  pairs of block b: [bt_ptr[b], bt_ptr[b+1])
                bt_term int32[n_pairs]       term id, ascending within a block
                bt_post int64[n_pairs + 1]   postings of pair i: [bt_post[i], bt_post[i+1])
                bp_doc  uint8|uint16 [n_postings]  doc offset inside its block, ascending per pair
                bp_impact (index impact dtype) [n_postings]

Per query: (1) upper bounds of every block touched by a query term, one pass
over the query terms' term-major pairs; (2) a bucket sort of the candidate
blocks by upper bound, highest bucket first, each bucket remembering its exact
maximum; (3) blocks are scored whole from the block-major postings, until the
heap holds k documents and its k-th score exceeds ``alpha`` times the largest
upper bound left (the max of the current bucket). ``alpha = 1`` is safe.

Why safe mode equals exhaustive search exactly, floats included: query terms
are ascending, and every kernel (exhaustive, block scoring, upper bounds) adds a
document's contributions ``w * impact`` in ascending term order. Float
multiplication and addition are monotone, so a document's score never exceeds
its block's upper bound when ``tb_max`` holds exact maxima (``ub_ratio == 1``,
uint8 indexes); for coarser maxima the caller passes ``ub_slack > 1``. Scores of
scored documents are bit-identical to the exhaustive kernel's, and the stop test
is strict, so a document tying the k-th score with a smaller id is never skipped.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from lsr.index.kernels.topk import heap_drain_sorted, heap_offer

N_BUCKETS = 1024


@njit(cache=True, nogil=True)
def _upper_bounds(tb_ptr, tb_block, tb_max, ub_ratio, q_terms, q_weights, ub, cand):
    """Accumulate block upper bounds into ub (all zero on entry); list touched blocks in cand."""
    n_cand = 0
    for i in range(q_terms.shape[0]):
        t = q_terms[i]
        w = q_weights[i]
        for p in range(tb_ptr[t], tb_ptr[t + 1]):
            b = tb_block[p]
            if ub[b] == 0:
                cand[n_cand] = b
                n_cand += 1
            ub[b] += w * (np.float32(tb_max[p]) * ub_ratio)
    return n_cand


@njit(cache=True, nogil=True)
def _bucket_order(ub, cand, n_cand, order, bucket_ptr, bucket_max):
    """Counting-sort cand[:n_cand] into order, highest bucket first; bucket_max[j] is exact."""
    top = np.float32(0)
    for i in range(n_cand):
        top = max(top, ub[cand[i]])
    bucket_ptr[:] = 0
    bucket_max[:] = 0
    scale = (N_BUCKETS - 1) / top if top > 0 else 0.0
    for i in range(n_cand):
        u = ub[cand[i]]
        j = N_BUCKETS - 1 - min(int(u * scale), N_BUCKETS - 1)  # 0 = highest bucket
        bucket_ptr[j + 1] += 1
        if u > bucket_max[j]:
            bucket_max[j] = u
    for j in range(N_BUCKETS):
        bucket_ptr[j + 1] += bucket_ptr[j]
    fill = bucket_ptr[:-1].copy()
    for i in range(n_cand):
        u = ub[cand[i]]
        j = N_BUCKETS - 1 - min(int(u * scale), N_BUCKETS - 1)
        order[fill[j]] = cand[i]
        fill[j] += 1


@njit(cache=True, nogil=True)
def _score_block(b, bt_ptr, bt_term, bt_post, bp_doc, bp_impact, q_terms, q_weights, acc):
    """Add the block's query-term postings into acc (block-local), query terms ascending."""
    lo = bt_ptr[b]
    hi = bt_ptr[b + 1]
    for i in range(q_terms.shape[0]):
        if lo >= hi:
            break
        t = q_terms[i]
        j = lo + np.searchsorted(bt_term[lo:hi], t)
        if j < hi and bt_term[j] == t:
            w = q_weights[i]
            for p in range(bt_post[j], bt_post[j + 1]):
                acc[bp_doc[p]] += w * np.float32(bp_impact[p])
            lo = j + 1
        else:
            lo = j


@njit(cache=True, nogil=True)
def _bmp_query(tb_ptr, tb_block, tb_max, ub_ratio, ub_slack, bt_ptr, bt_term, bt_post, bp_doc, bp_impact,
               block_size, q_terms, q_weights, k, alpha, ws_ub, ws_cand, ws_order, ws_bptr, ws_bmax,
               acc, hs, hd, out_docs, out_scores):
    """One query; workspaces ws_* and acc are clean on entry and left clean. Returns the hit count."""
    n_cand = _upper_bounds(tb_ptr, tb_block, tb_max, ub_ratio, q_terms, q_weights, ws_ub, ws_cand)
    _bucket_order(ws_ub, ws_cand, n_cand, ws_order, ws_bptr, ws_bmax)
    size = 0
    bucket = 0
    for pos in range(n_cand):
        while pos >= ws_bptr[bucket + 1]:
            bucket += 1
        if size == k and hs[0] > alpha * (ws_bmax[bucket] * ub_slack):
            break
        b = ws_order[pos]
        _score_block(b, bt_ptr, bt_term, bt_post, bp_doc, bp_impact, q_terms, q_weights, acc)
        base = b * block_size
        for j in range(block_size):
            s = acc[j]
            if s > 0:
                size = heap_offer(hs, hd, size, k, s, base + j)
                acc[j] = 0
    for i in range(n_cand):
        ws_ub[ws_cand[i]] = 0
    return heap_drain_sorted(hs, hd, size, out_scores, out_docs)


@njit(cache=True, nogil=True)
def _workspace(n_blocks, block_size, k):
    return (np.zeros(n_blocks, np.float32), np.empty(n_blocks, np.int32), np.empty(n_blocks, np.int32),
            np.zeros(N_BUCKETS + 1, np.int64), np.zeros(N_BUCKETS, np.float32),
            np.zeros(block_size, np.float32), np.empty(k, np.float32), np.empty(k, np.int32))


@njit(cache=True, nogil=True)
def _bmp_search_one(tb_ptr, tb_block, tb_max, ub_ratio, ub_slack, bt_ptr, bt_term, bt_post, bp_doc,
                    bp_impact, block_size, q_terms, q_weights, k, alpha):
    ub, cand, order, bptr, bmax, acc, hs, hd = _workspace(bt_ptr.shape[0] - 1, block_size, k)
    out_docs = np.empty(k, np.int32)
    out_scores = np.empty(k, np.float32)
    n = _bmp_query(tb_ptr, tb_block, tb_max, ub_ratio, ub_slack, bt_ptr, bt_term, bt_post, bp_doc,
                   bp_impact, block_size, q_terms, q_weights, k, alpha, ub, cand, order, bptr, bmax,
                   acc, hs, hd, out_docs, out_scores)
    return out_docs[:n], out_scores[:n]


@njit(cache=True, nogil=True, parallel=True)
def _bmp_search_batch(tb_ptr, tb_block, tb_max, ub_ratio, ub_slack, bt_ptr, bt_term, bt_post, bp_doc,
                      bp_impact, block_size, q_indptr, q_terms, q_weights, k, alpha, n_workers,
                      out_docs, out_scores, out_counts):
    n_queries = q_indptr.shape[0] - 1
    for c in prange(n_workers):
        ub, cand, order, bptr, bmax, acc, hs, hd = _workspace(bt_ptr.shape[0] - 1, block_size, k)
        for q in range(c, n_queries, n_workers):
            s = q_indptr[q]
            e = q_indptr[q + 1]
            out_counts[q] = _bmp_query(tb_ptr, tb_block, tb_max, ub_ratio, ub_slack, bt_ptr, bt_term,
                                       bt_post, bp_doc, bp_impact, block_size, q_terms[s:e], q_weights[s:e],
                                       k, alpha, ub, cand, order, bptr, bmax, acc, hs, hd, out_docs[q],
                                       out_scores[q])


@njit(cache=True, nogil=True)
def _prune_terms(q_terms, q_weights, keep):
    """The ``keep`` heaviest terms (ties: lower term id), returned in ascending term order."""
    m = q_terms.shape[0]
    if keep >= m:
        return q_terms.copy(), q_weights.copy()
    order = np.argsort(-q_weights, kind="mergesort")[:keep]
    chosen = np.sort(order)
    return q_terms[chosen], q_weights[chosen]
