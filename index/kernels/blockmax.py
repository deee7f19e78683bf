"""Block-max pruned search, BMP-style (Mallia, Suel, Tonellotto, SIGIR 2024), in numba.

Documents are cut into blocks of B consecutive internal ids (block b holds docs
[b*B, (b+1)*B)). A term's postings inside a block are a contiguous run of its
CSC posting list, so blocks are scored straight from the index's own arrays.
Block maxima come in two forms:

    dense terms (present in many blocks), row r = row_of[t] >= 0:
        dense_max  uint8[n_dense, n_blocks]       block max, in units of ub_ratio impacts
        dense_base uint32[n_dense, n_blocks / 256 + 1], dense_off uint16[n_dense, n_blocks + 1]:
                   the run of block b starts at dense_base[r, b >> 8] + dense_off[r, b] and ends
                   where the run of block b + 1 starts
    (dense offsets are relative to term_ptr[t])
    sparse terms (row_of[t] == -1), one entry per run, blocks ascending:
        tb_ptr     int64[n_terms + 1]             entries of t: [tb_ptr[t], tb_ptr[t + 1])
        tb_block   uint16 (n_blocks <= 65536) or int32, tb_max uint8
        tb_base    int64[n_entries / 256 + 1], tb_off uint16[n_entries], dense_before int64[n_terms]:
                   entry p's run starts at posting tb_base[p >> 8] + tb_off[p] + dense_before[t]
                   (offsets count only sparse terms' postings, so 256 runs fit uint16) and ends
                   where entry p + 1's starts (or at the end of t's list)

Per query: (1) block upper bounds in one pass over the query terms: a dense row is
a vectorizable add over all blocks, a sparse term scatters its few entries; (2) a
bucket sort of the blocks with a bound > 0, highest bucket first, each bucket
keeping its exact maximum, of the first FIRST_WINDOW blocks only (or the budget's, if
fewer; the blocks that cannot reach them are left out by chunk maxima), and the
sparse runs of those blocks linked into per-block lists (_link_chosen: linking
every run cost more than reading the runs' block ids a second time); (3) blocks are
scored whole, in that order, until the heap holds k documents and the k-th score
exceeds ``alpha`` x the largest bound left (the max of the current bucket), or
``max_blocks`` blocks have been scored (approx mode's budget); a scan that gets past
the first window orders and links the rest then (the same order). ``alpha = 1`` with
no budget (``max_blocks >= n_blocks``) is safe.

Why safe mode equals exhaustive search exactly, floats included: query terms
ascend, and every kernel (exhaustive, block scoring, upper bounds) adds a
document's contributions ``w * impact`` in ascending term order. Float
multiplication and addition are monotone, so a document's score never exceeds
its block's bound when maxima are exact (``ub_ratio == 1``, uint8 indexes); for
coarser maxima the bound is multiplied by ``ub_slack > 1``. Scored documents get
bit-identical scores, and the stop test is strict, so a document tying the k-th
score with a smaller doc id is never skipped.

Live indexes: ``live`` (uint8[n_docs], 1 = live; empty: all live) keeps deleted
documents out of the heap, and ``thr`` (the k-th score of earlier segments, 0
otherwise) both filters documents (they must beat it strictly) and stops the scan
once ``thr >= alpha x`` the best bound left: no document left can beat it. ``block_live``
(uint8[n_blocks], 1 = the block holds a live doc; empty: all) zeroes the bound of blocks with no
live doc before the blocks are ordered, so a selective filter skips whole blocks; and bounds are
computed, ordered and reset only from its first to its last live block (_live_range), so a filter
allowing one run of documents (a date range over documents indexed in order) touches just that
run's blocks.

The hot loops index with unsigned integers or from 0 (``np.uint32(doc - base)``, slices
walked from 0): numba tests every signed index for wraparound, which kept LLVM from
vectorizing the dense bound rows and cost the scoring loops time (lsr.index.kernels.score).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from lsr.index.kernels.score import CHUNK, _chunk_maxima
from lsr.index.kernels.topk import heap_drain_sorted, heap_offer, may_enter

N_BUCKETS = 1024
ALL_LIVE = np.zeros(0, np.uint8)  # _chunk_maxima's live array when every block counts
# blocks a query orders and links first (_bmp_query); the rest only when the scan gets past them. Safe
# mode on 1M synthetic documents scored 275 blocks a query on average, at most 1,691 (96% within 1,024)
FIRST_WINDOW = 1024


@njit(cache=True, nogil=True)
def _upper_bounds(
    row_of,
    dense_max,
    tb_ptr,
    tb_block,
    tb_max,
    ub_ratio,
    q_terms,
    q_weights,
    ub,
    head,
    ent_next,
    ent_term,
    ent_pair,
    e,
    b_lo,
    b_hi,
    link=True,
):
    """Accumulate the bounds of blocks [b_lo, b_hi) into ub (zero on entry) in query-term order; link
    their sparse runs per block into ``head`` (entries from ``e`` on); return the next free entry.
    Blocks outside the range keep bound 0 (they hold no live doc). ``link`` False: bounds only (a
    budget's blocks are linked once chosen, :func:`_link_chosen`)."""
    for i in range(q_terms.shape[0]):
        t = q_terms[i]
        w = q_weights[i]
        r = row_of[t]
        if r >= 0:
            row = dense_max[r, b_lo:b_hi]
            part = ub[b_lo:b_hi]
            for j in range(part.shape[0]):  # from 0: no wraparound test, so LLVM vectorizes it
                part[j] += w * (np.float32(row[j]) * ub_ratio)
        elif link:
            e = _link_runs(
                tb_block,
                tb_max,
                tb_ptr[t],
                tb_ptr[t + 1],
                b_lo,
                b_hi,
                i,
                w,
                ub_ratio,
                ub,
                head,
                ent_next,
                ent_term,
                ent_pair,
                e,
            )
        else:
            _add_runs(tb_block, tb_max, tb_ptr[t], tb_ptr[t + 1], b_lo, b_hi, w, ub_ratio, ub)
    return e


@njit(cache=True, nogil=True, inline="always")
def _add_runs(blocks, maxes, start, end, lo, hi, w, ratio, ub):
    """:func:`_link_runs` without the linking: the runs' bounds alone."""
    if lo > 0:
        start += np.searchsorted(blocks[start:end], lo)
    runs = blocks[start:end]
    run_max = maxes[start:end]
    if hi >= ub.shape[0]:  # every block: no test a run
        for j in range(runs.shape[0]):
            ub[runs[j]] += w * (np.float32(run_max[j]) * ratio)
        return
    for j in range(runs.shape[0]):
        b = runs[j]
        if b >= hi:
            break
        ub[b] += w * (np.float32(run_max[j]) * ratio)


@njit(cache=True, nogil=True)
def _link_chosen(row_of, tb_ptr, tb_block, q_terms, order, p_lo, p_hi, head, ent_next, ent_term, ent_pair, e):
    """Link the sparse runs of the blocks ``order[p_lo:p_hi]`` (-1 in ``head``) into ``head`` as entries
    ``e``, ``e`` + 1, ...; return the next free entry. A second read of the query terms' run blocks,
    which costs less than linking every run of every block when few blocks are scored; the blocks
    are looked up in a byte map, smaller than ``head`` (1M documents: 62.5 against 250 KB, 10% faster)."""
    n_blocks = head.shape[0]
    chosen = np.zeros(n_blocks, np.uint8)
    for pos in range(p_lo, p_hi):
        chosen[np.uint32(order[pos])] = 1
    for i in range(q_terms.shape[0]):
        t = q_terms[i]
        if row_of[t] >= 0:
            continue
        start = tb_ptr[t]
        runs = tb_block[start : tb_ptr[t + 1]]
        for j in range(runs.shape[0]):
            b = np.uint32(runs[j])
            if chosen[b]:
                ent_term[e] = i
                ent_pair[e] = start + j
                ent_next[e] = head[b]
                head[b] = e
                e += 1
    return e


@njit(cache=True, nogil=True, inline="always")
def _link_runs(blocks, maxes, start, end, lo, hi, i, w, ratio, ub, head, ent_next, ent_term, ent_pair, e):
    """Query term ``i``'s runs [start, end) (ascending by block) whose block lies in [lo, hi): add
    ``w`` x max x ``ratio`` to each block's bound and link the run as entry ``e``, ``e`` + 1, ... of its
    block's list (``head``/``ent_next``; ``ent_pair`` = the run's position); return the next free entry."""
    if lo > 0:
        start += np.searchsorted(blocks[start:end], lo)
    for p in range(start, end):
        b = blocks[p]
        if b >= hi:
            break
        ub[b] += w * (np.float32(maxes[p]) * ratio)
        ent_term[e] = i
        ent_pair[e] = p
        ent_next[e] = head[b]
        head[b] = e
        e += 1
    return e


@njit(cache=True, nogil=True)
def _live_range(block_live, n_blocks):
    """[first, last + 1) of the blocks holding a live doc (all blocks when ``block_live`` is empty), so
    that a filter allowing one run of documents bounds just its blocks."""
    if block_live.shape[0] == 0:
        return 0, n_blocks
    lo = 0
    while lo < n_blocks and block_live[lo] == 0:
        lo += 1
    hi = n_blocks
    while hi > lo and block_live[hi - 1] == 0:
        hi -= 1
    return lo, hi


@njit(cache=True, nogil=True, inline="always")
def _bucket(u, scale):
    """The bucket of a positive bound ``u`` (0 = highest) for ``scale`` = (N_BUCKETS - 1) / the top."""
    return N_BUCKETS - 1 - min(int(np.float64(u) * scale), N_BUCKETS - 1)


@njit(cache=True, nogil=True)
def _count_positive(ub, lo, hi):
    """How many bounds in [lo, hi) are positive."""
    bits = ub.view(np.int32)  # bounds are >= 0: positive where their bits are
    n = np.int32(0)
    for j in range(np.uint64(lo), np.uint64(hi)):
        n += np.int32(bits[j] > 0)
    return n


@njit(cache=True, nogil=True)
def _bucket_order(ub, order, cand, bkt, bucket_ptr, bucket_max, lo, hi, want):
    """Blocks in [lo, hi) with ub > 0 into order, highest bucket first, ascending ids within a bucket.
    Returns the count n of those blocks; ``order`` holds the first ``min(n, want)`` positions at
    least, and ``bucket_ptr``/``bucket_max`` (exact maxima) are right for every bucket those positions
    reach (approx's budget scores no more; without one, want >= n: all of them).

    With a budget (``want`` below n), only the blocks that can reach the first ``want`` positions are
    sorted: the ``want`` largest maxima of chunks of CHUNK blocks (the exhaustive kernel's
    vectorized _chunk_maxima) are ``want``
    distinct blocks, so the bucket of the ``want``-th largest chunk maximum, ``cut``, holds or follows
    the bucket of position ``want`` - 1, and the blocks of buckets up to ``cut`` (read only in chunks
    whose maximum reaches it) are all that the sort needs. On 1M synthetic documents (62,500
    blocks, budget 4,096 documents) this costs a fraction of sorting every block with a bound."""
    n_pos = _count_positive(ub, lo, hi)
    cmax_bits = _chunk_maxima(ub[lo:hi], ALL_LIVE)
    cmax = cmax_bits.view(np.float32)
    bucket_ptr[:] = 0
    bucket_max[:] = 0
    if n_pos == 0:
        return 0
    top = np.float32(0)
    for c in range(cmax.shape[0]):
        top = max(top, cmax[c])
    scale = np.float64(N_BUCKETS - 1) / np.float64(top)  # float64 with and without the JIT
    cut = _preselect_bucket(cmax, scale, want, bucket_ptr) if want < n_pos else N_BUCKETS - 1
    if cut < N_BUCKETS - 1:
        n = _gather_chunks(ub, cmax_bits, scale, cut, lo, hi, cand)
    else:
        n = _gather_positive(ub, lo, hi, cand)
    _bucket_sort(ub, order, cand, n, bkt, bucket_ptr, bucket_max, scale, want)
    return np.int64(n_pos)


@njit(cache=True, nogil=True)
def _preselect_bucket(cmax, scale, want, counts):
    """The bucket of the ``want``-th largest chunk maximum (N_BUCKETS - 1 when fewer than ``want``
    chunks have a positive one); ``counts`` (int64[N_BUCKETS + 1]) is scratch, left zero."""
    for c in range(cmax.shape[0]):
        if cmax[c] > 0:
            counts[_bucket(cmax[c], scale)] += 1
    cut = N_BUCKETS - 1
    total = 0
    for j in range(N_BUCKETS):
        total += counts[j]
        if total >= want:
            cut = j
            break
    counts[:] = 0
    return cut


@njit(cache=True, nogil=True)
def _gather_chunks(ub, cmax_bits, scale, cut, lo, hi, cand):
    """The blocks of [lo, hi) with a positive bound in buckets 0..``cut`` (< N_BUCKETS - 1) into
    ``cand`` in ascending order, reading only the chunks whose maximum reaches bucket ``cut``; returns
    their count. Both tests compare float32 bits with those of the smallest bound in bucket ``cut``."""
    low = _bucket_floor(scale, cut)
    bits = ub.view(np.int32)
    n = np.uint64(0)
    for c in range(cmax_bits.shape[0]):
        if cmax_bits[c] < low:
            continue
        first = lo + c * CHUNK
        for b in range(first, min(first + CHUNK, hi)):
            cand[n] = b
            n += np.uint64(bits[np.uint32(b)] >= low)
    return np.int64(n)


@njit(cache=True, nogil=True)
def _bucket_floor(scale, cut):
    """The float32 bits of the smallest positive float32 in buckets 0..``cut`` (< N_BUCKETS - 1)."""
    v = np.float32(np.float64(N_BUCKETS - 1 - cut) / scale)
    while _bucket(v, scale) > cut:
        v = np.nextafter(v, np.float32(np.inf))
    while v > 0:
        below = np.nextafter(v, np.float32(0))
        if below <= 0 or _bucket(below, scale) > cut:
            break
        v = below
    return np.array([v], np.float32).view(np.int32)[0]


@njit(cache=True, nogil=True)
def _gather_positive(ub, lo, hi, cand):
    """The blocks of [lo, hi) with a positive bound into ``cand``, ascending, without a branch
    (whether a block's bound is positive is unpredictable: about 40% of the blocks of a query on
    pruned lists, and a mispredicted branch per block cost more than the rest of the sort)."""
    n = np.uint64(0)  # unsigned indices: no wraparound test (module docstring)
    part = ub[lo:hi]
    for j in range(part.shape[0]):
        cand[n] = lo + j
        n += np.uint64(part[j] > 0)
    return np.int64(n)


@njit(cache=True, nogil=True)
def _bucket_sort(ub, order, cand, n, bkt, bucket_ptr, bucket_max, scale, want):
    """The ``n`` blocks of ``cand`` (ascending ids) into ``order`` by bucket: counts and maxima per
    bucket, then the buckets up to the one that reaches ``want`` blocks (the rest left out). The
    second pass reads each block's bucket from ``bkt`` (int16, written by the first)."""
    for i in range(n):
        u = ub[np.uint32(cand[i])]
        j = _bucket(u, scale)
        bkt[i] = j
        bucket_ptr[j + 1] += 1
        bucket_max[j] = max(bucket_max[j], u)
    for j in range(N_BUCKETS):
        bucket_ptr[j + 1] += bucket_ptr[j]
    last = N_BUCKETS - 1
    if want < n:
        last = 0
        while bucket_ptr[last + 1] < want:
            last += 1
    fill = bucket_ptr[:-1].copy()
    for i in range(n):
        j = bkt[i]
        if j <= last:
            order[fill[j]] = cand[i]
            fill[j] += 1


@njit(cache=True, nogil=True)
def _term_info(term_ptr, row_of, tb_ptr, dense_before, q_terms, q_rows, q_info):
    """Per query term i (a segment's directory read once per query): ``q_rows[i]`` its block-max row
    (-1: sparse), ``q_info[i]`` = (first posting, end of its postings, end of its sparse entries,
    sparse offset base ``dense_before``); return the sparse entries the query's terms have."""
    n_ent = 0
    for i in range(q_terms.shape[0]):
        t = q_terms[i]
        q_rows[i] = row_of[t]
        q_info[i, 0] = term_ptr[t]
        q_info[i, 1] = term_ptr[t + 1]
        q_info[i, 2] = tb_ptr[t + 1]
        q_info[i, 3] = dense_before[t]
        if q_rows[i] < 0:
            n_ent += tb_ptr[t + 1] - tb_ptr[t]
    return n_ent


@njit(cache=True, nogil=True, inline="always")
def _add_run(acc, docs, imps, base, w):
    """One term's run of a block into the block-local ``acc`` (doc ids minus ``base``), unsigned
    indices (module docstring)."""
    for j in range(docs.shape[0]):
        acc[np.uint32(docs[j] - base)] += w * np.float32(imps[j])


@njit(cache=True, nogil=True)
def _score_block(
    b,
    block_size,
    scoring,
    q_weights,
    q_rows,
    q_info,
    head,
    ent_next,
    ent_term,
    ent_pair,
    local_pair,
    acc,
):
    """Add the query terms' runs in block b into acc (block-local), in ascending term order.
    ``scoring`` = (doc_ids, impacts, dense_base, dense_off, tb_base, tb_off); ``q_rows``, ``q_info``
    from _term_info."""
    doc_ids, impacts, dense_base, dense_off, tb_base, tb_off = scoring
    e = head[b]
    while e >= 0:
        local_pair[ent_term[e]] = ent_pair[e]
        e = ent_next[e]
    base = b * block_size
    for i in range(q_rows.shape[0]):
        r = q_rows[i]
        if r >= 0:
            start = q_info[i, 0]
            s = start + dense_base[r, b >> 8] + dense_off[r, b]
            end = start + dense_base[r, (b + 1) >> 8] + dense_off[r, b + 1]
        else:
            p = local_pair[i]
            if p < 0:
                continue
            local_pair[i] = -1
            s = tb_base[p >> 8] + tb_off[p] + q_info[i, 3]
            if p + 1 < q_info[i, 2]:
                end = tb_base[(p + 1) >> 8] + tb_off[p + 1] + q_info[i, 3]
            else:
                end = q_info[i, 1]
        _add_run(acc, doc_ids[s:end], impacts[s:end], base, q_weights[i])


@njit(cache=True, nogil=True)
def _bmp_query(
    postings,
    bmx,
    ub_ratio,
    ub_slack,
    block_size,
    q_terms,
    q_weights,
    k,
    alpha,
    max_blocks,
    ws,
    out_docs,
    out_scores,
    counters,
    live,
    thr,
    block_live,
):
    """One query. ``postings`` = (term_ptr, doc_ids, impacts); ``bmx`` = (row_of, dense_max, dense_base,
    dense_off, tb_ptr, tb_block, tb_max, tb_base, tb_off, dense_before); ``ws`` from _workspace, clean
    on entry and left clean. Returns the hit count; adds (blocks scored, blocks with a bound > 0) to
    counters."""
    row_of, dense_max, dense_base, dense_off, tb_ptr, tb_block, tb_max, tb_base, tb_off, dense_before = bmx
    ub, head, order, cand, bkt, bucket_ptr, bucket_max, acc, hs, hd = ws
    m = q_terms.shape[0]
    q_rows = np.empty(m, np.int32)
    q_info = np.empty((m, 4), np.int64)
    n_ent = _term_info(postings[0], row_of, tb_ptr, dense_before, q_terms, q_rows, q_info)
    scoring = (postings[1], postings[2], dense_base, dense_off, tb_base, tb_off)
    ent_next = np.empty(n_ent, np.int32)
    ent_term = np.empty(n_ent, np.int32)
    ent_pair = np.empty(n_ent, np.int64)
    local_pair = np.full(m, -1, np.int64)
    b_lo, b_hi = _live_range(block_live, ub.shape[0])
    _upper_bounds(
        row_of,
        dense_max,
        tb_ptr,
        tb_block,
        tb_max,
        ub_ratio,
        q_terms,
        q_weights,
        ub,
        head,
        ent_next,
        ent_term,
        ent_pair,
        0,
        b_lo,
        b_hi,
        False,
    )
    if block_live.shape[0] > 0:
        for b in range(b_lo, b_hi):
            if block_live[b] == 0:
                ub[b] = 0
    window = min(max_blocks, FIRST_WINDOW)
    n_cand = _bucket_order(ub, order, cand, bkt, bucket_ptr, bucket_max, b_lo, b_hi, window)
    n_order = min(n_cand, max_blocks)
    n_chosen = min(n_cand, window)
    args = (row_of, tb_ptr, tb_block, q_terms, order)
    e = _link_chosen(*args, 0, n_chosen, head, ent_next, ent_term, ent_pair, 0)
    counters[1] += n_cand
    size = 0
    bucket = 0
    all_live = live.shape[0] == 0
    for pos in range(n_order):
        if pos == n_chosen:  # past the first window: order and link the rest (the same order before)
            _bucket_order(ub, order, cand, bkt, bucket_ptr, bucket_max, b_lo, b_hi, max_blocks)
            e = _link_chosen(*args, n_chosen, n_order, head, ent_next, ent_term, ent_pair, e)
            n_chosen = n_order
        while pos >= bucket_ptr[bucket + 1]:
            bucket += 1
        bound = alpha * (bucket_max[bucket] * ub_slack)
        if (size == k and hs[0] > bound) or thr >= bound:
            break
        counters[0] += 1
        b = order[pos]
        _score_block(
            b,
            block_size,
            scoring,
            q_weights,
            q_rows,
            q_info,
            head,
            ent_next,
            ent_term,
            ent_pair,
            local_pair,
            acc,
        )
        base = b * block_size
        for j in range(block_size):
            s = acc[j]
            if s > 0:
                if s > thr and (all_live or live[base + j]) and may_enter(hs, size, k, s):
                    size = heap_offer(hs, hd, size, k, s, base + j)
                acc[j] = 0
    ub[b_lo:b_hi] = 0  # nothing outside the range was touched
    for pos in range(n_chosen):
        head[np.uint32(order[pos])] = -1
    return heap_drain_sorted(hs, hd, size, out_scores, out_docs)


@njit(cache=True, nogil=True)
def _workspace(n_blocks, block_size, k):
    """(ub, head, order, cand, bkt, bucket_ptr, bucket_max, acc, heap scores, heap docs) for one
    worker."""
    return (
        np.zeros(n_blocks, np.float32),
        np.full(n_blocks, -1, np.int32),
        np.empty(n_blocks, np.int32),
        np.empty(n_blocks, np.int32),
        np.empty(n_blocks, np.int16),
        np.zeros(N_BUCKETS + 1, np.int64),
        np.zeros(N_BUCKETS, np.float32),
        np.zeros(block_size, np.float32),
        np.empty(k, np.float32),
        np.empty(k, np.int32),
    )


@njit(cache=True, nogil=True)
def _bmp_search_one(
    postings,
    bmx,
    ub_ratio,
    ub_slack,
    block_size,
    ws,
    q_terms,
    q_weights,
    k,
    alpha,
    max_blocks,
    counters,
    live,
    thr,
    block_live,
):
    """One query on the calling thread; ``ws`` from _workspace(n_blocks, block_size, k), clean on
    entry and left clean (the caller keeps one per thread)."""
    out_docs = np.empty(k, np.int32)
    out_scores = np.empty(k, np.float32)
    n = _bmp_query(
        postings,
        bmx,
        ub_ratio,
        ub_slack,
        block_size,
        q_terms,
        q_weights,
        k,
        alpha,
        max_blocks,
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
def _bmp_search_batch(
    postings,
    bmx,
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
        ws = _workspace(n_blocks, block_size, k)
        counters = np.zeros(2, np.int64)
        for q in range(c, n_queries, n_workers):
            s = q_indptr[q]
            e = q_indptr[q + 1]
            out_counts[q] = _bmp_query(
                postings,
                bmx,
                ub_ratio,
                ub_slack,
                block_size,
                q_terms[s:e],
                q_weights[s:e],
                k,
                alpha,
                max_blocks,
                ws,
                out_docs[q],
                out_scores[q],
                counters,
                live,
                thresholds[q],
                block_live,
            )


@njit(cache=True, nogil=True)
def _add_dense_row(dn_max, off, lo, n, w, ratio, ub, g_lo, g_hi):
    """A dense row's bounds (maxima ``dn_max[off : off + n]``, the segment's blocks from global block
    ``lo``) times ``w`` into ``ub``, within the live block range [g_lo, g_hi)."""
    b_lo = min(max(g_lo - lo, 0), n)
    b_hi = max(min(g_hi - lo, n), b_lo)
    row = dn_max[off + b_lo : off + b_hi]
    part = ub[lo + b_lo : lo + b_hi]
    for b in range(part.shape[0]):
        part[b] += w * (np.float32(row[b]) * ratio)


@njit(cache=True, nogil=True)
def _merged_bounds(merged, seg_int, q_terms, q_weights, ub, head, block_live, q_rows, q_start, extra):
    """The merged segments' block bounds into ``ub`` (global blocks, before slack) from the
    generation's merged block maxima (``merged``, the arrays of ``lsr.index.blockmax.MergedBounds``:
    one piece per term, whatever the number of segments), the sparse runs linked into ``head`` (entry
    pairs are merged positions); sets ``q_rows[s, i]`` / ``q_start[s, i]`` for query term i dense in
    merged segment s (row, first posting; ``q_rows`` -1 on entry). Returns the run entries (``extra``
    more left free at their end), the next free entry and the live block range."""
    sp_ptr, sp_block, sp_max, _, _, dn_ptr, dn_seg, dn_row, dn_start, dn_off, dn_max, ratio = merged
    m = q_terms.shape[0]
    n_ent = 0
    for i in range(m):
        n_ent += sp_ptr[q_terms[i] + 1] - sp_ptr[q_terms[i]]
    ent_next = np.empty(n_ent + extra, np.int32)
    ent_term = np.empty(n_ent + extra, np.int32)
    ent_pair = np.empty(n_ent + extra, np.int64)
    e = 0
    g_lo, g_hi = _live_range(block_live, ub.shape[0])
    for i in range(m):
        t = q_terms[i]
        w = q_weights[i]
        for d in range(dn_ptr[t], dn_ptr[t + 1]):
            s = dn_seg[d]
            q_rows[s, i] = dn_row[d]
            q_start[s, i] = dn_start[d]
            _add_dense_row(dn_max, dn_off[d], seg_int[s, 3], seg_int[s, 1], w, ratio, ub, g_lo, g_hi)
        e = _link_runs(
            sp_block,
            sp_max,
            sp_ptr[t],
            sp_ptr[t + 1],
            g_lo,
            g_hi,
            i,
            w,
            ratio,
            ub,
            head,
            ent_next,
            ent_term,
            ent_pair,
            e,
        )
    return ent_next, ent_term, ent_pair, e, g_lo, g_hi


@njit(cache=True, nogil=True)
def _own_terms(own, own_of, seg_int, q_terms, q_rows, q_info):
    """The first half of the bound pass of the segments read from their own block-max arrays
    (``own_of[s]`` >= 0: item ``own[own_of[s]]`` = (term_ptr, row_of, dense_max, tb_ptr, tb_block,
    tb_max, dense_before, tb_base, tb_off)): each one's directory read once per query (_term_info
    into ``q_rows[s]``, ``q_info[own_of[s]]``); returns the sparse entries they need."""
    n_ent = 0
    for s in range(seg_int.shape[0]):
        o = own_of[s]
        if o >= 0:
            term_ptr, row_of, _, tb_ptr, _, _, dense_before, _, _ = own[o]
            mi = np.searchsorted(q_terms, seg_int[s, 0])  # terms beyond its vocabulary: no postings
            n_ent += _term_info(term_ptr, row_of, tb_ptr, dense_before, q_terms[:mi], q_rows[s], q_info[o])
    return n_ent


@njit(cache=True, nogil=True)
def _add_own_bounds(
    own, own_of, seg_int, seg_ub, q_terms, q_weights, ub, head, ent_next, ent_term, ent_pair, e, g_lo, g_hi
):
    """The own segments' bounds (each times its ``seg_ub[s, 0]`` ratio) into ``ub`` and their sparse
    runs linked into ``head`` from entry ``e`` on (entry pairs are positions in the segment's
    arrays), within the live block range [g_lo, g_hi)."""
    for s in range(seg_int.shape[0]):
        o = own_of[s]
        if o < 0:
            continue
        _, row_of, dense_max, tb_ptr, tb_block, tb_max, _, _, _ = own[o]
        lo = seg_int[s, 3]
        hi = lo + seg_int[s, 1]
        mi = np.searchsorted(q_terms, seg_int[s, 0])
        b_lo = min(max(g_lo - lo, 0), hi - lo)
        b_hi = max(min(g_hi - lo, hi - lo), b_lo)
        e = _upper_bounds(
            row_of,
            dense_max,
            tb_ptr,
            tb_block,
            tb_max,
            seg_ub[s, 0],
            q_terms[:mi],
            q_weights[:mi],
            ub[lo:hi],
            head[lo:hi],
            ent_next,
            ent_term,
            ent_pair,
            e,
            b_lo,
            b_hi,
        )


@njit(cache=True, nogil=True)
def _slack_and_live(ub, seg_int, seg_ub, block_live, g_lo, g_hi):
    """Each segment's bounds times its slack (``seg_ub[s, 1]``); zero where ``block_live`` has no live
    doc."""
    for s in range(seg_int.shape[0]):
        if seg_ub[s, 1] != 1:
            for b in range(seg_int[s, 3], seg_int[s, 3] + seg_int[s, 1]):
                ub[b] *= seg_ub[s, 1]
    if block_live.shape[0] > 0:
        for b in range(g_lo, g_hi):
            if block_live[b] == 0:
                ub[b] = 0


@njit(cache=True, nogil=True)
def _score_merged_block(
    g,
    b,
    block_size,
    scoring,
    sp_start,
    sp_len,
    q_weights,
    q_rows,
    q_start,
    head,
    ent_next,
    ent_term,
    ent_pair,
    local_pair,
    acc,
):
    """Add the query terms' runs in global block g (block b of its segment) into acc (block-local), in
    ascending term order. ``scoring`` = the segment's (doc_ids, impacts, dense_base, dense_off);
    ``q_rows``, ``q_start`` its rows of _merged_bounds' arrays; sparse runs from the merged entries."""
    doc_ids, impacts, dense_base, dense_off = scoring
    e = head[g]
    while e >= 0:
        local_pair[ent_term[e]] = ent_pair[e]
        e = ent_next[e]
    base = b * block_size
    for i in range(q_rows.shape[0]):
        r = q_rows[i]
        if r >= 0:
            start = q_start[i]
            s = start + dense_base[r, b >> 8] + dense_off[r, b]
            end = start + dense_base[r, (b + 1) >> 8] + dense_off[r, b + 1]
        else:
            p = local_pair[i]
            if p < 0:
                continue
            local_pair[i] = -1
            s = np.int64(sp_start[p])
            end = s + np.int64(sp_len[p]) + 1
        _add_run(acc, doc_ids[s:end], impacts[s:end], base, q_weights[i])


@njit(cache=True, nogil=True)
def _score_own_block(
    b,
    block_size,
    scoring,
    own_item,
    q_weights,
    q_rows,
    q_info,
    head,
    ent_next,
    ent_term,
    ent_pair,
    local_pair,
    acc,
):
    """_score_block for block b of a segment read from its own block-max arrays (``own_item``, see
    _own_terms; ``head`` from its first block). Query terms beyond its vocabulary have row -1 and no
    linked run, so they are skipped."""
    doc_ids, impacts, dense_base, dense_off = scoring
    item = (doc_ids, impacts, dense_base, dense_off, own_item[7], own_item[8])
    _score_block(
        b, block_size, item, q_weights, q_rows, q_info, head, ent_next, ent_term, ent_pair, local_pair, acc
    )


@njit(cache=True, nogil=True)
def _bmp_multi_query(
    merged,
    own,
    own_of,
    seg_scoring,
    seg_int,
    seg_ub,
    block_size,
    q_terms,
    q_weights,
    k,
    alpha,
    ws,
    out_docs,
    out_scores,
    counters,
    live,
    block_live,
):
    """One query over all segments of a live index, as one collection of blocks. ``merged``: the
    generation's merged block maxima (``lsr.index.blockmax.MergedBounds.arrays``) of the segments
    with ``own_of[s]`` -1, read for their bounds and sparse runs; the other segments' bounds from
    their own block-max arrays (typed list ``own``, see _own_terms; the bound pass that reads each
    one's directory and runs per query); per segment, ``seg_scoring`` (typed list) = (doc_ids,
    impacts, dense_base, dense_off), fetched when the next block to score lies in another segment
    than the last one (a typed list's item costs about 30 ns per array to fetch), ``seg_int``
    int64[n_segments, 4] = (n_terms, n_blocks, first doc, first block) and ``seg_ub``
    float32[n_segments, 2] = (ub_ratio, ub_slack); ``live`` (uint8[all docs]) and ``block_live``
    (uint8[all blocks]) by global id, empty: all live; ``ws`` from _workspace over all blocks. Every
    segment's block bounds go into one array (each times its segment's slack), one bucket order ranks
    all blocks, and blocks are scored in that order into one heap of global doc ids until the k-th
    score beats the best bound left: the k-th score found in one segment prunes every other
    segment's blocks."""
    ub, head, order, cand, bkt, bucket_ptr, bucket_max, acc, hs, hd = ws
    m = q_terms.shape[0]
    q_rows = np.full((seg_int.shape[0], m), -1, np.int32)
    q_start = np.empty((seg_int.shape[0], m), np.int64)
    q_info = np.empty((len(own), m, 4), np.int64)
    extra = _own_terms(own, own_of, seg_int, q_terms, q_rows, q_info)
    ent_next, ent_term, ent_pair, e, g_lo, g_hi = _merged_bounds(
        merged, seg_int, q_terms, q_weights, ub, head, block_live, q_rows, q_start, extra
    )
    _add_own_bounds(
        own,
        own_of,
        seg_int,
        seg_ub,
        q_terms,
        q_weights,
        ub,
        head,
        ent_next,
        ent_term,
        ent_pair,
        e,
        g_lo,
        g_hi,
    )
    _slack_and_live(ub, seg_int, seg_ub, block_live, g_lo, g_hi)
    sp_start = merged[3]
    sp_len = merged[4]
    local_pair = np.full(m, -1, np.int64)
    n_cand = _bucket_order(ub, order, cand, bkt, bucket_ptr, bucket_max, g_lo, g_hi, g_hi - g_lo)
    counters[1] += n_cand
    size = 0
    bucket = 0
    all_live = live.shape[0] == 0
    block_starts = seg_int[:, 3]
    current = 0
    scoring = seg_scoring[0]
    for pos in range(n_cand):
        while pos >= bucket_ptr[bucket + 1]:
            bucket += 1
        if size == k and hs[0] > alpha * bucket_max[bucket]:
            break
        counters[0] += 1
        g = order[pos]
        i = np.searchsorted(block_starts, g, side="right") - 1
        if i != current:
            scoring = seg_scoring[i]
            current = i
        b = g - seg_int[i, 3]
        o = own_of[i]
        if o < 0:
            _score_merged_block(
                g,
                b,
                block_size,
                scoring,
                sp_start,
                sp_len,
                q_weights,
                q_rows[i],
                q_start[i],
                head,
                ent_next,
                ent_term,
                ent_pair,
                local_pair,
                acc,
            )
        else:
            _score_own_block(
                b,
                block_size,
                scoring,
                own[o],
                q_weights,
                q_rows[i],
                q_info[o],
                head[g - b :],
                ent_next,
                ent_term,
                ent_pair,
                local_pair,
                acc,
            )
        first = seg_int[i, 2] + b * block_size
        for j in range(block_size):
            s = acc[j]
            if s > 0:
                if (all_live or live[first + j]) and may_enter(hs, size, k, s):
                    size = heap_offer(hs, hd, size, k, s, first + j)
                acc[j] = 0
    ub[g_lo:g_hi] = 0  # nothing outside the range was touched
    head[g_lo:g_hi] = -1
    return heap_drain_sorted(hs, hd, size, out_scores, out_docs)


@njit(cache=True, nogil=True)
def _bmp_multi_search_one(
    merged,
    own,
    own_of,
    seg_scoring,
    seg_int,
    seg_ub,
    block_size,
    q_terms,
    q_weights,
    k,
    alpha,
    counters,
    live,
    block_live,
):
    ws = _workspace(seg_int[-1, 3] + seg_int[-1, 1], block_size, k)
    out_docs = np.empty(k, np.int32)
    out_scores = np.empty(k, np.float32)
    n = _bmp_multi_query(
        merged,
        own,
        own_of,
        seg_scoring,
        seg_int,
        seg_ub,
        block_size,
        q_terms,
        q_weights,
        k,
        alpha,
        ws,
        out_docs,
        out_scores,
        counters,
        live,
        block_live,
    )
    return out_docs[:n], out_scores[:n]


@njit(cache=True, nogil=True, parallel=True)
def _bmp_multi_search_batch(
    merged,
    own,
    own_of,
    seg_scoring,
    seg_int,
    seg_ub,
    block_size,
    q_indptr,
    q_terms,
    q_weights,
    k,
    alpha,
    n_workers,
    out_docs,
    out_scores,
    out_counts,
    live,
    block_live,
):
    """Queries in parallel over all segments: worker c takes queries c, c + n_workers, ..."""
    n_queries = q_indptr.shape[0] - 1
    for c in prange(n_workers):
        ws = _workspace(seg_int[-1, 3] + seg_int[-1, 1], block_size, k)
        counters = np.zeros(2, np.int64)
        for q in range(c, n_queries, n_workers):
            s = q_indptr[q]
            e = q_indptr[q + 1]
            out_counts[q] = _bmp_multi_query(
                merged,
                own,
                own_of,
                seg_scoring,
                seg_int,
                seg_ub,
                block_size,
                q_terms[s:e],
                q_weights[s:e],
                k,
                alpha,
                ws,
                out_docs[q],
                out_scores[q],
                counters,
                live,
                block_live,
            )


@njit(cache=True, nogil=True)
def _prune_terms(q_terms, q_weights, keep):
    """The ``keep`` heaviest terms (ties: lower term id), returned in ascending term order."""
    m = q_terms.shape[0]
    if keep >= m:
        return q_terms.copy(), q_weights.copy()
    order = np.argsort(-q_weights, kind="mergesort")[:keep]
    chosen = np.sort(order)
    return q_terms[chosen], q_weights[chosen]
