"""uniCOIL of word terms (lsr_terms.json, lsr.encoders.words) on the tiny random BERT, against a slow
reference: each token's weight from ``UniCoilModel.token_weights`` (one sequence at a time, no padding),
given to the BM25 analyzer's terms of its whole word, max per term; the query runtimes (onnx, lean and
their int8 / bfloat16 variants) against torch's words rows and rankings."""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest

from lsr import pipeline
from lsr.config import load_config
from lsr.errors import ConfigError, LsrError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tiny_models import DOCS, query_config, saved_unicoil, word_windows, write_corpus  # noqa: E402

from lsr.data.corpus import Doc  # noqa: E402
from lsr.encoders import load_query_encoder, make_encoder  # noqa: E402
from lsr.encoders.lean_query import LeanQueryRuntime  # noqa: E402
from lsr.encoders.onnx_query import OnnxQueryRuntime  # noqa: E402
from lsr.encoders.unicoil import UniCoilModel  # noqa: E402
from lsr.encoders.words import TERMS_FILE, analyzer_section, make_word_analyzer, write_terms_file  # noqa: E402
from lsr.live import LiveIndex  # noqa: E402
from lsr.searcher import Plan, Searcher  # noqa: E402

ANALYZER = make_word_analyzer(analyzer_section())
# words of the tiny vocabulary, words it splits into pieces ("zebra": z ##e ##b ##r ##a), stopwords,
# punctuation, upper case, a number it cannot tokenize ([UNK]: no weight)
POOL = (
    "the a and of in on with cat cats sat mat dog dogs vitamin d cancer risk coffee sleep quality adults "
    "screening protein cell cells gene study effect sleeping Vitamins zebra quickly screened x-ray 19 , . - "
    "The AND Cells proteins running"
).split()
MAX_LENGTH, OVERLAP = 10, 3  # 8 tokens a window, the next one 5 tokens on


@pytest.fixture(scope="module")
def folder(tiny_backbone, tmp_path_factory):
    """The tiny uniCOIL, writing the default BM25 analyzer's terms."""
    out = tmp_path_factory.mktemp("words") / "model"
    saved_unicoil(tiny_backbone, out)
    write_terms_file(out, analyzer_section())
    return out


@pytest.fixture(scope="module")
def ref(folder):
    """(model, tokenizer) of the reference."""
    return UniCoilModel(folder, query_config()), transformers.AutoTokenizer.from_pretrained(str(folder))


def reference(ref, text, max_length, overlap=None):
    """{term: weight} of ``text``: windows of ``max_length`` tokens (specials included) ``overlap`` tokens
    apart (None: the first window only, truncation), each word's terms (analyzed whole, even when a
    window cuts it) the largest weight of its pieces."""
    model, tok = ref
    _, word_of, windows = word_windows(tok, text, max_length, overlap)
    best: dict[str, float] = {}
    for start, seq in windows:
        t = torch.tensor([seq])
        with torch.inference_mode():
            weights = model.token_weights(t, torch.ones_like(t, dtype=torch.bool))[0, 1:-1].tolist()
        for pos, w in enumerate(weights):
            for term in ANALYZER(word_of[start + pos]):
                best[term] = max(best.get(term, 0.0), w)
    return {t: w for t, w in best.items() if w > 0}


def encoder_config(folder, *extra):
    settings = [
        "encoder.name=unicoil",
        f"encoder.model={folder}",
        "encoder.transformer.device=cpu",
        "encoder.transformer.threads=2",
        "encoder.transformer.batch_tokens=64",  # several batches, on two threads
        f"encoder.transformer.max_length={MAX_LENGTH}",
        "encoder.transformer.query_max_length=16",
        f"encoder.transformer.window_overlap={OVERLAP}",
        "index.impact_dtype=float32",
    ]
    return load_config(None, [*settings, *extra])


def as_terms(batch, vocab):
    return [{vocab[t]: float(w) for t, w in zip(*batch.row(i), strict=True)} for i in range(len(batch))]


def assert_rows(got, want):
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys()
        for t in g:
            assert g[t] == pytest.approx(w[t], abs=1e-5)


