"""model.terms: words: a uniCOIL or SPLADE whose token weights go to the BM25 analyzer's terms of their
words (and a SPLADE's whole-word tokens to their own terms), checked against a slow per-text reference;
the vocabulary of a suite is its documents' terms."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from lsr.encoders.words import Saturation, analyzer_section, make_word_analyzer, read_terms_file  # noqa: E402
from lsr.errors import ConfigError  # noqa: E402
from lsr.train import model as train_model  # noqa: E402
from lsr.train.config import ModelConfig  # noqa: E402

TEXTS = [
    "Vitamin D lowers the cancer risk; vitamins lowered risks.",
    "the of and",  # stopwords only: no term
    "",
    "cats sat, dogs sat on mats — birding birds",
    "Proteins (cell-gene) study: effects of coffee on sleep quality in adults",
]


def words_of(model, text: str, max_length: int):
    """The token ids of one text (the model's tokenizer, truncated) and each word as (its text, its pieces'
    positions)."""
    from lsr.encoders.hf import clean_text

    cleaned = clean_text(text)
    enc = model._backend(max_length).encode(cleaned)
    words = []
    for wid in sorted({x for x in enc.word_ids if x is not None}):
        pos = [i for i, x in enumerate(enc.word_ids) if x == wid]
        words.append((cleaned[enc.offsets[pos[0]][0] : enc.offsets[pos[-1]][1]], pos))
    return enc.ids, words


def reference(model, text: str, max_length: int) -> dict[str, float]:
    """term -> weight, computed the slow way from one text's own token weights."""
    ids, words = words_of(model, text, max_length)
    t = torch.tensor([ids])
    with torch.no_grad():
        w = model.unicoil_token_weights(t, torch.ones_like(t, dtype=torch.bool))[0].numpy()
    analyzer = make_word_analyzer(analyzer_section())
    out: dict[str, float] = {}
    for word, pos in words:
        for term in analyzer(word):
            out[term] = max(out.get(term, 0.0), max(float(w[i]) for i in pos))
    return {t: v for t, v in out.items() if v > 0}


def splade_reference(model, text: str, max_length: int) -> dict[str, float]:
    """term -> weight of a SPLADE of word terms, the slow way: the text's pooled weights; each word's
    terms take the largest pooled weight of its pieces' tokens, each whole-word token of the vocabulary
    with a weight writes it to its own analysis."""
    ids, words = words_of(model, text, max_length)
    t = torch.tensor([ids])
    with torch.no_grad():
        pooled = model.encode_tokens(t, torch.ones_like(t, dtype=torch.bool))[0].numpy()
    analyzer = make_word_analyzer(analyzer_section())
    out: dict[str, float] = {}
    for word, pos in words:
        for term in analyzer(word):
            out[term] = max(out.get(term, 0.0), max(float(pooled[ids[i]]) for i in pos))
    tokens = model.tokenizer.convert_ids_to_tokens(list(range(len(pooled))))
    for v in np.flatnonzero(pooled > 0):
        token = tokens[v]
        if token.startswith("##") or (token.startswith("[") and token.endswith("]")):
            continue
        for term in analyzer(token):
            out[term] = max(out.get(term, 0.0), float(pooled[v]))
    return {t: v for t, v in out.items() if v > 0}


@pytest.fixture(scope="module")
def splade_words(train_mlm):
    return train_model.build_model(ModelConfig(kind="splade", init=str(train_mlm), terms="words")).eval()


def test_splade_words_vectors_match_the_per_text_reference(splade_words):
    df = splade_words.word_document_frequencies(TEXTS, 64)
    vocab = splade_words.words.vocab
    assert len(df) == len(vocab) == splade_words.vocab_size
    # the corpus's terms first (with their counts), then the expansion's (in no text: df 0)
    corpus_terms = {t for x in TEXTS for t in make_word_analyzer(analyzer_section())(x.replace("-", " "))}
    assert set(vocab[: len(corpus_terms)]) == corpus_terms and not df[len(corpus_terms) :].any()
    with torch.no_grad():
        docs = splade_words.encode_docs(TEXTS, 64).numpy()
    expanded = 0
    for text, row in zip(TEXTS, docs, strict=True):
        got = {vocab[i]: float(row[i]) for i in np.flatnonzero(row)}
        want = reference_in(vocab, splade_reference(splade_words, text, 64))
        assert got.keys() == want.keys()
        assert all(abs(got[t] - want[t]) < 1e-5 for t in want)
        expanded += len(got.keys() - corpus_terms)
    assert expanded > 0  # the random MLM expands to terms of no text


