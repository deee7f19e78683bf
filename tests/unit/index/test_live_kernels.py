"""The kernels with deleted documents and a starting threshold (a live index's segments) against the
slow reference: exact (both collection paths) and safe mode, one query and batches."""

from __future__ import annotations

import numpy as np
import pytest
from corpora import build_with_blockmax, random_corpus

from lsr.index import SearchParams, SparseBatch
from lsr.index.reference import dense_from_postings, reference_topk

N_TERMS = 30


def _live_masks(rng: np.random.Generator, n_docs: int) -> dict[str, np.ndarray]:
    return {
        "none deleted": np.ones(n_docs, np.uint8),
        "all deleted": np.zeros(n_docs, np.uint8),
        "30% deleted": (rng.random(n_docs) > 0.3).astype(np.uint8),
        "90% deleted": (rng.random(n_docs) > 0.9).astype(np.uint8),
        "one run live": (np.abs(np.arange(n_docs) - n_docs // 2) < n_docs // 8).astype(np.uint8),
        "first and last live": np.isin(np.arange(n_docs), [0, n_docs - 1]).astype(np.uint8),
    }


def _queries(rng: np.random.Generator, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for _ in range(n):
        m = int(rng.integers(1, 6))
        terms = np.sort(rng.choice(N_TERMS, size=m, replace=False)).astype(np.int32)
        out.append((terms, rng.integers(1, 4, size=m).astype(np.float32)))
    return out


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("impact_dtype", ["uint8", "float32"])
@pytest.mark.parametrize("mode", ["exact-postings", "exact-scan", "safe"])
def test_live_and_threshold_equal_reference(tmp_path, seed, impact_dtype, mode):
    """Integer weights: sums are exact, so ids, order, ties and scores must match the reference."""
    rng = np.random.default_rng(seed)
    corpus = random_corpus(rng, n_docs=120, n_terms=N_TERMS, max_nnz=8, integer=True)
    index = build_with_blockmax(tmp_path, corpus, N_TERMS, impact_dtype, block_size=4)
    index.scan_ratio = 10**9 if mode == "exact-scan" else 0
    params = SearchParams("safe" if mode == "safe" else "exact")
    dense = dense_from_postings(index.term_ptr, index.doc_ids, index.impacts, index.n_docs)
    queries = _queries(rng, 12)
    for name, live in _live_masks(rng, index.n_docs).items():
        index.live = live
        for k in (1, 5, 1000):  # 1000 > live docs
            for terms, weights in queries:
                full = reference_topk(dense, terms, weights, index.n_docs, live=live)[1]
                for threshold in (0.0, float(np.median(full)) if len(full) else 0.0):
                    docs, scores = index.search_raw(terms, weights, k, params, threshold)
                    ref_docs, ref_scores = reference_topk(dense, terms, weights, k, live, threshold)
                    np.testing.assert_array_equal(docs, ref_docs, err_msg=f"{name} k={k} thr={threshold}")
                    np.testing.assert_array_equal(scores, ref_scores.astype(np.float32))


@pytest.mark.parametrize("mode", ["exact", "safe"])
def test_batch_with_live_and_thresholds_equals_single(tmp_path, mode):
    rng = np.random.default_rng(7)
    corpus = random_corpus(rng, n_docs=200, n_terms=N_TERMS, max_nnz=8, integer=True)
    index = build_with_blockmax(tmp_path, corpus, N_TERMS, "uint8", block_size=8)
    index.live = (rng.random(index.n_docs) > 0.4).astype(np.uint8)
    params = SearchParams(mode)
    queries = _queries(rng, 20)
    thresholds = rng.choice([0.0, 2.0, 5.0], size=len(queries)).astype(np.float32)
    out_docs, out_scores, counts = index.search_batch_raw(
        SparseBatch.from_rows(queries), 7, params, threads=2, thresholds=thresholds
    )
    for q, (terms, weights) in enumerate(queries):
        docs, scores = index.search_raw(terms, weights, 7, params, float(thresholds[q]))
        np.testing.assert_array_equal(out_docs[q, : counts[q]], docs)
        np.testing.assert_array_equal(out_scores[q, : counts[q]], scores)


def test_plain_index_has_no_live_array(tmp_path):
    """A plain index passes an empty live array: every doc is live, results as before."""
    rng = np.random.default_rng(3)
    corpus = random_corpus(rng, n_docs=50, n_terms=N_TERMS, max_nnz=8, integer=True)
    index = build_with_blockmax(tmp_path, corpus, N_TERMS, "uint8", block_size=4)
    assert index.live.shape == (0,)
    terms, weights = _queries(rng, 1)[0]
    before = index.search(terms, weights, 10, mode="safe")
    index.live = np.ones(index.n_docs, np.uint8)
    after = index.search(terms, weights, 10, mode="safe")
    np.testing.assert_array_equal(before.docs, after.docs)
    np.testing.assert_array_equal(before.scores, after.scores)