def random_texts(seed, n, max_words=30):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(POOL, size=int(rng.integers(1, max_words)))) for _ in range(n)]


FIXED = [
    "",
    "   ",
    "the of and",  # stopwords only: no terms
    ", . -",  # punctuation only
    "zebra",  # one word in five pieces
    "cats cat Cats CAT cats",  # one term, its largest weight
    "19 x-ray sleeping",
]


@pytest.mark.parametrize("long_docs", ["windows", "truncate"])
def test_document_rows_match_the_reference(folder, ref, long_docs):
    encoder = make_encoder(encoder_config(folder, f"encoder.transformer.long_docs={long_docs}").encoder)
    texts = FIXED + random_texts(7, 24)
    got = as_terms(encoder.encode(texts), encoder.vocab)
    overlap = OVERLAP if long_docs == "windows" else None
    assert_rows(got, [reference(ref, t, MAX_LENGTH, overlap) for t in texts])
    assert got[:4] == [{}, {}, {}, {}] and list(got[5]) == ["cat"] and list(got[4]) == ["zebra"]
    assert any(len(ref[1](t)["input_ids"]) > MAX_LENGTH for t in texts)  # some texts have several windows
    assert (
        all("#" not in t for t in encoder.vocab) and "the" not in encoder.vocab and "sleep" in encoder.vocab
    )
    assert len(set(encoder.vocab)) == len(encoder.vocab)


def test_a_word_cut_by_the_window_edge_is_analyzed_whole(folder, ref):
    """ "catfish" (cat ##f ##i ##s ##h) at tokens 7-11: the first window keeps "cat" only; that piece's
    weight goes to the term catfish, never to cat."""
    text = "gene cell risk coffee sleep study effect catfish coffee"
    for long_docs, overlap in (("truncate", None), ("windows", OVERLAP)):
        encoder = make_encoder(encoder_config(folder, f"encoder.transformer.long_docs={long_docs}").encoder)
        got = as_terms(encoder.encode([text]), encoder.vocab)
        assert_rows(got, [reference(ref, text, MAX_LENGTH, overlap)])
        assert "catfish" in got[0] and "cat" not in encoder.vocab


def test_windows_equal_the_whole_text_when_it_fits(folder, ref):
    texts = ["vitamin d lowers cancer", "sleeping cats"]
    encoder = make_encoder(encoder_config(folder, "encoder.transformer.long_docs=windows").encoder)
    whole = [reference(ref, t, 64) for t in texts]  # one sequence, no window
    assert_rows(as_terms(encoder.encode(texts), encoder.vocab), whole)


def test_term_ids_follow_the_texts_whatever_the_batching(folder):
    """Ids in order of first occurrence with a weight (texts that fit one sequence); every term of the
    vocabulary has a weight in some text; the batching (batches on two threads or one batch) changes
    nothing."""
    texts = random_texts(11, 30, max_words=12)
    a = make_encoder(encoder_config(folder, "encoder.transformer.max_length=64").encoder)
    b = make_encoder(
        encoder_config(
            folder, "encoder.transformer.max_length=64", "encoder.transformer.batch_tokens=4096"
        ).encoder
    )
    first, second = a.encode(texts), b.encode(texts)
    assert a.vocab == b.vocab
    np.testing.assert_array_equal(first.indptr, second.indptr)
    np.testing.assert_array_equal(first.term_ids, second.term_ids)
    np.testing.assert_allclose(first.weights, second.weights, atol=1e-5)
    rows = as_terms(first, a.vocab)
    order: list[str] = []
    for text, row in zip(texts, rows, strict=True):
        order += [t for t in dict.fromkeys(ANALYZER(text)) if t in row and t not in order]
    assert a.vocab == order
    assert any(t not in a.vocab for text in texts for t in ANALYZER(text))  # "19" ([UNK]): no weight, no id


def test_describe_records_the_terms_and_no_tokenizer_vocabulary(folder):
    encoder = make_encoder(encoder_config(folder).encoder)
    meta = encoder.describe()
    assert meta["terms"] == "words" and meta["analyzer"] == analyzer_section()
    assert "vocab_size" not in meta and "vocab_sha256" not in meta
    assert encoder.resumable is False  # the vocabulary lives in memory until the end


