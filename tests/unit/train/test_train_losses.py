"""Losses against hand-computed values on small tensors."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from lsr.train import losses as L  # noqa: E402


def test_flops_value_and_gradient():
    w = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 0.0]], requires_grad=True)
    value = L.flops(w)
    # means over the batch: [2, 0, 1] -> 4 + 0 + 1
    assert value.item() == pytest.approx(5.0)
    value.backward()
    # d/dw_bv = 2 * mean_v / N
    assert torch.allclose(w.grad, torch.tensor([[2.0, 0.0, 1.0], [2.0, 0.0, 1.0]]))


def test_flops_lambda_quadratic_warmup():
    assert L.flops_lambda(0.1, 0, 100) == 0.0
    assert L.flops_lambda(0.1, 50, 100) == pytest.approx(0.025)
    assert L.flops_lambda(0.1, 100, 100) == pytest.approx(0.1)
    assert L.flops_lambda(0.1, 500, 100) == pytest.approx(0.1)
    assert L.flops_lambda(0.1, 3, 0) == 0.1


def test_margin_mse_by_hand():
    student = torch.tensor([[3.0, 1.0, 2.0]])
    teacher = torch.tensor([[5.0, 1.0, 5.0]])
    # student margins [2, 1], teacher margins [4, 0]: ((2-4)^2 + (1-0)^2) / 2
    assert L.margin_mse(student, teacher)["margin_mse"].item() == pytest.approx(2.5)


def test_kl_by_hand_and_zero_when_equal():
    s = torch.tensor([[0.0, math.log(3.0)]])  # softmax [1/4, 3/4]
    t = torch.tensor([[math.log(3.0), 0.0]])  # softmax [3/4, 1/4]
    expected = 0.75 * math.log(0.75 / 0.25) + 0.25 * math.log(0.25 / 0.75)
    assert L.kl_distill(s, t)["kl"].item() == pytest.approx(expected, rel=1e-5)
    assert L.kl_distill(t, t)["kl"].item() == pytest.approx(0.0, abs=1e-7)
    # the temperature divides both
    assert L.kl_distill(2 * s, 2 * t, temperature=2.0)["kl"].item() == pytest.approx(expected, rel=1e-5)


def test_in_batch_nll_by_hand():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # 2 queries x 2 candidates: rows 0,1 for query 0 (positive row 0), rows 2,3 for query 1 (positive row 2)
    docs = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 3.0], [0.0, 0.0]])
    scores = q @ docs.T  # [[2, 1, 0, 0], [0, 1, 3, 0]]
    nll0 = -(2 - math.log(math.exp(2) + math.exp(1) + 2))
    nll1 = -(3 - math.log(1 + math.exp(1) + math.exp(3) + 1))
    assert scores.tolist() == [[2.0, 1.0, 0.0, 0.0], [0.0, 1.0, 3.0, 0.0]]
    assert L.in_batch_nll(q, docs, 2)["nll"].item() == pytest.approx((nll0 + nll1) / 2, rel=1e-6)


def test_candidate_scores_only_own_candidates():
    q = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    docs = torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [2.0, 2.0]])
    assert L.candidate_scores(q, docs, 2).tolist() == [[3.0, 2.0], [3.0, 6.0]]


def test_normalization_and_ensemble_weights():
    a = torch.tensor([[1.0, 3.0, 2.0]])
    assert L.normalize_scores(a, "minmax").tolist()[0] == pytest.approx([0.0, 1.0, 0.5], abs=1e-5)
    z = L.normalize_scores(a, "zscore")[0]
    sd = math.sqrt(2 / 3)
    assert z.tolist() == pytest.approx([-1 / sd, 1 / sd, 0.0], abs=1e-5)
    assert torch.equal(L.normalize_scores(a, "none"), a)
    b = torch.tensor([[10.0, 0.0, 20.0]])  # another scale: minmax [0.5, 0, 1]
    mixed = L.ensemble_teacher({"dense": a, "bm25": b}, {"dense": 1.0, "bm25": 3.0}, "minmax", scale=4.0)
    expected = [4 * (1 * x + 3 * y) / 4 for x, y in zip([0.0, 1.0, 0.5], [0.5, 0.0, 1.0], strict=True)]
    assert mixed.tolist()[0] == pytest.approx(expected, abs=1e-4)
    # a zero weight drops a teacher even if its scores are missing
    only = L.ensemble_teacher({"bm25": b}, {"bm25": 1.0, "dense": 0.0}, "minmax")
    assert only.tolist()[0] == pytest.approx([0.5, 0.0, 1.0], abs=1e-5)
    with pytest.raises(ValueError, match="splade"):
        L.ensemble_teacher({"bm25": b}, {"splade": 1.0}, "minmax")


def test_idf_aware_ranking_gradient_scales_with_idf():
    """The inference-free score sum_t idf(t) q(t) w_d(t): the ranking gradient on each document term is its
    IDF, while FLOPS on the raw weights gives every term the same push at equal weight, so low-IDF terms
    lose first."""
    idf = torch.tensor([0.5, 2.0, 4.0])
    presence = torch.tensor([[1.0, 1.0, 1.0]])
    w = torch.tensor([[1.0, 1.0, 1.0]], requires_grad=True)
    score = ((presence * idf) @ w.T).sum()
    score.backward()
    assert w.grad.tolist() == [[0.5, 2.0, 4.0]]
    w2 = w.detach().clone().requires_grad_(True)
    L.flops(w2).backward()
    assert w2.grad.tolist() == [[2.0, 2.0, 2.0]]  # the same for every term: net push = flops - idf


def test_threshold_mask_forward_and_straight_through():
    mask = L.ThresholdMask(0.5)
    w = torch.tensor([[0.2, 0.6, 0.0, 1.0]], requires_grad=True)
    out = mask(w)
    assert out.tolist() == [[0.0, pytest.approx(0.6), 0.0, 1.0]]
    out.sum().backward()
    assert w.grad.tolist() == [[1.0, 1.0, 1.0, 1.0]]  # straight-through
    assert L.ThresholdMask(0.0)(w) is w
    learned = L.ThresholdMask(0.5, learn=True)
    v = torch.tensor([[0.4, 0.6]], requires_grad=True)
    y = learned(v)
    assert y.tolist() == [[0.0, pytest.approx(0.6)]]
    y.sum().backward()  # a larger sum wants a lower threshold: positive gradient on -tau, so tau.grad < 0
    assert learned.tau.grad.item() < 0


def test_df_penalty_shape_of_the_generalized_logistic():
    df = torch.tensor([0.0, 0.001, 0.01, 0.1, 0.5, 1.0])
    p = L.df_penalty(df, alpha=0.1, beta=2.0)
    assert p[0] == pytest.approx(0.0, abs=1e-5) and p[-1] == pytest.approx(1.0)
    assert p[3] == pytest.approx(0.5)  # the penalty is one half at df = alpha
    assert torch.all(p[1:] >= p[:-1])  # more frequent terms cost more
    # by hand at df = 0.01: x^(log_0.1 2) = 0.01^(-0.30103) = 4.0 -> 1 / (1 + 3^2)
    assert p[2] == pytest.approx(0.1, rel=1e-4)


def test_df_flops_weights_each_term_by_its_penalty():
    w = torch.tensor([[1.0, 2.0, 0.0], [3.0, 0.0, 4.0]], requires_grad=True)
    penalty = torch.tensor([1.0, 0.5, 0.0])
    value = L.df_flops(w, penalty)
    assert value.item() == pytest.approx(1.0 * 2.0**2 + 0.5 * 1.0**2 + 0.0)
    value.backward()  # d/dw_bv = p_v * 2 * mean_v / B
    assert w.grad.tolist() == [[2.0, 0.5, 0.0], [2.0, 0.5, 0.0]]
    # with every penalty 1 it is plain FLOPS
    assert L.df_flops(w, torch.ones(3)).item() == pytest.approx(L.flops(w).item())


def test_l0_mask_leaves_sparse_documents_out_of_flops():
    # rows with 1, 2 and 3 non-zeros; a mask of 2 keeps only the last one, the mean still over 3 rows
    w = torch.tensor([[3.0, 0.0, 0.0], [1.0, 2.0, 0.0], [3.0, 3.0, 3.0]], requires_grad=True)
    masked = L.l0_masked(w, 2)
    assert masked.tolist() == [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [3.0, 3.0, 3.0]]
    value = L.flops(masked)
    assert value.item() == pytest.approx(3 * 1.0**2)  # means [1, 1, 1]
    value.backward()  # only the dense row gets the regularizer's gradient: 2 * mean_v / N
    assert torch.allclose(w.grad, torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [2 / 3, 2 / 3, 2 / 3]]))
    assert L.l0_masked(w, 0) is w  # 0: no mask
    one = L.l0_masked(w, 1).tolist()
    assert one[0] == [0.0, 0.0, 0.0] and one[1] == [1.0, 2.0, 0.0]


def test_the_trainer_masks_sparse_documents_out_of_the_document_flops():
    pytest.importorskip("transformers")
    from lsr.errors import ConfigError
    from lsr.train import trainer as train_loop
    from lsr.train.config import LossConfig, load_train_config

    d = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 2.0, 0.0, 0.0]])
    q = torch.ones(2, 4)
    base = ["train.negatives=1", "loss.kl=0", "loss.nll=1", "model.kind=unicoil"]
    plain = train_loop._losses(load_train_config(overrides=base), q, d, {}, step=1000)
    masked_cfg = load_train_config(overrides=[*base, "loss.l0_mask_nnz=2"])
    masked = train_loop._losses(masked_cfg, q, d, {}, step=1000)
    assert plain["flops_doc"].item() == pytest.approx(L.flops(d).item())
    assert masked["flops_doc"].item() == pytest.approx(4 * 0.25**2)  # only the 4-term row counts
    assert torch.equal(plain["nll"], masked["nll"])  # the ranking loss sees every document
    assert "l0 mask: documents of at most 2 non-zeros" in train_loop._card_flops_tail(masked_cfg)
    for bad in (-1, 2.5, True):
        with pytest.raises(ConfigError, match=r"loss\.l0_mask_nnz"):
            LossConfig(l0_mask_nnz=bad)
