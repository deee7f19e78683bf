"""lsr.explain against the vectors themselves, on a plain index and on a live index of two segments: every
impact is the document's own weight (0 where it has none), and for every matching document the
contributions sum to the score the search gives it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lsr.cli import main
from lsr.explain import contributions, doc_impact, query_terms
from lsr.live import LiveIndex
from lsr.searcher import Plan, Queries, Searcher

TERMS = [f"t{i}" for i in range(12)]


def random_vectors(rng: np.random.Generator, ids: list[str]) -> dict[str, dict[str, float]]:
    out = {}
    for doc in ids:
        chosen = rng.choice(len(TERMS), size=int(rng.integers(1, 6)), replace=False)
        out[doc] = {TERMS[t]: float(np.float32(rng.uniform(0.1, 3.0))) for t in chosen}
    return out


@pytest.fixture(params=["plain", "live"])
def built(request, tmp_path):
    rng = np.random.default_rng(7)
    vectors = random_vectors(rng, [f"a{i}" for i in range(30)])
    path = tmp_path / "v.jsonl"
    path.write_text("".join(json.dumps({"id": d, "vector": v}) + "\n" for d, v in vectors.items()))
    index = tmp_path / "idx"
    assert main(["index", "--vectors", str(path), "--out", str(index), "--quiet"]) == 0
    if request.param == "live":  # a second segment
        more = random_vectors(rng, [f"b{i}" for i in range(10)])
        LiveIndex(index).add_vectors(more)
        vectors |= more
    return Searcher(index), vectors


def test_impacts_are_the_documents_weights(built):
    searcher, vectors = built
    index = searcher.index
    assert (hasattr(index, "segments")) == any(d.startswith("b") for d in vectors)
    positions = searcher.doc_positions
    for doc, vector in vectors.items():
        for term in TERMS:
            got = doc_impact(index, index.term_index[term], positions[doc])
            assert math.isclose(got, vector.get(term, 0.0), rel_tol=1e-6), (doc, term)


def test_contributions_sum_to_the_search_score(built):
    searcher, vectors = built
    index = searcher.index
    rng = np.random.default_rng(11)
    for _ in range(5):
        query = {TERMS[t]: float(rng.uniform(0.2, 2.0)) for t in rng.choice(len(TERMS), 4, replace=False)}
        sparse = searcher.encode_vectors([query])
        terms, weights = sparse.row(0)
        assert dict(query_terms(index, terms, weights)) == pytest.approx(query)
        result = searcher.search_batch(Queries(sparse=sparse), Plan(k=len(vectors)))[0]
        assert len(result.docs)
        for d, score in zip(result.docs.tolist(), result.scores.tolist(), strict=True):
            found = contributions(index, terms, weights, d)
            doc = index.doc_keys[d]
            assert {c.term for c in found} == set(query) & set(vectors[doc])
            assert [c.contribution for c in found] == sorted((c.contribution for c in found), reverse=True)
            assert math.isclose(sum(c.contribution for c in found), score, rel_tol=1e-5)
