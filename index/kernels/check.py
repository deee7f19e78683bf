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
def _canonical_query(q_terms, q_weights, n_terms):
    """Whether a query is canonical as it is: term ids strictly ascending in [0, n_terms), weights
    finite and > 0 (the search's fast path: one pass, no copies)."""
    prev = -1
    for i in range(q_terms.shape[0]):
        t = np.int64(q_terms[i])
        w = q_weights[i]
        if t <= prev or t >= n_terms or not (w > 0 and w < np.inf):
            return False
        prev = t
    return True
