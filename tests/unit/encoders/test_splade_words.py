"""SPLADE of word terms (lsr_terms.json in a SPLADE folder, lsr.encoders.words) on the tiny random MLM,
against a slow reference: the pooled SPLADE row of each window (``SpladeModel`` on one sequence, the
reference pooling), each word's analyzer terms taking the largest pooled weight of its pieces' tokens,
every whole-word token of the row writing its weight to its own analysis (the expansion), max over the
windows; then an index searched against brute force, live adds, and the settings it refuses."""

from __future__ import annotations

import contextlib
import json
import math
import shutil

import numpy as np
import pytest

from lsr import pipeline
from lsr.config import load_config
from lsr.errors import ConfigError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tiny_models import DOCS, query_config, word_windows, write_corpus  # noqa: E402

from lsr.data.corpus import Doc  # noqa: E402
from lsr.encoders import load_query_encoder, make_encoder  # noqa: E402
from lsr.encoders.splade import SpladeModel  # noqa: E402
from lsr.encoders.words import Saturation, analyzer_section, make_word_analyzer, write_terms_file  # noqa: E402
from lsr.live import LiveIndex  # noqa: E402
from lsr.searcher import Plan, Searcher  # noqa: E402

ANALYZER = make_word_analyzer(analyzer_section())
MAX_LENGTH, OVERLAP = 10, 3  # 8 tokens a window, the next one 5 tokens on
TEXTS = [
    "Vitamin D and cancer risk in adults; vitamins lowered risks.",
    "the of and",  # stopwords only
    "a zebra sat with the cats on the mat, sleeping cats",  # "zebra": pieces
    "screening protein cell cells gene study effect coffee sleep quality adults running",  # windows
]


@pytest.fixture(scope="module")
def folder(tiny_mlm, tmp_path_factory):
    """The tiny MLM as a SPLADE of word terms (the default BM25 analyzer's)."""
    out = tmp_path_factory.mktemp("splade-words") / "model"
    model = transformers.AutoModelForMaskedLM.from_pretrained(str(tiny_mlm))
    model.save_pretrained(str(out))
    transformers.AutoTokenizer.from_pretrained(str(tiny_mlm)).save_pretrained(str(out))
    write_terms_file(out, analyzer_section())
    return out


@pytest.fixture(scope="module")
def ref(folder):
    """(model, tokenizer, vocabulary) of the reference: wordpiece rows, reference pooling."""
    model = SpladeModel(folder, query_config(), impl="reference")
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    return model, tok, tok.convert_ids_to_tokens(list(range(model.vocab_size)))


def reference(ref, text, max_length, overlap=None):
    """{term: weight} of ``text`` (windows ``overlap`` tokens apart; None: truncated)."""
    model, tok, vocab = ref
    _, word_of, windows = word_windows(tok, text, max_length, overlap)
    best: dict[str, float] = {}
    for start, seq in windows:
        t = torch.tensor([seq])
        with torch.inference_mode():
            pooled = model._pool(t, torch.ones_like(t, dtype=torch.bool))[0].numpy()
        for token_id, word in zip(seq[1:-1], word_of[start:], strict=False):  # the window's words, whole
            for term in ANALYZER(word):
                best[term] = max(best.get(term, 0.0), float(pooled[token_id]))
        for v in np.flatnonzero(pooled > 0):
            token = vocab[v]
            if token.startswith("##") or (token.startswith("[") and token.endswith("]")):
                continue
            for term in ANALYZER(token):
                best[term] = max(best.get(term, 0.0), float(pooled[v]))
    return {t: w for t, w in best.items() if w > 0}


def encoder_config(folder, *extra):
    return load_config(
        None,
        [
            "encoder.name=splade",
            f"encoder.model={folder}",
            "encoder.transformer.device=cpu",
            f"encoder.transformer.max_length={MAX_LENGTH}",
            f"encoder.transformer.window_overlap={OVERLAP}",
            *extra,
        ],
    )


def as_terms(batch, vocab):
    return [
        dict(zip((vocab[t] for t in batch.row(i)[0]), batch.row(i)[1].tolist(), strict=True))
        for i in range(len(batch))
    ]


def assert_rows(got, want):
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys()
        for t in w:
            assert g[t] == pytest.approx(w[t], rel=1e-5, abs=1e-6), t


@pytest.mark.parametrize("long_docs", ["windows", "truncate"])
def test_document_rows_match_the_reference(folder, ref, long_docs):
    encoder = make_encoder(encoder_config(folder, f"encoder.transformer.long_docs={long_docs}").encoder)
    got = as_terms(encoder.encode(TEXTS), encoder.vocab)
    overlap = OVERLAP if long_docs == "windows" else None
    want = [reference(ref, t, MAX_LENGTH, overlap) for t in TEXTS]
    assert_rows(got, want)
    assert any(len(row.keys() - set(ANALYZER(text))) > 0 for row, text in zip(got, TEXTS, strict=True))
    assert not {"the", "of", "and"} & set(encoder.vocab)  # stopwords write nothing
    meta = encoder.describe()
    assert meta["terms"] == "words" and "vocab_sha256" not in meta


