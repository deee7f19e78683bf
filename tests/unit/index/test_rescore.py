"""Rescoring with the forward index of exact weights (lsr.index.rescore) against exhaustive float
scoring: the dense NumPy reference over the encoder's weights, on seeded random collections."""

from __future__ import annotations

import numpy as np
import pytest
from corpora import random_corpus

from lsr.index import BuildOptions, Index, SearchParams, SparseBatch, build_index
from lsr.index.reference import dense_from_rows, reference_topk


def build_forward(tmp_path, corpus: SparseBatch, n_terms: int, forward: str = "float32", **options) -> Index:
    def batches():
        for s in range(0, len(corpus), 13):
            e = min(s + 13, len(corpus))
            lo, hi = corpus.indptr[s], corpus.indptr[e]
            yield SparseBatch(corpus.indptr[s : e + 1] - lo, corpus.term_ids[lo:hi], corpus.weights[lo:hi])

    out = tmp_path / f"idx-{len(list(tmp_path.glob('idx-*')))}"
    opts = BuildOptions(forward=forward, bp_iterations=3, **options)
    build_index(
        batches, n_terms, [f"d{i}" for i in range(len(corpus))], [f"t{i}" for i in range(n_terms)], out, opts
    )
    return Index.load(out)


def float_truth(corpus: SparseBatch, n_terms: int, index: Index) -> np.ndarray:
    """Dense doc x term float32 weights in the index's internal doc order."""
    weights = np.asarray(corpus.weights).astype(np.float32).astype(np.float64)
    dense = dense_from_rows(corpus.indptr, corpus.term_ids, weights, n_terms)
    order = index.meta["reorder"].get("method") == "bp"
    return dense[np.load(index.path / "doc_order.npy")] if order else dense


