"""A bounded top-k selection over (score, doc) pairs, as a binary min-heap in two arrays.

Order: higher score first, ties broken by lower internal doc id. The heap root is
the *worst* kept entry, so a candidate enters only if it beats the root. This
total order is what makes results exactly reproducible across kernels.
"""

from __future__ import annotations

from numba import njit


@njit(inline="always", cache=True)
def _worse(s1, d1, s2, d2):
    """True if (s1, d1) ranks below (s2, d2)."""
    return s1 < s2 or (s1 == s2 and d1 > d2)


@njit(inline="always", cache=True)
def _swap(hs, hd, i, j):
    hs[i], hs[j] = hs[j], hs[i]
    hd[i], hd[j] = hd[j], hd[i]


@njit(cache=True, nogil=True)
def _sift_down(hs, hd, size, i):
    while True:
        left = 2 * i + 1
        if left >= size:
            return
        child = left
        right = left + 1
        if right < size and _worse(hs[right], hd[right], hs[left], hd[left]):
            child = right
        if _worse(hs[child], hd[child], hs[i], hd[i]):
            _swap(hs, hd, child, i)
            i = child
        else:
            return


@njit(inline="always", cache=True)
def may_enter(hs, size, k, score):
    """False when (score, any doc) cannot enter a full heap: the cheap test before ``heap_offer``.

    A score equal to the root's may still enter (a lower doc id), so ties go to ``heap_offer``,
    which decides exactly. Skipping the call for the many candidates below the root is what makes
    the selection cheap: a call to ``heap_offer`` costs about as much as scoring 10 postings."""
    return size < k or (k > 0 and score >= hs[0])


@njit(cache=True, nogil=True)
def heap_offer(hs, hd, size, k, score, doc):
    """Offer (score, doc) to a heap of capacity k holding `size` entries; return the new size."""
    if size < k:
        i = size
        hs[i] = score
        hd[i] = doc
        while i > 0:
            parent = (i - 1) // 2
            if _worse(hs[i], hd[i], hs[parent], hd[parent]):
                _swap(hs, hd, i, parent)
                i = parent
            else:
                break
        return size + 1
    if k > 0 and _worse(hs[0], hd[0], score, doc):
        hs[0] = score
        hd[0] = doc
        _sift_down(hs, hd, size, 0)
    return size


@njit(cache=True, nogil=True)
def heap_drain_sorted(hs, hd, size, out_scores, out_docs):
    """Empty the heap into out arrays, best first. Returns the number written."""
    n = size
    while size > 0:
        size -= 1
        out_scores[size] = hs[0]
        out_docs[size] = hd[0]
        hs[0] = hs[size]
        hd[0] = hd[size]
        _sift_down(hs, hd, size, 0)
    return n