TF = {"k1": 0.9, "b": 0.6, "avgdl": 7.0}


@pytest.fixture(scope="module")
def tf_folder(folder, tmp_path_factory):
    """The tiny uniCOIL whose documents' weights saturate with tf (``TF``)."""
    out = tmp_path_factory.mktemp("words-tf") / "model"
    shutil.copytree(folder, out)
    (out / TERMS_FILE).write_text(json.dumps({"terms": "words", "analyzer": analyzer_section(), "tf": TF}))
    return out


def saturated(text, row):
    """``row`` x BM25's tf factor, the slow way: counts and length from the whole text's analysis."""
    terms = ANALYZER(text)
    norm = TF["k1"] * (1 - TF["b"] + TF["b"] * len(terms) / TF["avgdl"])
    return {t: w * terms.count(t) * (TF["k1"] + 1) / (terms.count(t) + norm) for t, w in row.items()}


@pytest.mark.parametrize("long_docs", ["windows", "truncate"])
def test_tf_saturated_rows_match_the_reference(folder, tf_folder, ref, long_docs):
    """Documents: the reference row times each term's factor; queries: the same rows as without tf."""
    setting = f"encoder.transformer.long_docs={long_docs}"
    encoder = make_encoder(encoder_config(tf_folder, setting).encoder)
    texts = FIXED + ["cats cat sat, cats on mats cat"] + random_texts(8, 24)
    got = as_terms(encoder.encode(texts), encoder.vocab)
    overlap = OVERLAP if long_docs == "windows" else None
    want = [saturated(t, reference(ref, t, MAX_LENGTH, overlap)) for t in texts]
    assert_rows(got, want)
    plain = as_terms(make_encoder(encoder_config(folder, setting).encoder).encode(texts), encoder.vocab)
    assert any(abs(got[i][t] - plain[i][t]) > 1e-3 for i in range(len(texts)) for t in got[i])
    assert encoder.describe()["tf"] == TF
    vocab = {t: i for i, t in enumerate(encoder.vocab)}
    queries = [
        load_query_encoder(make_encoder(encoder_config(f).encoder).describe(), vocab)
        for f in (folder, tf_folder)
    ]
    assert as_terms(queries[1].encode(QUERIES), encoder.vocab) == as_terms(
        queries[0].encode(QUERIES), encoder.vocab
    )


def dot(q, d):
    return sum(w * d.get(t, 0.0) for t, w in q.items())


@pytest.mark.parametrize("power", [0, 1])
def test_index_and_search_equal_brute_force(folder, ref, tmp_path, power):
    # float32 torch queries, as the reference computes them (auto would run them in int8)
    config = encoder_config(folder, f"encoder.query_idf={power}", "encoder.transformer.query_runtime=torch")
    out = tmp_path / "idx"
    pipeline.index_corpus(config, write_corpus(tmp_path / "c.jsonl"), out)
    searcher = Searcher(out)
    index = searcher.index
    docs = {i: reference(ref, f"{t} {x}" if t else x, MAX_LENGTH) for i, t, x in DOCS}
    vocab = set(index.term_index)
    assert vocab == set().union(*docs.values())  # analyzer terms: stems, no pieces, no stopwords
    assert {"vitamin", "qualiti", "adult"} <= vocab and not {"the", "quality", "adults"} & vocab
    df = dict(zip(index.vocab, index.doc_freq().tolist(), strict=True))
    assert df == {t: sum(t in d for d in docs.values()) for t in vocab}
    n = index.n_docs
    for query in ["vitamin d and cancer", "sleeping cats", "coffee quality for adults", "zebra cell study"]:
        q = {
            t: w * math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) ** power
            for t, w in reference(ref, query, 16).items()
            if t in vocab  # "zebra" is in no document: dropped
        }
        encoded = as_terms(searcher.encode_texts([query]), index.vocab)[0]
        assert_rows([encoded], [q])
        result = searcher.search(query, Plan(k=4, mode="exact"))
        scores = sorted((dot(q, d) for d in docs.values()), reverse=True)
        want = [s for s in scores if s > 0][:4]
        np.testing.assert_allclose(result.scores, want, rtol=1e-5)
        hits = [index.doc_keys[d] for d in result.docs]
        for key, score in zip(hits, result.scores, strict=True):
            assert dot(q, docs[key]) == pytest.approx(score, rel=1e-5)
    assert len(searcher.search("zebra", Plan(k=4)).docs) == 0  # only a term absent from the corpus
    # the analyzer's stemmer is not thread-safe: queries encode under the searcher's lock
    assert not isinstance(searcher._sparse_lock, contextlib.nullcontext)


