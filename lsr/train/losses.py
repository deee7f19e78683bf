"""Training losses; each returns a dict of named parts (summed by the trainer, logged one by one).

Shapes: ``B`` queries, each with ``C = 1 + n`` candidates (its positive first, then ``n`` hard
negatives); ``V`` the vocabulary. Student scores are dot products of sparse vectors held dense.

* :func:`in_batch_nll`: softmax over every document of the batch (all positives and all hard
  negatives), the query's own positive is the target.
* :func:`margin_mse`: ``mean_j ((s_pos - s_neg_j) - (t_pos - t_neg_j))^2`` (Hofstaetter et al. 2020).
* :func:`kl_distill`: ``KL(softmax(t / T) || softmax(s / T))`` over each query's candidate list.
* :func:`flops`: ``sum_v (mean_b w_bv)^2`` (Paria et al. 2020), with :func:`flops_lambda`'s
  quadratic warm-up ``lambda * min(1, step / T)^2``; :func:`l0_masked` leaves the documents that are
  already sparse out of it (the l0 mask loss of arXiv 2504.14839).
* :func:`ensemble_teacher`: the heterogeneous ensemble of arXiv 2411.04403: each teacher's raw
  scores normalized per query over the candidate list (min-max or z-score), averaged with weights,
  times a scale.

IDF-aware FLOPS (arXiv 2411.04403) needs no loss of its own: it is the combination the inference-free
model trains with (see :mod:`lsr.train.model`). The query is its IDF-weighted token table, so the
student score is ``s(q, d) = sum_t idf(t) * q(t) * w_d(t)`` and the ranking gradient on a document
weight is ``idf(t) * q(t) * dL/ds``, while :func:`flops` acts on the raw document weights ``w_d``:
at equal weight, the penalty prunes low-IDF terms first because their ranking gradient is smaller.
The "plain FLOPS" ablation trains with a binary query table (``model.query_weights: binary``), where
the ranking gradient treats every term alike.

:class:`ThresholdMask` is the optional L0-style threshold.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor


def in_batch_nll(q: Tensor, docs: Tensor, n_candidates: int, temperature: float = 1.0) -> dict[str, Tensor]:
    """Contrastive NLL with in-batch negatives.

    Args:
        q: ``[B, V]`` query vectors.
        docs: ``[B * C, V]`` document vectors, query i's candidates at rows ``i*C .. i*C + C - 1``,
            its positive first.
        n_candidates: ``C``.
    """
    scores = q @ docs.T / temperature  # [B, B*C]
    target = torch.arange(q.shape[0], device=q.device) * n_candidates
    return {"nll": F.cross_entropy(scores.float(), target)}


def candidate_scores(q: Tensor, docs: Tensor, n_candidates: int) -> Tensor:
    """``[B, C]``: each query against its own candidates only."""
    return torch.einsum("bv,bcv->bc", q, docs.view(q.shape[0], n_candidates, -1))


def margin_mse(student: Tensor, teacher: Tensor) -> dict[str, Tensor]:
    """MarginMSE over ``[B, C]`` scores (column 0 the positive)."""
    s = student[:, :1] - student[:, 1:]
    t = teacher[:, :1] - teacher[:, 1:]
    return {"margin_mse": F.mse_loss(s.float(), t.float())}


def kl_distill(student: Tensor, teacher: Tensor, temperature: float = 1.0) -> dict[str, Tensor]:
    """``KL(p_teacher || p_student)`` over ``[B, C]`` candidate lists, mean over queries."""
    log_s = F.log_softmax(student.float() / temperature, dim=-1)
    log_t = F.log_softmax(teacher.float() / temperature, dim=-1)
    return {"kl": F.kl_div(log_s, log_t, reduction="batchmean", log_target=True)}


def flops(reps: Tensor) -> Tensor:
    """``sum_v (mean_b w_bv)^2`` of ``[N, V]`` non-negative vectors."""
    return reps.float().mean(dim=0).pow(2).sum()


def l0_masked(reps: Tensor, max_nnz: int) -> Tensor:
    """``[N, V]`` document vectors with every row of at most ``max_nnz`` non-zeros zeroed: the l0 mask
    loss (Shen et al. 2025, arXiv 2504.14839) regularizes only documents denser than that, so sparse
    ones train on the ranking losses alone (the batch mean still divides by N). 0: no mask."""
    if max_nnz <= 0:
        return reps
    dense = (reps > 0).sum(dim=1) > max_nnz
    return reps * dense.unsqueeze(1).to(reps.dtype)


def df_penalty(df: Tensor, alpha: float, beta: float) -> Tensor:
    """DF-FLOPS term weights (Porco et al. 2025, arXiv 2505.15070): ``1 / (1 + (x^(log_alpha 2) - 1)^beta)``
    of each term's document-frequency ratio ``x``: near 0 for rare terms, 0.5 at ``x = alpha``, 1 at
    ``x = 1``; ``beta`` sets the steepness."""
    x = df.float().clamp(1e-9, 1.0)
    exponent = math.log(2.0) / math.log(alpha)
    return 1.0 / (1.0 + (x.pow(exponent) - 1.0).clamp(min=0.0).pow(beta))


def df_flops(reps: Tensor, penalty: Tensor) -> Tensor:
    """``sum_v p_v (mean_b w_bv)^2``: FLOPS with each term's cost scaled by its DF penalty ``p_v``."""
    return (penalty * reps.float().mean(dim=0).pow(2)).sum()


