"""Metadata fields and filters: columns from the docstore's metadata, masks against a plain-Python
reference, filtered search against the slow reference (exact and safe; k results whenever k docs
match), live segments, and the bad-input cases."""

from __future__ import annotations

import operator

import numpy as np
import pytest
from corpora import random_corpus

from lsr.index import BuildOptions, Index, build_index
from lsr.index.docstore import DocStoreWriter
from lsr.index.fields import FieldError, convert
from lsr.index.reference import dense_from_postings, reference_topk
from lsr.index.segments import open_index
from lsr.index.writer import Docs, IndexWriter

N_TERMS = 20
VOCAB = [f"t{i}" for i in range(N_TERMS)]
SCHEMA = {"year": "int", "lang": "keyword", "score": "float", "day": "date"}
FILTERS = [
    {"term": {"lang": "en"}},
    {"terms": {"lang": ["de", "fr"]}},
    {"range": {"year": {"gte": 2000, "lt": 2010}}},
    {"range": {"score": {"gt": 0.5}}},
    {"range": {"day": {"lte": "2020-06-01"}}},
    {"exists": "year"},
    {"not": {"exists": "lang"}},
    {"and": [{"term": {"lang": "en"}}, {"range": {"year": {"gt": 1995}}}]},
    {"or": [{"term": {"lang": "de"}}, {"term": {"year": 2003}}]},
    {"term": {"lang": "unseen"}},
]


def _metadata(rng: np.random.Generator, n: int) -> list[dict]:
    out = []
    for _ in range(n):
        meta = {
            "year": int(rng.integers(1990, 2020)),
            "lang": str(rng.choice(["en", "de", "fr"])),
            "score": float(rng.random()),
            "day": f"2020-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}",
        }
        out.append({k: v for k, v in meta.items() if rng.random() > 0.15})  # some missing
    return out


def _allowed(meta: dict, spec: dict) -> bool:
    """The slow reference: one document against one filter."""
    op, arg = next(iter(spec.items()))
    if op in ("and", "or"):
        results = [_allowed(meta, f) for f in arg]
        return all(results) if op == "and" else any(results)
    if op == "not":
        return not _allowed(meta, arg)
    if op == "exists":
        return arg in meta
    name, value = next(iter(arg.items()))
    if name not in meta:
        return False
    have = convert(meta[name], SCHEMA[name])
    if op == "term":
        return have == convert(value, SCHEMA[name])
    if op == "terms":
        return have in [convert(v, SCHEMA[name]) for v in value]
    checks = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}
    kind = "float" if SCHEMA[name] == "int" else SCHEMA[name]
    return all(checks[o](have, convert(b, kind)) for o, b in value.items())


def _build(tmp_path, rng, n_docs=150, name="idx", metadata=None):
    corpus = random_corpus(rng, n_docs=n_docs, n_terms=N_TERMS, max_nnz=6, integer=True)
    metadata = metadata if metadata is not None else _metadata(rng, n_docs)
    ids = [f"d{i}" for i in range(n_docs)]
    store = tmp_path / f"{name}-store"
    store.mkdir()
    writer = DocStoreWriter(store)
    for key, meta in zip(ids, metadata, strict=True):
        writer.add(key, "", "", meta)
    writer.close()
    out = tmp_path / name
    options = BuildOptions(impact_dtype="uint8", block_size=4, fields=SCHEMA)
    build_index(lambda: [corpus], N_TERMS, ids, VOCAB, out, options, extra_files=DocStoreWriter.files(store))
    return out, metadata


@pytest.mark.parametrize("seed", range(3))
def test_masks_and_filtered_search_equal_the_reference(tmp_path, seed):
    rng = np.random.default_rng(seed)
    path, metadata = _build(tmp_path, rng)
    index = Index.load(path)
    dense = dense_from_postings(index.term_ptr, index.doc_ids, index.impacts, index.n_docs)
    for spec in FILTERS:
        expected = np.array([_allowed(m, spec) for m in metadata])
        np.testing.assert_array_equal(index.filtered_live(spec).astype(bool), expected, err_msg=str(spec))
        for _ in range(5):
            terms = np.sort(rng.choice(N_TERMS, size=3, replace=False))
            weights = rng.integers(1, 4, size=3).astype(np.float32)
            ref_docs, ref_scores = reference_topk(dense, terms, weights, 10, live=expected)
            for mode in ("exact", "safe"):
                got = index.search(terms, weights, 10, mode=mode, filter=spec)
                np.testing.assert_array_equal(got.docs, ref_docs)
                np.testing.assert_array_equal(
                    got.scores, (ref_scores * float(index.scale)).astype(np.float32)
                )


