"""Block-max search (safe and approx) against the exhaustive scorer, which is itself checked
against the dense reference in test_search.py."""

from __future__ import annotations

import json
import math
import os
import shutil

import numpy as np
import pytest
from corpora import build, build_with_blockmax, random_corpus

from lsr.index import Index, SparseBatch
from lsr.index.blockmax import build_blockmax
from lsr.index.io import ArtifactError
from lsr.index.reference import dense_from_postings, reference_budget_topk

# the NUMBA_DISABLE_JIT=1 job runs the kernels as Python: fewer queries, same cases
NO_JIT = os.environ.get("NUMBA_DISABLE_JIT") == "1"


def random_queries(rng, n_terms, n, integer):
    n = max(2, n // 8) if NO_JIT else n
    rows = []
    for _ in range(n):
        m = int(rng.integers(1, 12))
        terms = rng.choice(n_terms, size=m, replace=False)
        rows.append((terms, rng.integers(1, 4, size=m) if integer else rng.uniform(0.05, 2.0, m)))
    return rows


def assert_identical(a, b):
    np.testing.assert_array_equal(a.docs, b.docs)
    np.testing.assert_array_equal(a.scores, b.scores)


@pytest.mark.parametrize("impact_dtype", ["uint8", "uint16", "float32"])
@pytest.mark.parametrize("block_size", [1, 3, 16, 64, 256])
@pytest.mark.parametrize("integer", [True, False])
@pytest.mark.parametrize("dense_fraction", [0.01, 0.3, 1.0])  # every term dense / mixed / mostly sparse
def test_safe_mode_equals_exhaustive(tmp_path, impact_dtype, block_size, integer, dense_fraction):
    rng = np.random.default_rng(block_size * 7 + integer)
    n_terms = 50
    # 433 docs: the last block is partial for every block size but 1
    corpus = random_corpus(rng, n_docs=433, n_terms=n_terms, max_nnz=15, integer=integer)
    index = build_with_blockmax(
        tmp_path, corpus, n_terms, impact_dtype, block_size, dense_fraction=dense_fraction
    )
    n_dense = index.blockmax.meta["n_dense_terms"]
    if dense_fraction == 0.01:
        assert n_dense == n_terms
    if dense_fraction == 1.0 and block_size <= 16:  # with few, large blocks every term is everywhere
        assert n_dense < n_terms
    for terms, weights in random_queries(rng, n_terms, 40, integer):
        for k in (1, 10, 100, 1000):
            assert_identical(index.search(terms, weights, k, mode="safe"), index.search(terms, weights, k))


@pytest.mark.parametrize("threads", [1, 2])
def test_batch_equals_single_in_every_mode(tmp_path, threads):
    rng = np.random.default_rng(3)
    corpus = random_corpus(rng, 500, 40, 12, integer=True)
    index = build_with_blockmax(tmp_path, corpus, 40, "uint8", 32)
    rows = random_queries(rng, 40, 30, integer=True) + [([], [])]
    queries = SparseBatch.from_rows(rows)
    settings = (("exact", 1, 1, 0), ("safe", 1, 1, 0), ("approx", 0.7, 0.5, 0), ("approx", 1, 0.3, 0))
    for mode, alpha, beta, budget in (*settings, ("approx", 1, 1, 40), ("approx", 0.8, 1, 100)):
        kw = {"mode": mode, "alpha": alpha, "beta": beta, "budget": budget}
        batch = index.search_batch(queries, k=10, threads=threads, **kw)
        for i, res in enumerate(batch):
            assert_identical(res, index.search(*queries.row(i), k=10, **kw))


def test_approx_returns_true_scores_and_loses_little(tmp_path):
    rng = np.random.default_rng(11)
    corpus = random_corpus(rng, 2000, 80, 20, integer=False)
    index = build_with_blockmax(tmp_path, corpus, 80, "uint8", 32)
    recalls = []
    for terms, weights in random_queries(rng, 80, 50, integer=False):
        exact = index.search(terms, weights, 10)
        approx = index.search(terms, weights, 10, mode="approx", alpha=0.9)
        full = dict(
            zip(
                index.search(terms, weights, 10**5).docs.tolist(),
                index.search(terms, weights, 10**5).scores.tolist(),
                strict=True,
            )
        )
        assert all(full[d] == s for d, s in zip(approx.docs.tolist(), approx.scores.tolist(), strict=True))
        recalls.append(len(set(exact.docs.tolist()) & set(approx.docs.tolist())) / max(len(exact), 1))
        # alpha = beta = 1 in approx mode is the safe search
        assert_identical(index.search(terms, weights, 10, mode="approx"), exact)
    assert np.mean(recalls) >= 0.8


@pytest.mark.parametrize("block_size", [1, 4, 16])
def test_budget_scores_the_blocks_with_the_best_bounds(tmp_path, block_size):
    """approx with a budget = the exact top-k among the docs of the ceil(budget / B) blocks with the
    highest bounds. Integer weights make every bound a multiple of one impact step, far apart for the
    kernel's 1024 buckets, so its block order is the exact one (ties: lower block id)."""
    rng = np.random.default_rng(block_size + 100)
    corpus = random_corpus(rng, 433, 40, 12, integer=True)
    index = build_with_blockmax(tmp_path, corpus, 40, "uint8", block_size)
    dense = dense_from_postings(index.term_ptr, index.doc_ids, index.impacts, index.n_docs)
    for terms, weights in random_queries(rng, 40, 30, integer=True):
        for budget in (1, 3 * block_size, 50, 10**6):
            for k in (1, 10):
                got = index.search(terms, weights, k, mode="approx", budget=budget)
                docs, scores = reference_budget_topk(dense, terms, weights, k, block_size, budget)
                assert got.docs.tolist() == docs.tolist(), (budget, k)
                np.testing.assert_allclose(got.scores, scores * index.scale, rtol=1e-6)
        # a budget past the collection is the safe search
        exact = index.search(terms, weights, 10)
        assert_identical(index.search(terms, weights, 10, mode="approx", budget=index.n_docs), exact)


def test_budget_trades_recall_for_blocks(tmp_path):
    """A smaller budget scores fewer blocks and finds fewer of the exact top 10; never more blocks than
    it allows."""
    rng = np.random.default_rng(12)
    corpus = random_corpus(rng, 3000, 60, 20, integer=False)
    index = build_with_blockmax(tmp_path, corpus, 60, "uint8", 8)
    queries = random_queries(rng, 60, 40, integer=False)
    recall, blocks = [], []
    for budget in (8, 64, 512, 0):
        index.block_counters[:] = 0
        hits = 0
        for terms, weights in queries:
            kw = {"mode": "approx", "budget": budget} if budget else {"mode": "safe"}
            found = index.search(terms, weights, 10, **kw)
            if budget:
                assert index.block_counters[0] <= len(queries) * budget // 8
            hits += len(set(found.docs.tolist()) & set(index.search(terms, weights, 10).docs.tolist()))
        recall.append(hits)
        blocks.append(int(index.block_counters[0]))
    assert recall == sorted(recall) and blocks == sorted(blocks) and recall[0] < recall[-1]


def test_budget_is_refused_by_a_live_index(tmp_path):
    """A live index's multi-segment kernel has no budget: asked for one, it names the problem."""
    from lsr.index.segments import open_index
    from lsr.index.writer import IndexWriter

    rng = np.random.default_rng(2)
    plain = build(tmp_path, random_corpus(rng, 50, 20, 6, integer=True), 20, "uint8", block_size=8)
    vocab = [f"t{i}" for i in range(20)]
    with IndexWriter(plain.path) as w:
        w.add(random_corpus(rng, 10, 20, 6, integer=True), [f"new{i}" for i in range(10)], vocab)
    live = open_index(plain.path)
    assert type(live) is not Index
    with pytest.raises(ValueError, match="budget 64 applies to a single index.*mode 'safe'"):
        live.search([1, 2], [1.0, 1.0], 10, mode="approx", budget=64)
    with pytest.raises(ValueError, match="budget 64 applies to a single index"):
        live.search_batch(SparseBatch.from_rows([([1], [1.0])]), 10, mode="approx", budget=64)
    assert len(live.search([1, 2], [1.0, 1.0], 10, mode="approx", alpha=0.9)) > 0


def test_beta_keeps_the_heaviest_terms(tmp_path):
    corpus = SparseBatch.from_rows([([0], [1.0]), ([1], [1.0]), ([2], [1.0])])
    index = build_with_blockmax(tmp_path, corpus, 3, "float32", 2)
    res = index.search([0, 1, 2], [0.5, 3.0, 1.0], k=10, mode="approx", beta=0.3)  # ceil(0.9): 1 term
    assert res.docs.tolist() == [1]
    res = index.search([0, 1, 2], [0.5, 3.0, 1.0], k=10, mode="approx", beta=0.5)  # ceil(1.5): 2 terms
    assert res.docs.tolist() == [1, 2]


def test_edge_cases(tmp_path):
    # docs 0 and 4 tie; term 3 has no postings; the last block (doc 4) is partial
    corpus = SparseBatch.from_rows([([0, 1], [2, 1]), ([1], [5]), ([0], [1]), ([], []), ([0], [2])])
    index = build_with_blockmax(tmp_path, corpus, 4, "float32", 2)
    assert len(index.search([], [], k=5, mode="safe")) == 0
    assert len(index.search([3], [1.0], k=5, mode="safe")) == 0
    res = index.search([0], [1.0], k=100, mode="safe")
    assert res.docs.tolist() == [0, 4, 2] and res.scores.tolist() == [2.0, 2.0, 1.0]
    assert index.search([0], [1.0], k=1, mode="safe").docs.tolist() == [0]  # tie: lower doc id wins


def test_empty_corpus(tmp_path):
    index = build_with_blockmax(tmp_path, SparseBatch.empty(), 3, "uint8", 8)
    assert len(index.search([1], [1.0], k=5, mode="safe")) == 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mode": "fast"}, "mode 'fast' is not one of"),
        ({"mode": "approx", "alpha": 0}, r"alpha must be a number in \(0, 1\]"),
        ({"mode": "approx", "alpha": 1.5}, r"alpha must be a number in \(0, 1\]"),
        ({"mode": "approx", "beta": float("nan")}, r"beta must be a number in \(0, 1\]"),
        ({"mode": "safe", "alpha": 0.5}, "use mode='approx'"),
        ({"mode": "exact", "beta": 0.5}, "use mode='approx'"),
        ({"mode": "safe", "budget": 100}, "budget 0 .use mode='approx'"),
        ({"mode": "approx", "budget": -1}, "budget must be an integer >= 0.*got -1"),
        ({"mode": "approx", "budget": 2.5}, "budget must be an integer >= 0.*got 2.5"),
        ({"mode": "approx", "budget": True}, "budget must be an integer >= 0.*got True"),
    ],
)
def test_bad_parameters(tmp_path, kwargs, match):
    index = build_with_blockmax(tmp_path, SparseBatch.from_rows([([0], [1.0])]), 1, "uint8", 8)
    with pytest.raises(ValueError, match=match):
        index.search([0], [1.0], k=5, **kwargs)


