"""Recursive graph bisection (Dhulipala et al., KDD 2016; Mackenzie et al., ECIR 2021) in numba.

Input: the forward index as CSR (``indptr``, ``term_ids``) and a permutation
``perm`` of doc ids. Level by level, every range of ``perm`` longer than
``leaf_size`` is halved; documents are swapped between the halves while a swap
lowers the estimated log-gap cost of the posting lists,

    cost(half) = sum_t deg_t * log2(n_half / (deg_t + 1)),

where ``deg_t`` counts the half's documents containing term t. The gain of
moving a document is the cost difference over its terms; the best gains on
both sides are paired and swapped while their sum is positive. ``log2`` comes
from a table (``log2_table[x] = log2(x)``), the hot loop's only arithmetic.
Large ranges (the top levels) are bisected one at a time with the documents
split across threads; once a level has enough ranges, ranges run in parallel.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, nogil=True)
def _log2_table(n):
    table = np.zeros(n + 2, np.float64)
    for x in range(1, n + 2):
        table[x] = np.log2(x)
    return table


@njit(cache=True, inline="always")
def _move_gain(a, b, log_from, log_to, lg):
    """Cost change when one document leaves a half where the term has degree a for one where it has b."""
    before = a * (log_from - lg[a + 1]) + b * (log_to - lg[b + 1])
    after = (a - 1) * (log_from - lg[a]) + (b + 1) * (log_to - lg[b + 2])
    return before - after


@njit(cache=True, nogil=True)
def _degrees(indptr, term_ids, docs, deg):
    for i in range(docs.shape[0]):
        d = docs[i]
        for p in range(indptr[d], indptr[d + 1]):
            deg[term_ids[p]] += 1


@njit(cache=True, nogil=True)
def _gains(indptr, term_ids, docs, deg_from, deg_to, log_from, log_to, lg, gains, lo, hi):
    for i in range(lo, hi):
        d = docs[i]
        g = 0.0
        for p in range(indptr[d], indptr[d + 1]):
            t = term_ids[p]
            g += _move_gain(deg_from[t], deg_to[t], log_from, log_to, lg)
        gains[i] = g


@njit(cache=True, nogil=True)
def _swap_best(left, right, gain_l, gain_r):
    order_l = np.argsort(-gain_l)
    order_r = np.argsort(-gain_r)
    swaps = 0
    for i in range(min(left.shape[0], right.shape[0])):
        a = order_l[i]
        b = order_r[i]
        if gain_l[a] + gain_r[b] <= 0:
            break
        left[a], right[b] = right[b], left[a]
        swaps += 1
    return swaps


@njit(cache=True, nogil=True)
def _bisect(indptr, term_ids, part, n_terms, iterations, lg):
    """Reorder ``part`` (a view of perm) in place: its two halves become the split."""
    mid = part.shape[0] // 2
    left = part[:mid]
    right = part[mid:]
    deg_l = np.zeros(n_terms, np.int32)
    deg_r = np.zeros(n_terms, np.int32)
    gain_l = np.empty(left.shape[0], np.float64)
    gain_r = np.empty(right.shape[0], np.float64)
    log_l = lg[left.shape[0]]
    log_r = lg[right.shape[0]]
    for _ in range(iterations):
        deg_l[:] = 0
        deg_r[:] = 0
        _degrees(indptr, term_ids, left, deg_l)
        _degrees(indptr, term_ids, right, deg_r)
        _gains(indptr, term_ids, left, deg_l, deg_r, log_l, log_r, lg, gain_l, 0, left.shape[0])
        _gains(indptr, term_ids, right, deg_r, deg_l, log_r, log_l, lg, gain_r, 0, right.shape[0])
        if _swap_best(left, right, gain_l, gain_r) == 0:
            break


@njit(cache=True, nogil=True, parallel=True)
def _bisect_wide(indptr, term_ids, part, n_terms, iterations, lg, n_threads):
    """_bisect for one large range: degree counts and gains split across ``n_threads`` threads."""
    mid = part.shape[0] // 2
    left = part[:mid]
    right = part[mid:]
    deg = np.zeros((2 * n_threads, n_terms), np.int32)
    gain_l = np.empty(left.shape[0], np.float64)
    gain_r = np.empty(right.shape[0], np.float64)
    log_l = lg[left.shape[0]]
    log_r = lg[right.shape[0]]
    for _ in range(iterations):
        deg[:] = 0
        for c in prange(2 * n_threads):
            side = left if c % 2 == 0 else right
            n = side.shape[0]
            j = c // 2
            _degrees(indptr, term_ids, side[j * n // n_threads : (j + 1) * n // n_threads], deg[c])
        deg_l = deg[0::2].sum(axis=0).astype(np.int32)
        deg_r = deg[1::2].sum(axis=0).astype(np.int32)
        for c in prange(2 * n_threads):
            j = c // 2
            if c % 2 == 0:
                n = left.shape[0]
                _gains(
                    indptr,
                    term_ids,
                    left,
                    deg_l,
                    deg_r,
                    log_l,
                    log_r,
                    lg,
                    gain_l,
                    j * n // n_threads,
                    (j + 1) * n // n_threads,
                )
            else:
                n = right.shape[0]
                _gains(
                    indptr,
                    term_ids,
                    right,
                    deg_r,
                    deg_l,
                    log_r,
                    log_l,
                    lg,
                    gain_r,
                    j * n // n_threads,
                    (j + 1) * n // n_threads,
                )
        if _swap_best(left, right, gain_l, gain_r) == 0:
            break


@njit(cache=True, nogil=True, parallel=True)
def _bisect_level(indptr, term_ids, perm, starts, ends, n_terms, iterations, lg):
    for r in prange(starts.shape[0]):
        _bisect(indptr, term_ids, perm[starts[r] : ends[r]], n_terms, iterations, lg)
