"""A live generation's merged block maxima (MergedBounds) against a slow reading of each segment's
postings and block-max arrays, and the bound pass over them (_merged_bounds) against the bounds
accumulated segment by segment, bit for bit, on seeded random live indexes (uint8 impacts: one
ratio; float32 impacts: a ratio per segment, scaled maxima)."""

from __future__ import annotations

import numpy as np
import pytest
from corpora import random_corpus
from live_util import NO_POLICY, PLANS, plan_bounds, random_live_index

from lsr.index.blockmax import MergedBounds
from lsr.index.kernels.blockmax import (
    _add_own_bounds,
    _merged_bounds,
    _own_terms,
    _slack_and_live,
    _workspace,
)
from lsr.index.segments import open_index
from lsr.index.writer import IndexWriter


def _expected_runs(index, t):
    """Term t's sparse runs over the segments, in order: (global block, max, first posting, length)."""
    runs = []
    first_block = 0
    for seg in index.segments:
        bm = seg.blockmax
        if t < seg.n_terms and bm.row_of[t] < 0:
            docs = np.asarray(seg.doc_ids[seg.term_ptr[t] : seg.term_ptr[t + 1]])
            blocks = docs // bm.block_size
            for b in np.unique(blocks):
                where = np.flatnonzero(blocks == b)
                own = np.asarray(bm.tb_block[bm.tb_ptr[t] : bm.tb_ptr[t + 1]])
                entry = bm.tb_ptr[t] + int(np.flatnonzero(own == b)[0])
                runs.append((first_block + int(b), bm.tb_max[entry], seg.term_ptr[t] + where[0], len(where)))
        first_block += bm.n_blocks
    return runs


def _index(tmp_path, seed, impact_dtype):
    """6 segments over up to 60 terms (sparse runs and dense rows); float32: real weights."""
    rng = np.random.default_rng(seed)
    return random_live_index(tmp_path, rng, impact_dtype, 6, n_terms=60, integer=impact_dtype == "uint8")


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("impact_dtype", ["uint8", "float32"])
def test_merged_runs_and_rows_equal_the_segments(tmp_path, seed, impact_dtype):
    """Every term's runs (block, max, postings) and dense rows, segment after segment."""
    index = _index(tmp_path, seed, impact_dtype)
    merged = index.merged_bounds
    scaled = impact_dtype == "float32"  # real weights: each segment its own ratio
    assert len({float(s.blockmax.ub_ratio) for s in index.segments}) == (len(index.segments) if scaled else 1)
    assert merged.sp_max.dtype == (np.float32 if scaled else np.uint8)
    assert len(merged.sp_block) > 100 and len(merged.dn_seg) > 10
    for t in range(index.n_terms):
        got = range(merged.sp_ptr[t], merged.sp_ptr[t + 1])
        want = _expected_runs(index, t)
        assert len(got) == len(want)
        for p, (block, mx, start, length) in zip(got, want, strict=True):
            seg = index.segments[int(np.searchsorted(index._multi[1][:, 3], block, side="right")) - 1]
            assert merged.sp_block[p] == block and merged.sp_start[p] == start
            assert int(merged.sp_len[p]) + 1 == length
            assert merged.sp_max[p] == (np.float32(mx) * seg.blockmax.ub_ratio if scaled else mx)
        dense = [
            (s, seg)
            for s, seg in enumerate(index.segments)
            if t < seg.n_terms and seg.blockmax.row_of[t] >= 0
        ]
        assert merged.dn_ptr[t + 1] - merged.dn_ptr[t] == len(dense)
        for d, (s, seg) in zip(range(merged.dn_ptr[t], merged.dn_ptr[t + 1]), dense, strict=True):
            bm = seg.blockmax
            row = np.asarray(bm.dense_max[bm.row_of[t]])
            assert merged.dn_seg[d] == s and merged.dn_row[d] == bm.row_of[t]
            assert merged.dn_start[d] == seg.term_ptr[t]
            values = merged.dn_max[merged.dn_off[d] : merged.dn_off[d] + bm.n_blocks]
            np.testing.assert_array_equal(values, row.astype(np.float32) * bm.ub_ratio if scaled else row)


