"""Recursive graph bisection (Dhulipala et al., KDD 2016; Mackenzie et al., ECIR 2021) in numba.

Input: the forward index as CSR (``indptr``, ``term_ids``) and a permutation
``perm`` of doc ids. Level by level, every range of ``perm`` longer than
``leaf_size`` is halved; documents are swapped between the halves while a swap
lowers the estimated log-gap cost of the posting lists,

    cost(half) = sum_t deg_t * log2(n_half / (deg_t + 1)),

where ``deg_t`` counts the half's documents containing term t. The gain of
moving a document is the cost difference over its terms; the best gains on
both sides are paired and swapped while their sum is positive. Ranges of one
level are independent and run in parallel.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, inline="always")
def _cost(deg, n):
    return deg * np.log2(n / (deg + 1.0))


@njit(cache=True, nogil=True)
def _degrees(indptr, term_ids, docs, deg):
    for i in range(docs.shape[0]):
        d = docs[i]
        for p in range(indptr[d], indptr[d + 1]):
            deg[term_ids[p]] += 1


@njit(cache=True, nogil=True)
def _gains(indptr, term_ids, docs, deg_from, deg_to, n_from, n_to, gains):
    for i in range(docs.shape[0]):
        d = docs[i]
        g = 0.0
        for p in range(indptr[d], indptr[d + 1]):
            t = term_ids[p]
            a = deg_from[t]
            b = deg_to[t]
            before = _cost(a, n_from) + _cost(b, n_to)
            after = _cost(a - 1, n_from) + _cost(b + 1, n_to)
            g += before - after
        gains[i] = g


@njit(cache=True, nogil=True)
def _bisect(indptr, term_ids, part, n_terms, iterations):
    """Reorder ``part`` (a view of perm) in place: its first half and second half become the split."""
    n = part.shape[0]
    mid = n // 2
    left = part[:mid]
    right = part[mid:]
    deg_l = np.zeros(n_terms, np.int32)
    deg_r = np.zeros(n_terms, np.int32)
    gain_l = np.empty(left.shape[0], np.float64)
    gain_r = np.empty(right.shape[0], np.float64)
    for _ in range(iterations):
        deg_l[:] = 0
        deg_r[:] = 0
        _degrees(indptr, term_ids, left, deg_l)
        _degrees(indptr, term_ids, right, deg_r)
        _gains(indptr, term_ids, left, deg_l, deg_r, float(left.shape[0]), float(right.shape[0]), gain_l)
        _gains(indptr, term_ids, right, deg_r, deg_l, float(right.shape[0]), float(left.shape[0]), gain_r)
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
        if swaps == 0:
            break


@njit(cache=True, nogil=True, parallel=True)
def _bisect_level(indptr, term_ids, perm, starts, ends, n_terms, iterations):
    for r in prange(starts.shape[0]):
        _bisect(indptr, term_ids, perm[starts[r] : ends[r]], n_terms, iterations)