def test_block_max_needed_for_pruned_modes(tmp_path):
    index = build(tmp_path, SparseBatch.from_rows([([0], [1.0])]), 1, "uint8")
    with pytest.raises(ValueError, match="needs block-max data"):
        index.search([0], [1.0], k=5, mode="safe")


def test_block_max_of_another_index_is_refused(tmp_path):
    a = build_with_blockmax(tmp_path, SparseBatch.from_rows([([0], [1.0]), ([0], [2.0])]), 1, "uint8", 8)
    b = build(tmp_path, SparseBatch.from_rows([([0], [1.0]), ([0], [2.0])]), 1, "uint8")
    shutil.copytree(a.path / "blockmax", b.path / "blockmax")
    with pytest.raises(ArtifactError) as err:
        Index.load(b.path)
    uid_a = json.loads((a.path / "meta.json").read_text())["uid"]
    uid_b = json.loads((b.path / "meta.json").read_text())["uid"]
    assert uid_a in str(err.value) and uid_b in str(err.value)


def test_block_max_missing_arrays_is_refused_by_name(tmp_path):
    a = build_with_blockmax(tmp_path, SparseBatch.from_rows([([0], [1.0]), ([0], [2.0])]), 1, "uint8", 8)
    meta_path = a.path / "blockmax" / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["arrays"]["tb_base"]  # an artifact of an older layout (before checksums too)
    del meta["meta_crc32"], meta["checksums"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=r"lacks block-max arrays \['tb_base'\].*--blockmax-for"):
        Index.load(a.path)
    build_blockmax(a.path, 8)  # the advised rebuild works on such an index
    assert Index.load(a.path).search([0], [1.0], k=2, mode="safe").docs.tolist() == [1, 0]