def flops_lambda(lam: float, step: int, warmup: int) -> float:
    """``lam * min(1, step / warmup)^2`` (no warm-up when ``warmup`` is 0)."""
    if warmup <= 0:
        return lam
    return lam * min(1.0, step / warmup) ** 2


def normalize_scores(scores: Tensor, method: str, eps: float = 1e-6) -> Tensor:
    """Per-row (per-query) normalization of ``[B, C]`` scores: minmax -> [0, 1], zscore -> mean 0, std 1."""
    scores = scores.float()
    if method == "minmax":
        lo = scores.amin(dim=-1, keepdim=True)
        hi = scores.amax(dim=-1, keepdim=True)
        return (scores - lo) / (hi - lo + eps)
    if method == "zscore":
        mean = scores.mean(dim=-1, keepdim=True)
        std = scores.std(dim=-1, unbiased=False, keepdim=True)
        return (scores - mean) / (std + eps)
    if method == "none":
        return scores
    raise ValueError(f"normalization {method!r} is not one of ['minmax', 'zscore', 'none']")


def ensemble_teacher(
    raw: dict[str, Tensor], weights: dict[str, float], method: str = "minmax", scale: float = 1.0
) -> Tensor:
    """``scale * sum_k w_k norm(raw_k) / sum_k w_k`` over teachers with a weight > 0.

    Raises:
        ValueError: a weighted teacher has no scores, or every weight is 0.
    """
    used = {k: float(w) for k, w in weights.items() if w > 0}
    if not used:
        raise ValueError("every teacher weight is 0")
    missing = sorted(set(used) - set(raw))
    if missing:
        raise ValueError(f"no scores for teacher(s) {missing}; scored: {sorted(raw)}")
    total = sum(used.values())
    out = cast(Tensor, sum(w * normalize_scores(raw[k], method) for k, w in used.items()))
    return scale * out / total


class ThresholdMask(torch.nn.Module):
    """L0-style threshold on document weights: ``w * 1[w > tau]`` in the forward pass.

    The step function has no useful gradient, so the backward pass is straight-through for the
    weights (``d/dw = 1``: pruned weights still learn, and can come back) and, when the threshold is
    learned, ``tau`` gets the gradient of the sigmoid relaxation ``w * sigmoid((w - tau) / t)``
    (a hard-concrete-like surrogate, in the spirit of arXiv 2504.14839). ``tau = 0`` is the identity
    (weights are already >= 0). At inference, the same cut is ``--set encoder.prune.doc_threshold=tau``
    (written to the model card and ``lsr_train.json``).
    """

    def __init__(self, threshold: float, learn: bool = False, temperature: float = 0.1):
        super().__init__()
        self.temperature = temperature
        value = torch.tensor(float(threshold))
        if learn:
            self.tau = torch.nn.Parameter(value)
        else:
            self.register_buffer("tau", value)

    def forward(self, w: Tensor) -> Tensor:
        learn = isinstance(self.tau, torch.nn.Parameter)
        tau = self.tau.clamp(min=0.0)
        if not learn and float(tau) == 0.0:
            return w
        out = w + ((w > tau).to(w.dtype) * w - w).detach()  # value: hard cut; d/dw: identity
        if learn:  # adds 0 to the value; its gradient reaches tau only
            relax = w.detach() * torch.sigmoid((w.detach() - tau) / self.temperature)
            out = out + (relax - relax.detach())
        return out
