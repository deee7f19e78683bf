"""Score fusion (lsr.dense.fusion): normalizations, convex combinations, RRF, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from lsr.dense.fusion import fuse, fused_order, minmax, ranks, zscore


def test_minmax_and_zscore_values():
    np.testing.assert_allclose(minmax([2.0, 4.0, 3.0]), [0.0, 1.0, 0.5])
    z = zscore([1.0, 2.0, 3.0])
    np.testing.assert_allclose(z, [-1.224744871, 0.0, 1.224744871])
    assert not minmax([5.0, 5.0]).any() and not zscore([5.0]).any()  # constant lists carry no signal
    assert len(minmax([])) == 0 and len(zscore([])) == 0


def test_ranks_break_ties_by_position():
    assert ranks([0.5, 0.9, 0.5, 0.1]).tolist() == [2.0, 1.0, 3.0, 4.0]


def test_convex_minmax_by_hand():
    sparse, dense = np.array([10.0, 8.0, 6.0]), np.array([0.2, 0.6, 0.4])
    # mm(sparse) = [1, .5, 0], mm(dense) = [0, 1, .5]
    np.testing.assert_allclose(fuse(sparse, dense, "convex-minmax", 0.3), [0.7, 0.35 + 0.3, 0.15])


@pytest.mark.parametrize("method", ["convex-minmax", "convex-zscore", "rrf"])
def test_weight_zero_keeps_sparse_order_and_one_gives_dense_order(method):
    rng = np.random.default_rng(0)
    sparse, dense = rng.normal(size=30), rng.normal(size=30)
    order0, _ = fused_order(sparse, dense, method, 0.0)
    order1, _ = fused_order(sparse, dense, method, 1.0)
    assert order0.tolist() == np.argsort(-sparse, kind="stable").tolist()
    assert order1.tolist() == np.argsort(-dense, kind="stable").tolist()


def test_rrf_by_hand():
    sparse, dense = np.array([3.0, 2.0, 1.0]), np.array([1.0, 3.0, 2.0])
    expect = [0.5 / 61 + 0.5 / 63, 0.5 / 62 + 0.5 / 61, 0.5 / 63 + 0.5 / 62]
    np.testing.assert_allclose(fuse(sparse, dense, "rrf", 0.5), expect)


def test_fusion_of_empty_lists():
    order, fused = fused_order(np.zeros(0), np.zeros(0))
    assert len(order) == 0 and len(fused) == 0


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="'cosine' is not one of"):
        fuse([1.0], [1.0], "cosine", 0.5)
    with pytest.raises(ValueError, match=r"weight 1.5 must lie in \[0, 1\]"):
        fuse([1.0], [1.0], "convex-minmax", 1.5)
    with pytest.raises(ValueError, match="same length"):
        fuse([1.0, 2.0], [1.0], "convex-minmax", 0.5)