@pytest.mark.parametrize("block_size", [0, -1, 257, 2.5, True])
def test_bad_block_size(tmp_path, block_size):
    from lsr.index.blockmax import build_blockmax

    index = build(tmp_path, SparseBatch.from_rows([([0], [1.0])]), 1, "uint8")
    with pytest.raises(ValueError, match="block size must be an integer"):
        build_blockmax(index.path, block_size)


@pytest.mark.parametrize("block_size", [4, 32])
def test_reordered_index_finds_the_same_documents(tmp_path, block_size):
    """Reordering renumbers documents; every query still gets the same (doc, score) pairs, and safe
    search on the reordered index equals exact search on it."""
    rng = np.random.default_rng(block_size)
    corpus = random_corpus(rng, 300, 40, 10, integer=True)
    plain = build(tmp_path, corpus, 40, "uint8", block_size=block_size)
    reordered = build(tmp_path, corpus, 40, "uint8", reorder="bp", block_size=block_size)
    order = np.load(reordered.path / "doc_order.npy")
    assert sorted(order.tolist()) == list(range(300)) and order.tolist() != list(range(300))
    assert reordered.doc_keys == [plain.doc_keys[i] for i in order]
    for terms, weights in random_queries(rng, 40, 30, integer=True):
        a = plain.search(terms, weights, 10**5)
        b = reordered.search(terms, weights, 10**5)
        assert sorted(zip(a.scores.tolist(), [plain.doc_keys[d] for d in a.docs], strict=True)) == sorted(
            zip(b.scores.tolist(), [reordered.doc_keys[d] for d in b.docs], strict=True)
        )
        safe = reordered.search(terms, weights, 10, mode="safe")
        assert_identical(safe, reordered.search(terms, weights, 10))


