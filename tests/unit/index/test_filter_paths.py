"""How a filtered query is served: scoring the allowed docs through the forward index (rescoring
indexes), through their postings (rescored after, on rescoring indexes), or block-max search over
the blocks holding an allowed doc, chosen
by a cost estimate (lsr.index.search.Filtered). Every path against the slow reference on seeded
random collections and edge cases (no allowed doc, every doc allowed, fewer allowed than k, allowed
docs sharing no term with the query, deleted docs)."""

from __future__ import annotations

import numpy as np
import pytest
from corpora import random_corpus
from test_rescore import build_forward, float_truth, queries

from lsr.index import BuildOptions, Index, SearchParams, SparseBatch, build_index
from lsr.index.docstore import DocStoreWriter
from lsr.index.kernels.rescore import _forward_allowed_batch, _forward_allowed_one
from lsr.index.reference import dense_from_postings, dense_from_rows, reference_topk
from lsr.index.rescore import rescored_batch, rescored_search
from lsr.index.search import ALLOWED_FRACTION, Filtered, filtered_of, with_allowed

N_TERMS = 40


def _allowed_sets(rng: np.random.Generator, n_docs: int, dense: np.ndarray) -> dict[str, np.ndarray]:
    """bool[n_docs] masks: the edge cases and random and clustered sets."""
    no_term = np.flatnonzero(dense[:, :5].sum(axis=1) == 0)[:4]  # share no term with queries on 0-4
    run = np.zeros(n_docs, bool)
    run[n_docs // 3 : n_docs // 3 + 25] = True
    sets = {
        "none": np.zeros(n_docs, bool),
        "all": np.ones(n_docs, bool),
        "three (< k)": np.isin(np.arange(n_docs), rng.choice(n_docs, 3, replace=False)),
        "no shared term": np.isin(np.arange(n_docs), no_term),
        "random 5%": rng.random(n_docs) < 0.05,
        "random 40%": rng.random(n_docs) < 0.4,
        "clustered": run,
    }
    return sets


@pytest.mark.parametrize("seed", range(3))
def test_forward_kernel_equals_reference(tmp_path, seed):
    """Integer weights: float sums are exact, so ids, order, ties and scores equal the reference's."""
    rng = np.random.default_rng(seed)
    corpus = random_corpus(rng, n_docs=300, n_terms=N_TERMS, max_nnz=10, integer=True)
    index = build_forward(tmp_path, corpus, N_TERMS, block_size=8)
    fw = index.forward
    assert fw is not None
    dense = float_truth(corpus, N_TERMS, index)
    rows = [(terms, np.round(weights) + 1) for terms, weights in queries(rng, N_TERMS, 10)]
    rows.append((np.arange(5, dtype=np.int32), np.ones(5, np.float32)))  # for the "no shared term" docs
    for name, mask in _allowed_sets(rng, index.n_docs, dense).items():
        allowed = np.flatnonzero(mask).astype(np.int32)
        for k in (1, 10, 1000):
            for terms, weights in rows:
                t, w = index._check_query(terms, weights)
                docs, scores = _forward_allowed_one(
                    fw.indptr, fw.terms, fw.weights, N_TERMS, allowed, t, w, k
                )
                ref_docs, ref_scores = reference_topk(dense, t, w.astype(np.float64), k, live=mask)
                np.testing.assert_array_equal(docs, ref_docs, err_msg=f"{name} k={k}")
                np.testing.assert_array_equal(scores, ref_scores.astype(np.float32), err_msg=name)


@pytest.mark.parametrize("seed", range(2))
def test_forward_path_equals_rescored_block_search(tmp_path, seed):
    """Float weights: the forward path's top k is the rescored (quantized candidates, exact rescoring)
    filtered search's, bit for bit, single queries and batches."""
    rng = np.random.default_rng(10 + seed)
    corpus = random_corpus(rng, n_docs=400, n_terms=N_TERMS, max_nnz=12, integer=False)
    index = build_forward(tmp_path, corpus, N_TERMS, block_size=8)
    fw = index.forward
    assert fw is not None
    dense = float_truth(corpus, N_TERMS, index)
    rows = [index._check_query(t, w) for t, w in queries(rng, N_TERMS, 12)]
    batch = SparseBatch.from_rows(rows)
    for name, mask in _allowed_sets(rng, index.n_docs, dense).items():
        allowed = np.flatnonzero(mask).astype(np.int32)
        live = mask.astype(np.uint8)
        k = 7
        out = np.full((len(rows), k), -1, np.int32), np.zeros((len(rows), k), np.float32)
        counts = np.zeros(len(rows), np.int64)
        q = (batch.indptr, batch.term_ids, batch.weights)
        _forward_allowed_batch(fw.indptr, fw.terms, fw.weights, N_TERMS, allowed, *q, k, 2, *out, counts)
        batched = rescored_batch(index, batch, k, SearchParams("safe"), 2, live, allowed=with_allowed(live))
        for i, (t, w) in enumerate(rows):
            docs, scores = _forward_allowed_one(fw.indptr, fw.terms, fw.weights, N_TERMS, allowed, t, w, k)
            ref_docs, ref_scores = rescored_search(index, t, w, k, SearchParams("safe"), live)
            np.testing.assert_array_equal(docs, ref_docs, err_msg=name)
            via_postings = rescored_search(
                index, t, w, k, SearchParams("safe"), live, allowed=with_allowed(live)
            )
            np.testing.assert_array_equal(via_postings[0], ref_docs, err_msg=name)
            np.testing.assert_array_equal(via_postings[1], ref_scores, err_msg=name)
            np.testing.assert_array_equal(scores, ref_scores, err_msg=name)
            np.testing.assert_array_equal(out[0][i, : counts[i]], docs)
            np.testing.assert_array_equal(out[1][i, : counts[i]], scores)
            np.testing.assert_array_equal(batched[i][0], docs, err_msg=name)
            np.testing.assert_array_equal(batched[i][1], scores, err_msg=name)


def test_cost_model_chooses_the_cheaper_path():
    """Few allowed docs: scored directly (forward index when rescoring, else postings); none kept (a
    broad filter): block-max search; scattered allowed docs are priced higher than a run, for the
    forward rows and for block-max search (weak pruning)."""
    term_ptr = np.array([0, 100_000, 200_000, 200_010], np.int64)
    terms = np.array([0, 1, 2], np.int32)

    class Rows:
        indptr = np.arange(0, 100_001 * 4, 4, dtype=np.int64)  # 4 forward entries per doc

    n = 100_000
    run = np.zeros(n, np.uint8)
    run[100:140] = 1
    scattered = np.zeros(n, np.uint8)
    scattered[np.arange(40) * 2000] = 1
    f_run = filtered_of(run, Rows())  # type: ignore[arg-type]
    f_scattered = filtered_of(scattered, Rows())  # type: ignore[arg-type]
    assert f_run.path(term_ptr, terms, forward=True) == "forward"
    assert f_run.path(term_ptr, terms, forward=False) == "postings"
    assert f_scattered.path(term_ptr, terms, forward=False) == "postings"
    assert f_run.forward_cost is not None and f_scattered.forward_cost is not None
    assert f_scattered.forward_cost > f_run.forward_cost and f_scattered.block_factor > f_run.block_factor
    broad = (np.arange(n) % 2).astype(np.uint8)  # 50% > ALLOWED_FRACTION: no ids kept
    assert ALLOWED_FRACTION < 0.5 and filtered_of(broad, None).allowed is None
    assert filtered_of(broad, None).path(term_ptr, terms, forward=True) == "blocks"
    dear = Filtered(run, f_run.allowed, f_run.bits, f_run.rank, 1.0, forward_cost=1e12)
    assert dear.path(term_ptr, terms, forward=True) == "postings"  # rescored candidates from postings


def _fields_index(tmp_path, rng: np.random.Generator, n_docs: int, forward: str):
    from test_fields import N_TERMS as FIELD_TERMS
    from test_fields import SCHEMA, VOCAB, _metadata

    corpus = random_corpus(rng, n_docs=n_docs, n_terms=FIELD_TERMS, max_nnz=6, integer=True)
    ids = [f"d{i}" for i in range(n_docs)]
    store = tmp_path / f"store-{forward}"
    store.mkdir()
    writer = DocStoreWriter(store)
    for key, meta in zip(ids, _metadata(rng, n_docs), strict=True):
        writer.add(key, "", "", meta)
    writer.close()
    out = tmp_path / f"idx-{forward}"
    options = BuildOptions(impact_dtype="uint8", block_size=4, fields=SCHEMA, forward=forward)
    build_index(
        lambda: [corpus], FIELD_TERMS, ids, VOCAB, out, options, extra_files=DocStoreWriter.files(store)
    )
    index = Index.load(out)
    if forward == "none":
        return (
            index,
            dense_from_postings(index.term_ptr, index.doc_ids, index.impacts, index.n_docs),
            index.scale,
        )
    weights = np.asarray(corpus.weights).astype(np.float64)
    return index, dense_from_rows(corpus.indptr, corpus.term_ids, weights, FIELD_TERMS), 1.0


@pytest.mark.parametrize("forward", ["float32", "none"])
def test_filtered_search_with_deletions_equals_reference(tmp_path, forward):
    """Through Index.search with a filter (whichever path the costs choose) and deleted docs (the live
    array): the filtered exhaustive top k; exact scores with the forward index, quantized without."""
    rng = np.random.default_rng(3)
    index, dense, scale = _fields_index(tmp_path, rng, 400, forward)
    assert index.rescore == (forward != "none")
    index.live = (rng.random(index.n_docs) > 0.2).astype(np.uint8)
    for spec in ({"term": {"lang": "en"}}, {"range": {"year": {"gte": 2000, "lt": 2001}}}):
        allowed = index.filtered_live(spec).astype(bool)
        for _ in range(5):
            terms = np.sort(rng.choice(20, size=3, replace=False))
            weights = rng.integers(1, 4, size=3).astype(np.float32)
            ref_docs, ref_scores = reference_topk(dense, terms, weights, 10, live=allowed)
            for mode in ("exact", "safe"):
                got = index.search(terms, weights, 10, mode=mode, filter=spec)
                np.testing.assert_array_equal(got.docs, ref_docs, err_msg=str(spec))
                np.testing.assert_array_equal(got.scores, (ref_scores * float(scale)).astype(np.float32))
            batch = index.search_batch(
                SparseBatch.from_rows([(terms, weights)]), 10, mode="safe", filter=spec
            )
            np.testing.assert_array_equal(batch[0].docs, ref_docs)