def query_counts(ref, text):
    """{term: count} over the query's words (the reference tokenizer's), each analyzed whole."""
    tok = ref[1]
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    span: dict[int, tuple[int, int]] = {}
    for w, (s, e) in zip(enc.word_ids(), enc["offset_mapping"], strict=True):
        a, b = span.get(w, (s, e))
        span[w] = (min(a, s), max(b, e))
    counts: dict[str, int] = {}
    for s, e in span.values():
        for term in dict.fromkeys(ANALYZER(text[s:e])):
            counts[term] = counts.get(term, 0) + 1
    return counts


def test_inference_free_with_a_words_folder_equals_brute_force(tf_folder, ref, tmp_path):
    """``inference-free:FOLDER`` of a word-terms uniCOIL: the uniCOIL's (tf-saturated) documents; a query's
    terms weigh their counts x idf (the folder's query_idf 1), from the index alone, without torch."""
    config = encoder_config(tf_folder, "encoder.name=inference-free", "encoder.query_idf=1")
    out = tmp_path / "idx"
    pipeline.index_corpus(config, write_corpus(tmp_path / "c.jsonl"), out)
    searcher = Searcher(out)
    index = searcher.index
    assert index.meta["encoder"]["inference_free"]["query_weights"] == "counts"
    texts = {i: f"{t} {x}" if t else x for i, t, x in DOCS}
    docs = {i: saturated(text, reference(ref, text, MAX_LENGTH)) for i, text in texts.items()}
    df = dict(zip(index.vocab, index.doc_freq().tolist(), strict=True))
    n = index.n_docs
    for query in ["vitamin d and cancer cancer", "sleeping cats sat", "coffee quality for adults", "zebra"]:
        q = {
            t: c * math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
            for t, c in query_counts(ref, query).items()
            if t in df
        }
        assert_rows(as_terms(searcher.encode_texts([query]), index.vocab), [q])
        result = searcher.search(query, Plan(k=4, mode="exact"))
        want = [s for s in sorted((dot(q, d) for d in docs.values()), reverse=True) if s > 0][:4]
        np.testing.assert_allclose(result.scores, want, rtol=1e-5)
    code = (
        "import sys, json; from pathlib import Path; from lsr.encoders import load_query_encoder; "
        f"d = Path({str(out)!r}); m = json.loads((d / 'meta.json').read_text()); "
        "v = json.loads((d / 'vocab.json').read_text()); "
        "e = load_query_encoder(m['encoder'], {t: i for i, t in enumerate(v)}, d); "
        "assert len(e.encode(['vitamin coffee']).term_ids) == 2; assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_index_with_a_words_folder(folder, tmp_path):
    from lsr.cli import main

    out = tmp_path / "cli"
    corpus = write_corpus(tmp_path / "c.jsonl")
    args = ["--encoder", f"unicoil:{folder}", "--out", str(out), "--set", "encoder.transformer.device=cpu"]
    assert main(["index", "--corpus", str(corpus), *args, "--quiet"]) == 0
    searcher = Searcher(out)
    assert searcher.index.meta["encoder"]["terms"] == "words" and "vitamin" in searcher.index.term_index
    hits = searcher.search("vitamin supplements", Plan(k=2))
    assert searcher.index.doc_keys[hits.docs[0]] in ("d1", "d3")


def test_live_adds_grow_the_vocabulary_and_keep_the_ids(folder, tmp_path):
    out = tmp_path / "live"
    pipeline.index_corpus(encoder_config(folder), write_corpus(tmp_path / "c.jsonl"), out)
    before = list(Searcher(out).index.vocab)
    assert "zebra" not in before
    LiveIndex(out).add_documents(
        [Doc("z1", "Zebras", "a zebra sat with the cats"), Doc("d2", "", "sleeping")]
    )
    searcher = Searcher(out)
    after = list(searcher.index.vocab)
    assert after[: len(before)] == before and "zebra" in after[len(before) :]
    result = searcher.search("zebra", Plan(k=3, mode="exact"))
    assert [searcher.index.doc_keys[d] for d in result.docs] == ["z1"]
    assert [searcher.index.doc_keys[d] for d in searcher.search("sleeping", Plan(k=3)).docs] == ["d2"]
    # the index keeps its terms: a model folder that lost its lsr_terms.json cannot add to it
    (folder.parent / "moved").mkdir(exist_ok=True)
    shutil.move(folder / TERMS_FILE, folder.parent / "moved" / TERMS_FILE)
    try:
        with pytest.raises(LsrError, match="lsr_terms.json changed"):
            LiveIndex(out).add_documents([Doc("z2", "", "zebra")])
    finally:
        shutil.move(folder.parent / "moved" / TERMS_FILE, folder / TERMS_FILE)


@pytest.mark.parametrize(
    "content, match",
    [
        ("{not json", "not JSON"),
        (json.dumps({"terms": "pieces", "analyzer": {}}), "expected"),
        (json.dumps({"terms": "words"}), "expected"),
        (json.dumps({"terms": "words", "analyzer": {"stemmer": "porter", "colour": 1}}), "colour"),
        (json.dumps({"terms": "words", "analyzer": {"stemmer": "klingon"}}), "klingon"),
        (json.dumps({"terms": "words", "analyzer": {}, "tf": {"k1": 1.2}}), "tf must be"),
        (json.dumps({"terms": "words", "analyzer": {}, "tf": {"k1": 0, "b": 0.2, "avgdl": 9}}), "tf.k1 = 0"),
        (json.dumps({"terms": "words", "analyzer": {}, "tf": {"k1": 1, "b": 2, "avgdl": 9}}), "tf.b = 2"),
        (json.dumps({"terms": "words", "analyzer": {}, "tf": {"k1": 1, "b": 0, "avgdl": "x"}}), "tf.avgdl"),
    ],
)
def test_a_bad_terms_file_is_refused_by_name_before_encoding(folder, tmp_path, content, match, monkeypatch):
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    (bad / TERMS_FILE).write_text(content)
    from lsr.encoders import unicoil

    def no_model(*args, **kwargs):
        raise AssertionError("the model loaded before the file was checked")

    monkeypatch.setattr(unicoil, "UniCoilModel", no_model)
    with pytest.raises(ConfigError, match=match) as err:
        make_encoder(encoder_config(bad).encoder)
    assert str(bad / TERMS_FILE) in str(err.value)


QUERIES = [
    "vitamin d and cancer",
    "sleeping cats sat on the mat",
    "",
    "the of and",
    "coffee quality for adults, coffee",
    "zebra cell study",
    "Cells proteins screening gene effect dogs",
]


def within(got, want, share):
    """Every term's weight (0 where a row lacks it) within ``share`` of the row's largest torch weight
    (a term may come or go only where its torch weight is that close to 0)."""
    for g, w in zip(got, want, strict=True):
        top = max(w.values(), default=0.0)
        for t in set(g) | set(w):
            assert abs(g.get(t, 0.0) - w.get(t, 0.0)) <= share * top, (t, g.get(t), w.get(t))


@pytest.fixture(scope="module")
def words_index(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("rt") / "idx"
    pipeline.index_corpus(encoder_config(folder), write_corpus(out.parent / "c.jsonl"), out)
    index = Searcher(out).index
    return index.meta["encoder"], index.term_index


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LSR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LSR_QUERY_RUNTIME", raising=False)


def runtime_rows(words_index, runtime, monkeypatch):
    """The words query rows of QUERIES on ``runtime`` ({term: weight}), and the query encoder."""
    monkeypatch.setenv("LSR_QUERY_RUNTIME", runtime)
    encoder = load_query_encoder(*words_index)
    assert encoder.runtime == runtime  # type: ignore[attr-defined]
    model: UniCoilModel = encoder.model  # type: ignore[attr-defined]
    calls = []
    if model.query_runtime is not None:  # the weights come from the runtime, not from torch
        weights = model.query_runtime.token_weights
        monkeypatch.setattr(model.query_runtime, "token_weights", lambda *a: calls.append(1) or weights(*a))
        monkeypatch.setattr(model, "token_weights", None)
    rows = as_terms(encoder.encode(QUERIES), list(words_index[1]))
    assert bool(calls) == (runtime != "torch")
    return rows, encoder


@pytest.mark.parametrize("runtime", ["onnx", "lean"])
def test_float32_runtimes_write_the_torch_words_rows(words_index, cache, runtime, monkeypatch):
    pytest.importorskip("onnxruntime")
    want, torch_encoder = runtime_rows(words_index, "torch", monkeypatch)
    assert torch_encoder.model.query_runtime is None  # type: ignore[attr-defined]
    got, encoder = runtime_rows(words_index, runtime, monkeypatch)
    kind = {"onnx": OnnxQueryRuntime, "lean": LeanQueryRuntime}[runtime]
    assert isinstance(encoder.model.query_runtime, kind)  # type: ignore[attr-defined]
    assert_rows(got, want)
    assert got[2] == {} and got[3] == {} and "zebra" not in got[5]  # stopwords; a term outside the index
    assert sum(map(len, want)) > 10 and all("#" not in t for row in got for t in row)


def test_onnx_int8_words_rows_are_close(words_index, cache, monkeypatch):
    """int8 products: each weight within 10% of the query's largest + 0.05 (test_onnx_query's check)."""
    pytest.importorskip("onnxruntime")
    want, _ = runtime_rows(words_index, "torch", monkeypatch)
    got, _ = runtime_rows(words_index, "onnx-int8", monkeypatch)
    for g, w in zip(got, want, strict=True):
        top = max(w.values(), default=0.0)
        for t in set(g) | set(w):
            assert abs(g.get(t, 0.0) - w.get(t, 0.0)) <= 0.1 * top + 0.05, (t, g.get(t), w.get(t))
    assert got != want  # the products really ran in int8


def test_lean_bf16_words_rows_are_close(words_index, cache, monkeypatch):
    """bfloat16 products: within 2% of the query's largest weight (test_lean_bf16's check)."""
    want, _ = runtime_rows(words_index, "torch", monkeypatch)
    got, encoder = runtime_rows(words_index, "lean-bf16", monkeypatch)
    assert encoder.model.query_runtime.forward == "bfloat16 fused BERT"  # type: ignore[attr-defined]
    within(got, want, 0.02)
    assert got != want


def test_onnx_int8_smooth_words_rows_are_close(words_index, cache, monkeypatch):
    """Smoothed int8 products: within 5% of the query's largest weight (test_smooth_int8's check)."""
    pytest.importorskip("onnxruntime")
    want, _ = runtime_rows(words_index, "torch", monkeypatch)
    got, _ = runtime_rows(words_index, "onnx-int8-smooth", monkeypatch)
    within(got, want, 0.05)
    assert got != want


def test_auto_picks_onnx_int8_smooth_for_a_words_model(words_index, cache, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("LSR_QUERY_RUNTIME", "auto")
    assert load_query_encoder(*words_index).runtime == "onnx-int8-smooth"  # type: ignore[attr-defined]


@pytest.mark.parametrize("runtime", ["onnx", "lean"])
def test_search_through_a_runtime_equals_torch(folder, tmp_path, cache, runtime):
    """An index of the words folder with ``query_runtime`` set: the same top-k as with torch."""
    pytest.importorskip("onnxruntime")
    corpus = write_corpus(tmp_path / "c.jsonl")
    searchers = {}
    for name in ("torch", runtime):
        out = tmp_path / name
        pipeline.index_corpus(
            encoder_config(folder, f"encoder.transformer.query_runtime={name}"), corpus, out
        )
        searchers[name] = Searcher(out)
    assert searchers[runtime].query_encoder.runtime == runtime  # type: ignore[attr-defined]
    for query in ["vitamin d and cancer", "sleeping cats", "coffee quality for adults", "gene cell study"]:
        want = searchers["torch"].search(query, Plan(k=4, mode="exact"))
        got = searchers[runtime].search(query, Plan(k=4, mode="exact"))
        assert len(want.docs) > 0
        np.testing.assert_array_equal(got.docs, want.docs)
        np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5)


def test_bad_index_meta_is_refused(folder, tmp_path):
    out = tmp_path / "idx"
    pipeline.index_corpus(encoder_config(folder), write_corpus(tmp_path / "c.jsonl"), out)
    index = Searcher(out).index
    for meta in ({"terms": "letters"}, {"terms": "words", "analyzer": None}, {"analyzer": {"colour": 1}}):
        with pytest.raises(ConfigError, match="terms|colour"):
            load_query_encoder({**index.meta["encoder"], **meta}, index.term_index)


def test_ray_is_refused(folder, tmp_path):
    from lsr.ray_encode import encode_corpus_ray

    with pytest.raises(LsrError, match=f"--ray.*{folder.name}.*word terms"):
        encode_corpus_ray(encoder_config(folder), write_corpus(tmp_path / "c.jsonl"), tmp_path / "v")
    # the pre-tokenized path (Ray's) has no words to analyze
    encoder = make_encoder(encoder_config(folder).encoder)
    with pytest.raises(ValueError, match="word terms: encode texts, not tokens"):
        encoder.encode_tokens(encoder.text_tokenizer(["cells study"]))  # type: ignore[attr-defined]


def test_a_query_model_must_write_the_same_terms(folder, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    write_terms_file(other, {**analyzer_section(), "stemmer": "none"})
    with pytest.raises(ConfigError, match="query model.*same terms"):
        make_encoder(encoder_config(folder, f"encoder.query_model={other}").encoder)
    (other / TERMS_FILE).unlink()  # a wordpiece query model beside a words document model
    with pytest.raises(ConfigError, match="query model.*same terms"):
        make_encoder(encoder_config(folder, f"encoder.query_model={other}").encoder)


def test_long_docs_auto_reads_the_model_folders_choice(folder, ref, tmp_path):
    """``encoder.transformer.long_docs`` auto (the default): the folder's lsr_doc.json ``long_docs``,
    else truncate; a value in the config wins; the index meta records what was used."""
    windowed = tmp_path / "windowed"
    shutil.copytree(folder, windowed)
    (windowed / "lsr_doc.json").write_text(json.dumps({"long_docs": "windows", "what": "a test"}))
    text = " ".join(random_texts(5, 1, max_words=40)[0].split() * 2)  # several windows long
    cases = [
        (folder, [], None),
        (windowed, [], OVERLAP),
        (windowed, ["encoder.transformer.long_docs=truncate"], None),
    ]
    for model, extra, overlap in cases:
        encoder = make_encoder(encoder_config(model, *extra).encoder)
        assert encoder.describe()["transformer"]["long_docs"] == ("windows" if overlap else "truncate")
        assert_rows(
            as_terms(encoder.encode([text]), encoder.vocab), [reference(ref, text, MAX_LENGTH, overlap)]
        )


@pytest.mark.parametrize(
    "content, match",
    [
        ('{"long_docs": "pool"}', "long_docs = 'pool' must be one of"),
        ('{"long_doc": "windows"}', "unknown key"),
        ('["windows"]', "expected a JSON object"),
    ],
)
def test_a_bad_lsr_doc_file_is_refused_by_name(folder, tmp_path, content, match):
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    (bad / "lsr_doc.json").write_text(content)
    with pytest.raises(ConfigError, match=match) as err:
        make_encoder(encoder_config(bad).encoder)
    assert str(bad / "lsr_doc.json") in str(err.value)