def test_auto_reorders_large_collections_only(tmp_path, monkeypatch):
    """reorder "auto" (the config default) is bp from AUTO_MIN_DOCS documents up, none below."""
    import lsr.index.reorder as reorder

    corpus = random_corpus(np.random.default_rng(4), 200, 30, 8, integer=True)
    small = build(tmp_path, corpus, 30, "uint8", reorder="auto", block_size=8)
    assert small.meta["reorder"] == {"method": "none", "requested": "auto"}
    assert not (small.path / "doc_order.npy").exists()
    monkeypatch.setattr(reorder, "AUTO_MIN_DOCS", 200)
    large = build(tmp_path, corpus, 30, "uint8", reorder="auto", block_size=8)
    assert large.meta["reorder"]["method"] == "bp" and (large.path / "doc_order.npy").exists()
    terms, weights = [1, 2, 3], [1.0, 2.0, 0.5]
    assert sorted(large.doc_keys[d] for d in large.search(terms, weights, 10**5, mode="safe").docs) == sorted(
        small.doc_keys[d] for d in small.search(terms, weights, 10**5).docs
    )


def test_bisection_groups_topics():
    """Two interleaved topics with disjoint vocabularies end up in separate halves."""
    from lsr.index.reorder import bp_order

    rng = np.random.default_rng(0)
    rows = [(rng.choice(50, size=8, replace=False) + (50 if i % 2 else 0), np.ones(8)) for i in range(512)]
    perm = bp_order(SparseBatch.from_rows(rows), 100, leaf_size=64, iterations=10)
    assert sorted(perm.tolist()) == list(range(512))
    first_half_even = np.mean(perm[:256] % 2 == 0)
    assert first_half_even in (0.0, 1.0)


def test_more_blocks_than_uint16_block_ids(tmp_path):
    """Over 65,536 blocks, sparse entries switch to int32 block ids; results stay exact."""
    rng = np.random.default_rng(5)
    n_docs = 66_000
    terms = rng.integers(0, 30, size=(n_docs, 2))
    terms[:, 1] = (terms[:, 0] + 1 + terms[:, 1] % 29) % 30  # two distinct terms per doc
    rows = [(t, rng.integers(1, 5, size=2)) for t in terms]
    index = build_with_blockmax(tmp_path, SparseBatch.from_rows(rows), 30, "uint8", 1, dense_fraction=1.0)
    assert index.blockmax.tb_block.dtype == np.int32 and index.blockmax.n_blocks == n_docs
    for q_terms, q_weights in random_queries(rng, 30, 10, integer=True):
        safe = index.search(q_terms, q_weights, 10, mode="safe")
        assert_identical(safe, index.search(q_terms, q_weights, 10))