def test_tf_saturation_scales_the_document_terms(folder, ref, tmp_path):
    tf_folder = tmp_path / "tf"
    shutil.copytree(folder, tf_folder)
    saturation = Saturation(0.8, 0.3, 6.0)
    write_terms_file(tf_folder, analyzer_section(), saturation)
    encoder = make_encoder(encoder_config(tf_folder, "encoder.transformer.long_docs=truncate").encoder)
    got = as_terms(encoder.encode(TEXTS), encoder.vocab)
    for row, text in zip(got, TEXTS, strict=True):
        per_term, once = saturation.factors(ANALYZER(text))
        want = {t: w * per_term.get(t, once) for t, w in reference(ref, text, MAX_LENGTH).items()}
        assert_rows([row], [want])


def dot(q, d):
    return sum(w * d.get(t, 0.0) for t, w in q.items())


def test_index_and_search_equal_brute_force(folder, ref, tmp_path):
    config = encoder_config(folder, "encoder.query_idf=1", "encoder.transformer.query_runtime=torch")
    out = tmp_path / "idx"
    pipeline.index_corpus(config, write_corpus(tmp_path / "c.jsonl"), out)
    searcher = Searcher(out)
    index = searcher.index
    docs = {i: reference(ref, f"{t} {x}" if t else x, MAX_LENGTH) for i, t, x in DOCS}
    vocab = set(index.term_index)
    assert vocab == set().union(*docs.values())
    df = dict(zip(index.vocab, index.doc_freq().tolist(), strict=True))
    n = index.n_docs
    for query in ["vitamin d and cancer", "sleeping cats", "coffee quality for adults", "zebra cell study"]:
        q = {
            t: w * math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
            for t, w in reference(ref, query, 16).items()
            if t in vocab
        }
        assert_rows(as_terms(searcher.encode_texts([query]), index.vocab), [q])
        result = searcher.search(query, Plan(k=4, mode="exact"))
        want = [s for s in sorted((dot(q, d) for d in docs.values()), reverse=True) if s > 0][:4]
        np.testing.assert_allclose(result.scores, want, rtol=1e-5)
    # the analyzer's stemmer is not thread-safe: queries encode under the searcher's lock
    assert not isinstance(searcher._sparse_lock, contextlib.nullcontext)


@pytest.mark.parametrize("runtime", ["onnx", "lean"])
def test_query_runtimes_write_the_torch_words_rows(folder, tmp_path, runtime, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("LSR_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "idx"
    pipeline.index_corpus(encoder_config(folder), write_corpus(tmp_path / "c.jsonl"), out)
    index = Searcher(out).index
    queries = ["vitamin d and cancer", "sleeping cats on mats", "zebra cell study"]
    rows = {}
    for name in ("torch", runtime):
        monkeypatch.setenv("LSR_QUERY_RUNTIME", name)
        encoder = load_query_encoder(index.meta["encoder"], index.term_index)
        assert encoder.runtime == name  # type: ignore[attr-defined]
        encoder.restrict_terms(np.arange(3, dtype=np.int32))  # term ids of the index: not the tokenizer's
        rows[name] = as_terms(encoder.encode(queries), index.vocab)
    assert sum(map(len, rows["torch"])) > 5
    for got, want in zip(rows[runtime], rows["torch"], strict=True):
        assert got.keys() == want.keys()
        for t in want:
            assert got[t] == pytest.approx(want[t], rel=1e-4, abs=1e-5)


def test_live_adds_grow_the_vocabulary_and_keep_the_ids(folder, tmp_path):
    out = tmp_path / "live"
    pipeline.index_corpus(encoder_config(folder), write_corpus(tmp_path / "c.jsonl"), out)
    before = list(Searcher(out).index.vocab)
    LiveIndex(out).add_documents([Doc("z1", "Zebras", "a zebra sat with the cats")])
    searcher = Searcher(out)
    after = list(searcher.index.vocab)
    assert after[: len(before)] == before and "zebra" in after[len(before) :]
    result = searcher.search("zebra", Plan(k=3, mode="exact"))
    assert searcher.index.doc_keys[result.docs[0]] == "z1"


def test_sum_pooling_and_a_wordpiece_tf_are_refused_by_name(folder, tmp_path):
    with pytest.raises(ConfigError, match="encoder.splade.pooling = 'sum'.*word terms"):
        make_encoder(encoder_config(folder, "encoder.splade.pooling=sum").encoder)
    both = tmp_path / "both"
    shutil.copytree(folder, both)
    (both / "lsr_doc.json").write_text(json.dumps({"tf": {"k1": 1.0, "b": 0.5, "avgdl": 10.0}}))
    with pytest.raises(ConfigError, match="lsr_doc.json"):
        make_encoder(encoder_config(both).encoder)
    # inference-free over word terms takes a uniCOIL's documents: a SPLADE folder of word terms is refused
    with pytest.raises(ConfigError, match="is a SPLADE of word terms"):
        make_encoder(encoder_config(folder, "encoder.name=inference-free").encoder)
