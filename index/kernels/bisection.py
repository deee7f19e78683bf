"""Recursive graph bisection (Dhulipala et al., KDD 2016; Mackenzie et al., ECIR 2021) in numba.

Input: the forward index as CSR (``indptr``, ``term_ids``) and a permutation
``perm`` of doc ids. Level by level, every range of ``perm`` longer than
``leaf_size`` is halved; documents are swapped between the halves while a swap
lowers the estimated log-gap cost of the posting lists,

    cost(half) = sum_t deg_t * log2(n_half / (deg_t + 1)),

where ``deg_t`` counts the half's documents containing term t. The gain of
moving a document is the cost difference over its terms; the best gains on
both sides are paired and swapped while their sum is positive. ``log2`` comes
from a table (``log2_table[x] = log2(x)``). A range with many more postings than
terms first tabulates each term's move gain once (the same float64 as computing it per
posting), so a document's gain is a sum of table reads in the same order.
Large ranges (the top levels) are bisected one at a time with the documents
split across threads; once a level has enough ranges, ranges run in parallel, each
worker thread reusing its degree arrays (cleared term by term for small ranges).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

TABLE_RATIO = 1  # tabulate move gains when a range has more than this many postings per term
CLEAR_RATIO = 8  # clear degrees term by term when a range has fewer than 1 / this postings per term


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
    """Add the documents' terms to ``deg``; return their number of postings."""
    n = 0
    for i in range(docs.shape[0]):
        d = docs[i]
        for p in range(indptr[d], indptr[d + 1]):
            deg[term_ids[p]] += 1
        n += indptr[d + 1] - indptr[d]
    return n


@njit(cache=True, nogil=True)
def _clear(indptr, term_ids, docs, deg_l, deg_r):
    """Zero both degree arrays at the documents' terms."""
    for i in range(docs.shape[0]):
        d = docs[i]
        for p in range(indptr[d], indptr[d + 1]):
            deg_l[term_ids[p]] = 0
            deg_r[term_ids[p]] = 0


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
def _gain_table(deg_from, deg_to, log_from, log_to, lg, table, lo, hi):
    """``table[t]``: the move gain of term t (read only for terms of the half's documents)."""
    for t in range(lo, hi):
        table[t] = _move_gain(deg_from[t], deg_to[t], log_from, log_to, lg)


@njit(cache=True, nogil=True)
def _table_gains(indptr, term_ids, docs, table, gains, lo, hi):
    """_gains from tabulated move gains: the same terms added in the same order."""
    for i in range(lo, hi):
        d = docs[i]
        g = 0.0
        for p in range(indptr[d], indptr[d + 1]):
            g += table[term_ids[p]]
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
def _bisect(indptr, term_ids, part, iterations, lg, deg_l, deg_r, table_l, table_r):
    """Reorder ``part`` (a view of perm) in place: its two halves become the split. ``deg_l`` and
    ``deg_r`` (one per term) are zero on entry and on return; ``table_l``/``table_r`` are scratch."""
    n_terms = deg_l.shape[0]
    mid = part.shape[0] // 2
    left = part[:mid]
    right = part[mid:]
    gain_l = np.empty(left.shape[0], np.float64)
    gain_r = np.empty(right.shape[0], np.float64)
    log_l = lg[left.shape[0]]
    log_r = lg[right.shape[0]]
    for _ in range(iterations):
        n = _degrees(indptr, term_ids, left, deg_l) + _degrees(indptr, term_ids, right, deg_r)
        if n > TABLE_RATIO * n_terms:
            _gain_table(deg_l, deg_r, log_l, log_r, lg, table_l, 0, n_terms)
            _gain_table(deg_r, deg_l, log_r, log_l, lg, table_r, 0, n_terms)
            _table_gains(indptr, term_ids, left, table_l, gain_l, 0, left.shape[0])
            _table_gains(indptr, term_ids, right, table_r, gain_r, 0, right.shape[0])
            deg_l[:] = 0
            deg_r[:] = 0
        else:
            _gains(indptr, term_ids, left, deg_l, deg_r, log_l, log_r, lg, gain_l, 0, left.shape[0])
            _gains(indptr, term_ids, right, deg_r, deg_l, log_r, log_l, lg, gain_r, 0, right.shape[0])
            if n * CLEAR_RATIO < n_terms:
                _clear(indptr, term_ids, part, deg_l, deg_r)
            else:
                deg_l[:] = 0
                deg_r[:] = 0
        if _swap_best(left, right, gain_l, gain_r) == 0:
            break


@njit(cache=True, nogil=True, parallel=True)
def _bisect_wide(indptr, term_ids, part, n_terms, iterations, lg, n_threads):
    """_bisect for one large range: degree counts, gain tables and gains split across ``n_threads``
    threads."""
    mid = part.shape[0] // 2
    left = part[:mid]
    right = part[mid:]
    deg = np.zeros((2 * n_threads, n_terms), np.int32)
    table = np.empty((2, n_terms), np.float64)
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
            lo = j * n_terms // n_threads
            hi = (j + 1) * n_terms // n_threads
            if c % 2 == 0:
                _gain_table(deg_l, deg_r, log_l, log_r, lg, table[0], lo, hi)
            else:
                _gain_table(deg_r, deg_l, log_r, log_l, lg, table[1], lo, hi)
        for c in prange(2 * n_threads):
            j = c // 2
            side = left if c % 2 == 0 else right
            gains = gain_l if c % 2 == 0 else gain_r
            lo = j * side.shape[0] // n_threads
            hi = (j + 1) * side.shape[0] // n_threads
            _table_gains(indptr, term_ids, side, table[c % 2], gains, lo, hi)
        if _swap_best(left, right, gain_l, gain_r) == 0:
            break


@njit(cache=True, nogil=True, parallel=True)
def _bisect_level(indptr, term_ids, perm, starts, ends, n_terms, iterations, lg, n_workers):
    """_bisect for every range ``[starts[r], ends[r])`` of ``perm``: ``n_workers`` workers take every
    n_workers-th range, each with its own degree arrays and tables."""
    for w in prange(n_workers):
        deg_l = np.zeros(n_terms, np.int32)
        deg_r = np.zeros(n_terms, np.int32)
        table_l = np.empty(n_terms, np.float64)
        table_r = np.empty(n_terms, np.float64)
        for r in range(w, starts.shape[0], n_workers):
            part = perm[starts[r] : ends[r]]
            _bisect(indptr, term_ids, part, iterations, lg, deg_l, deg_r, table_l, table_r)