def reference_in(vocab: list[str], weights: dict[str, float]) -> dict[str, float]:
    """The reference's terms that the vocabulary holds (a SPLADE's vocabulary: the corpus's terms and
    every whole-word token's)."""
    known = set(vocab)
    return {t: w for t, w in weights.items() if t in known}


@pytest.fixture(scope="module")
def words_model(train_mlm):
    torch.manual_seed(0)
    m = train_model.build_model(ModelConfig(kind="unicoil", init=str(train_mlm), terms="words"))
    with torch.no_grad():  # a random head: weights that differ per token, some zero
        m.head.weight.normal_(0, 1.0)
        m.head.bias.fill_(0.2)
    return m.eval()


def test_words_vectors_match_the_per_text_reference(words_model):
    df = words_model.word_document_frequencies(TEXTS, 64)
    vocab = words_model.words.vocab
    assert len(df) == len(vocab) == words_model.vocab_size
    analyzer = make_word_analyzer(analyzer_section())
    for t, count in zip(vocab, df, strict=True):  # df: texts holding the term
        assert count == sum(t in analyzer(x.replace("-", " ")) for x in TEXTS), t
    assert "vitamin" in vocab and "risk" in vocab and "the" not in vocab  # stems, no stopwords
    with torch.no_grad():
        docs = words_model.encode_docs(TEXTS, 64).numpy()
        queries = words_model.encode_queries(TEXTS, 64).numpy()
    assert np.array_equal(docs, queries)  # no threshold: the same function
    for text, row in zip(TEXTS, docs, strict=True):
        got = {vocab[i]: float(row[i]) for i in np.flatnonzero(row)}
        want = reference(words_model, text, 64)
        assert got.keys() == want.keys()
        assert all(abs(got[t] - want[t]) < 1e-5 for t in want)
    assert not docs[1].any() and not docs[2].any()


def test_terms_outside_the_vocabulary_are_dropped_and_a_suite_vocabulary_is_restored(train_mlm):
    # a fresh head: every token weighs 1 (a bag of words)
    words_model = train_model.build_model(ModelConfig(kind="unicoil", init=str(train_mlm), terms="words"))
    words_model.word_document_frequencies(["vitamin cancer"], 64)
    before = dict(words_model.words.term_ids)
    with words_model.word_vocabulary(["coffee sleep", "cats"], 64):
        assert words_model.words.vocab == ["coffe", "sleep", "cat"]
        with torch.no_grad():
            q = words_model.encode_queries(["coffee vitamin"], 64)
        assert q.tolist() == [[1.0, 0.0, 0.0]]
    assert words_model.words.term_ids == before
    with torch.no_grad():
        assert words_model.encode_queries(["coffee vitamin"], 64).shape == (1, 2)


def test_words_fingerprint_differs_from_wordpiece(train_mlm, words_model):
    wp = train_model.build_model(ModelConfig(kind="unicoil", init=str(train_mlm)))
    assert wp.fingerprint() != words_model.fingerprint()


def test_terms_words_is_for_unicoil_or_splade_and_a_words_folder_needs_it(train_mlm, tmp_path, words_model):
    with pytest.raises(ConfigError, match="model.terms = words applies to model.kind = unicoil or splade"):
        ModelConfig(kind="inference-free", terms="words")
    with pytest.raises(ConfigError, match="model.terms"):
        ModelConfig(kind="unicoil", terms="stems")
    folder = tmp_path / "w"
    train_model.save_model(words_model, folder, "card", {})
    assert (folder / "lsr_terms.json").is_file()
    with pytest.raises(ConfigError, match="word-terms uniCOIL"):
        train_model.build_model(ModelConfig(kind="unicoil", init=str(folder)))
    again = train_model.build_model(ModelConfig(kind="unicoil", init=str(folder), terms="words"))
    assert again.analyzer_section == analyzer_section()


