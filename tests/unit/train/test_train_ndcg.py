"""The trainer's own nDCG@10 (dev evaluation without ranx) against lsr.eval.metrics."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from lsr.eval.metrics import evaluate_run
from lsr.train.trainer import ndcg_at_k


def test_ndcg_matches_eval_metrics_on_random_runs():
    rng = np.random.default_rng(0)
    docs = [f"d{i}" for i in range(40)]
    qrels, run, ranked, rels = {}, {}, [], []
    for q in range(30):
        judged = {
            d: int(rng.integers(0, 4)) for d in rng.choice(docs, size=int(rng.integers(1, 12)), replace=False)
        }
        if q % 7 == 0:
            judged = {d: 0 for d in judged}  # no positive: left out by both
        scores = rng.permutation(len(docs)).astype(float)  # distinct scores: no tie-break question
        top = sorted(zip(docs, scores, strict=True), key=lambda x: -x[1])[: int(rng.integers(0, 15))]
        qid = f"q{q}"
        qrels[qid] = judged
        run[qid] = dict(top)
        ranked.append([d for d, _ in top])
        rels.append(judged)
    expected = evaluate_run(qrels, run, ["ndcg@10"])["ndcg@10"]
    assert ndcg_at_k(ranked, rels, 10) == pytest.approx(expected, abs=1e-9)


def test_ndcg_edge_cases():
    assert ndcg_at_k([], [], 10) == 0.0
    assert ndcg_at_k([["a"]], [{"a": 0}], 10) == 0.0  # no positive: not evaluated
    assert ndcg_at_k([[]], [{"a": 1}], 10) == 0.0  # empty ranking
    assert ndcg_at_k([["a", "b"]], [{"a": 1}], 10) == 1.0
    assert ndcg_at_k([["b", "a"]], [{"a": 1}], 1) == 0.0  # k cuts
