"""Structural checks of loaded arrays: the invariants the search kernels rely on, in one pass each.

The search kernels index arrays without bounds checks (numba), so a damaged file that still has
the right dtype and shape could make them read or write outside an array. These checks run when an
index is opened; each returns ``(0, 0)`` when the arrays are sound, else ``(code, where)`` (a term
id or a posting position; codes in ``lsr.index.integrity``). They only read in-bounds positions
themselves, whatever the input.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _check_postings(term_ptr, doc_ids, impacts, n_docs):
    """term_ptr starts at 0, never decreases and ends at len(doc_ids); doc ids lie in [0, n_docs) and
    strictly ascend within each term; impacts are finite and > 0.

    Codes: 1 bad term_ptr (where: term), 2 doc id out of range, 3 doc ids not ascending,
    4 impact not finite and > 0 (where: posting)."""
    n = doc_ids.shape[0]
    if term_ptr.shape[0] == 0 or term_ptr[0] != 0:
        return 1, 0
    for t in range(term_ptr.shape[0] - 1):  # term_ptr alone first, so its damage is blamed on it
        if term_ptr[t + 1] < term_ptr[t] or term_ptr[t + 1] > n:
            return 1, t
    for t in range(term_ptr.shape[0] - 1):
        s = term_ptr[t]
        e = term_ptr[t + 1]
        prev = -1
        for p in range(s, e):
            d = doc_ids[p]
            if d < 0 or d >= n_docs:
                return 2, p
            if d <= prev:
                return 3, p
            prev = d
            v = np.float64(impacts[p])
            if not (v > 0 and v < np.inf):
                return 4, p
    if term_ptr[term_ptr.shape[0] - 1] != n:
        return 1, term_ptr.shape[0] - 1
    return 0, 0


@njit(cache=True, nogil=True)
def _check_dense_row(doc_ids, block_size, n_blocks, start, end, base, off):
    """0 if the runs of one dense row tile [start, end) block by block, else 7 or 8."""
    prev = start
    for b in range(n_blocks + 1):
        s = start + np.int64(base[b >> 8]) + np.int64(off[b])
        if s < prev or s > end or (b == 0 and s != start):
            return 7
        if s > prev and (doc_ids[prev] // block_size != b - 1 or doc_ids[s - 1] // block_size != b - 1):
            return 8
        prev = s
    return 0 if prev == end else 7


@njit(cache=True, nogil=True)
def _check_sparse_runs(doc_ids, block_size, n_blocks, start, end, e0, e1, tb_block, tb_base, tb_off, before):
    """0 if the entries [e0, e1) of one sparse term tile [start, end) in ascending blocks, else 8 or 9."""
    pos = start
    last = -1
    for p in range(e0, e1):
        s = tb_base[p >> 8] + np.int64(tb_off[p]) + before
        e = end
        if p + 1 < e1:
            e = tb_base[(p + 1) >> 8] + np.int64(tb_off[p + 1]) + before
        b = np.int64(tb_block[p])
        if s != pos or e <= s or e > end or b <= last or b >= n_blocks:
            return 9
        if doc_ids[s] // block_size != b or doc_ids[e - 1] // block_size != b:
            return 8
        pos = e
        last = b
    return 0 if pos == end else 9


@njit(cache=True, nogil=True)
def _check_blockmax(
    term_ptr,
    doc_ids,
    block_size,
    n_blocks,
    row_of,
    dense_base,
    dense_off,
    tb_ptr,
    tb_block,
    tb_base,
    tb_off,
    dense_before,
):
    """Every run the block-max kernels score covers exactly the term's postings of its block, in order.

    Needs sound postings (:func:`_check_postings`) and shapes checked by the caller: row_of and
    dense_before [n_terms], dense_base [n_dense, n_blocks / 256 + 1], dense_off [n_dense, n_blocks + 1],
    tb_ptr [n_terms + 1], tb_off [n_sparse], tb_base [n_sparse / 256 + 1]; n_sparse = len(tb_block).

    Codes (where: term): 5 bad tb_ptr, 6 bad row_of, 7 dense run offsets off the posting list,
    8 a run holding docs of another block, 9 sparse runs that do not tile the posting list."""
    n_terms = row_of.shape[0]
    n_sparse = tb_block.shape[0]
    if tb_ptr[0] != 0 or tb_ptr[n_terms] != n_sparse:
        return 5, 0
    next_row = 0
    for t in range(n_terms):
        start, end, e0, e1 = term_ptr[t], term_ptr[t + 1], tb_ptr[t], tb_ptr[t + 1]
        if e1 < e0 or e1 > n_sparse:
            return 5, t
        r = row_of[t]
        if r >= 0:
            if r != next_row or r >= dense_base.shape[0] or e1 != e0:
                return 6, t
            next_row += 1
            code = _check_dense_row(doc_ids, block_size, n_blocks, start, end, dense_base[r], dense_off[r])
        elif r == -1:
            code = _check_sparse_runs(
                doc_ids, block_size, n_blocks, start, end, e0, e1, tb_block, tb_base, tb_off, dense_before[t]
            )
        else:
            return 6, t
        if code:
            return code, t
    if next_row != dense_base.shape[0]:
        return 6, n_terms
    return 0, 0


@njit(cache=True, nogil=True)
def _check_superblocks(
    row_of, dense_max, tb_ptr, tb_block, tb_max, size, sb_dense_max, sb_ptr, sb_id, sb_max, sb_base, sb_off
):
    """The superblock arrays fit sound block-max arrays (:func:`_check_blockmax` first; shapes checked by
    the caller: sb_dense_max [n_dense, n_super], sb_ptr [n_terms + 1], sb_max and sb_off [n_entries],
    sb_base [n_entries / 256 + 1]; n_entries = len(sb_id)).

    Codes (where: term): 10 bad sb_ptr, 11 a sparse term's superblock entries do not tile its block
    entries in ascending superblocks, 12 a superblock max below one of its blocks' maxima."""
    n_terms = row_of.shape[0]
    n_entries = sb_id.shape[0]
    n_super = sb_dense_max.shape[1]
    if sb_ptr[0] != 0 or sb_ptr[n_terms] != n_entries:
        return 10, 0
    for r in range(dense_max.shape[0]):
        for b in range(dense_max.shape[1]):
            if sb_dense_max[r, b // size] < dense_max[r, b]:
                return 12, r
    for t in range(n_terms):
        q0, q1 = sb_ptr[t], sb_ptr[t + 1]
        if q1 < q0 or q1 > n_entries:
            return 10, t
        if row_of[t] >= 0 and q1 != q0:
            return 11, t
        pos = tb_ptr[t]
        last = -1
        for q in range(q0, q1):
            s = sb_base[q >> 8] + np.int64(sb_off[q])
            e = tb_ptr[t + 1]
            if q + 1 < q1:
                e = sb_base[(q + 1) >> 8] + np.int64(sb_off[q + 1])
            sb = np.int64(sb_id[q])
            if s != pos or e <= s or e > tb_ptr[t + 1] or sb <= last or sb >= n_super:
                return 11, t
            for x in range(s, e):
                if np.int64(tb_block[x]) // size != sb:
                    return 11, t
                if sb_max[q] < tb_max[x]:
                    return 12, t
            pos = e
            last = sb
        if pos != tb_ptr[t + 1] and row_of[t] < 0:
            return 11, t
    return 0, 0
