"""Pruning for approx over pruned lists (index/approx.py): static pruning of posting lists (per term,
its ``n_keep`` postings of highest impact, ties to the lower doc id, kept in doc order) and query
pruning by weight mass (a query's heaviest terms holding a given share of its weight)."""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, nogil=True)
def _pruned_lengths(term_ptr, n_keep):
    """Postings kept per term: min(list length, n_keep)."""
    n_terms = term_ptr.shape[0] - 1
    out = np.zeros(n_terms + 1, np.int64)
    for t in range(n_terms):
        out[t + 1] = out[t] + min(term_ptr[t + 1] - term_ptr[t], n_keep)
    return out


@njit(cache=True, nogil=True, parallel=True)
def _prune_lists(term_ptr, doc_ids, impacts, n_keep, max_impact, out_ptr, out_docs, out_impacts, n_workers):
    """Fill ``out_docs`` / ``out_impacts`` (``out_ptr`` from _pruned_lengths): a longer list keeps
    its postings above the n_keep-th largest impact v and the first ones (lowest doc ids) at v, found
    with a histogram of the list's integer impacts. ``n_workers`` workers take every n_workers-th
    term, each with its own histogram (every term is written at ``out_ptr``: the same output for any
    number of workers)."""
    n_terms = term_ptr.shape[0] - 1
    for w in prange(n_workers):
        hist = np.zeros(max_impact + 1, np.int64)
        for t in range(w, n_terms, n_workers):
            _prune_list(
                doc_ids,
                impacts,
                term_ptr[t],
                term_ptr[t + 1],
                n_keep,
                max_impact,
                out_ptr[t],
                hist,
                out_docs,
                out_impacts,
            )


@njit(cache=True, nogil=True)
def _prune_list(doc_ids, impacts, lo, hi, n_keep, max_impact, pos, hist, out_docs, out_impacts):
    """One list of _prune_lists, written from ``pos``; ``hist`` is zero on entry and on return."""
    if hi - lo <= n_keep:
        _keep_above(doc_ids, impacts, lo, hi, 0, 0, pos, out_docs, out_impacts)
        return
    for j in range(lo, hi):
        hist[impacts[j]] += 1
    above = 0  # postings with an impact above v
    v = max_impact
    while above + hist[v] < n_keep:
        above += hist[v]
        v -= 1
    _keep_above(doc_ids, impacts, lo, hi, v, n_keep - above, pos, out_docs, out_impacts)
    for j in range(lo, hi):
        hist[impacts[j]] = 0


@njit(cache=True, nogil=True)
def _keep_above(doc_ids, impacts, lo, hi, v, ties, pos, out_docs, out_impacts):
    """Copy the postings of [lo, hi) with an impact above ``v`` and the first ``ties`` at ``v`` (doc
    order) to ``out_*`` from ``pos``; impacts are > 0, so ``v = 0`` copies the whole list."""
    for j in range(lo, hi):
        x = impacts[j]
        if x > v or (x == v and ties > 0):
            if x == v:
                ties -= 1
            out_docs[pos] = doc_ids[j]
            out_impacts[pos] = x
            pos += 1


@njit(cache=True, nogil=True, parallel=True)
def _prune_float_lists(term_ptr, doc_ids, impacts, n_keep, out_ptr, out_docs, out_impacts, n_workers):
    """_prune_lists for float impacts: the n_keep-th largest impact v of a longer list is found by a
    partition of a copy of the list's impacts; the postings above v and the first ones at v are kept."""
    n_terms = term_ptr.shape[0] - 1
    for w in prange(n_workers):
        for t in range(w, n_terms, n_workers):
            lo = term_ptr[t]
            hi = term_ptr[t + 1]
            if hi - lo <= n_keep:
                _keep_above(doc_ids, impacts, lo, hi, 0, 0, out_ptr[t], out_docs, out_impacts)
                continue
            v = np.partition(impacts[lo:hi].copy(), hi - lo - n_keep)[hi - lo - n_keep]
            ties = n_keep
            for j in range(lo, hi):
                if impacts[j] > v:
                    ties -= 1
            _keep_above(doc_ids, impacts, lo, hi, v, ties, out_ptr[t], out_docs, out_impacts)


@njit(cache=True, nogil=True)
def _mass_cut(q_terms, q_weights, mass):
    """The query's heaviest terms (ties: the lower position first) up to the first whose running sum
    reaches ``mass`` x the query's total weight (float64 sums), in their original (term) order: the
    smallest such set, at least one term of a non-empty query."""
    m = q_terms.shape[0]
    order = np.argsort(-q_weights.astype(np.float64), kind="mergesort")
    total = 0.0
    for i in range(m):
        total += np.float64(q_weights[i])
    need = mass * total
    keep = np.zeros(m, np.bool_)
    run = 0.0
    for j in range(m):
        i = order[j]
        keep[i] = True
        run += np.float64(q_weights[i])
        if run >= need:
            break
    n = 0
    for i in range(m):
        n += np.int64(keep[i])
    out_terms = np.empty(n, q_terms.dtype)
    out_weights = np.empty(n, q_weights.dtype)
    n = 0
    for i in range(m):
        if keep[i]:
            out_terms[n] = q_terms[i]
            out_weights[n] = q_weights[i]
            n += 1
    return out_terms, out_weights
