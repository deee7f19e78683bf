"""Graph bisection's kernels (lsr.index.kernels.bisection): tabulated move gains against the gain
computed per posting and against the formula in plain Python, and a level of ranges bisected by
workers that reuse their degree arrays against each range bisected alone with fresh arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest
from corpora import random_corpus

from lsr.index.kernels.bisection import (
    _bisect,
    _bisect_level,
    _degrees,
    _gain_table,
    _gains,
    _log2_table,
    _table_gains,
)


def _forward(seed: int, n_docs: int = 120, n_terms: int = 50):
    corpus = random_corpus(np.random.default_rng(seed), n_docs, n_terms, 12, integer=True)
    return corpus.indptr, corpus.term_ids.astype(np.int32), n_terms


def _python_gain(terms, deg_from, deg_to, n_from, n_to) -> float:
    """The cost change of moving a document: sum over its terms of the change of
    deg * log2(n / (deg + 1)) on both sides (n the halves' sizes, which a swap keeps)."""

    def cost(deg: int, n: int) -> float:
        return deg * (math.log2(n) - math.log2(deg + 1))

    g = 0.0
    for t in terms:
        a, b = int(deg_from[t]), int(deg_to[t])
        g += cost(a, n_from) + cost(b, n_to) - cost(a - 1, n_from) - cost(b + 1, n_to)
    return g


@pytest.mark.parametrize("seed", range(5))
def test_tabulated_gains_equal_the_gains_per_posting_bit_for_bit(seed):
    indptr, terms, n_terms = _forward(seed)
    rng = np.random.default_rng(seed)
    part = rng.permutation(len(indptr) - 1).astype(np.int64)
    left, right = part[:60], part[60:]
    lg = _log2_table(len(part))
    deg_l, deg_r = np.zeros(n_terms, np.int32), np.zeros(n_terms, np.int32)
    _degrees(indptr, terms, left, deg_l)
    _degrees(indptr, terms, right, deg_r)
    log_l, log_r = lg[len(left)], lg[len(right)]
    direct = np.empty(len(left))
    _gains(indptr, terms, left, deg_l, deg_r, log_l, log_r, lg, direct, 0, len(left))
    table = np.empty(n_terms)
    _gain_table(deg_l, deg_r, log_l, log_r, lg, table, 0, n_terms)
    tabulated = np.empty(len(left))
    _table_gains(indptr, terms, left, table, tabulated, 0, len(left))
    assert direct.tobytes() == tabulated.tobytes()
    for i, d in enumerate(left.tolist()):
        doc_terms = terms[indptr[d] : indptr[d + 1]].tolist()
        want = _python_gain(doc_terms, deg_l, deg_r, len(left), len(right))
        assert direct[i] == pytest.approx(want, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("n_workers", [1, 2, 5])
@pytest.mark.parametrize("vocab", [50, 500, 2000])  # tabulated gains; per posting, cleared whole or by term
def test_a_level_of_workers_equals_each_range_bisected_alone(seed, n_workers, vocab):
    indptr, terms, n_terms = _forward(seed, n_docs=300, n_terms=vocab)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(indptr) - 1).astype(np.int64)
    bounds = np.sort(rng.choice(np.arange(1, len(perm)), size=9, replace=False))
    starts = np.concatenate([[0], bounds]).astype(np.int64)
    ends = np.concatenate([bounds, [len(perm)]]).astype(np.int64)
    lg = _log2_table(len(perm))
    want = perm.copy()
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        fresh = [
            np.zeros(n_terms, np.int32),
            np.zeros(n_terms, np.int32),
            np.empty(n_terms),
            np.empty(n_terms),
        ]
        _bisect(indptr, terms, want[s:e], 3, lg, *fresh)
        assert not fresh[0].any() and not fresh[1].any()  # the degree arrays come back zero
    got = perm.copy()
    _bisect_level(indptr, terms, got, starts, ends, n_terms, 3, lg, n_workers)
    np.testing.assert_array_equal(got, want)
    assert not np.array_equal(got, perm)  # the level did swap documents
