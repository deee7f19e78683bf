"""The kernels that search all segments of a live index in one call (block-max over every segment's
blocks with one heap) and the allowed-docs kernel of selective filters, against the slow reference
on seeded random segments with deletions, growing vocabularies and uint8 / float32 impacts."""

from __future__ import annotations

import numpy as np
import pytest
from live_util import N_TERMS, PLANS, plan_bounds, random_live_index

from lsr.index import Index, SparseBatch
from lsr.index.kernels.allowed import _allowed_search_one
from lsr.index.kernels.blockmax import _bmp_multi_search_one
from lsr.index.reference import dense_from_postings, reference_topk
from lsr.index.search import with_allowed
from lsr.index.segments import SegmentedIndex


def _dense(index: SegmentedIndex) -> np.ndarray:
    """All segments' docs by global id, kernel units (impacts; one scale for all segments)."""
    parts = []
    for seg in index.segments:
        d = dense_from_postings(seg.term_ptr, seg.doc_ids, seg.impacts, seg.n_docs)
        parts.append(np.pad(d, ((0, 0), (0, index.n_terms - seg.n_terms))))
    return np.concatenate(parts)


def _queries(rng, n):
    for _ in range(n):
        m = int(rng.integers(1, 7))
        terms = np.sort(rng.choice(N_TERMS, size=m, replace=False)).astype(np.int32)
        yield terms, rng.integers(1, 4, size=m).astype(np.float32)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("impact_dtype", ["uint8", "float32"])
@pytest.mark.parametrize("n_segments", [1, 3, 9])
@pytest.mark.parametrize("plan", PLANS)
def test_one_call_over_segments_equals_reference(tmp_path, seed, impact_dtype, n_segments, plan):
    """Safe mode over all segments at once: ids, order, ties and scores of the reference top-k over the
    live docs (one query and batches, with and without a filter mask), with every segment's block
    maxima merged, the smaller half merged and the rest read from their own arrays, or none merged."""
    rng = np.random.default_rng(seed)
    index = plan_bounds(random_live_index(tmp_path, rng, impact_dtype, n_segments), plan)
    dense = _dense(index)
    live = index.live_mask
    queries = [(t[t < index.n_terms], w[t < index.n_terms]) for t, w in _queries(rng, 10)]
    queries = [(t, w) for t, w in queries if len(t)]
    for k in (1, 4, 1000):
        for terms, weights in queries:
            got = index.search(terms, weights, k, mode="safe")
            ref_docs, ref_scores = reference_topk(dense, terms, weights, k, live)
            np.testing.assert_array_equal(got.docs, ref_docs, err_msg=f"k={k}")
            np.testing.assert_array_equal(got.scores, (ref_scores * index.scale).astype(np.float32))
        batch = index.search_batch(SparseBatch.from_rows(queries), k=k, threads=2, mode="safe")
        for (terms, weights), got in zip(queries, batch, strict=True):
            ref_docs, _ = reference_topk(dense, terms, weights, k, live)
            np.testing.assert_array_equal(got.docs, ref_docs)
    if not index._one_call:
        return
    merged, own = index.bound_plan
    assert sorted(merged + own) == list(range(n_segments))
    assert (len(merged), len(own)) == {"merged": (n_segments, 0), "own": (0, n_segments)}.get(
        plan, (n_segments // 2, n_segments - n_segments // 2)
    )
    n = index.n_docs  # a run of allowed docs across segment boundaries: bounds only over its blocks
    run = live & (np.abs(np.arange(n) - n // 2) < n // 3)
    run_u8 = run.astype(np.uint8)
    for terms, weights in queries:
        docs, scores = _bmp_multi_search_one(
            *index._one_call_args(),
            terms,
            weights,
            5,
            np.float32(1),
            index.block_counters,
            run_u8,
            index._blocks_of(run_u8),
        )
        ref_docs, ref_scores = reference_topk(dense, terms, weights, 5, run)
        np.testing.assert_array_equal(docs, ref_docs)
        np.testing.assert_array_equal(scores, ref_scores.astype(np.float32))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("impact_dtype", ["uint8", "float32"])
def test_allowed_docs_kernel_equals_reference(tmp_path, seed, impact_dtype):
    """Scoring just the allowed docs (none, one, a few, many, all) gives the reference top-k over them,
    on a live index of several segments and on a plain index."""
    rng = np.random.default_rng(100 + seed)
    index = random_live_index(tmp_path, rng, impact_dtype, 4)
    plain = Index.load(index.segments[0].path)
    for target in (index, plain):
        dense = (
            _dense(target)
            if target is index
            else dense_from_postings(plain.term_ptr, plain.doc_ids, plain.impacts, plain.n_docs)
        )
        for fraction in (0.0, 0.02, 0.2, 0.7, 1.0):
            mask = rng.random(target.n_docs) < fraction
            if target is index:
                mask &= index.live_mask
            allowed = with_allowed(mask.astype(np.uint8))  # both kernel branches: scan and gallop
            for terms, weights in _queries(rng, 8):
                terms = terms[terms < target.n_terms]
                weights = weights[: len(terms)]
                for k in (1, 5, 1000):
                    docs, scores = _allowed_search_one(*target._allowed_args(allowed), terms, weights, k)
                    ref_docs, ref_scores = reference_topk(dense, terms, weights, k, mask)
                    np.testing.assert_array_equal(docs, ref_docs, err_msg=f"{fraction} k={k}")
                    np.testing.assert_array_equal(scores, ref_scores.astype(np.float32))


def test_filter_cache_keeps_masks_and_refuses_bad_filters(tmp_path):
    """A filter's mask and allowed ids are evaluated once per opened index (the last 16 filters); an
    unknown field is an error each time and caches nothing."""
    from lsr.index.fields import FieldError
    from lsr.index.search import FilterCache

    cache = FilterCache(size=2)
    calls = []

    def mask(value):
        calls.append(value)
        out = np.zeros(100, np.uint8)
        out[0] = 1
        return out

    for spec in (
        {"term": {"a": 1}},
        {"term": {"a": 1}},
        {"term": {"a": 2}},
        {"term": {"a": 3}},
        {"term": {"a": 1}},
    ):
        filtered = cache.get(spec, lambda spec=spec: mask(spec["term"]["a"]))
        np.testing.assert_array_equal(filtered.allowed, [0])  # 1 of 100 docs: scored directly
    assert calls == [1, 2, 3, 1]  # the second use hit; 1 was evicted by 2 and 3
    rng = np.random.default_rng(5)
    index = random_live_index(tmp_path, rng, "uint8", 2)
    with pytest.raises(FieldError):
        index.search([0], [1.0], 5, mode="safe", filter={"term": {"nope": 1}})
    assert not index.filter_cache.entries
