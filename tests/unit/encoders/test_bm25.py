"""BM25 as a sparse encoder: impacts checked against the Lucene formula computed by hand."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest

from lsr import pipeline
from lsr.config import load_config
from lsr.encoders import load_query_encoder
from lsr.encoders.bm25 import BM25QueryEncoder
from lsr.vectors import Vectors

# (id, title, text); title and text are analyzed together ("title text")
DOCS = [
    ("d1", "Cats", "The cat sat on the mat."),
    ("d2", "", "A dog and a cat."),
    ("d3", "Dogs", "Dog dogs bird"),
    ("d4", "", "fish"),
]
# The same documents analyzed by hand (lowercase, Lucene stopwords out, Porter stems).
TF = {
    "d1": {"cat": 2, "sat": 1, "mat": 1},  # "Cats" + "cat"; "the", "on" are stopwords
    "d2": {"dog": 1, "cat": 1},  # "a", "and" are stopwords
    "d3": {"dog": 3, "bird": 1},
    "d4": {"fish": 1},
}


def expected_impacts(k1: float, b: float) -> dict[str, dict[str, float]]:
    """impact(t, d) = idf(t) * tf / (tf + k1 * (1 - b + b * |d| / avgdl)),
    idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5))."""
    n = len(TF)
    doc_len = {d: sum(tf.values()) for d, tf in TF.items()}
    avgdl = sum(doc_len.values()) / n
    df: dict[str, int] = {}
    for tf in TF.values():
        for term in tf:
            df[term] = df.get(term, 0) + 1
    out = {}
    for d, tf in TF.items():
        out[d] = {}
        for term, f in tf.items():
            idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
            out[d][term] = idf * f / (f + k1 * (1 - b + b * doc_len[d] / avgdl))
    return out


def write_corpus(path, docs):
    path.write_text(
        "".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in docs), encoding="utf-8"
    )
    return path


def encoded_weights(vectors: Vectors) -> dict[str, dict[str, float]]:
    vocab = vectors.vocab()
    ids = list(vectors.iter_ids())
    rows = [batch.row(i) for batch in vectors.batches() for i in range(len(batch))]
    return {
        doc_id: {vocab[t]: float(w) for t, w in zip(terms.tolist(), weights.tolist(), strict=True)}
        for doc_id, (terms, weights) in zip(ids, rows, strict=True)
    }


@pytest.mark.parametrize(
    ("overrides", "k1", "b"),
    [
        ([], 1.5, 0.75),  # defaults (as bm25s; chosen on SciFact train + the ood suite)
        (["encoder.bm25.k1=0.9", "encoder.bm25.b=0.4"], 0.9, 0.4),  # Anserini's BEIR flat settings
        (["encoder.bm25.k1=2", "encoder.bm25.b=0"], 2.0, 0.0),  # b = 0: no length normalization
    ],
)
@pytest.mark.parametrize("shard_docs", [1, 2, 100])
def test_impacts_match_hand_computed_bm25(tmp_path, overrides, k1, b, shard_docs):
    corpus = write_corpus(tmp_path / "corpus.jsonl", DOCS)
    out = tmp_path / "vec"
    cfg = load_config(None, [f"encoder.shard_docs={shard_docs}", *overrides])
    meta = pipeline.encode_corpus(cfg, corpus, out)

    vectors = Vectors(out)
    assert vectors.n_docs == 4 and meta["n_docs"] == 4
    assert len(vectors.meta["shards"]) == math.ceil(4 / shard_docs)
    assert sorted(vectors.vocab()) == sorted({t for tf in TF.values() for t in tf})
    assert vectors.meta["encoder"]["name"] == "bm25"
    assert vectors.meta["encoder"]["bm25"]["k1"] == k1 and vectors.meta["encoder"]["bm25"]["b"] == b
    assert vectors.meta["config"]["encoder"]["bm25"]["k1"] == k1

    got = encoded_weights(vectors)
    want = expected_impacts(k1, b)
    assert list(got) == ["d1", "d2", "d3", "d4"]
    for doc_id in want:
        assert set(got[doc_id]) == set(want[doc_id]), doc_id
        for term, weight in want[doc_id].items():
            assert got[doc_id][term] == pytest.approx(weight, rel=1e-6), (doc_id, term)
    for batch in vectors.batches():
        batch.validate(n_terms=vectors.n_terms)


def test_hand_computation_sanity():
    """Guards the expectations themselves: rarer terms and shorter docs weigh more."""
    w = expected_impacts(0.9, 0.4)
    assert w["d2"]["dog"] > w["d3"]["dog"] / 3  # saturation: 3x the tf is far less than 3x the weight
    assert w["d1"]["sat"] > w["d1"]["cat"] / 2  # idf(sat) > idf(cat)
    assert w["d4"]["fish"] > w["d1"]["sat"]  # same idf and tf, shorter doc
    assert all(v > 0 for doc in w.values() for v in doc.values())


def test_jsonl_output_has_the_same_weights(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.jsonl", DOCS)
    out = tmp_path / "vectors.jsonl"
    pipeline.encode_corpus(load_config(None, ["encoder.shard_docs=3"]), corpus, out, fmt="jsonl")
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    want = expected_impacts(1.5, 0.75)
    assert [r["id"] for r in records] == ["d1", "d2", "d3", "d4"]
    for r in records:
        assert r["vector"] == {t: pytest.approx(v, abs=2e-6) for t, v in want[r["id"]].items()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.jsonl", "vectors.jsonl"]


def test_stemmer_none_keeps_surface_forms(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.jsonl", DOCS)
    pipeline.encode_corpus(load_config(None, ["encoder.bm25.stemmer=none"]), corpus, tmp_path / "vec")
    vocab = set(Vectors(tmp_path / "vec").vocab())
    assert {"cats", "cat", "dogs", "dog"} <= vocab
    assert "the" not in vocab


def test_docstore_holds_titles_and_texts(tmp_path):
    from lsr.data.docstore import DocStore

    corpus = write_corpus(tmp_path / "corpus.jsonl", DOCS)
    pipeline.encode_corpus(load_config(None, ["encoder.shard_docs=2"]), corpus, tmp_path / "vec")
    store = DocStore(tmp_path / "vec")
    assert [store.get(i) for i in range(len(store))] == [{"id": i, "title": t, "text": x} for i, t, x in DOCS]


def test_document_without_terms_gets_an_empty_row(tmp_path, caplog):
    corpus = write_corpus(tmp_path / "corpus.jsonl", [*DOCS[:2], ("empty", "", "the and of it"), DOCS[3]])
    with caplog.at_level(logging.WARNING):
        pipeline.encode_corpus(load_config(None, ["encoder.shard_docs=2"]), corpus, tmp_path / "vec")
    vectors = Vectors(tmp_path / "vec")
    got = encoded_weights(vectors)
    assert list(got) == ["d1", "d2", "empty", "d4"]
    assert got["empty"] == {}
    assert all(got[d] for d in ("d1", "d2", "d4"))
    assert "no terms" in caplog.text


def test_encode_refuses_existing_output(tmp_path):
    corpus = write_corpus(tmp_path / "corpus.jsonl", DOCS)
    (tmp_path / "vec").mkdir()
    with pytest.raises(FileExistsError):
        pipeline.encode_corpus(load_config(), corpus, tmp_path / "vec")


# --- query side --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def term_index(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bm25q")
    corpus = write_corpus(tmp / "corpus.jsonl", DOCS)
    pipeline.encode_corpus(load_config(), corpus, tmp / "vec")
    vectors = Vectors(tmp / "vec")
    return {t: i for i, t in enumerate(vectors.vocab())}, vectors.meta["encoder"]


def query_rows(encoder, texts, term_index):
    vocab = {i: t for t, i in term_index.items()}
    batch = encoder.encode(texts)
    assert len(batch) == len(texts)
    batch.validate(n_terms=len(term_index))
    return [
        {vocab[t]: float(w) for t, w in zip(*map(np.ndarray.tolist, batch.row(i)), strict=True)}
        for i in range(len(batch))
    ]


@pytest.mark.parametrize("from_meta", [False, True])
def test_query_encoder(term_index, from_meta):
    index, encoder_meta = term_index
    if from_meta:  # how a Searcher rebuilds it from the index's meta.json
        encoder = load_query_encoder(encoder_meta, index)
    else:
        encoder = BM25QueryEncoder(load_config().encoder.bm25, index)
    rows = query_rows(
        encoder,
        [
            "dog Dogs cat",  # repeated terms (after stemming) weigh their count
            "zebra cat unicorn",  # unknown terms are dropped
            "the and of it",  # all stopwords
            "",
            "zebra",  # only unknown terms
            "cat cat cat mat",
        ],
        index,
    )
    assert rows == [
        {"dog": 2.0, "cat": 1.0},
        {"cat": 1.0},
        {},
        {},
        {},
        {"cat": 3.0, "mat": 1.0},
    ]


def test_index_meta_records_the_analyzer_and_the_query_side_rebuilds_it(term_index):
    index, encoder_meta = term_index
    assert encoder_meta["bm25"] == {
        "k1": 1.5,
        "b": 0.75,
        "language": "english",
        "stemmer": "english",
        "stopwords": "lucene",
        "min_length": 2,
        "porter_min_stem": 3,
        "lowercase": True,
    }
    analyzer = load_query_encoder(encoder_meta, index).analyzer
    assert (analyzer.stemmer_name, analyzer.min_length, len(analyzer.stopwords)) == ("english", 2, 33)


def test_a_french_index_records_its_language_and_analyzes_queries_in_french(tmp_path):
    import lsr
    from lsr.index import Index
    from lsr.index.io import read_meta

    docs = [
        ("f1", "Les vitamines réduisent le risque de cancers chez les adultes."),
        ("f2", "Le café et la qualité du sommeil."),
        ("f3", "Les chats dorment sur le tapis."),
    ]
    index = lsr.Index.build(docs, overrides=["encoder.bm25.language=french"], path=tmp_path / "fr")
    meta = read_meta(tmp_path / "fr", "lsr-index", (1,))
    bm25 = meta["encoder"]["bm25"]
    assert (bm25["language"], bm25["stemmer"], bm25["stopwords"]) == ("french", "french", "french")
    vocab = set(Index.load(tmp_path / "fr").vocab)
    assert {"vitamin", "cancer", "chat"} <= vocab and not {"les", "le", "de", "du", "sur"} & vocab
    # the query is analyzed as the index was: "vitamine" (singular) and "la" (a stopword)
    assert [hit.doc_id for hit in index.search("la vitamine", k=3)] == ["f1"]
    english = lsr.Index.build(docs, path=tmp_path / "en")  # the default, unchanged: French words kept
    assert {"les", "la"} <= set(Index.load(tmp_path / "en").vocab)
    assert {hit.doc_id for hit in english.search("la vitamine", k=3)} == {"f1", "f2"}  # "la" matches f2


def test_index_written_before_min_length_keeps_every_token(term_index):
    # such an index's meta has no min_length: it was built keeping one-character tokens
    index, encoder_meta = term_index
    old = {**encoder_meta, "bm25": {k: v for k, v in encoder_meta["bm25"].items() if k != "min_length"}}
    assert load_query_encoder(old, index).analyzer.min_length == 1


def test_index_written_before_porter_min_stem_analyzes_queries_as_its_documents(term_index):
    # an older Porter index stemmed every token ("us" -> "u"): its queries must be analyzed the same way,
    # or "US health care" would miss the documents' "u" term
    index, encoder_meta = term_index
    bm25 = {k: v for k, v in encoder_meta["bm25"].items() if k not in ("min_length", "porter_min_stem")}
    old = {**encoder_meta, "bm25": {**bm25, "stemmer": "porter"}}
    assert load_query_encoder(old, index).analyzer("US gases") == ["u", "gase"]
    new = {**encoder_meta, "bm25": {**encoder_meta["bm25"], "stemmer": "porter", "min_length": 1}}
    assert load_query_encoder(new, index).analyzer("US gases") == ["us", "gase"]


def test_query_encoder_empty_batch(term_index):
    index, _ = term_index
    batch = BM25QueryEncoder(load_config().encoder.bm25, index).encode([])
    assert len(batch) == 0 and batch.nnz == 0


def test_documents_without_terms_do_not_change_the_statistics(tmp_path):
    """As Lucene's docCount, N and avgdl count only documents that have terms."""
    cfg = load_config(None)
    pipeline.encode_corpus(cfg, write_corpus(tmp_path / "a.jsonl", DOCS), tmp_path / "a")
    with_empty = [DOCS[0], ("e1", "", "the of and"), *DOCS[1:], ("e2", "", "")]
    pipeline.encode_corpus(cfg, write_corpus(tmp_path / "b.jsonl", with_empty), tmp_path / "b")
    plain, padded = encoded_weights(Vectors(tmp_path / "a")), encoded_weights(Vectors(tmp_path / "b"))
    assert padded.pop("e1") == {} and padded.pop("e2") == {}
    assert padded == plain


