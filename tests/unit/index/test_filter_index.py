"""A filter's own index (lsr.index.subindex): the allowed docs' postings gathered into a small index,
searched by the ordinary kernels, local ids mapped back. Against the slow reference (filtered brute
force over a dense matrix) on seeded random collections: random and clustered filters, no allowed
doc, fewer than k, every doc, deleted docs, several segments, exact and safe mode, with and without
the forward index; and the filter cache's byte budget, eviction and invalidation (new deletions,
commits of adds, deletes and merges)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from corpora import random_corpus

from lsr.index import BuildOptions, Index, SearchParams, SparseBatch, build_index
from lsr.index.docstore import DocStoreWriter
from lsr.index.reference import dense_from_postings, dense_from_rows, reference_topk
from lsr.index.rescore import rescored_search
from lsr.index.search import ALLOWED_FRACTION, FilterCache, with_allowed
from lsr.index.segments import SegmentedIndex, open_index
from lsr.index.writer import Docs, IndexWriter, MergePolicy

N_TERMS = 40
VOCAB = [f"t{i}" for i in range(N_TERMS)]
SCHEMA = {"bucket": "int", "pos": "int"}
NO_POLICY = MergePolicy(max_segments=1000, max_deleted=1.0)


def _meta(start: int, n: int, rng: np.random.Generator) -> list[dict]:
    """``bucket`` uniform in [0, 100) (random filters), ``pos`` the doc's number (clustered ones)."""
    return [{"bucket": int(b), "pos": start + i} for i, b in enumerate(rng.integers(0, 100, n))]


def _plain(tmp_path, rng: np.random.Generator, n_docs: int, forward: str, integer: bool = True):
    """A plain index with the two fields (input order kept), its corpus and its dense reference:
    exact weights with the forward index, kernel units x scale without."""
    corpus = random_corpus(rng, n_docs=n_docs, n_terms=N_TERMS, max_nnz=10, integer=integer)
    ids = [f"d{i}" for i in range(n_docs)]
    store = tmp_path / f"store-{forward}"
    store.mkdir()
    writer = DocStoreWriter(store)
    for key, meta in zip(ids, _meta(0, n_docs, rng), strict=True):
        writer.add(key, "", "", meta)
    writer.close()
    out = tmp_path / f"idx-{forward}"
    options = BuildOptions(impact_dtype="uint8", block_size=4, fields=SCHEMA, forward=forward, reorder="none")
    build_index(lambda: [corpus], N_TERMS, ids, VOCAB, out, options, extra_files=DocStoreWriter.files(store))
    index = Index.load(out)
    if forward == "none":
        dense = dense_from_postings(index.term_ptr, index.doc_ids, index.impacts, index.n_docs)
        return index, dense * float(index.scale)
    weights = np.asarray(corpus.weights).astype(np.float32).astype(np.float64)
    return index, dense_from_rows(corpus.indptr, corpus.term_ids, weights, N_TERMS)


