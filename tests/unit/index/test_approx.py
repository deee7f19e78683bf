"""Approximate search over statically pruned lists (lsr.index.approx) against slow references: the
lists are each term's top N postings by impact, and the results are the candidates the pruned lists
rank first, rescored with their exact float scores; seeded random collections."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from corpora import random_corpus
from test_rescore import build_forward, float_truth, queries

from lsr.index import BuildOptions, Index, SparseBatch
from lsr.index.approx import build_approx_lists, cut_query, pruned_postings, query_mass
from lsr.index.io import ArtifactError
from lsr.index.kernels.prune import _mass_cut
from lsr.index.reference import dense_from_postings, reference_topk
from lsr.index.rescore import first_depth


def reference_pruned(term_ptr, doc_ids, impacts, n_keep):
    """Per term: sort by (impact desc, doc asc), keep n_keep, back to doc order."""
    ptr, docs, imps = [0], [], []
    for t in range(len(term_ptr) - 1):
        d = np.asarray(doc_ids[term_ptr[t] : term_ptr[t + 1]])
        x = np.asarray(impacts[term_ptr[t] : term_ptr[t + 1]])
        keep = np.sort(np.lexsort((d, -x.astype(np.float64)))[:n_keep])
        docs.append(d[keep])
        imps.append(x[keep])
        ptr.append(ptr[-1] + len(keep))
    return np.array(ptr), np.concatenate(docs), np.concatenate(imps)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n_keep", [1, 3, 17, 1000])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_pruned_postings_are_each_terms_top_n(seed, n_keep, dtype):
    rng = np.random.default_rng(seed)
    n_terms, n_docs = 40, 300
    lengths = rng.integers(0, 120, n_terms)
    ptr = np.zeros(n_terms + 1, np.int64)
    np.cumsum(lengths, out=ptr[1:])
    docs = np.concatenate([np.sort(rng.choice(n_docs, n, replace=False)) for n in lengths]).astype(np.int32)
    high = 5 if seed % 2 else 65535  # few distinct impacts: many ties at the cut
    if dtype == np.float32:
        impacts = (rng.integers(1, high + 1, len(docs)) / 7).astype(dtype)
    else:
        impacts = rng.integers(1, min(high, int(np.iinfo(dtype).max)) + 1, len(docs)).astype(dtype)
    got = pruned_postings(ptr, docs, impacts, n_keep)
    for a, b in zip(got, reference_pruned(ptr, docs, impacts, n_keep), strict=True):
        np.testing.assert_array_equal(a, b)
    assert got[2].dtype == dtype


# index layouts whose pruned lists return exact scores: integer impacts rescored by the forward index,
# float32 impacts rescored from the full posting lists
LAYOUTS = {
    "uint8+forward": {"impact_dtype": "uint8"},
    "float32": {"impact_dtype": "float32", "forward": "none"},
}


def build_pair(tmp_path, seed, n_keep, reorder="none", layout="uint8+forward"):
    rng = np.random.default_rng(seed)
    n_terms = 40
    corpus = random_corpus(rng, n_docs=500, n_terms=n_terms, max_nnz=14, integer=False)
    options = {"reorder": reorder, "block_size": 8, "approx_lists": n_keep, **LAYOUTS[layout]}
    index = build_forward(tmp_path, corpus, n_terms, **options)
    return rng, corpus, n_terms, index


def reference_cut(terms, weights, mass):
    """The heaviest terms (ties: lower position) until their running sum reaches mass x the total."""
    order = sorted(range(len(terms)), key=lambda i: (-float(weights[i]), i))
    need, run, keep = mass * sum(float(w) for w in weights), 0.0, set()
    for i in order:
        keep.add(i)
        run += float(weights[i])
        if run >= need:
            break
    idx = sorted(keep)
    return np.asarray(terms)[idx], np.asarray(weights)[idx]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("mass", [1e-9, 0.3, 0.6, 0.9, 1.0])
def test_mass_cut_keeps_the_heaviest_terms(seed, mass):
    rng = np.random.default_rng(seed)
    m = int(rng.integers(0, 40))
    terms = np.sort(rng.choice(1000, m, replace=False)).astype(np.int32)
    # seeds 0-2: few distinct weights, so ties decide the cut
    weights = (rng.integers(1, 4, m) if seed < 3 else rng.random(m) + 1e-3).astype(np.float32)
    got = _mass_cut(terms, weights, mass)
    want = reference_cut(terms, weights, mass)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)
    assert len(got[0]) >= min(m, 1) and got[0].dtype == np.int32 and got[1].dtype == np.float32


def test_query_mass_steps_with_the_budget():
    assert query_mass(0) == 1.0 and query_mass(8192) == 1.0 and query_mass(1 << 20) == 1.0
    assert query_mass(4096) == pytest.approx(0.9) and query_mass(2048) == pytest.approx(0.8)
    assert query_mass(1024) == pytest.approx(0.7) and query_mass(512) == pytest.approx(0.6)
    assert query_mass(1) == pytest.approx(0.6)
    terms, weights = np.array([1, 2, 3], np.int32), np.array([0.5, 3.0, 0.5], np.float32)
    np.testing.assert_array_equal(cut_query(terms, weights, 0)[0], terms)
    np.testing.assert_array_equal(cut_query(terms, weights, 512)[0], [2])  # 3.0 of 4.0 >= 0.6


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("n_keep", [5, 30])
@pytest.mark.parametrize("reorder", ["none", "bp"])
@pytest.mark.parametrize("budget", [0, 600])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_approx_returns_pruned_candidates_rescored_exactly(tmp_path, seed, n_keep, reorder, budget, layout):
    """Budget 600 covers every block of these 500 docs (the safe stop decides, as without one) and
    cuts the query to its heaviest terms holding query_mass(600) of its weight."""
    rng, corpus, n_terms, index = build_pair(tmp_path, seed, n_keep, reorder, layout)
    assert index.approx is not None and (index.forward is None) == (layout == "float32")
    assert index.approx.meta["n_postings"] < index.meta["n_postings"]
    dense = float_truth(corpus, n_terms, index)
    p = index.approx
    ref_ptr, ref_docs, ref_imps = reference_pruned(index.term_ptr, index.doc_ids, index.impacts, n_keep)
    np.testing.assert_array_equal(p.term_ptr, ref_ptr)
    np.testing.assert_array_equal(p.doc_ids, ref_docs)
    # float32 lists are cut by their exact impacts and stored as uint8 (they only find candidates)
    assert p.impacts.dtype == np.uint8
    if layout == "float32":
        scale = float(p.meta["impacts"]["scale"])
        np.testing.assert_array_equal(
            p.impacts, np.clip(np.rint(ref_imps.astype(np.float64) / scale), 1, 255)
        )
    pruned_dense = dense_from_postings(ref_ptr, ref_docs, np.asarray(p.impacts), index.n_docs)
    rows = queries(rng, n_terms, 20)
    batches = index.search_batch(SparseBatch.from_rows(rows), 10, mode="approx", budget=budget)
    for i, (terms, weights) in enumerate(rows):
        cut_terms, cut_weights = reference_cut(terms, weights.astype(np.float32), query_mass(budget))
        for k in (1, 10):
            got = index.search(terms, weights, k, mode="approx", budget=budget)
            kk = min(first_depth(k), index.n_docs)
            cand, _ = reference_topk(pruned_dense, cut_terms, cut_weights.astype(np.float64), kk)
            exact = dense[cand] @ _dense_query(terms, weights, n_terms)
            order = np.lexsort((cand, -exact))[:k]
            np.testing.assert_array_equal(got.docs, cand[order])
            assert_exact(got, dense, terms, weights, n_terms)
        one = index.search(terms, weights, 10, mode="approx", budget=budget)
        np.testing.assert_array_equal(batches[i].docs, one.docs)
        np.testing.assert_array_equal(batches[i].scores, one.scores)


def _dense_query(terms, weights, n_terms):
    q = np.zeros(n_terms)
    q[terms] = weights.astype(np.float64)
    return q


def assert_exact(got, dense, terms, weights, n_terms):
    """The returned scores are the exact float scores of the returned docs."""
    np.testing.assert_allclose(got.scores, dense[got.docs] @ _dense_query(terms, weights, n_terms), rtol=1e-6)


def test_index_without_pruned_lists_opens_and_searches_as_before(tmp_path):
    rng, corpus, n_terms, index = build_pair(tmp_path, 7, 5)
    dense = float_truth(corpus, n_terms, index)
    rows = queries(rng, n_terms, 15)
    on_lists = [index.search(t, w, 10, mode="approx", budget=16) for t, w in rows]
    index.approx = None  # the same index searching its full lists
    budget = [index.search(t, w, 10, mode="approx", budget=16) for t, w in rows]
    assert any(a.docs.tolist() != b.docs.tolist() for a, b in zip(on_lists, budget, strict=True))
    shutil.rmtree(index.path / "approx")
    plain = Index.load(index.path)
    assert plain.approx is None
    for (terms, weights), before in zip(rows, budget, strict=True):
        again = plain.search(terms, weights, 10, mode="approx", budget=16)
        np.testing.assert_array_equal(again.docs, before.docs)
        assert_exact(again, dense, terms, weights, n_terms)
        full = plain.search(terms, weights, 10, mode="approx")  # approx over the full lists
        safe = plain.search(terms, weights, 10, mode="safe")
        ref_docs, _ = reference_topk(dense, terms, weights.astype(np.float64), 10)
        np.testing.assert_array_equal(safe.docs, ref_docs)
        assert_exact(full, dense, terms, weights, n_terms)


def test_rebuilt_lists_and_lists_of_another_index(tmp_path):
    _, _, _, index = build_pair(tmp_path, 8, 5)
    meta = build_approx_lists(index.path, 9, 8)
    assert meta["approx_lists"]["n_keep"] == 9
    assert Index.load(index.path).approx.meta["n_postings"] > index.approx.meta["n_postings"]
    _, _, _, other = build_pair(tmp_path, 9, 5)
    shutil.rmtree(other.path / "approx")
    shutil.copytree(index.path / "approx", other.path / "approx")
    with pytest.raises(ArtifactError, match="built for index"):
        Index.load(other.path)
    assert Index.load(other.path, blockmax=False).n_docs == other.n_docs  # the index itself is intact


@pytest.mark.parametrize(
    "options, message",
    [
        ({"approx_lists": -1, "forward": "float32"}, "approx_lists must be an integer >= 1.*-1"),
        ({"approx_lists": 2.5, "forward": "float32"}, "approx_lists must be an integer >= 1.*2.5"),
        ({"approx_lists": 10, "forward": "float32", "block_size": None}, "approx_lists 10 needs block-max"),
        ({"approx_lists": 10, "forward": "none", "block_size": None}, "approx_lists 10 needs block-max"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        BuildOptions(**options)


def test_lists_without_a_forward_index_rank_by_the_postings(tmp_path):
    """Pruned lists of an integer index without the forward index: the candidates are ranked by the
    whole query's quantized score read from the full lists (what exhaustive search of the index gives
    them), single and batch alike."""
    rng = np.random.default_rng(3)
    corpus = random_corpus(rng, n_docs=300, n_terms=20, max_nnz=8, integer=False)
    index = build_forward(tmp_path, corpus, 20, forward="none", block_size=8)
    build_approx_lists(index.path, 4, 8)
    index = Index.load(index.path)
    assert index.forward is None and index.approx is not None
    rows = queries(rng, 20, 10)
    batch = index.search_batch(SparseBatch.from_rows(rows), 10, mode="approx", budget=64)
    for (terms, weights), from_batch in zip(rows, batch, strict=True):
        got = index.search(terms, weights, 10, mode="approx", budget=64)
        whole = index.search(terms, weights, index.n_docs, mode="exact")
        score_of = dict(zip(whole.docs.tolist(), whole.scores.tolist(), strict=True))
        np.testing.assert_allclose(got.scores, [score_of[d] for d in got.docs.tolist()], rtol=1e-5)
        np.testing.assert_array_equal(from_batch.docs, got.docs)
        np.testing.assert_array_equal(from_batch.scores, got.scores)


def test_verify_checks_the_pruned_lists(tmp_path):
    from lsr.verify import verify

    _, _, _, index = build_pair(tmp_path, 11, 5)
    report = verify(index.path)
    assert report.ok, report.problems
    checked = {path for path, _ in report.checked}
    assert {index.path / "approx", index.path / "approx" / "blockmax"} <= checked
    target = index.path / "approx" / "doc_ids.npy"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    problems = verify(index.path).problems
    assert any(path == target for path, _ in problems), problems


@pytest.mark.parametrize("budget", [0, 16, 600])
def test_edge_queries_on_pruned_lists(tmp_path, budget):
    """An empty query finds nothing; k above the collection returns every matching doc, exactly scored."""
    rng, corpus, n_terms, index = build_pair(tmp_path, 3, 5)
    empty = index.search(np.zeros(0, np.int32), np.zeros(0, np.float32), 10, mode="approx", budget=budget)
    assert len(empty.docs) == 0 and len(empty.scores) == 0
    batch = index.search_batch(
        SparseBatch.from_rows([([], []), ([1], [1.0])]), 10, mode="approx", budget=budget
    )
    assert len(batch[0].docs) == 0
    dense = float_truth(corpus, n_terms, index)
    got = index.search([1], [2.0], 10**5, mode="approx", budget=budget)
    listed = min(5, int((dense[:, 1] > 0).sum()))  # a one-term query finds its pruned list
    if budget == 16:  # two blocks of 8 docs: the list's docs in them
        assert 1 <= len(got.docs) <= listed
    else:
        assert len(got.docs) == listed
    assert_exact(got, dense, np.array([1]), np.array([2.0]), n_terms)
