"""Build the block-max arrays (layout: ``lsr.index.kernels.blockmax``) from CSC posting lists.

Doc ids ascend within a term, so a term's postings inside one block are a
contiguous run of its posting list. Frequent terms (present in at least
``n_blocks / dense_ratio`` blocks) get dense rows: a max and a run offset for
every block; the others keep one (block, max, offset) entry per run.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

SUPER_SHIFT = 8  # groups of 256 blocks (dense rows) or 256 runs (sparse entries) share one base offset


@njit(cache=True, nogil=True, parallel=True)
def _count_runs(term_ptr, doc_ids, block_size):
    """Per term, the blocks its postings fall in (terms in parallel)."""
    n_terms = term_ptr.shape[0] - 1
    runs = np.zeros(n_terms, np.int64)
    for t in prange(n_terms):
        prev = -1
        n = 0
        for p in range(term_ptr[t], term_ptr[t + 1]):
            b = doc_ids[p] // block_size
            if b != prev:
                n += 1
                prev = b
        runs[t] = n
    return runs


@njit(cache=True, nogil=True, parallel=True)
def _fill_dense(term_ptr, doc_ids, impacts, block_size, dense_terms, dense_maxf, dense_base, dense_off):
    """For dense row r (term dense_terms[r]) and block b: dense_maxf[r, b] is the max impact in the
    block (0 if absent), and the term's first posting in a block >= b sits at offset
    dense_base[r, b >> SUPER_SHIFT] + dense_off[r, b] of its list (b = n_blocks: the list length).
    Rows in parallel."""
    n_blocks = dense_maxf.shape[1]
    overflow = np.zeros(dense_terms.shape[0], np.bool_)
    for r in prange(dense_terms.shape[0]):
        t = dense_terms[r]
        start = term_ptr[t]
        length = term_ptr[t + 1] - start
        b_next = 0
        ok = True
        for j in range(length):
            b = doc_ids[start + j] // block_size
            while b_next <= b:
                ok &= _set_offset(dense_base, dense_off, r, b_next, j)
                b_next += 1
            v = np.float64(impacts[start + j])
            if v > dense_maxf[r, b]:
                dense_maxf[r, b] = v
        while b_next <= n_blocks:
            ok &= _set_offset(dense_base, dense_off, r, b_next, length)
            b_next += 1
        overflow[r] = not ok
    if overflow.any():  # cannot happen with blocks of <= 256 docs; never wrap silently
        raise ValueError("block-max dense run offset does not fit uint16")


@njit(cache=True, inline="always")
def _set_offset(dense_base, dense_off, r, b, offset):
    """Record the offset of row r's block b; False if it does not fit uint16 (nothing written)."""
    sb = b >> SUPER_SHIFT
    if b & ((1 << SUPER_SHIFT) - 1) == 0:
        dense_base[r, sb] = offset
    off = offset - dense_base[r, sb]
    if off > 65535:
        return False
    dense_off[r, b] = off
    return True


@njit(cache=True, nogil=True)
def _fill_sparse(
    term_ptr, doc_ids, impacts, block_size, is_dense, tb_ptr, tb_block, tb_maxf, tb_base, tb_off, dense_before
):
    """One (block, max, run start) entry per run of every sparse term.

    Run starts are counted in *sparse coordinates*: posting positions with the dense terms' lists
    taken out (``position - dense_before[t]``). Entries follow term order, so these coordinates
    ascend without gaps, and 256 runs of at most 256 postings fit uint16 offsets: entry p starts at
    posting ``tb_base[p >> SUPER_SHIFT] + tb_off[p] + dense_before[t]``."""
    n_terms = term_ptr.shape[0] - 1
    for t in range(n_terms):
        if is_dense[t]:
            continue
        q = tb_ptr[t] - 1
        prev = -1
        for p in range(term_ptr[t], term_ptr[t + 1]):
            b = doc_ids[p] // block_size
            if b != prev:
                q += 1
                tb_block[q] = b
                tb_maxf[q] = 0
                pos = p - dense_before[t]
                if q & ((1 << SUPER_SHIFT) - 1) == 0:
                    tb_base[q >> SUPER_SHIFT] = pos
                off = pos - tb_base[q >> SUPER_SHIFT]
                if off > 65535:  # cannot happen with runs of <= 256 postings; never wrap silently
                    raise ValueError("block-max sparse run offset does not fit uint16")
                tb_off[q] = off
                prev = b
            v = np.float64(impacts[p])
            if v > tb_maxf[q]:
                tb_maxf[q] = v


@njit(cache=True, nogil=True)
def _merge_sparse(
    term_ptr,
    tb_ptr,
    tb_block,
    tb_max,
    tb_base,
    tb_off,
    dense_before,
    first_block,
    ratio,
    scaled,
    cursor,
    sp_block,
    sp_max,
    sp_start,
    sp_len,
):
    """One segment's sparse runs into a generation's merged entries (``lsr.index.blockmax.MergedBounds``),
    each term's at ``cursor[t]`` (advanced): global block, max (times ``ratio`` if ``scaled``), first
    posting and length - 1."""
    for t in range(tb_ptr.shape[0] - 1):
        c = cursor[t]
        end_t = tb_ptr[t + 1]
        for p in range(tb_ptr[t], end_t):
            s = tb_base[p >> SUPER_SHIFT] + tb_off[p] + dense_before[t]
            if p + 1 < end_t:
                e = tb_base[(p + 1) >> SUPER_SHIFT] + tb_off[p + 1] + dense_before[t]
            else:
                e = term_ptr[t + 1]
            sp_block[c] = first_block + tb_block[p]
            if scaled:
                sp_max[c] = np.float32(tb_max[p]) * ratio
            else:
                sp_max[c] = tb_max[p]
            sp_start[c] = s
            sp_len[c] = e - s - 1
            c += 1
        cursor[t] = c
