"""Two-level block-max search: superblocks of S consecutive blocks bounded first (after "Dynamic
superblock pruning for fast learned sparse retrieval", Carlson et al., SIGIR 2025), in numba.

One-level search (``lsr.index.kernels.blockmax``) bounds every block and orders them all before it
scores the first one; that fixed cost per query does not shrink with approx's budget. Here the
blocks' bounds are computed only inside the superblocks whose bound can still matter:

    superblock s holds blocks [s*S, min((s+1)*S, n_blocks)); its maxima are the maxima of its
    blocks' (quantized) maxima, so a superblock's bound is >= the bound of each of its blocks
    sb_dense_max uint8[n_dense, n_super]     the dense terms' rows (same row numbers as dense_max)
    sparse terms, one entry per superblock the term occurs in, superblocks ascending:
        sb_ptr   int64[n_terms + 1]          entries of t: [sb_ptr[t], sb_ptr[t + 1])
        sb_id    uint16 (n_super <= 65536) or int32, sb_max uint8
        sb_base  int64[n_entries / 256 + 1], sb_off uint16[n_entries]: entry p's block entries
                 (lsr.index.kernels.blockmax's tb_*) start at tb_base-free index
                 sb_base[p >> 8] + sb_off[p] and end where entry p + 1's start (or at tb_ptr[t + 1])

Per query: (1) superblock bounds in one pass over the query terms (a dense row: n_super adds; a
sparse term: its superblock entries, linked per superblock); (2) the superblocks with a bound > 0
into a max-heap; (3) a max-heap of blocks is filled lazily: while the best superblock left bounds
at least the best block in the heap, it is expanded (its blocks' bounds computed, their sparse runs
linked for scoring, those with a bound > 0 pushed). The best block is scored next, until the heap
holds k documents and the k-th score beats ``alpha`` x its bound (every block left, expanded or not,
bounds at most that), or ``max_blocks`` blocks have been scored. Blocks come out by bound, ties by
lower block id, exactly the order of bounding every block and sorting them; only the superblocks
that reach the top are expanded.

Safe mode stays exact for the reasons given in ``lsr.index.kernels.blockmax``: superblock, block
and document scores all add ``w x value`` in ascending query-term order with value(superblock) >=
value(block) >= impact, so float rounding never lets a document exceed its block's bound nor a
block exceed its superblock's.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from lsr.index.kernels.blockmax import _live_range, _score_block, _term_info
from lsr.index.kernels.topk import heap_drain_sorted, heap_offer


@njit(inline="always", cache=True)
def _above(k1, i1, k2, i2):
    """True if (key k1, id i1) comes before (k2, i2): higher key, ties by lower id."""
    return k1 > k2 or (k1 == k2 and i1 < i2)


@njit(cache=True, nogil=True)
def _max_sift_down(keys, ids, n, i):
    while True:
        best = i
        left = 2 * i + 1
        if left < n and _above(keys[left], ids[left], keys[best], ids[best]):
            best = left
        if left + 1 < n and _above(keys[left + 1], ids[left + 1], keys[best], ids[best]):
            best = left + 1
        if best == i:
            return
        keys[i], keys[best] = keys[best], keys[i]
        ids[i], ids[best] = ids[best], ids[i]
        i = best


@njit(cache=True, nogil=True)
def _max_push(keys, ids, n, key, ident):
    """Push (key, ident) onto the max-heap of n items; return n + 1."""
    i = n
    while i > 0:
        parent = (i - 1) >> 1
        if not _above(key, ident, keys[parent], ids[parent]):
            break
        keys[i] = keys[parent]
        ids[i] = ids[parent]
        i = parent
    keys[i] = key
    ids[i] = ident
    return n + 1


@njit(cache=True, nogil=True)
def _max_pop(keys, ids, n):
    """Drop the top of the max-heap of n items; return n - 1."""
    n -= 1
    keys[0] = keys[n]
    ids[0] = ids[n]
    _max_sift_down(keys, ids, n, 0)
    return n


@njit(cache=True, nogil=True)
def _super_bounds(sbx, ratio, q_terms, q_weights, q_rows, sub, shead, sent, s_lo, s_hi):
    """Accumulate the bounds of superblocks [s_lo, s_hi) into ``sub`` (zero on entry) in query-term
    order and link each sparse term's superblock entries per superblock into ``shead``/``sent``
    (rows: next, query term, entry)."""
    size, sb_dense_max, sb_ptr, sb_id, sb_max, _, _ = sbx
    e = 0
    for i in range(q_terms.shape[0]):
        w = q_weights[i]
        r = q_rows[i]
        if r >= 0:
            row = sb_dense_max[r]
            for s in range(s_lo, s_hi):
                sub[s] += w * (np.float32(row[s]) * ratio)
        else:
            t = q_terms[i]
            start = sb_ptr[t]
            end = sb_ptr[t + 1]
            if s_lo > 0:
                start += np.searchsorted(sb_id[start:end], s_lo)
            for p in range(start, end):
                s = sb_id[p]
                if s >= s_hi:
                    break
                sub[s] += w * (np.float32(sb_max[p]) * ratio)
                sent[0, e] = shead[s]
                sent[1, e] = i
                sent[2, e] = p
                shead[s] = e
                e += 1


@njit(cache=True, nogil=True)
def _expand(s, bmx, sbx, ratio, q_terms, q_weights, q_rows, ws2, ent, e, b_lo, b_hi, block_live):
    """Bound the blocks of superblock s (within [b_lo, b_hi)) in query-term order, link their sparse
    runs per block for _score_block (``ent`` rows: next, term, entry; from ``e`` on) and push those
    with a bound > 0 (and a live doc) onto the block heap. Returns (next free entry, heap size)."""
    _, dense_max, _, _, tb_ptr, tb_block, tb_max, _, _, _ = bmx
    size, _, sb_ptr, _, _, sb_base, sb_off = sbx
    ub, head, shead, sent, local_sb, bkeys, bids, nb = ws2
    first = max(s * size, b_lo)
    last = min((s + 1) * size, b_hi)
    p = shead[s]
    while p >= 0:  # this superblock's sparse entries, by query term
        local_sb[sent[1, p]] = sent[2, p]
        p = sent[0, p]
    for i in range(q_terms.shape[0]):
        w = q_weights[i]
        r = q_rows[i]
        if r >= 0:
            row = dense_max[r]
            for b in range(first, last):
                ub[b] += w * (np.float32(row[b]) * ratio)
            continue
        q = local_sb[i]
        if q < 0:
            continue
        local_sb[i] = -1
        t = q_terms[i]
        lo = sb_base[q >> 8] + np.int64(sb_off[q])
        hi = tb_ptr[t + 1]
        if q + 1 < sb_ptr[t + 1]:
            hi = sb_base[(q + 1) >> 8] + np.int64(sb_off[q + 1])
        for x in range(lo, hi):
            b = np.int64(tb_block[x])
            if b < first or b >= last:
                continue
            ub[b] += w * (np.float32(tb_max[x]) * ratio)
            ent[0, e] = head[b]
            ent[1, e] = i
            ent[2, e] = x
            head[b] = e
            e += 1
    all_live = block_live.shape[0] == 0
    for b in range(first, last):
        u = ub[b]
        if u > 0 and (all_live or block_live[b] != 0):
            nb = _max_push(bkeys, bids, nb, u, b)
        ub[b] = 0
    return e, nb


@njit(cache=True, nogil=True)
def _sb_workspace(n_blocks, n_super, block_size, k):
    """(ub, head, sub, shead, super heap keys, ids, block heap keys, ids, acc, heap scores, docs)."""
    return (
        np.zeros(n_blocks, np.float32),
        np.full(n_blocks, -1, np.int32),
        np.zeros(n_super, np.float32),
        np.full(n_super, -1, np.int32),
        np.empty(n_super, np.float32),
        np.empty(n_super, np.int32),
        np.empty(n_blocks, np.float32),
        np.empty(n_blocks, np.int32),
        np.zeros(block_size, np.float32),
        np.empty(k, np.float32),
        np.empty(k, np.int32),
    )


@njit(cache=True, nogil=True)
def _sb_query(
    postings,
    bmx,
    sbx,
    ub_ratio,
    ub_slack,
    block_size,
    q_terms,
    q_weights,
    k,
    alpha,
    max_blocks,
    max_super,
    ws,
    out_docs,
    out_scores,
    counters,
    live,
    thr,
    block_live,
):
    """One query, two levels. Arguments as ``_bmp_query``'s (``ws`` from _sb_workspace), plus ``sbx`` =
    (superblock size, sb_dense_max, sb_ptr, sb_id, sb_max, sb_base, sb_off). Adds (blocks scored,
    blocks bounded) to counters."""
    row_of, _, dense_base, dense_off, tb_ptr, _, _, tb_base, tb_off, dense_before = bmx
    size, _, sb_ptr, _, _, _, _ = sbx
    ub, head, sub, shead, skeys, sids, bkeys, bids, acc, hs, hd = ws
    m = q_terms.shape[0]
    q_rows = np.empty(m, np.int32)
    q_info = np.empty((m, 4), np.int64)
    n_ent = _term_info(postings[0], row_of, tb_ptr, dense_before, q_terms, q_rows, q_info)
    n_sent = 0
    for i in range(m):
        if q_rows[i] < 0:
            n_sent += sb_ptr[q_terms[i] + 1] - sb_ptr[q_terms[i]]
    scoring = (postings[1], postings[2], dense_base, dense_off, tb_base, tb_off)
    ent = np.empty((3, n_ent), np.int64)
    sent = np.empty((3, n_sent), np.int64)
    local_pair = np.full(m, -1, np.int64)
    local_sb = np.full(m, -1, np.int64)
    b_lo, b_hi = _live_range(block_live, ub.shape[0])
    s_lo = b_lo // size
    s_hi = (b_hi + size - 1) // size
    _super_bounds(sbx, ub_ratio, q_terms, q_weights, q_rows, sub, shead, sent, s_lo, s_hi)
    ns = 0
    for s in range(s_lo, s_hi):
        if sub[s] > 0:
            skeys[ns] = sub[s]
            sids[ns] = s
            ns += 1
    for j in range(ns // 2 - 1, -1, -1):
        _max_sift_down(skeys, sids, ns, j)
    n_expanded = 0
    nb = 0
    e = 0
    size_h = 0
    scored = 0
    bounded = 0
    all_live = live.shape[0] == 0
    while scored < max_blocks:
        while ns > 0 and n_expanded < max_super and (nb == 0 or skeys[0] >= bkeys[0]):
            s = sids[0]
            ns = _max_pop(skeys, sids, ns)
            sids[ns] = s  # the popped superblocks collect at the tail, for the reset below
            n_expanded += 1
            ws2 = (ub, head, shead, sent, local_sb, bkeys, bids, nb)
            e, nb2 = _expand(
                s, bmx, sbx, ub_ratio, q_terms, q_weights, q_rows, ws2, ent, e, b_lo, b_hi, block_live
            )
            bounded += nb2 - nb
            nb = nb2
        if nb == 0:
            break
        bound = alpha * (bkeys[0] * ub_slack)
        if (size_h == k and hs[0] > bound) or thr >= bound:
            break
        b = bids[0]
        nb = _max_pop(bkeys, bids, nb)
        scored += 1
        _score_block(
            b, block_size, scoring, q_weights, q_rows, q_info, head, ent[0], ent[1], ent[2], local_pair, acc
        )
        base = b * block_size
        for j in range(block_size):
            sc = acc[j]
            if sc > 0:
                if sc > thr and (all_live or live[base + j]):
                    size_h = heap_offer(hs, hd, size_h, k, sc, base + j)
                acc[j] = 0
    counters[0] += scored
    counters[1] += bounded
    # reset what this query touched: the superblock range, and the block lists of expanded superblocks
    sub[s_lo:s_hi] = 0
    shead[s_lo:s_hi] = -1
    for j in range(n_expanded):
        s = sids[ns + j]
        head[s * size : min((s + 1) * size, head.shape[0])] = -1
    return heap_drain_sorted(hs, hd, size_h, out_scores, out_docs)


@njit(cache=True, nogil=True)
def _sb_search_one(
    postings,
    bmx,
    sbx,
    ub_ratio,
    ub_slack,
    block_size,
    n_blocks,
    q_terms,
    q_weights,
    k,
    alpha,
    max_blocks,
    max_super,
    counters,
    live,
    thr,
    block_live,
):
    ws = _sb_workspace(n_blocks, sbx[1].shape[1], block_size, k)
    out_docs = np.empty(k, np.int32)
    out_scores = np.empty(k, np.float32)
    n = _sb_query(
        postings,
        bmx,
        sbx,
        ub_ratio,
        ub_slack,
        block_size,
        q_terms,
        q_weights,
        k,
        alpha,
        max_blocks,
        max_super,
        ws,
        out_docs,
        out_scores,
        counters,
        live,
        thr,
        block_live,
    )
    return out_docs[:n], out_scores[:n]


@njit(cache=True, nogil=True, parallel=True)
def _sb_search_batch(
    postings,
    bmx,
    sbx,
    ub_ratio,
    ub_slack,
    block_size,
    n_blocks,
    q_indptr,
    q_terms,
    q_weights,
    k,
    alpha,
    max_blocks,
    max_super,
    n_workers,
    out_docs,
    out_scores,
    out_counts,
    live,
    thresholds,
    block_live,
):
    """Queries in parallel: worker c takes queries c, c + n_workers, ... with its own workspace."""
    n_queries = q_indptr.shape[0] - 1
    for c in prange(n_workers):
        ws = _sb_workspace(n_blocks, sbx[1].shape[1], block_size, k)
        counters = np.zeros(2, np.int64)
        for q in range(c, n_queries, n_workers):
            s = q_indptr[q]
            e = q_indptr[q + 1]
            out_counts[q] = _sb_query(
                postings,
                bmx,
                sbx,
                ub_ratio,
                ub_slack,
                block_size,
                q_terms[s:e],
                q_weights[s:e],
                k,
                alpha,
                max_blocks,
                max_super,
                ws,
                out_docs[q],
                out_scores[q],
                counters,
                live,
                thresholds[q],
                block_live,
            )