def _queries(rng: np.random.Generator, n: int, integer: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    rows = []
    for _ in range(n):
        terms = np.sort(rng.choice(N_TERMS, size=int(rng.integers(1, 8)), replace=False)).astype(np.int32)
        weights = rng.integers(1, 4, len(terms)) if integer else rng.uniform(0.05, 3.0, len(terms))
        rows.append((terms, weights.astype(np.float32)))
    return rows


def _specs(n_docs: int) -> dict[str, dict]:
    """Filters: random (3% of the docs), clustered (a run of 20), allowing nothing, fewer than k."""
    return {
        "random": {"range": {"bucket": {"lt": 3}}},
        "clustered": {"range": {"pos": {"gte": n_docs // 2, "lt": n_docs // 2 + 20}}},
        "none": {"range": {"bucket": {"lt": 0}}},
        "three": {"range": {"pos": {"gte": 10, "lt": 13}}},
    }


def _eager(cache: FilterCache) -> None:
    """Build a filter's own index on its first use, whatever the query costs."""
    cache.build_after = 1
    cache.min_cost = 0.0


def _cached(cache: FilterCache, spec: dict):
    """The cache's entry for ``spec`` (a lookup that is not a use)."""
    return cache.entries[FilterCache.key_of(spec)]


def _paths(index: Index, spec: dict, rows: list) -> set[str]:
    """The ways the queries of ``rows`` are served with ``spec`` (Filtered.costs)."""
    return {index._route(spec, index._check_query(t, w)[0])[1] for t, w in rows}


def _assert_equal(got, ref_docs, ref_scores, what: str) -> None:
    np.testing.assert_array_equal(got.docs, ref_docs, err_msg=what)
    np.testing.assert_array_equal(got.scores, ref_scores.astype(np.float32), err_msg=what)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("forward", ["none", "float32"])
def test_filter_index_equals_filtered_brute_force(tmp_path, seed, forward):
    """Through Index.search and search_batch with deleted docs: each selective filter gets its own
    index on first use and every query (k = 1, 10, all) returns the reference's ids, scores and tie
    order (integer weights: every sum is exact, quantized or rescored)."""
    rng = np.random.default_rng(seed)
    index, dense = _plain(tmp_path, rng, 700, forward)
    index.live = (rng.random(index.n_docs) > 0.2).astype(np.uint8)
    _eager(index.filter_cache)
    rows = _queries(rng, 12)
    for name, spec in _specs(index.n_docs).items():
        mask = index.filtered_live(spec).astype(bool)
        for k in (1, 10, 1000):
            for mode in ("exact", "safe"):
                for terms, weights in rows:
                    ref = reference_topk(dense, terms, weights, k, live=mask)
                    _assert_equal(index.search(terms, weights, k, mode=mode, filter=spec), *ref, name)
                batch = index.search_batch(SparseBatch.from_rows(rows), k, threads=2, mode=mode, filter=spec)
                for (terms, weights), got in zip(rows, batch, strict=True):
                    _assert_equal(got, *reference_topk(dense, terms, weights, k, live=mask), name)
        cached = index.filter_cache.entries[next(reversed(index.filter_cache.entries))]
        assert (cached.sub is not None) == (0 < mask.sum() <= ALLOWED_FRACTION * index.n_docs), name
        if cached.sub is not None:
            assert cached.sub.index.n_docs == mask.sum() and cached.sub.index.rescore == (forward != "none")
            assert "subindex" in _paths(index, spec, rows), name


@pytest.mark.parametrize("seed", range(2))
def test_float_weights_equal_rescored_filtered_search(tmp_path, seed):
    """Float weights, forward index: the filter index's top k is the rescored filtered exhaustive
    search's (the exact kernel over the mask, candidates rescored) bit for bit, in exact, safe and
    approx (no budget) mode."""
    rng = np.random.default_rng(20 + seed)
    index, dense = _plain(tmp_path, rng, 800, "float32", integer=False)
    _eager(index.filter_cache)
    for name, spec in _specs(index.n_docs).items():
        mask = index.filtered_live(spec)
        for terms, weights in _queries(rng, 15, integer=False):
            t, w = index._check_query(terms, weights)
            ref_docs, ref_scores = rescored_search(index, t, w, 10, SearchParams("exact"), mask)
            for mode in ("exact", "safe"):
                got = index.search(terms, weights, 10, mode=mode, filter=spec)
                np.testing.assert_array_equal(got.docs, ref_docs, err_msg=name)
                np.testing.assert_array_equal(got.scores, ref_scores, err_msg=name)
            brute, _ = reference_topk(dense, t, w.astype(np.float64), 10, live=mask.astype(bool))
            np.testing.assert_array_equal(ref_docs, brute, err_msg=name)


@pytest.mark.parametrize("forward", ["none", "float32"])
def test_any_mask_every_doc_included(tmp_path, forward):
    """build_subindex on masks the cache would not index (every doc, half of them, one doc): the
    sub-index search over any mask is the filtered reference."""
    rng = np.random.default_rng(7)
    index, dense = _plain(tmp_path, rng, 300, forward)
    n = index.n_docs
    for name, mask in {
        "all": np.ones(n, bool),
        "half": rng.random(n) < 0.5,
        "one": np.arange(n) == 17,
        "run": (np.arange(n) >= 100) & (np.arange(n) < 190),
    }.items():
        f = with_allowed(mask.astype(np.uint8), index.forward)
        sub = index._build_subindex(f, 1 << 30)
        assert sub is not None and sub.index.n_docs == mask.sum() and sub.nbytes > 0
        f = replace(f, sub=sub)
        for terms, weights in _queries(rng, 10):
            full = index._check_query(terms, weights)
            for mode in ("exact", "safe"):
                got = index._sub_search(f, full, 10, SearchParams(mode))
                _assert_equal(got, *reference_topk(dense, terms, weights, 10, live=mask), name)


def _live(
    tmp_path, rng: np.random.Generator, impact_dtype: str = "uint8"
) -> tuple[SegmentedIndex, np.ndarray, Path]:
    """A live index of 4 segments (later ones with more terms) with metadata, a third of the docs
    deleted; returns it, its dense reference by global id (kernel units x scale) and its path."""
    path = tmp_path / "live"
    n0 = 120
    first = random_corpus(rng, n_docs=n0, n_terms=N_TERMS - 4, max_nnz=8, integer=True)
    store = tmp_path / "live-store"
    store.mkdir()
    writer = DocStoreWriter(store)
    for i, meta in enumerate(_meta(0, n0, rng)):
        writer.add(f"d{i}", "", "", meta)
    writer.close()
    options = BuildOptions(impact_dtype=impact_dtype, block_size=4, fields=SCHEMA, reorder="none")
    ids = [f"d{i}" for i in range(n0)]
    files = DocStoreWriter.files(store)
    build_index(lambda: [first], N_TERMS - 4, ids, VOCAB[:-4], path, options, extra_files=files)
    n = n0
    with IndexWriter(path, NO_POLICY) as w:
        for s in range(1, 4):
            size = 60 + 20 * s
            batch = random_corpus(rng, n_docs=size, n_terms=N_TERMS - 4 + s, max_nnz=8, integer=True)
            docs = Docs([""] * size, [""] * size, _meta(n, size, rng))
            w.add(
                batch, [f"d{i}" for i in range(n, n + size)], VOCAB[: N_TERMS - 4 + s], docs, grow_vocab=True
            )
            n += size
        w.delete([f"d{i}" for i in range(n) if rng.random() < 0.3])
    index = open_index(path)
    assert isinstance(index, SegmentedIndex) and index._multi is not None
    parts = []
    for seg in index.segments:
        d = dense_from_postings(seg.term_ptr, seg.doc_ids, seg.impacts, seg.n_docs)
        parts.append(np.pad(d, ((0, 0), (0, index.n_terms - seg.n_terms))))
    return index, np.concatenate(parts) * float(index.scale), path


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("impact_dtype", ["uint8", "float32"])
def test_live_index_segments_and_deletions(tmp_path, seed, impact_dtype):
    """A live index: the filter index gathers every segment's allowed live docs (global ids), deleted
    docs never come back, and results equal the reference in exact and safe mode."""
    rng = np.random.default_rng(40 + seed)
    index, dense, _ = _live(tmp_path, rng, impact_dtype)
    _eager(index.filter_cache)
    live = index.live_mask
    rows = [(t[t < index.n_terms], w[t < index.n_terms]) for t, w in _queries(rng, 12)]
    rows = [(t, w) for t, w in rows if len(t)]
    for name, spec in _specs(index.n_docs).items():
        mask = index.filtered_live(spec).astype(bool)
        assert not (mask & ~live).any()
        for mode in ("exact", "safe"):
            for k in (1, 10, 1000):
                for terms, weights in rows:
                    got = index.search(terms, weights, k, mode=mode, filter=spec)
                    assert got.docs.dtype == np.int64
                    _assert_equal(got, *reference_topk(dense, terms, weights, k, live=mask), name)
            batch = index.search_batch(SparseBatch.from_rows(rows), 10, threads=2, mode=mode, filter=spec)
            for (terms, weights), got in zip(rows, batch, strict=True):
                _assert_equal(got, *reference_topk(dense, terms, weights, 10, live=mask), name)
    spec = _specs(index.n_docs)["random"]
    assert _cached(index.filter_cache, spec).sub is not None
    assert _paths(index, spec, rows) == {"subindex"}


def test_commits_never_reuse_a_filter_index(tmp_path):
    """A filter index belongs to one opened generation: after a delete, an add and a merge, a reader of
    the new generation answers with the new docs (deleted ones gone, added ones found), and the old
    reader keeps answering from its own generation."""
    rng = np.random.default_rng(9)
    index, _, path = _live(tmp_path, rng)
    _eager(index.filter_cache)
    spec = {"range": {"bucket": {"lt": 5}}}
    terms, weights = np.arange(N_TERMS - 4, dtype=np.int32), np.ones(N_TERMS - 4, np.float32)
    before = index.search(terms, weights, 1000, mode="safe", filter=spec)
    assert index.filter_cache.index_bytes > 0 and len(before.docs)
    keys = [index.doc_keys[d] for d in before.docs.tolist()]
    with IndexWriter(path, NO_POLICY) as w:
        w.delete(keys[:3])
        extra = SparseBatch.from_rows([(np.array([i, i + 1]), np.array([1.0, 2.0])) for i in range(5)])
        metas = [{"bucket": 1, "pos": 10_000 + i} for i in range(5)]
        w.add(extra, [f"new{i}" for i in range(5)], VOCAB[: index.n_terms], Docs([""] * 5, [""] * 5, metas))
    after = open_index(path)
    _eager(after.filter_cache)
    for _ in range(2):
        got = after.search(terms, weights, 1000, mode="safe", filter=spec)
        got_keys = {after.doc_keys[d] for d in got.docs.tolist()}
        assert not got_keys & set(keys[:3]) and {f"new{i}" for i in range(5)} <= got_keys
    assert set(keys[3:]) <= got_keys
    again = index.search(terms, weights, 1000, mode="safe", filter=spec)  # the old generation, unchanged
    np.testing.assert_array_equal(again.docs, before.docs)
    with IndexWriter(path, NO_POLICY) as w:
        w.merge()
    merged = open_index(path)
    _eager(merged.filter_cache)
    merged_docs = merged.search(terms, weights, 1000, mode="safe", filter=spec).docs
    merged_keys = {merged.doc_keys[d] for d in merged_docs.tolist()}
    assert merged_keys == got_keys


def test_new_deletions_empty_the_cache(tmp_path):
    """Assigning a plain index's live docs (new deletions) drops every cached filter and its index."""
    rng = np.random.default_rng(11)
    index, dense = _plain(tmp_path, rng, 500, "none")
    _eager(index.filter_cache)
    spec = _specs(index.n_docs)["random"]
    terms, weights = np.arange(N_TERMS, dtype=np.int32), np.ones(N_TERMS, np.float32)
    first = index.search(terms, weights, 5, mode="safe", filter=spec)
    assert index.filter_cache.index_bytes > 0
    live = np.ones(index.n_docs, np.uint8)
    live[first.docs[:2]] = 0
    index.live = live
    assert not index.filter_cache.entries and index.filter_cache.index_bytes == 0
    got = index.search(terms, weights, 5, mode="safe", filter=spec)
    mask = index.filtered_live(spec).astype(bool)
    _assert_equal(got, *reference_topk(dense, terms, weights, 5, live=mask), "after delete")
    assert not set(first.docs[:2].tolist()) & set(got.docs.tolist())


def test_byte_budget_second_use_and_eviction(tmp_path):
    """Built on the second use (not the first), never above the byte budget, the least recently used
    filter's index dropped to make room; a budget of 0 builds none."""
    rng = np.random.default_rng(13)
    index, dense = _plain(tmp_path, rng, 2000, "float32")
    cache = index.filter_cache
    cache.min_cost = 0.0
    assert cache.build_after == 2
    specs = [{"range": {"bucket": {"gte": 3 * i, "lt": 3 * i + 3}}} for i in range(3)]
    terms, weights = np.arange(N_TERMS, dtype=np.int32), np.ones(N_TERMS, np.float32)

    def use(spec):
        got = index.search(terms, weights, 10, mode="safe", filter=spec)
        mask = index.filtered_live(spec).astype(bool)
        ref_docs, _ = reference_topk(dense, terms, weights, 10, live=mask)
        np.testing.assert_array_equal(got.docs, ref_docs)
        return _cached(cache, spec)

    assert use(specs[0]).sub is None  # first use: not built
    one = _cached(cache, specs[0])
    entry = use(specs[0])
    assert entry.sub is not None and entry.sub.build_s > 0
    size = entry.sub.nbytes
    assert one.sub is None  # snapshots handed out earlier are never changed
    cache.max_bytes = int(size * 1.5)  # room for one filter index
    use(specs[1])
    entry1 = use(specs[1])
    assert entry1.sub is not None and cache.index_bytes <= cache.max_bytes
    assert _cached(cache, specs[0]).sub is None  # dropped: least recently used
    cache.max_bytes = size // 10  # too small for any: not built, answers still right
    use(specs[2])
    assert use(specs[2]).sub is None and cache.index_bytes <= size * 1.5
    cache.max_bytes = 0
    cache.clear()
    for _ in range(3):
        assert use(specs[0]).sub is None


def test_forward_and_scan_gather_the_same_postings(tmp_path, caplog):
    """A rescoring index gathers the allowed docs' postings through their forward rows (impacts found
    in the posting lists); it equals scanning every posting list, for sparse and dense masks. If a
    forward entry has no posting (a damaged index), the scan is used, with a warning."""
    from lsr.index.subindex import _gathered

    rng = np.random.default_rng(17)
    index, _ = _plain(tmp_path, rng, 600, "float32", integer=False)
    parts, bases = index._subindex_parts()
    for fraction in (0.002, 0.03, 0.3, 1.0):
        f = with_allowed((rng.random(index.n_docs) < fraction).astype(np.uint8), index.forward)
        via_forward = _gathered(parts, bases, f, index, 1 << 30)
        scanned = _gathered(parts, bases, f, replace_forward(index, None), 1 << 30)
        assert via_forward is not None and scanned is not None
        for name in ("term_ptr", "doc_ids", "impacts"):
            np.testing.assert_array_equal(via_forward[name], scanned[name], err_msg=f"{fraction} {name}")
    damaged = Index.load(index.path, mmap=False)
    assert damaged.forward is not None
    d = int(f.allowed[0])
    lo, hi = damaged.forward.indptr[d], damaged.forward.indptr[d + 1]
    present = set(damaged.forward.terms[lo:hi].tolist())
    damaged.forward.terms[lo] = next(t for t in range(N_TERMS) if t not in present)
    with caplog.at_level("WARNING"):
        fallback = _gathered(parts, bases, f, damaged, 1 << 30)
    assert fallback is not None and "no posting" in caplog.text
    np.testing.assert_array_equal(fallback["doc_ids"], scanned["doc_ids"])


def replace_forward(index: Index, forward) -> Index:
    """A shallow copy of ``index`` with another forward index (None: none)."""
    import copy

    other = copy.copy(index)
    other.forward = forward
    return other


def test_a_batch_counts_each_query_as_a_use(tmp_path):
    """A new filter's first batch of several queries is several uses: its index is built for it."""
    rng = np.random.default_rng(19)
    index, dense = _plain(tmp_path, rng, 800, "none")
    index.filter_cache.min_cost = 0.0
    spec = _specs(index.n_docs)["random"]
    rows = _queries(rng, 3)
    batch = index.search_batch(SparseBatch.from_rows(rows), 10, mode="safe", filter=spec)
    assert _cached(index.filter_cache, spec).sub is not None
    mask = index.filtered_live(spec).astype(bool)
    for (terms, weights), got in zip(rows, batch, strict=True):
        _assert_equal(got, *reference_topk(dense, terms, weights, 10, live=mask), "batch")


def test_concurrent_searches_build_one_filter_index(tmp_path):
    """Threads searching with the same new filter at once: one builds its index, the others are served
    meanwhile by the other paths; every answer is the reference's."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(23)
    index, dense = _plain(tmp_path, rng, 900, "float32")
    _eager(index.filter_cache)
    builds = []
    build = index._build_subindex

    def counted(f, max_bytes):
        builds.append(f.key)
        return build(f, max_bytes)

    index._build_subindex = counted  # type: ignore[method-assign]
    spec = _specs(index.n_docs)["random"]
    mask = index.filtered_live(spec).astype(bool)
    rows = _queries(rng, 40)

    def one(row):
        terms, weights = row
        got = index.search(terms, weights, 10, mode="safe", filter=spec)
        _assert_equal(got, *reference_topk(dense, terms, weights, 10, live=mask), "threads")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, rows * 3))
    assert len(builds) == 1 and _cached(index.filter_cache, spec).sub is not None


def test_a_slow_first_lookup_does_not_drop_an_index_built_meanwhile():
    """Two threads meet a new filter at once; while one still evaluates it, the other evaluates it,
    builds its index and caches it. The slow one's evaluation must not replace the cached entry (its
    index would be lost and built a second time: seen once in CI under load)."""
    import threading
    from types import SimpleNamespace

    cache = FilterCache()
    _eager(cache)
    spec = {"range": {"bucket": {"lt": 3}}}
    mask = np.zeros(1000, dtype=np.uint8)
    mask[::50] = 1
    release, entered = threading.Event(), threading.Event()

    def slow_compute():
        entered.set()
        assert release.wait(10)
        return mask

    builds = []

    def build(f, max_bytes):
        builds.append(f.key)
        return SimpleNamespace(nbytes=100)

    slow = threading.Thread(target=lambda: cache.get(spec, slow_compute))
    slow.start()
    assert entered.wait(10)
    f = cache.indexed(cache.get(spec, lambda: mask), build)  # the fast thread: evaluates and builds
    assert f.sub is not None and len(builds) == 1
    release.set()
    slow.join()
    again = cache.indexed(cache.get(spec, lambda: mask), build)
    assert again.sub is f.sub and len(builds) == 1 and _cached(cache, spec).sub is f.sub