def test_sparse_runs_around_a_long_dense_posting_list(tmp_path):
    """Sparse entries of terms 0 and 2 share an offset group while term 1 (dense, in every doc) has more
    than 65,536 postings between them in the posting arrays: offsets must not overflow."""
    n_docs = 70_000
    rows = []
    for d in range(n_docs):
        terms = [1] + ([0] if d % 997 == 0 else []) + ([2] if d % 991 == 3 else [])
        rows.append((terms, [2.0] * len(terms)))
    index = build_with_blockmax(tmp_path, SparseBatch.from_rows(rows), 3, "uint8", 16)
    assert index.blockmax.row_of.tolist() == [-1, 0, -1]
    for terms in ([0], [2], [0, 2], [0, 1, 2]):
        exact = index.search(terms, [1.0] * len(terms), 100)
        assert_identical(index.search(terms, [1.0] * len(terms), 100, mode="safe"), exact)


@pytest.mark.parametrize("seed", range(8))
def test_bucket_order_against_a_sort(seed):
    """The bucket sort against a plain sort: blocks of [lo, hi) with a positive bound, by bucket
    (highest first) then block id; the count and exact maximum of every bucket the first ``want``
    positions reach; empty and all-zero bounds. A ``want`` below the count (approx's budget) sorts only
    the blocks its preselection by chunk maxima keeps: the same first ``want`` blocks. Seeds 6-7 give
    few distinct bounds (whole buckets of ties around the cut)."""
    from lsr.index.kernels.blockmax import N_BUCKETS, _bucket_order

    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 3000)) if seed < 6 else 2500
    if seed < 6:
        ub = (rng.random(n) * 40).astype(np.float32)
        ub[rng.random(n) < [0.0, 0.4, 0.9, 1.0, 0.5, 0.1][seed]] = 0
    else:
        ub = rng.integers(0, 4, n).astype(np.float32) * np.float32(0.75)
    lo = int(rng.integers(0, n + 1)) if seed < 6 else int(rng.integers(0, 40))
    hi = int(rng.integers(lo, n + 1)) if seed < 6 else n - int(rng.integers(0, 40))
    blocks = [b for b in range(lo, hi) if ub[b] > 0]
    wants = (hi - lo, 0, 1, 2, 17, int(rng.integers(0, len(blocks) + 1)), len(blocks) - 1, len(blocks) + 5)
    for want in wants:
        order, cand, bkt = np.empty(n, np.int32), np.empty(n, np.int32), np.empty(n, np.int16)
        bucket_ptr, bucket_max = np.zeros(N_BUCKETS + 1, np.int64), np.zeros(N_BUCKETS, np.float32)
        got = _bucket_order(ub, order, cand, bkt, bucket_ptr, bucket_max, lo, hi, max(want, 0))
        assert got == len(blocks)
        if not blocks:
            continue
        scale = (N_BUCKETS - 1) / float(ub[lo:hi].max())
        bucket = {b: N_BUCKETS - 1 - min(int(float(ub[b]) * scale), N_BUCKETS - 1) for b in blocks}
        first = min(got, max(want, 0))
        expected = sorted(blocks, key=lambda b: (bucket[b], b))
        np.testing.assert_array_equal(order[:first], expected[:first])
        for j in {bucket[b] for b in expected[:first]}:
            assert bucket_max[j] == max(ub[b] for b in blocks if bucket[b] == j)
            assert bucket_ptr[j + 1] - bucket_ptr[j] == sum(1 for b in blocks if bucket[b] == j)
            assert bucket_ptr[j] == sum(1 for b in blocks if bucket[b] < j)


