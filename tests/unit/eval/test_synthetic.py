"""The synthetic SPLADE-like collection generator and its JSONL round trip (small sizes)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from benchmarks.groundtruth import exact_topk, recall_at_k
from benchmarks.synthetic import SyntheticConfig, generate, term_frequencies, write_collection_jsonl
from lsr.data.sparse_jsonl import read_sparse_jsonl, write_sparse_jsonl
from lsr.index.sparse import SparseBatch

SMALL = SyntheticConfig(
    n_docs=6_000, n_terms=5_000, n_topics=60, topic_size=200, n_queries=40, chunk_docs=2_000, seed=7
)


@pytest.fixture(scope="module")
def coll():
    return generate(SMALL)


def same_batch(a: SparseBatch, b: SparseBatch) -> bool:
    return all(
        np.array_equal(x, y)
        for x, y in ((a.indptr, b.indptr), (a.term_ids, b.term_ids), (a.weights, b.weights))
    )


def test_deterministic_by_seed_and_independent_of_threads(coll):
    again = generate(replace(SMALL, threads=1))
    assert same_batch(coll.docs, again.docs)
    assert same_batch(coll.queries, again.queries)
    assert np.array_equal(coll.query_source, again.query_source)
    other = generate(replace(SMALL, seed=8))
    assert not same_batch(coll.docs, other.docs)


def test_csr_invariants(coll):
    coll.docs.validate(SMALL.n_terms)
    coll.queries.validate(SMALL.n_terms)
    assert len(coll.docs) == SMALL.n_docs and len(coll.queries) == SMALL.n_queries
    assert coll.docs.indptr.dtype == np.int64 and coll.docs.term_ids.dtype == np.int32
    assert coll.docs.weights.dtype == np.float32 and coll.docs.weights.min() > 0
    assert coll.doc_topics.shape == (SMALL.n_docs, len(SMALL.topics_per_doc))
    assert ((coll.doc_topics >= 0).sum(axis=1) >= 1).all()


def test_average_nnz_near_target(coll):
    nnz = coll.docs.row_nnz()
    assert abs(nnz.mean() - SMALL.doc_nnz) / SMALL.doc_nnz < 0.1
    assert nnz.min() >= 1 and nnz.max() <= SMALL.max_doc_nnz
    q = coll.queries.row_nnz()
    assert q.min() >= SMALL.query_len[0] - 8 and q.max() <= SMALL.query_len[1]


def test_weights_look_like_splade(coll):
    w = coll.docs.weights
    assert 0.2 < float(np.median(w)) < 1.0
    assert float(w.max()) < 8.0
    assert np.allclose(w, np.round(w.astype(np.float64), SMALL.decimals), atol=1e-6)


def test_zipf_skew(coll):
    df = np.sort(term_frequencies(coll.batches, SMALL.n_terms))[::-1]
    head, tail = df[:50].mean(), df[len(df) // 2 :].mean()
    assert head > 20 * max(tail, 1)
    assert df[0] > 0.2 * SMALL.n_docs


def test_queries_share_terms_with_their_source(coll):
    shared = []
    for i, doc in enumerate(coll.query_source.tolist()):
        q_terms = set(coll.queries.row(i)[0].tolist())
        d_terms = set(coll.doc_row(doc)[0].tolist())
        shared.append(len(q_terms & d_terms) / len(q_terms))
    assert np.mean(shared) > 0.5


def test_source_documents_rank_high(coll):
    truth = exact_topk(coll.docs, coll.queries, SMALL.n_terms, 10)
    assert all(len(t) == 10 for t in truth)
    in_top10 = np.mean([s in t.tolist() for s, t in zip(coll.query_source.tolist(), truth, strict=True)])
    assert in_top10 > 0.8
    assert recall_at_k(truth, [t.tolist() for t in truth], 10) == 1.0
    assert recall_at_k(truth, [t.tolist()[:5] for t in truth], 10) == 0.5


def test_jsonl_round_trip_is_exact(coll, tmp_path):
    paths = write_collection_jsonl(coll, tmp_path)
    ids, docs, vocab = read_sparse_jsonl(paths["docs"])
    assert ids == coll.doc_ids
    generator_id = np.array([int(t[1:]) for t in vocab])[docs.term_ids]
    rows = np.repeat(np.arange(len(ids)), docs.row_nnz())
    order = np.lexsort((generator_id, rows))
    assert np.array_equal(docs.indptr, coll.docs.indptr)
    assert np.array_equal(generator_id[order], coll.docs.term_ids)
    assert np.array_equal(docs.weights[order], coll.docs.weights)
    qids, queries, _ = read_sparse_jsonl(paths["queries"], dict(vocab), grow_vocab=False)
    assert qids == coll.query_ids and queries.nnz == coll.queries.nnz


def test_integer_jsonl_for_lucene(tmp_path):
    batch = SparseBatch.from_rows([([0, 2], [0.004, 1.5]), ([1], [2.0])])
    write_sparse_jsonl(
        tmp_path / "int.jsonl", ["a", 'b"c'], [batch], ["x", "y", "z"], decimals=0, scale=100, fixed=True
    )
    lines = (tmp_path / "int.jsonl").read_text().splitlines()
    assert lines == ['{"id": "a", "vector": {"x": 1, "z": 150}}', '{"id": "b\\"c", "vector": {"y": 200}}']


def test_config_is_checked():
    with pytest.raises(ValueError):
        SyntheticConfig(topic_size=0)
    with pytest.raises(ValueError):
        SyntheticConfig(query_mix=(0.5, 0.5, 0.5))
