"""bm25+MODEL: one vector holding the model's weights and BM25 impacts, so that one exact dot product
equals BM25 + model_weight x the model's score, document for document."""

from __future__ import annotations

import numpy as np
import pytest

from lsr import pipeline
from lsr.config import load_config
from lsr.encoders.plus import PREFIX, Columns, join_columns
from lsr.errors import ConfigError
from lsr.index.sparse import SparseBatch

QUERIES = ["vitamin d cancer", "coffee sleep adults", "cats and dogs", "gene cell study effect"]


def random_batch(rng, rows, n_terms):
    out = []
    for _ in range(rows):
        n = int(rng.integers(0, 6))
        ids = np.sort(rng.choice(n_terms, size=n, replace=False))
        out.append((ids, rng.random(n).astype(np.float32) + 0.1))
    return SparseBatch.from_rows(out), out


@pytest.mark.parametrize("seed", range(5))
def test_columns_split_and_join_against_rows(seed):
    """Two parts whose terms interleave in the joint vocabulary (a growing model vocabulary)."""
    rng = np.random.default_rng(seed)
    columns = Columns()
    model_vocab, bm25_vocab = [], []
    for _ in range(4):  # each part adds terms between the other's
        model_vocab += [f"m{len(model_vocab) + i}" for i in range(int(rng.integers(0, 12)))]
        bm25_vocab += [f"b{len(bm25_vocab) + i}" for i in range(int(rng.integers(0, 12)))]
        columns.sync(model_vocab, bm25_vocab)
    assert sorted(columns.vocab) == sorted(model_vocab + [PREFIX + t for t in bm25_vocab])
    batch, rows = random_batch(rng, 12, len(columns.vocab))
    model, bm25 = columns.split(batch)
    index = {t: i for i, t in enumerate(columns.vocab)}
    for i, (ids, weights) in enumerate(rows):
        terms = [columns.vocab[j] for j in ids]
        for part, vocab, prefix in ((model, model_vocab, ""), (bm25, bm25_vocab, PREFIX)):
            got_ids, got_w = part.row(i)
            want = [(index[prefix + vocab[j]], w) for j, w in zip(got_ids, got_w, strict=True)]
            mine = [(j, w) for j, w, t in zip(ids, weights, terms, strict=True) if t.startswith(prefix)]
            if not prefix:
                mine = [
                    (j, w) for j, w, t in zip(ids, weights, terms, strict=True) if not t.startswith(PREFIX)
                ]
            assert [j for j, _ in want] == [j for j, _ in mine] and np.allclose(
                [w for _, w in want], [w for _, w in mine]
            )
    joined = columns.join(model, bm25)
    assert joined.indptr.tolist() == batch.indptr.tolist()
    assert joined.term_ids.tolist() == batch.term_ids.tolist()
    assert np.array_equal(joined.weights, batch.weights)


def test_join_rejects_batches_of_different_lengths():
    a = SparseBatch.from_rows([([1], [1.0])])
    ids = np.arange(10)
    with pytest.raises(ValueError, match="1 rows beside 2"):
        join_columns(a, SparseBatch.from_rows([([1], [1.0]), ([2], [1.0])]), ids, ids + 10)


def test_model_weight_must_be_positive():
    with pytest.raises(ConfigError, match="encoder.plus.model_weight"):
        load_config(None, ["encoder.plus.model_weight=0"])


pytest.importorskip("torch")
pytest.importorskip("transformers")

from tiny_models import write_corpus  # noqa: E402

from lsr.searcher import Plan, Searcher  # noqa: E402


def build(tmp, name, model, *extra):
    overrides = [f"encoder.name={name}", "encoder.transformer.max_length=16", "index.impact_dtype=float32"]
    if model:
        overrides.append(f"encoder.model={model}")
    out = tmp / name.replace("+", "-")
    pipeline.index_corpus(load_config(None, [*overrides, *extra]), write_corpus(tmp / "c.jsonl"), out)
    return Searcher(out)


def all_scores(searcher, query):
    """{doc id: score} of every matching document (exact mode, k = every document)."""
    n = searcher.index.n_docs
    result = searcher.search(query, Plan(k=n, mode="exact"))
    return {
        searcher.index.doc_keys[d]: s
        for d, s in zip(result.docs.tolist(), result.scores.tolist(), strict=True)
    }


