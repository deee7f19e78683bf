"""Our metrics against pytrec_eval (trec_eval) on seeded random runs with ties and graded judgments."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from lsr.eval.metrics import evaluate_run, parse_metric, per_query_scores, ranked, unknown_queries

pytrec_eval = pytest.importorskip("pytrec_eval")


def random_case(seed: int, n_queries: int = 30, n_docs: int = 200):
    rng = np.random.default_rng(seed)
    qrels, run = {}, {}
    for q in range(n_queries):
        judged = rng.choice(n_docs, size=int(rng.integers(1, 40)), replace=False)
        qrels[f"q{q}"] = {f"d{d}": int(rng.integers(0, 4)) for d in judged}
        retrieved = rng.choice(n_docs, size=int(rng.integers(0, 150)), replace=False)
        # few distinct scores: many ties, which trec_eval breaks by descending doc id
        run[f"q{q}"] = {f"d{d}": float(rng.integers(0, 6)) / 2 for d in retrieved}
    return qrels, run


def trec_top(run, k):
    return {q: {d: docs[d] for d in ranked(docs)[:k]} for q, docs in run.items()}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("level", [1, 2])
def test_per_query_equal_pytrec_eval(seed, level):
    qrels, run = random_case(seed)
    qids, ours = per_query_scores(
        qrels,
        run,
        ["ndcg@10", "ndcg@100", "recall@10", "recall@100", "map", "map@20", "mrr@10", "precision@5"],
        level,
    )
    graded = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10,100"}).evaluate(run)
    binary = pytrec_eval.RelevanceEvaluator(
        qrels, {"recall.10,100", "map", "map_cut.20", "P.5"}, relevance_level=level
    ).evaluate(run)
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}, relevance_level=level).evaluate(
        trec_top(run, 10)
    )
    pairs = [
        ("ndcg@10", graded, "ndcg_cut_10"),
        ("ndcg@100", graded, "ndcg_cut_100"),
        ("recall@10", binary, "recall_10"),
        ("recall@100", binary, "recall_100"),
        ("map", binary, "map"),
        ("map@20", binary, "map_cut_20"),
        ("precision@5", binary, "P_5"),
        ("mrr@10", rr, "recip_rank"),
    ]
    checked = 0
    for i, q in enumerate(qids):
        if q not in graded:  # trec_eval skips queries with an empty run; we score them 0
            assert all(ours[m][i] == 0 for m, _, _ in pairs)
            continue
        for metric, table, name in pairs:
            assert ours[metric][i] == pytest.approx(table[q][name], abs=1e-9), (q, metric)
            checked += 1
    assert checked > 100


def test_ties_follow_trec_eval_order():
    assert ranked({"a": 1.0, "c": 1.0, "b": 2.0, "d": 1.0}) == ["b", "d", "c", "a"]


def test_judged_query_missing_from_run_scores_zero():
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 0}}  # q3: nothing relevant, not evaluated
    m = evaluate_run(qrels, {"q1": {"d1": 1.0}}, ["ndcg@10", "recall@10"])
    assert m == {"ndcg@10": 0.5, "recall@10": 0.5}


def test_bad_input_is_named():
    qrels = {"q1": {"d1": 1}}
    with pytest.raises(ValueError, match="share no query id"):
        evaluate_run(qrels, {"x9": {"d1": 1.0}}, ["ndcg@10"])
    with pytest.raises(ValueError, match="empty"):
        evaluate_run(qrels, {}, ["ndcg@10"])
    with pytest.raises(ValueError, match="no relevant judgment"):
        evaluate_run({"q1": {"d1": 0}}, {"q1": {"d1": 1.0}}, ["ndcg@10"])
    for bad in ("ndgc@10", "ndcg", "recall@0", "map@x"):
        with pytest.raises(ValueError, match="metric"):
            parse_metric(bad)


def test_unknown_run_queries_are_counted_and_warned(caplog):
    with caplog.at_level(logging.WARNING):
        n = unknown_queries({"q1": {"d1": 1}}, {"q1": {"d1": 1.0}, "zz": {"d1": 1.0}, "yy": {}})
    assert n == 2 and "2 of 3 run queries are not in the qrels" in caplog.text