def _reference_bounds(index, terms, weights, block_live):
    """Block bounds segment by segment from the segments' own arrays, float32, terms ascending."""
    parts = []
    for seg in index.segments:
        bm = seg.blockmax
        ub = np.zeros(bm.n_blocks, np.float32)
        for t, w in zip(terms, weights, strict=True):
            if t >= seg.n_terms:
                continue
            if bm.row_of[t] >= 0:
                ub += w * (bm.dense_max[bm.row_of[t]].astype(np.float32) * bm.ub_ratio)
            for p in range(bm.tb_ptr[t], bm.tb_ptr[t + 1]):
                ub[bm.tb_block[p]] += w * (np.float32(bm.tb_max[p]) * bm.ub_ratio)
        parts.append(ub * bm.ub_slack)
    ub = np.concatenate(parts)
    if len(block_live):
        ub[block_live == 0] = 0
    return ub


def _expected_entries(index, terms, lo, hi):
    """(query term, run position, global block) of every run in [lo, hi): merged segments' by their
    merged position, the others' by their position in their own arrays."""
    merged = index.merged_bounds
    expected = [
        (i, p, int(merged.sp_block[p]))
        for i, t in enumerate(terms)
        for p in range(merged.sp_ptr[t], merged.sp_ptr[t + 1])
        if lo <= merged.sp_block[p] < hi
    ]
    for s in index.bound_plan[1]:
        seg = index.segments[s]
        bm = seg.blockmax
        for i, t in enumerate(terms):
            for p in range(bm.tb_ptr[t], bm.tb_ptr[t + 1]) if t < seg.n_terms else ():
                g = int(index._multi[1][s, 3] + bm.tb_block[p])
                if lo <= g < hi:
                    expected.append((i, p, g))
    return expected