@pytest.fixture(scope="module")
def three(tiny_mlm, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plus")
    plus = build(tmp, "bm25+splade", tiny_mlm, "encoder.plus.model_weight=0.7")
    return build(tmp, "bm25", None), build(tmp, "splade", tiny_mlm), plus


def assert_scores_bm25_plus_07_model(bm25, model, plus, query):
    """Every document's score in ``plus`` is its BM25 score + 0.7 x its ``model`` score."""
    a, b, got = all_scores(bm25, query), all_scores(model, query), all_scores(plus, query)
    want = {d: a.get(d, 0.0) + 0.7 * b.get(d, 0.0) for d in set(a) | set(b)}
    want = {d: s for d, s in want.items() if s > 0}
    assert got and set(got) == set(want)
    for d, s in want.items():
        assert got[d] == pytest.approx(s, rel=1e-5, abs=1e-6), d


@pytest.mark.parametrize("query", QUERIES)
def test_one_index_scores_bm25_plus_weighted_model(three, query):
    assert_scores_bm25_plus_07_model(*three, query)


@pytest.mark.parametrize("query", QUERIES)
def test_safe_mode_equals_exact(three, query):
    plus = three[2]
    exact = plus.search(query, Plan(k=3, mode="exact"))
    safe = plus.search(query, Plan(k=3, mode="safe"))
    assert exact.docs.tolist() == safe.docs.tolist()
    assert np.allclose(exact.scores, safe.scores)


def test_vocabulary_is_the_models_then_prefixed_bm25_terms(three):
    splade, plus = three[1], three[2]
    model_vocab = splade.index.vocab
    vocab = plus.index.vocab
    assert list(vocab[: len(model_vocab)]) == list(model_vocab)
    rest = list(vocab[len(model_vocab) :])
    assert rest and all(t.startswith(PREFIX) for t in rest)
    assert PREFIX + "vitamin" in rest and PREFIX + "the" not in rest  # analyzed: stopwords dropped
    assert plus.index.meta["encoder"]["plus"] == {"model_weight": 0.7}


def test_inference_free_without_a_query_table_is_refused(tiny_mlm, tmp_path):
    with pytest.raises(ConfigError, match="needs a corpus pass"):
        build(tmp_path, "bm25+inference-free", tiny_mlm, "encoder.inference_free.query_weights=idf")


def test_live_adds_to_a_plus_index_are_refused_by_name(three, tmp_path):
    import shutil

    from lsr.data.corpus import Doc
    from lsr.errors import LsrError
    from lsr.live import LiveIndex

    copy = tmp_path / "plus"
    shutil.copytree(three[2].index.path, copy)
    with pytest.raises(LsrError, match=r"bm25\+splade index: adding documents to it is not supported"):
        LiveIndex(copy).add_documents([Doc("new", "", "vitamin d and sleep")])
    with pytest.raises(LsrError, match=r"bm25\+splade index"):
        LiveIndex(copy).add_vectors({"new": {"vitamin": 1.0}})
    assert (
        Searcher(copy).search("vitamin", Plan(k=3)).docs.tolist()
        == three[2].search("vitamin", Plan(k=3)).docs.tolist()
    )


@pytest.fixture(scope="module")
def three_idf(tiny_mlm, tmp_path_factory):
    """encoder.query_idf = 1: the model alone and BM25 + the model, its columns weighted by idf."""
    tmp = tmp_path_factory.mktemp("plus-idf")
    plus = build(tmp, "bm25+splade", tiny_mlm, "encoder.plus.model_weight=0.7", "encoder.query_idf=1")
    return build(tmp, "bm25", None), build(tmp, "splade", tiny_mlm, "encoder.query_idf=1"), plus


@pytest.mark.parametrize("query", QUERIES)
def test_the_models_query_idf_weighs_its_columns_only(three_idf, query):
    assert three_idf[2].index.meta["encoder"]["learned_query_idf"] == 1.0
    assert_scores_bm25_plus_07_model(*three_idf, query)


def test_an_index_written_before_learned_query_idf_scores_raw_model_weights(three, three_idf, tmp_path):
    """An older bm25+MODEL index (no learned_query_idf in its meta) keeps its scores."""
    import json
    import shutil

    from lsr.index.io import write_meta

    old = tmp_path / "old"
    shutil.copytree(three_idf[2].index.path, old)
    meta = json.loads((old / "meta.json").read_text())
    del meta["encoder"]["learned_query_idf"]
    write_meta(old, {k: v for k, v in meta.items() if not k.startswith("_")})  # sealed again
    # scored as the model without idf (three: query_idf 0)
    assert_scores_bm25_plus_07_model(three[0], three[1], Searcher(old), QUERIES[0])


@pytest.fixture(scope="module")
def three_words(tiny_backbone, tmp_path_factory):
    """A uniCOIL of word terms (a vocabulary that grows with the corpus) alone and plus BM25."""
    from tiny_models import saved_unicoil

    from lsr.encoders.words import analyzer_section, write_terms_file

    tmp = tmp_path_factory.mktemp("plus-words")
    folder = tmp / "model"
    saved_unicoil(tiny_backbone, folder)
    write_terms_file(folder, analyzer_section())
    # two documents a batch: each batch's new model terms, then its new BM25 terms
    plus = build(
        tmp,
        "bm25+unicoil",
        folder,
        "encoder.plus.model_weight=0.7",
        "encoder.query_idf=1",
        "encoder.transformer.sort_docs=2",
    )
    return build(tmp, "bm25", None), build(tmp, "unicoil", folder, "encoder.query_idf=1"), plus


@pytest.mark.parametrize("query", QUERIES)
def test_a_word_terms_model_plus_bm25(three_words, query):
    bm25, model, plus = three_words
    assert_scores_bm25_plus_07_model(bm25, model, plus, query)
    vocab = list(plus.index.vocab)
    assert sorted(vocab) == sorted(list(model.index.vocab) + [PREFIX + t for t in bm25.index.vocab])
    assert vocab.index("vitamin") < vocab.index(PREFIX + "vitamin") < vocab.index("cat")  # interleaved