def test_k_results_whenever_k_docs_match(tmp_path):
    """A selective filter still fills k: filtering happens inside the kernels, not after the top-k."""
    rng = np.random.default_rng(5)
    metadata = [{"lang": "rare"} if i % 25 == 0 else {"lang": "en"} for i in range(200)]
    path, _ = _build(tmp_path, rng, n_docs=200, metadata=metadata)
    index = Index.load(path)
    terms = np.arange(N_TERMS, dtype=np.int32)
    matching = np.flatnonzero(index.filtered_live({"term": {"lang": "rare"}}))
    dense = dense_from_postings(index.term_ptr, index.doc_ids, index.impacts, index.n_docs)
    n_match = int(((dense[matching] > 0).any(axis=1)).sum())
    for mode in ("exact", "safe"):
        got = index.search(terms, np.ones(N_TERMS), 5, mode=mode, filter={"term": {"lang": "rare"}})
        assert len(got) == min(5, n_match) and set(got.docs.tolist()) <= set(matching.tolist())


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"term": {"nope": 1}}, "unknown field 'nope'"),
        ({"range": {"year": {"from": 1}}}, "range on 'year'"),
        ({"range": {"year": 2000}}, "range on 'year'"),
        ({"range": {"lang": {"gte": "a"}}}, "keyword field"),
        ({"term": {"year": "2000"}}, "not a int value"),
        ({"range": {"day": {"gte": "June"}}}, "ISO date"),
        ({"term": {"lang": "en"}, "exists": "year"}, "exactly one key"),
        ({"fuzzy": {"lang": "en"}}, "unknown filter"),
        ({"and": []}, "non-empty list"),
    ],
)
def test_bad_filters_are_refused(tmp_path, spec, match):
    path, _ = _build(tmp_path, np.random.default_rng(1), n_docs=20)
    with pytest.raises(FieldError, match=match):
        Index.load(path).search([0, 1], [1.0, 1.0], 5, filter=spec)


def test_wrong_metadata_type_and_no_fields(tmp_path):
    rng = np.random.default_rng(2)
    with pytest.raises(FieldError, match=r"document 'd1': field 'year'"):
        _build(tmp_path, rng, n_docs=3, metadata=[{"year": 2000}, {"year": "2001"}, {}])
    assert not (tmp_path / "idx").exists()  # nothing published
    corpus = random_corpus(rng, n_docs=5, n_terms=N_TERMS, max_nnz=4, integer=True)
    build_index(lambda: [corpus], N_TERMS, [f"d{i}" for i in range(5)], VOCAB, tmp_path / "plain")
    with pytest.raises(FieldError, match="no metadata fields"):
        Index.load(tmp_path / "plain").search([0], [1.0], 5, filter={"exists": "year"})


def test_filters_over_live_segments_equal_a_fresh_index(tmp_path):
    rng = np.random.default_rng(3)
    path, metadata = _build(tmp_path, rng, n_docs=60)
    more = random_corpus(rng, n_docs=20, n_terms=N_TERMS, max_nnz=6, integer=True)
    more_meta = _metadata(rng, 20)
    more_ids = [f"d{i}" for i in range(50, 70)]  # ten updates, ten new
    with IndexWriter(path) as w:
        w.add(more, more_ids, VOCAB, Docs([""] * 20, [""] * 20, more_meta))
        w.delete(["d3", "d4"])
        with pytest.raises(FieldError, match="field 'year'"):
            w.add(more.slice(0, 1), ["bad"], VOCAB, Docs([""], [""], [{"year": 1.5}]))
        assert w.generation == 2  # the bad add committed nothing
    live = open_index(path)
    by_id = dict(zip([f"d{i}" for i in range(60)], metadata, strict=True)) | dict(
        zip(more_ids, more_meta, strict=True)
    )
    live_ids = [live.doc_keys[d] for d in np.flatnonzero(live.live_mask)]
    assert sorted(live_ids) == sorted(k for k in by_id if k not in ("d3", "d4"))
    for spec in FILTERS:
        allowed = live.filtered_live(spec).astype(bool) & live.live_mask
        expected = [_allowed(by_id[live.doc_keys[d]], spec) for d in np.flatnonzero(live.live_mask)]
        assert allowed[live.live_mask].tolist() == expected
        for mode in ("exact", "safe"):
            got = live.search(np.arange(N_TERMS), np.ones(N_TERMS), 80, mode=mode, filter=spec)
            assert all(allowed[d] for d in got.docs.tolist())