def _bound_pass(index, terms, weights, block_live, ub, head, q_rows, q_start):
    """The one-call kernel's bound pass (_bmp_multi_query's first steps) over the index's plan."""
    _, seg_int, seg_ub = index._multi
    own, own_of = index._own_bounds
    q_info = np.zeros((len(own), len(terms), 4), np.int64)
    extra = _own_terms(own, own_of, seg_int, terms, q_rows, q_info)
    args = (seg_int, terms, weights, ub, head, block_live, q_rows, q_start, extra)
    ent_next, ent_term, ent_pair, e, lo, hi = _merged_bounds(index.merged_bounds.arrays, *args)
    _add_own_bounds(
        own, own_of, seg_int, seg_ub, terms, weights, ub, head, ent_next, ent_term, ent_pair, e, lo, hi
    )
    _slack_and_live(ub, seg_int, seg_ub, block_live, lo, hi)
    return ent_next, ent_term, ent_pair, lo, hi


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("impact_dtype", ["uint8", "float32"])
@pytest.mark.parametrize("plan", PLANS)
def test_merged_bound_pass_equals_per_segment_bounds(tmp_path, seed, impact_dtype, plan):
    """The bounds of every block (all live, and a run of allowed docs across segment boundaries), the
    dense rows' (row, first posting) per segment, and one linked run entry per sparse run: merged
    segments' runs by their merged position, the others' by their position in their own arrays."""
    rng = np.random.default_rng(10 + seed)
    index = plan_bounds(_index(tmp_path, 10 + seed, impact_dtype), plan)
    _, seg_int, _ = index._multi
    merged_segs, _ = index.bound_plan
    n_blocks = int(seg_int[-1, 3] + seg_int[-1, 1])
    n = index.n_docs
    run = (np.abs(np.arange(n) - n // 2) < n // 4).astype(np.uint8)
    for live in (np.zeros(0, np.uint8), run):
        block_live = index._blocks_of(live) if len(live) else live
        for _ in range(10):
            m = int(rng.integers(1, 8))
            terms = np.sort(rng.choice(index.n_terms, size=m, replace=False)).astype(np.int32)
            weights = rng.random(len(terms)).astype(np.float32) * 3
            ub, head = _workspace(n_blocks, index.block_size, 1)[:2]
            q_rows = np.full((len(index.segments), len(terms)), -1, np.int32)
            q_start = np.zeros((len(index.segments), len(terms)), np.int64)
            pass_args = (index, terms, weights, block_live, ub, head, q_rows, q_start)
            ent_next, ent_term, ent_pair, lo, hi = _bound_pass(*pass_args)
            np.testing.assert_array_equal(ub, _reference_bounds(index, terms, weights, block_live))
            for s, seg in enumerate(index.segments):
                for i, t in enumerate(terms):
                    dense = t < seg.n_terms and seg.blockmax.row_of[t] >= 0
                    assert q_rows[s, i] == (seg.blockmax.row_of[t] if dense else -1)
                    if dense and s in merged_segs:
                        assert q_start[s, i] == seg.term_ptr[t]
            linked = []
            for b in range(n_blocks):  # the runs linked per block: every run of [lo, hi), once
                e = head[b]
                while e >= 0:
                    linked.append((int(ent_term[e]), int(ent_pair[e]), b))
                    e = ent_next[e]
            assert sorted(linked) == sorted(_expected_entries(index, terms, lo, hi))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("impact_dtype", ["uint8", "float32"])
@pytest.mark.parametrize("plan", PLANS)
def test_safe_search_over_merged_bounds_equals_exact(tmp_path, seed, impact_dtype, plan):
    """Safe mode (the one-call kernel over the merged bounds, part of them, or none) gives exact
    mode's ids, order and scores (segment by segment, exhaustive), real weights and a block-max ratio
    per segment included."""
    rng = np.random.default_rng(20 + seed)
    index = plan_bounds(_index(tmp_path, 20 + seed, impact_dtype), plan)
    assert index._one_call
    for _ in range(20):
        m = int(rng.integers(1, 10))
        terms = np.sort(rng.choice(index.n_terms, size=m, replace=False)).astype(np.int32)
        weights = (rng.random(m) * 2).astype(np.float32)
        for k in (1, 5, 50):
            safe = index.search(terms, weights, k, mode="safe")
            exact = index.search(terms, weights, k, mode="exact")
            np.testing.assert_array_equal(safe.docs, exact.docs)
            np.testing.assert_array_equal(safe.scores, exact.scores)


def test_generations_of_the_same_segments_share_merged_bounds(tmp_path):
    """Two readers of one generation, and the generation after a delete-only commit (same segments,
    new tombstones), share one MergedBounds; the new generation's searches skip the deleted docs; an
    add (a new segment) gets its own."""
    index = _index(tmp_path, 30, "uint8")
    terms = np.arange(0, index.n_terms, 3, dtype=np.int32)
    weights = np.ones(len(terms), np.float32)
    top = index.search(terms, weights, 5, mode="safe")
    again = open_index(index.path)
    assert again.merged_bounds is index.merged_bounds
    doomed = index.doc_keys[int(top.docs[0])]
    with IndexWriter(index.path, NO_POLICY) as w:
        w.delete([doomed])
    after = open_index(index.path)
    assert after.generation > index.generation and after.merged_bounds is index.merged_bounds
    got = after.search(terms, weights, 5, mode="safe")
    exact = after.search(terms, weights, 5, mode="exact")
    np.testing.assert_array_equal(got.docs, exact.docs)
    np.testing.assert_array_equal(got.scores, exact.scores)
    assert int(top.docs[0]) not in got.docs.tolist()
    rng = np.random.default_rng(31)
    with IndexWriter(index.path, NO_POLICY) as w:
        batch = random_corpus(rng, n_docs=3, n_terms=index.n_terms, max_nnz=8, integer=True)
        w.add(batch, ["new0", "new1", "new2"], index.vocab)
    grown = open_index(index.path)
    assert grown.merged_bounds is not index.merged_bounds
    for reader in (index, again, after, grown):
        reader.close()


@pytest.mark.parametrize("impact_dtype", ["uint8", "float32"])
def test_bound_plan_merges_the_smallest_segments_within_the_budget(tmp_path, impact_dtype):
    """The merged segments are the smallest ones whose estimated merged size fits merged_bounds_mb
    (the estimate is the built structure's size, up to float32 maxima), and the built MergedBounds
    holds just their runs; a budget of 0 merges none (an empty MergedBounds)."""
    index = _index(tmp_path, 40, impact_dtype)
    _, seg_int, _ = index._multi
    total = int(seg_int[-1, 3] + seg_int[-1, 1])
    sizes = [
        MergedBounds.estimate_nbytes(s.blockmax, total, impact_dtype == "float32") for s in index.segments
    ]
    order = sorted(range(len(sizes)), key=lambda i: (sizes[i], i))
    index.merged_bounds_mb = (sizes[order[0]] + sizes[order[1]] + sizes[order[2]]) / 1e6
    merged, own = index.bound_plan
    assert merged == sorted(order[:3]) and own == sorted(order[3:])
    bounds = index.merged_bounds
    runs = sum(int(index.segments[i].blockmax.tb_ptr[-1]) for i in merged)
    assert len(bounds.sp_block) == runs
    assert set(bounds.dn_seg.tolist()) <= set(merged)
    assert bounds.nbytes - 8 * (index.n_terms + 1) * 2 == sum(sizes[i] for i in merged)
    none = _index(tmp_path / "none", 40, impact_dtype)
    none.merged_bounds_mb = 0
    assert none.bound_plan == ([], list(range(len(none.segments))))
    assert len(none.merged_bounds.sp_block) == 0 and len(none.merged_bounds.dn_max) == 0
