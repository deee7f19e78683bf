"""Static pruning of posting lists (index/approx.py): per term, its ``n_keep`` postings of highest
impact, ties to the lower doc id, kept in doc order."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _pruned_lengths(term_ptr, n_keep):
    """Postings kept per term: min(list length, n_keep)."""
    n_terms = term_ptr.shape[0] - 1
    out = np.zeros(n_terms + 1, np.int64)
    for t in range(n_terms):
        out[t + 1] = out[t] + min(term_ptr[t + 1] - term_ptr[t], n_keep)
    return out


@njit(cache=True, nogil=True)
def _prune_lists(term_ptr, doc_ids, impacts, n_keep, max_impact, out_ptr, out_docs, out_impacts):
    """Fill ``out_docs`` / ``out_impacts`` (``out_ptr`` from _pruned_lengths): a longer list keeps
    its postings above the n_keep-th largest impact v and the first ones (lowest doc ids) at v, found
    with a histogram of the list's integer impacts."""
    hist = np.zeros(max_impact + 1, np.int64)
    for t in range(term_ptr.shape[0] - 1):
        lo, hi = term_ptr[t], term_ptr[t + 1]
        pos = out_ptr[t]
        if hi - lo <= n_keep:
            for j in range(lo, hi):
                out_docs[pos] = doc_ids[j]
                out_impacts[pos] = impacts[j]
                pos += 1
            continue
        for j in range(lo, hi):
            hist[impacts[j]] += 1
        above = 0  # postings with an impact above v
        v = max_impact
        while above + hist[v] < n_keep:
            above += hist[v]
            v -= 1
        ties = n_keep - above  # postings at impact v to keep, in doc order
        for j in range(lo, hi):
            x = impacts[j]
            if x > v or (x == v and ties > 0):
                if x == v:
                    ties -= 1
                out_docs[pos] = doc_ids[j]
                out_impacts[pos] = x
                pos += 1
        for j in range(lo, hi):
            hist[impacts[j]] = 0