def queries(rng: np.random.Generator, n_terms: int, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rows = []
    for _ in range(n):
        terms = np.sort(rng.choice(n_terms, size=int(rng.integers(1, 12)), replace=False))
        rows.append((terms, rng.uniform(0.05, 3.0, len(terms)).astype(np.float32)))
    return rows


def assert_float_topk(got, dense: np.ndarray, terms, weights, k: int) -> None:
    ref_docs, ref_scores = reference_topk(dense, terms, weights.astype(np.float64), k)
    np.testing.assert_array_equal(got.docs, ref_docs)
    np.testing.assert_allclose(got.scores, ref_scores, rtol=1e-6)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("mode", ["exact", "safe"])
@pytest.mark.parametrize("reorder", ["none", "bp"])
def test_safe_and_exact_equal_float_scoring(tmp_path, seed, mode, reorder):
    """Top-k ids (ties by doc id) and scores of exhaustive float scoring, for every k."""
    rng = np.random.default_rng(seed)
    n_terms = 50
    corpus = random_corpus(rng, n_docs=400, n_terms=n_terms, max_nnz=15, integer=False)
    index = build_forward(tmp_path, corpus, n_terms, reorder=reorder, block_size=8)
    dense = float_truth(corpus, n_terms, index)
    for terms, weights in queries(rng, n_terms, 25):
        for k in (1, 10, 37):
            assert_float_topk(index.search(terms, weights, k, mode=mode), dense, terms, weights, k)


@pytest.mark.parametrize("seed", range(3))
def test_coarse_quantization_needs_deeper_candidates(tmp_path, seed):
    """One outlier weight makes the uint8 step coarse (most postings get impact 1 or 2), so the first
    2k candidates rarely prove the top k: the search must go deeper and still be exact."""
    rng = np.random.default_rng(10 + seed)
    n_terms = 30
    corpus = random_corpus(rng, n_docs=600, n_terms=n_terms, max_nnz=10, integer=False)
    weights = np.asarray(corpus.weights).copy()
    weights[0] = 200.0
    corpus = SparseBatch(corpus.indptr, corpus.term_ids, weights.astype(np.float32))
    index = build_forward(tmp_path, corpus, n_terms, block_size=16)
    assert index.meta["forward"]["max_error"] > 0.3  # the floor of 1 and the coarse step are counted
    dense = float_truth(corpus, n_terms, index)
    for terms, q in queries(rng, n_terms, 25):
        assert_float_topk(index.search(terms, q, 10, mode="safe"), dense, terms, q, 10)


@pytest.mark.parametrize("threads", [1, 2])
def test_batch_equals_single(tmp_path, threads):
    rng = np.random.default_rng(5)
    n_terms = 40
    corpus = random_corpus(rng, n_docs=300, n_terms=n_terms, max_nnz=12, integer=False)
    index = build_forward(tmp_path, corpus, n_terms, block_size=8)
    rows = queries(rng, n_terms, 30) + [(np.zeros(0, np.int32), np.zeros(0, np.float32))]
    batch = SparseBatch.from_rows(rows)
    for mode in ("exact", "safe", "approx"):
        alpha = 0.7 if mode == "approx" else 1.0
        got = index.search_batch(batch, k=10, threads=threads, mode=mode, alpha=alpha)
        for i, res in enumerate(got):
            single = index.search(*batch.row(i), k=10, mode=mode, alpha=alpha)
            np.testing.assert_array_equal(res.docs, single.docs)
            np.testing.assert_array_equal(res.scores, single.scores)


def test_approx_returns_exact_scores_of_its_docs(tmp_path):
    rng = np.random.default_rng(3)
    n_terms = 40
    corpus = random_corpus(rng, n_docs=500, n_terms=n_terms, max_nnz=12, integer=False)
    index = build_forward(tmp_path, corpus, n_terms, block_size=8)
    dense = float_truth(corpus, n_terms, index)
    for terms, weights in queries(rng, n_terms, 20):
        got = index.search(terms, weights, 10, mode="approx", alpha=0.5, beta=0.6)
        q = np.zeros(n_terms)
        q[terms] = weights
        np.testing.assert_allclose(got.scores, dense[got.docs] @ q, rtol=1e-6)
        assert np.all(np.diff(got.scores) <= 0)


def test_filter_and_rescore_off(tmp_path):
    """A live-doc mask applies to the rescored search; ``rescore = False`` gives the quantized ranking."""
    rng = np.random.default_rng(4)
    n_terms = 30
    corpus = random_corpus(rng, n_docs=300, n_terms=n_terms, max_nnz=10, integer=False)
    index = build_forward(tmp_path, corpus, n_terms, block_size=8)
    dense = float_truth(corpus, n_terms, index)
    live = rng.random(index.n_docs) < 0.5
    index.live = live.astype(np.uint8)
    for terms, weights in queries(rng, n_terms, 15):
        got = index.search(terms, weights, 10, mode="safe")
        ref_docs, _ = reference_topk(dense, terms, weights.astype(np.float64), 10, live=live)
        np.testing.assert_array_equal(got.docs, ref_docs)
    index.live = np.zeros(0, np.uint8)
    index.rescore = False
    terms, weights = queries(rng, n_terms, 1)[0]
    quantized = index.search(terms, weights, 10, mode="safe")
    np.testing.assert_array_equal(quantized.scores, index.search(terms, weights, 10).scores)
    docs, scores = index.search_raw(*index._check_query(terms, weights), 10, SearchParams("safe"))
    np.testing.assert_array_equal(quantized.docs, docs)
    np.testing.assert_array_equal(quantized.scores, scores * index.scale)


def test_no_forward_for_float_impacts_and_bad_option(tmp_path):
    rng = np.random.default_rng(1)
    corpus = random_corpus(rng, n_docs=20, n_terms=10, max_nnz=5, integer=False)
    index = build_forward(tmp_path, corpus, 10, impact_dtype="float32")
    assert index.forward is None and not index.rescore and index.meta["forward"] == {"dtype": "none"}
    with pytest.raises(ValueError, match="forward 'float16' is not one of"):
        BuildOptions(forward="float16")


@pytest.mark.parametrize("seed", range(5))
def test_rescore_table_equals_the_merge_bit_for_bit(seed):
    """Forward.rescore's table lookup against _dot_row's merge (the reference of both batch rescoring
    and the proofs), on random rows and queries; the per-thread table is left zero."""
    from lsr.index.kernels.rescore import _dot_row, _rescore_one

    rng = np.random.default_rng(seed)
    n_docs, n_terms = 60, 50
    lengths = rng.integers(0, 20, n_docs)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    rows = [np.sort(rng.choice(n_terms, n, replace=False)) for n in lengths]
    terms = np.concatenate(rows).astype(np.uint16)
    weights = (rng.random(len(terms)) * 3 + 1e-3).astype(np.float32)
    lut = np.zeros(n_terms, np.float32)
    for m in (0, 1, 7, n_terms):
        q_terms = np.sort(rng.choice(n_terms, m, replace=False)).astype(np.int32)
        q_weights = (rng.random(m) * 2 + 1e-3).astype(np.float32)
        docs = rng.integers(0, n_docs, int(rng.integers(0, 30))).astype(np.int32)
        got = _rescore_one(indptr, terms, weights, docs, q_terms, q_weights, lut)
        want = [_dot_row(indptr, terms, weights, d, q_terms, q_weights) for d in docs]
        np.testing.assert_array_equal(got, np.array(want, np.float64))
        assert not lut.any()
    weights[indptr[3]] = np.inf  # a damaged forward index is refused, not summed
    if indptr[4] > indptr[3]:
        with pytest.raises(ValueError, match="not finite"):
            _rescore_one(indptr, terms, weights, np.array([3], np.int32), q_terms, q_weights, lut)


@pytest.mark.parametrize("seed", range(4))
def test_postings_scores_equal_the_dot_products(seed):
    """_rescore_postings_one (binary search of each candidate in each query term's list) against a
    dense dot product, on random posting lists: empty lists, candidates in no list, no candidates,
    duplicates-free unsorted candidates; the batch kernel equals the single one bit for bit."""
    from lsr.index.kernels.rescore import _rescore_postings_batch, _rescore_postings_one

    rng = np.random.default_rng(seed)
    n_docs, n_terms = 80, 30
    dense = np.where(rng.random((n_docs, n_terms)) < 0.15, rng.uniform(0.01, 3.0, (n_docs, n_terms)), 0.0)
    dense = dense.astype(np.float32)
    dense[:, 5] = 0  # a term without postings
    lists = [np.flatnonzero(dense[:, t]) for t in range(n_terms)]
    term_ptr = np.concatenate([[0], np.cumsum([len(x) for x in lists])]).astype(np.int64)
    doc_ids = np.concatenate(lists).astype(np.int32)
    impacts = np.concatenate([dense[x, t] for t, x in enumerate(lists)]).astype(np.float32)
    rows, cands = [], []
    for m in (0, 1, 6, n_terms):
        q_terms = np.sort(rng.choice(n_terms, m, replace=False)).astype(np.int32)
        q_weights = rng.uniform(0.05, 2.0, m).astype(np.float32)
        docs = rng.permutation(n_docs)[: int(rng.integers(0, 40))].astype(np.int32)
        got = _rescore_postings_one(term_ptr, doc_ids, impacts, docs, q_terms, q_weights)
        want = dense[docs][:, q_terms].astype(np.float64) @ q_weights.astype(np.float64)
        np.testing.assert_allclose(got, want, rtol=1e-12)
        rows.append((q_terms, q_weights))
        cands.append(docs)
    queries = SparseBatch.from_rows(rows)
    width = max(len(c) for c in cands)
    docs = np.full((len(cands), width), -1, np.int32)
    for i, c in enumerate(cands):
        docs[i, : len(c)] = c
    counts = np.array([len(c) for c in cands], np.int64)
    out = np.zeros(docs.shape, np.float64)
    q = (queries.indptr, queries.term_ids, queries.weights)
    _rescore_postings_batch(term_ptr, doc_ids, impacts, *q, docs, counts, out)
    for i, (q_terms, q_weights) in enumerate(rows):
        single = _rescore_postings_one(term_ptr, doc_ids, impacts, cands[i], q_terms, q_weights)
        np.testing.assert_array_equal(out[i, : counts[i]], single)


@pytest.mark.parametrize("impact_dtype,forward", [("float32", "none"), ("uint8", "none")])
def test_pruned_query_ranks_its_candidates_by_the_whole_query(tmp_path, impact_dtype, forward):
    """Without a forward index, approx with beta < 1 finds candidates with the heaviest terms and ranks
    them by the whole query's score read from the postings (two-step SPLADE): the result is the best k
    of the pruned query's first k' candidates by that score, single and batch alike; with float32
    impacts the scores are the encoder's."""
    rng = np.random.default_rng(7)
    n_terms = 40
    corpus = random_corpus(rng, n_docs=500, n_terms=n_terms, max_nnz=12, integer=False)
    index = build_forward(tmp_path, corpus, n_terms, forward=forward, impact_dtype=impact_dtype, block_size=8)
    assert index.forward is None
    dense = float_truth(corpus, n_terms, index)
    rows = queries(rng, n_terms, 20)
    batch = index.search_batch(SparseBatch.from_rows(rows), 10, threads=2, mode="approx", beta=0.5)
    for (terms, weights), from_batch in zip(rows, batch, strict=True):
        got = index.search(terms, weights, 10, mode="approx", beta=0.5)
        keep = np.sort(np.argsort(-weights, kind="stable")[: int(np.ceil(0.5 * len(terms) - 1e-9))])
        cands = index.search(terms[keep], weights[keep], 26, mode="safe").docs
        whole = index.search(terms, weights, len(dense), mode="exact")
        score_of = dict(zip(whole.docs.tolist(), whole.scores.tolist(), strict=True))
        want = sorted(cands.tolist(), key=lambda d: (-score_of[d], d))[:10]
        assert got.docs.tolist() == want
        np.testing.assert_allclose(got.scores, [score_of[d] for d in want], rtol=1e-5)
        np.testing.assert_array_equal(from_batch.docs, got.docs)
        np.testing.assert_array_equal(from_batch.scores, got.scores)
        if impact_dtype == "float32":
            q = np.zeros(n_terms)
            q[terms] = weights
            np.testing.assert_allclose(got.scores, dense[got.docs] @ q, rtol=1e-6)
