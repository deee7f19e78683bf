"""The bounded top-k heap with its cheap pre-test (``may_enter``) against a plain sort."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from lsr.index.kernels.topk import heap_drain_sorted, heap_offer, may_enter


@njit(cache=False)
def _select(scores, docs, k, guarded):
    """Offer every (score, doc) in the given order; with ``guarded``, only those ``may_enter`` lets by."""
    hs = np.empty(k, np.float32)
    hd = np.empty(k, np.int32)
    size = 0
    for i in range(scores.shape[0]):
        if not guarded or may_enter(hs, size, k, scores[i]):
            size = heap_offer(hs, hd, size, k, scores[i], docs[i])
    out_scores = np.empty(k, np.float32)
    out_docs = np.empty(k, np.int32)
    n = heap_drain_sorted(hs, hd, size, out_scores, out_docs)
    return out_docs[:n], out_scores[:n]


def _by_sort(scores: np.ndarray, docs: np.ndarray, k: int) -> tuple[list[int], list[float]]:
    """The reference: score descending, then doc id ascending, the first k."""
    order = sorted(range(len(docs)), key=lambda i: (-float(scores[i]), int(docs[i])))[:k]
    return [int(docs[i]) for i in order], [float(scores[i]) for i in order]


@pytest.mark.parametrize("k", [0, 1, 3, 10, 50])
@pytest.mark.parametrize("levels", [3, 20, 10_000])  # few levels: most offers tie with the root
def test_guarded_offers_select_what_a_sort_selects(k, levels):
    rng = np.random.default_rng(1000 * k + levels)
    for trial in range(30):
        n = int(rng.integers(0, 400))
        docs = rng.permutation(10 * n + 1)[:n].astype(np.int32)  # distinct ids, random offer order
        scores = (rng.integers(1, levels + 1, size=n) / 7).astype(np.float32)
        want = _by_sort(scores, docs, k)
        for guarded in (False, True):
            got_docs, got_scores = _select(scores, docs, k, guarded)
            assert got_docs.tolist() == want[0], (trial, guarded)
            assert got_scores.tolist() == want[1], (trial, guarded)


def test_may_enter_lets_ties_through_and_stops_lower_scores():
    hs = np.array([2.0, 5.0], np.float32)  # a full heap of k = 2, root score 2
    assert may_enter(hs, 2, 2, np.float32(2.0))  # a tie may still enter by a lower doc id
    assert not may_enter(hs, 2, 2, np.float32(1.9))
    assert may_enter(hs, 1, 2, np.float32(0.1))  # not full: everything enters
    assert not may_enter(np.empty(0, np.float32), 0, 0, np.float32(9.0))  # k = 0: nothing
