"""encoder.query_idf: text queries weighted by the indexed collection's IDF (lsr.encoders.query_idf)."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from lsr import pipeline
from lsr.config import load_config
from lsr.encoders import query_idf
from lsr.errors import ConfigError
from lsr.index.sparse import SparseBatch

pytest.importorskip("torch")
pytest.importorskip("transformers")

from tiny_models import write_corpus

from lsr.searcher import Plan, Queries, Searcher
from lsr.sharded import ShardedSearcher, index_corpus_sharded

QUERIES = ["vitamin d and cancer", "coffee for adults", "the bird", "cancer cancer risk"]


def test_resolve_takes_the_setting_then_the_model_file_then_zero(tmp_path):
    assert query_idf.resolve(0.75, tmp_path) == 0.75
    assert query_idf.resolve(0, tmp_path) == 0.0
    assert query_idf.resolve(-1, tmp_path) == 0.0  # no lsr_query.json
    assert query_idf.resolve(-1, None) == 0.0
    (tmp_path / query_idf.MODEL_FILE).write_text(json.dumps({"query_idf": 0.5, "selected_on": "x"}))
    assert query_idf.resolve(-1, tmp_path) == 0.5
    assert query_idf.resolve(0, tmp_path) == 0.0  # an explicit 0 turns the model's value off


@pytest.mark.parametrize(
    "content", ["{not json", "[1, 2]", '{"query_idf": "high"}', '{"query_idf": 9}', "{}"]
)
def test_a_bad_model_file_is_refused_by_name(tmp_path, content):
    (tmp_path / query_idf.MODEL_FILE).write_text(content)
    with pytest.raises(ConfigError, match=query_idf.MODEL_FILE):
        query_idf.resolve(-1, tmp_path)


def test_idf_table_and_reweight_follow_the_formula():
    rng = np.random.default_rng(7)
    n = 500
    df = rng.integers(0, n + 1, size=300)
    for power in (0.5, 1.0, 2.0):
        table = query_idf.idf_table(df, n, power)
        assert table.dtype == np.float32
        for t in rng.choice(300, 40, replace=False):
            want = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) ** power
            assert table[t] == pytest.approx(want, rel=1e-6)
    batch = SparseBatch(np.array([0, 2, 3]), np.array([5, 9, 5], np.int32), np.array([1, 2, 3], np.float32))
    table = query_idf.idf_table(df, n, 1.0)
    out = query_idf.reweight(batch, table)
    assert out.indptr.tolist() == [0, 2, 3] and out.term_ids.tolist() == [5, 9, 5]
    np.testing.assert_allclose(out.weights, [table[5], 2 * table[9], 3 * table[5]], rtol=1e-6)


def model_with(tiny_mlm, tmp_path, power):
    """A copy of the tiny model folder carrying ``lsr_query.json`` (None: without the file)."""
    folder = tmp_path / f"model-{power}"
    shutil.copytree(tiny_mlm, folder)
    if power is not None:
        (folder / query_idf.MODEL_FILE).write_text(json.dumps({"query_idf": power}))
    return folder


def config(model, *extra):
    """The tiny SPLADE model with float32 impacts (scores comparable to the float reference)."""
    settings = ["encoder.name=splade", f"encoder.model={model}", "encoder.transformer.max_length=16"]
    return load_config(None, [*settings, "index.impact_dtype=float32", *extra])


def build(model, out, *extra):
    pipeline.index_corpus(config(model, *extra), write_corpus(out.parent / f"{out.name}.jsonl"), out)
    return Searcher(out)


def dot_scores(searcher, q_terms, q_weights):
    """Every document's exact score, from its posting lists (the slow reference)."""
    index = searcher.index
    scores = np.zeros(index.n_docs)
    for t, w in zip(q_terms.tolist(), q_weights.tolist(), strict=True):
        s, e = index.term_ptr[t], index.term_ptr[t + 1]
        scores[np.asarray(index.doc_ids[s:e])] += w * np.asarray(index.impacts[s:e], np.float64)
    return scores


def test_the_model_file_sets_the_index_power_and_queries_are_reweighted(tiny_mlm, tmp_path):
    plain = build(model_with(tiny_mlm, tmp_path, None), tmp_path / "plain")
    weighted = build(model_with(tiny_mlm, tmp_path, 1.0), tmp_path / "weighted")
    assert plain.index.meta["encoder"]["query_idf"] == 0.0 and plain.query_idf_table is None
    assert weighted.index.meta["encoder"]["query_idf"] == 1.0
    raw, got = plain.encode_texts(QUERIES), weighted.encode_texts(QUERIES)
    assert raw.indptr.tolist() == got.indptr.tolist() and raw.term_ids.tolist() == got.term_ids.tolist()
    index = weighted.index
    df = np.diff(np.asarray(index.term_ptr))
    n = index.n_docs
    for i in range(len(QUERIES)):
        terms, weights = raw.row(i)
        _, new = got.row(i)
        want = [
            w * math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) for t, w in zip(terms, weights, strict=True)
        ]
        np.testing.assert_allclose(new, want, rtol=1e-5)
        # search ranks by the reweighted query: the exact top 5 equals brute force over the postings
        result = weighted.search(QUERIES[i], Plan(k=5, mode="exact"))
        scores = dot_scores(weighted, terms, np.asarray(want))
        np.testing.assert_allclose(result.scores, np.sort(scores)[::-1][: len(result.scores)], rtol=1e-4)


def test_the_setting_overrides_the_model_file(tiny_mlm, tmp_path):
    model = model_with(tiny_mlm, tmp_path, 1.0)
    off = build(model, tmp_path / "off", "encoder.query_idf=0")
    assert off.index.meta["encoder"]["query_idf"] == 0.0 and off.query_idf_table is None
    half = build(model, tmp_path / "half", "encoder.query_idf=0.5")
    assert half.index.meta["encoder"]["query_idf"] == 0.5
    bad = model_with(tiny_mlm, tmp_path / "bad", None)
    (bad / query_idf.MODEL_FILE).write_text('{"query_idf": -2}')
    with pytest.raises(ConfigError, match="query_idf"):
        build(bad, tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_shards_weigh_queries_with_the_whole_collection(tiny_mlm, tmp_path):
    """Each shard sees part of the collection; the table is the sum's, so 3 shards equal one index."""
    model = model_with(tiny_mlm, tmp_path, 1.0)
    one = build(model, tmp_path / "one")
    index_corpus_sharded(config(model), write_corpus(tmp_path / "s.jsonl"), tmp_path / "three", 3, "range")
    three = ShardedSearcher(tmp_path / "three")
    np.testing.assert_array_equal(three.index.doc_freq(), one.index.doc_freq())
    np.testing.assert_array_equal(three.query_idf_table, one.query_idf_table)
    plan = Plan(k=6, mode="exact")
    a = one.search_batch(Queries(texts=QUERIES), plan)
    b = three.search_batch(Queries(texts=QUERIES), plan)
    for x, y in zip(a, b, strict=True):
        assert [one.index.doc_keys[d] for d in x.docs] == [three.index.doc_keys[d] for d in y.docs]
        np.testing.assert_allclose(x.scores, y.scores, rtol=1e-6)
