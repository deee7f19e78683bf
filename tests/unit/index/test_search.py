"""The exhaustive numba scorer against the dense NumPy reference (lsr.index.reference)."""

from __future__ import annotations

import numpy as np
import pytest
from corpora import build, random_corpus

from lsr.index import Index, SparseBatch
from lsr.index.reference import dense_from_postings, dense_from_rows, reference_topk


def assert_same_topk(index: Index, dense: np.ndarray, terms, weights, k: int, exact: bool) -> None:
    got = index.search(terms, weights, k)
    ref_docs, ref_scores = reference_topk(dense, terms, weights, k)
    assert len(got) == len(ref_docs)
    if exact:
        np.testing.assert_array_equal(got.docs, ref_docs)
        np.testing.assert_array_equal(got.scores, (ref_scores * float(index.scale)).astype(np.float32))
    else:
        np.testing.assert_allclose(got.scores, ref_scores * float(index.scale), rtol=1e-5)
        # where the reference has a clear gap, the order must agree exactly
        gaps = np.abs(np.diff(ref_scores)) > 1e-4 * max(1.0, float(ref_scores.max(initial=1)))
        unambiguous = np.concatenate([[True], gaps]) & np.concatenate([gaps, [True]])
        np.testing.assert_array_equal(got.docs[unambiguous], ref_docs[unambiguous])


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("impact_dtype", ["uint8", "uint16", "float32"])
@pytest.mark.parametrize("scan_ratio", [0, 10**9])  # collect by revisiting the postings / by a full scan
def test_exhaustive_equals_reference_integer_weights(tmp_path, seed, impact_dtype, scan_ratio):
    """Integer impacts and query weights: sums are exact, so docs, order and ties must match exactly."""
    rng = np.random.default_rng(seed)
    n_terms = 40
    corpus = random_corpus(rng, n_docs=150, n_terms=n_terms, max_nnz=12, integer=True)
    index = build(tmp_path, corpus, n_terms, impact_dtype)
    index.scan_ratio = scan_ratio
    dense = dense_from_postings(index.term_ptr, index.doc_ids, index.impacts, index.n_docs)
    for _ in range(30):
        m = int(rng.integers(1, 8))
        terms = rng.choice(n_terms, size=m, replace=False)
        weights = rng.integers(1, 4, size=m).astype(np.float32)
        for k in (1, 5, 10, 1000):
            assert_same_topk(index, dense, terms, weights, k, exact=True)


@pytest.mark.parametrize("seed", range(3))
def test_exhaustive_equals_reference_float_weights(tmp_path, seed):
    rng = np.random.default_rng(100 + seed)
    n_terms = 60
    corpus = random_corpus(rng, n_docs=300, n_terms=n_terms, max_nnz=20, integer=False)
    index = build(tmp_path, corpus, n_terms, "float32")
    dense = dense_from_rows(corpus.indptr, corpus.term_ids, corpus.weights, n_terms)
    for _ in range(30):
        m = int(rng.integers(1, 10))
        terms = rng.choice(n_terms, size=m, replace=False)
        assert_same_topk(index, dense, terms, rng.uniform(0.1, 2.0, m), 10, exact=False)


@pytest.mark.parametrize("scan_ratio", [0, 10**9])
def test_batch_equals_single(tmp_path, scan_ratio):
    rng = np.random.default_rng(7)
    corpus = random_corpus(rng, 200, 50, 15, integer=True)
    index = build(tmp_path, corpus, 50, "uint8")
    index.scan_ratio = scan_ratio
    rows = []
    for _ in range(40):
        terms = rng.choice(50, size=int(rng.integers(0, 6)), replace=False)
        rows.append((terms, rng.integers(1, 4, size=len(terms))))
    queries = SparseBatch.from_rows(rows)
    for threads in (1, 2):
        batch = index.search_batch(queries, k=7, threads=threads)
        for i, res in enumerate(batch):
            single = index.search(*queries.row(i), k=7)
            np.testing.assert_array_equal(res.docs, single.docs)
            np.testing.assert_array_equal(res.scores, single.scores)


@pytest.mark.parametrize("scan_ratio", [0, 10**9])
def test_edge_cases(tmp_path, scan_ratio):
    # doc 0 and 2 tie on term 0; term 3 has an empty posting list; doc 3 is empty
    corpus = SparseBatch.from_rows([([0, 1], [2, 1]), ([1], [5]), ([0], [2]), ([], [])])
    index = build(tmp_path, corpus, n_terms=4, impact_dtype="float32")
    index.scan_ratio = scan_ratio
    assert len(index.search([], [], k=10)) == 0  # empty query
    assert len(index.search([3], [1.0], k=10)) == 0  # empty posting list
    res = index.search([0], [1.0], k=10)  # k > matching docs; tie broken by doc id
    assert res.docs.tolist() == [0, 2] and res.scores.tolist() == [2.0, 2.0]
    assert index.search([0], [1.0], k=1).docs.tolist() == [0]
    res = index.search([0, 1, 0], [1.0, 1.0, 1.0], k=10)  # repeated terms sum: q = {0: 2, 1: 1}
    assert res.docs.tolist() == [0, 1, 2] and res.scores.tolist() == [5.0, 5.0, 4.0]
    batch = index.search_batch(SparseBatch.from_rows([([], []), ([3], [1.0]), ([0], [1.0])]), k=10**5)
    assert [r.docs.tolist() for r in batch] == [[], [], [0, 2]]