def test_safe_mode_scores_small_collections_exhaustively(tmp_path, monkeypatch):
    """By default (Index.exhaustive_docs; conftest turns it off for the kernel tests) safe mode on a
    collection of at most that many documents runs the exhaustive kernel, single and batch: the same
    docs and scores as block-max safe and exact, and no block scored; so does approx without a
    budget, single and batch (alpha and beta ignored: the whole query, exact results), and approx with
    a budget of at least a twelfth of the documents; approx with a smaller budget still runs block-max."""
    from lsr.index.search import EXHAUSTIVE_BUDGET_FRACTION, EXHAUSTIVE_DOCS

    rng = np.random.default_rng(21)
    corpus = random_corpus(rng, 600, 40, 12, integer=False)
    for dtype in ("float32", "uint8"):
        index = build_with_blockmax(tmp_path / dtype, corpus, 40, dtype, 8)
        queries = random_queries(rng, 40, 15, integer=False)
        batch = SparseBatch.from_rows(queries)
        block_max = [index.search(t, w, 10, mode="safe") for t, w in queries]
        assert index.block_counters[0] > 0
        monkeypatch.setattr(Index, "exhaustive_docs", EXHAUSTIVE_DOCS)
        index.block_counters[:] = 0
        routed = [index.search(t, w, 10, mode="safe") for t, w in queries]
        routed_batch = index.search_batch(batch, 10, mode="safe")
        no_budget = [index.search(t, w, 10, mode="approx", alpha=0.5, beta=0.3) for t, w in queries]
        no_budget_batch = index.search_batch(batch, 10, mode="approx", alpha=0.5, beta=0.3)
        assert index.block_counters[0] == 0
        got_all = zip(queries, block_max, routed, routed_batch, no_budget, no_budget_batch, strict=True)
        for (t, w), *results in got_all:
            exact = index.search(t, w, 10)
            for got in results:
                np.testing.assert_array_equal(got.docs, exact.docs)
                np.testing.assert_array_equal(got.scores, exact.scores)
        index.search(*queries[0], 10, mode="approx", budget=16)
        assert index.block_counters[0] > 0
        index.block_counters[:] = 0
        # a budget of at least EXHAUSTIVE_BUDGET_FRACTION of the documents: exhaustive, exact
        wide = math.ceil(index.n_docs * EXHAUSTIVE_BUDGET_FRACTION)
        wide_one = [index.search(t, w, 10, mode="approx", budget=wide, alpha=0.5) for t, w in queries]
        wide_batch = index.search_batch(batch, 10, mode="approx", budget=wide, alpha=0.5)
        for (t, w), one, in_batch in zip(queries, wide_one, wide_batch, strict=True):
            exact = index.search(t, w, 10)
            for got in (one, in_batch):
                np.testing.assert_array_equal(got.docs, exact.docs)
                np.testing.assert_array_equal(got.scores, exact.scores)
        assert index.block_counters[0] == 0
        index.search(*queries[0], 10, mode="approx", budget=wide - 1)
        assert index.block_counters[0] > 0
        monkeypatch.setattr(Index, "exhaustive_docs", 0)


def test_a_scan_past_the_first_window_of_blocks(tmp_path):
    """Loose bounds (every block holds many query terms, each document one) make safe mode read more
    blocks than the first window it orders and links (FIRST_WINDOW): the rest are ordered and linked
    then, and the results stay those of exhaustive search. A budget beyond the window and one inside it
    score just their number of blocks, each document with its exact score."""
    from lsr.index.kernels.blockmax import FIRST_WINDOW

    rng = np.random.default_rng(5)
    block_size = 4
    n_docs = (FIRST_WINDOW + 300) * block_size
    terms = rng.integers(0, 40, n_docs)
    rows = [([int(t)], [float(w)]) for t, w in zip(terms, rng.uniform(0.5, 1.0, n_docs), strict=True)]
    index = build_with_blockmax(tmp_path, SparseBatch.from_rows(rows), 40, "float32", block_size)
    query = (np.arange(40), np.ones(40, np.float32))
    exact = index.search(*query, 10)
    index.block_counters[:] = 0
    assert_identical(index.search(*query, 10, mode="safe"), exact)
    assert index.block_counters[0] > FIRST_WINDOW
    weight = np.float32([w[0] for _, w in rows])
    for blocks in (FIRST_WINDOW + 200, 8):
        index.block_counters[:] = 0
        got = index.search(*query, 10, mode="approx", budget=blocks * block_size)
        assert index.block_counters[0] == blocks
        assert len(got) == 10 and np.all(np.diff(got.scores) <= 0)
        np.testing.assert_array_equal(got.scores, weight[got.docs])


@pytest.mark.parametrize("seed", range(3))
def test_bucket_floor_is_the_smallest_bound_of_a_bucket(seed):
    """The preselection's threshold: the smallest positive float32 whose bucket is at most ``cut``
    (the float just below it is in a later bucket), for random tops and every kind of cut."""
    from lsr.index.kernels.blockmax import N_BUCKETS, _bucket, _bucket_floor

    rng = np.random.default_rng(seed)
    for top in rng.uniform(1e-3, 1e3, 20).astype(np.float32):
        scale = np.float64(N_BUCKETS - 1) / np.float64(top)
        for cut in (0, 1, int(rng.integers(0, N_BUCKETS - 1)), N_BUCKETS - 2):
            low = np.array([_bucket_floor(scale, cut)], np.int32).view(np.float32)[0]
            assert low > 0 and _bucket(low, scale) <= cut
            below = np.nextafter(low, np.float32(0))
            assert _bucket(below, scale) > cut
