"""Build the block-max arrays (see ``lsr.index.kernels.blockmax``) from CSC posting lists.

Two passes over the postings in term order. Doc ids ascend within a term, so a
term's postings in one block are one run: a run is one (term, block) pair. In
block-major order, pairs of a block arrive by ascending term, and their postings
are laid out contiguously in the same order, so ``bt_post`` is one monotone array.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _count_pairs(term_ptr, doc_ids, block_size, n_blocks):
    n_terms = term_ptr.shape[0] - 1
    tb_count = np.zeros(n_terms, np.int64)
    bt_count = np.zeros(n_blocks, np.int64)
    bp_count = np.zeros(n_blocks, np.int64)
    for t in range(n_terms):
        prev = -1
        for p in range(term_ptr[t], term_ptr[t + 1]):
            b = doc_ids[p] // block_size
            bp_count[b] += 1
            if b != prev:
                tb_count[t] += 1
                bt_count[b] += 1
                prev = b
    return tb_count, bt_count, bp_count


@njit(cache=True, nogil=True)
def _fill_pairs(term_ptr, doc_ids, impacts, block_size, tb_ptr, bt_ptr, bp_start, tb_block, tb_maxf, bt_term,
                bt_post, bp_doc, bp_impact):
    n_terms = term_ptr.shape[0] - 1
    bt_fill = bt_ptr[:-1].copy()
    bp_fill = bp_start[:-1].copy()
    for t in range(n_terms):
        q = tb_ptr[t] - 1
        prev = -1
        for p in range(term_ptr[t], term_ptr[t + 1]):
            d = doc_ids[p]
            b = d // block_size
            if b != prev:
                q += 1
                tb_block[q] = b
                tb_maxf[q] = 0
                pair = bt_fill[b]
                bt_fill[b] += 1
                bt_term[pair] = t
                bt_post[pair] = bp_fill[b]
                prev = b
            pos = bp_fill[b]
            bp_doc[pos] = d - b * block_size
            bp_impact[pos] = impacts[p]
            bp_fill[b] += 1
            v = np.float64(impacts[p])
            if v > tb_maxf[q]:
                tb_maxf[q] = v
    bt_post[bt_post.shape[0] - 1] = bp_start[bp_start.shape[0] - 1]