@pytest.mark.parametrize("kind", ["unicoil", "splade"])
@pytest.mark.parametrize("tf", [None, (0.7, 0.4)])  # tf saturation (k1, b), off or on
@pytest.mark.parametrize("max_length", [8, 64])  # 8: texts truncated inside a word
def test_trainer_vectors_equal_the_index_encoders(words_model, splade_words, tmp_path, max_length, tf, kind):
    """What the trainer scores is what `lsr index` writes for the saved folder (documents, truncated ones
    included, and queries), with and without tf saturation, for a uniCOIL and a SPLADE of word terms."""
    from lsr.config import load_config
    from lsr.encoders import make_encoder

    model = words_model if kind == "unicoil" else splade_words
    folder = tmp_path / "m"
    texts = [t for t in TEXTS if t.strip()] + ["supercalifragilistic vitamins lowered"]
    before = model.cfg
    try:
        if tf:
            model.cfg = ModelConfig(kind=kind, terms="words", tf_k1=tf[0], tf_b=tf[1])
            model.set_saturation(texts[:2])
        train_model.save_model(model, folder, "card", {})
    finally:
        model.cfg, model.words.saturation = before, None
    trained = train_model.build_model(ModelConfig(kind=kind, init=str(folder), terms="words")).eval()
    if tf:  # what the trainer would use: the saved reference length
        saved = read_terms_file(folder)["tf"]
        assert (saved["k1"], saved["b"]) == tf and saved["avgdl"] > 0
        trained.words.saturation = Saturation.from_section(saved)
    settings = [
        f"encoder.name={kind}",
        f"encoder.model={folder}",
        "encoder.transformer.device=cpu",
        f"encoder.transformer.max_length={max_length}",
        f"encoder.transformer.query_max_length={max_length}",
    ]
    encoder = make_encoder(load_config(None, settings).encoder)
    rows = encoder.encode(texts)
    trained.word_document_frequencies(texts, max_length)
    with torch.no_grad():
        docs = trained.encode_docs(texts, max_length).numpy()
    vocab = trained.words.vocab
    for i, text in enumerate(texts):
        terms, weights = rows.row(i)
        got = {encoder.vocab[t]: float(w) for t, w in zip(terms, weights, strict=True)}
        want = {vocab[j]: float(docs[i, j]) for j in np.flatnonzero(docs[i])}
        assert got.keys() == want.keys(), text
        assert all(abs(got[t] - want[t]) < 1e-4 for t in want)
    # queries: the index's query side keeps the index's terms (no tf saturation)
    from lsr.encoders import load_query_encoder

    index_terms = {t: i for i, t in enumerate(encoder.vocab)}
    meta = encoder.describe()
    meta["transformer"]["query_runtime"] = "torch"  # the trainer's arithmetic (runtimes: their own tests)
    query_rows = load_query_encoder(meta, index_terms).encode(texts)
    with torch.no_grad():
        queries = trained.encode_queries(texts, max_length).numpy()
    for i, text in enumerate(texts):
        terms, weights = query_rows.row(i)
        got = {encoder.vocab[t]: float(w) for t, w in zip(terms, weights, strict=True)}
        want = {vocab[j]: float(queries[i, j]) for j in np.flatnonzero(queries[i]) if vocab[j] in index_terms}
        assert got.keys() == want.keys(), text
        assert all(abs(got[t] - want[t]) < 1e-4 for t in want)


def test_tf_saturation_settings_are_checked_and_carried_by_adapt(words_model, tmp_path):
    for bad, match in (
        (dict(terms="words", tf_k1=-1.0), "tf_k1"),
        (dict(terms="words", tf_k1=1.0, tf_b=1.5), "tf_b"),
        (dict(terms="words", tf_b=0.5), "needs model.tf_k1"),
        (dict(tf_k1=1.0), "model.terms = words only"),
    ):
        with pytest.raises(ConfigError, match=match):
            ModelConfig(kind="unicoil", **bad)
    from lsr.train.adapt_checks import start_model_overrides

    before = words_model.cfg
    try:
        words_model.cfg = ModelConfig(kind="unicoil", terms="words", tf_k1=0.8, tf_b=0.3)
        saturation = words_model.set_saturation(TEXTS)
        train_model.save_model(words_model, tmp_path / "m", "card", {})
    finally:
        words_model.cfg, words_model.words.saturation = before, None
    analyzer = make_word_analyzer(analyzer_section())
    assert saturation.avgdl == pytest.approx(np.mean([len(analyzer(t)) for t in TEXTS]))
    assert start_model_overrides(tmp_path / "m") == ["model.terms=words", "model.tf_k1=0.8", "model.tf_b=0.3"]