def test_query_rows_are_each_terms_count_in_ascending_term_order():
    """BM25 query rows against a reference built through ``SparseBatch.from_rows`` (which sorts and sums
    repeats): repeated, unknown, stopword-only, empty and non-ASCII queries, one by one and batched."""
    from lsr.index.sparse import SparseBatch

    cfg = load_config().encoder.bm25
    vocab = ["vitamin", "cancer", "risk", "cat", "caf\u00e9", "d", "sleep"]
    index = {t: i for i, t in enumerate(reversed(vocab))}  # ids not in the analyzer's order
    encoder = BM25QueryEncoder(cfg, index)
    rng = np.random.default_rng(0)
    pool = [
        "vitamin",
        "Vitamins",
        "cancer",
        "the",
        "of",
        "cats",
        "caf\u00e9",
        "zzz",
        "d",
        "D",
        "risk",
        "sleeping",
    ]
    queries = ["", "   ", "the of and", "zzz qqq", "Café café CAFÉ"]
    queries += [" ".join(rng.choice(pool, size=int(rng.integers(1, 12)))) for _ in range(50)]
    rows = []
    for q in queries:
        terms = [index[t] for t in encoder.analyzer(q) if t in index]
        rows.append((terms, [1.0] * len(terms)))
    want = SparseBatch.from_rows(rows)
    got = encoder.encode(queries)
    for name in ("indptr", "term_ids", "weights"):
        assert getattr(got, name).dtype == getattr(want, name).dtype
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
    single = encoder.encode([queries[-1]])
    np.testing.assert_array_equal(single.term_ids, want.row(len(queries) - 1)[0])