@pytest.mark.parametrize(
    "terms, weights, k, match",
    [
        ([0], [1.0], 0, "k must be a positive integer"),
        ([0], [1.0], 2.5, "k must be a positive integer"),
        ([0], [1.0], 10**9, "larger than the maximum 100000"),
        ([9], [1.0], 5, r"term ids must lie in \[0, 4\)"),
        ([0], [float("nan")], 5, "finite and > 0"),
        ([0], [-1.0], 5, "finite and > 0"),
        ([0.5], [1.0], 5, "must be integers"),
        ([0, 1], [1.0], 5, "equal length"),
    ],
)
def test_bad_queries_are_rejected(tmp_path, terms, weights, k, match):
    corpus = SparseBatch.from_rows([([0, 1], [2, 1]), ([1], [5])])
    index = build(tmp_path, corpus, n_terms=4, impact_dtype="uint8")
    with pytest.raises(ValueError, match=match):
        index.search(terms, weights, k)
    if isinstance(terms[0], int):  # the same in the kernels' dtypes (the fast path's check)
        with pytest.raises(ValueError, match=match):
            index.search(np.array(terms, np.int32), np.array(weights, np.float32), k)


@pytest.mark.parametrize("terms", [[0, 1], [1, 0], [1, 1, 0], [3], []])
def test_query_dtypes_and_order_give_one_result(tmp_path, terms):
    """A canonical int32/float32 query (searched as it is) and the same query as lists, in any order
    or with repeats (canonicalized first) give the same top-k."""
    corpus = SparseBatch.from_rows([([0, 1], [2, 1]), ([1, 3], [5, 1]), ([0, 3], [1, 1])])
    index = build(tmp_path, corpus, n_terms=4, impact_dtype="uint8", block_size=2)
    weights = [0.5 + i for i in range(len(terms))]
    summed: dict[int, float] = {}
    for t, w in zip(terms, weights, strict=True):
        summed[t] = summed.get(t, 0.0) + w
    canon = (np.array(sorted(summed), np.int32), np.array([summed[t] for t in sorted(summed)], np.float32))
    for mode in ("exact", "safe"):
        want = index.search(*canon, 3, mode=mode)
        got = index.search(terms, weights, 3, mode=mode)
        np.testing.assert_array_equal(got.docs, want.docs)
        np.testing.assert_array_equal(got.scores, want.scores)


def test_quantization_keeps_every_posting_and_order(tmp_path):
    corpus = SparseBatch.from_rows([([0], [1e-6]), ([0], [100.0]), ([0], [50.0])])
    index = build(tmp_path, corpus, n_terms=1, impact_dtype="uint8")
    assert index.impacts.tolist() == [1, 255, 128]
    res = index.search([0], [1.0], k=10)
    assert res.docs.tolist() == [1, 2, 0]
    assert res.scores[0] == pytest.approx(100.0, rel=1e-6)


def test_empty_corpus(tmp_path):
    index = build(tmp_path, SparseBatch.empty(), n_terms=3, impact_dtype="uint8")
    assert index.n_docs == 0 and len(index.search([1], [1.0], k=5)) == 0


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 31, 32, 33, 1000])
@pytest.mark.parametrize("with_live", [False, True])
def test_chunk_maxima_equal_a_numpy_reference(n, with_live):
    # the scan's bound: each chunk's largest live score, as float32 bits, the last chunk partial
    from lsr.index.kernels.score import CHUNK, _chunk_maxima

    rng = np.random.default_rng(n)
    acc = np.where(rng.random(n) < 0.3, rng.random(n) * 10, 0).astype(np.float32)
    live = (rng.random(n) < 0.7).astype(np.uint8) if with_live else np.zeros(0, np.uint8)
    kept = np.where(live.astype(bool), acc, 0) if with_live else acc
    padded = np.zeros(-(-n // CHUNK) * CHUNK, np.float32)
    padded[:n] = kept
    expected = padded.reshape(-1, CHUNK).max(axis=1).view(np.int32) if n else np.zeros(0, np.int32)
    np.testing.assert_array_equal(_chunk_maxima(acc, live), expected)
