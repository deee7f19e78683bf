"""The query side of a word-terms inference-free index (lsr.encoders.inference_free.WordsQueryEncoder):
the words of an ASCII query split without the tokenizer (lsr.encoders.words.bert_ascii_words) are the
tokenizer's words, and the encoded queries equal a slow reference that runs the tokenizer on every
query (its word ids and offsets, each word analyzed whole and counted once per word)."""

from __future__ import annotations

import shutil
import string
from pathlib import Path

import numpy as np
import pytest

tokenizers = pytest.importorskip("tokenizers")

from lsr.encoders.hf import clean_text  # noqa: E402
from lsr.encoders.inference_free import TOKENIZER_FILE, WordsQueryEncoder  # noqa: E402
from lsr.encoders.words import analyzer_section, bert_ascii_words, make_word_analyzer  # noqa: E402

SHIPPED = Path(__file__).resolve().parents[3] / "lsr" / "models" / "inference-free" / TOKENIZER_FILE
ANALYZER = make_word_analyzer(analyzer_section())
WORDS = (
    "vitamin D cancer risk coffee sleep x-ray 19 3.5mg COVID-19 the of and Cats cat's don't e.g. "
    "p<0.05 [MASK] [cls] [UNK]x a_b foo@bar.com (IL)-6 zebra antidisestablishmentarianism"
).split()
EDGE = [
    "",
    "   ",
    "the of and a",  # stopwords only
    ".,;:!?",  # punctuation only
    "[MASK]",  # an added token, matched whole by the tokenizer
    "x[SEP]y [pad]",
    "tab\tnew\nline\rcr",
    "ctrl\x01char\x7f",  # control characters: the normalizer drops them
    "café naïve Übermensch",  # accents: the normalizer strips them
    "北京 大学 vitamin",  # CJK characters: a word each
    "emoji 🙂 and \u200b zero width",
    "a" * 300,  # one word past the truncation
    " ".join(["vitamin"] * 200),  # words past the truncation
    "x" * 120 + " tail words here",
]


def tokenizer(max_length: int):
    tok = tokenizers.Tokenizer.from_file(str(SHIPPED))
    tok.no_padding()
    tok.enable_truncation(max_length)
    return tok


def tokenizer_words(tok, text: str) -> list[str]:
    """The reference: the tokenizer's words of ``text``, each as its span of the text."""
    enc = tok.encode(text, add_special_tokens=False)
    spans: dict[int, tuple[int, int]] = {}
    for wid, (s, e) in zip(enc.word_ids, enc.offsets, strict=True):
        if wid is not None:
            a, _ = spans.get(wid, (s, e))
            spans[wid] = (a, e)
    return [text[a:b] for a, b in spans.values()]


def random_queries(seed: int, n: int) -> list[str]:
    rng = np.random.default_rng(seed)
    chars = string.ascii_letters + string.digits + string.punctuation + "  \t"
    out = []
    for _ in range(n):
        if rng.random() < 0.5:
            out.append(" ".join(rng.choice(WORDS, size=int(rng.integers(1, 40)))))
        else:
            out.append("".join(rng.choice(list(chars), size=int(rng.integers(0, 200)))))
    return out


@pytest.mark.parametrize("max_length", [128, 16])
def test_ascii_words_are_the_tokenizers_words(max_length):
    """Where the fast split answers, it gives the tokenizer's words; it answers for most ASCII queries
    and declines non-ASCII text, control characters, added tokens and truncated queries."""
    tok = tokenizer(max_length)
    added = [t.content.lower() for t in tok.get_added_tokens_decoder().values()]
    answered = 0
    for text in [*EDGE, *random_queries(0, 600)]:
        words = bert_ascii_words(tok, text, added)
        if words is not None:
            answered += 1
            assert words == tokenizer_words(tok, text), text
    assert answered > (200 if max_length == 128 else 20)
    for text in ["[MASK]", "x[SEP]y", "ctrl\x01char", "café", "北京", "a" * 300]:
        assert bert_ascii_words(tok, text, added) is None, text


def reference_row(tok, text: str, term_index: dict[str, int]) -> dict[int, float]:
    counts: dict[int, float] = {}
    for word in tokenizer_words(tok, text):
        for term in dict.fromkeys(ANALYZER(word)):
            if term in term_index:
                counts[term_index[term]] = counts.get(term_index[term], 0) + 1
    return counts


@pytest.mark.parametrize("max_length", [128, 16])
def test_encoded_queries_equal_the_tokenizer_reference(tmp_path, max_length):
    """Every query (ASCII or not, empty, stopwords only, truncated) encodes to the reference's term
    counts, one by one and in a batch."""
    shutil.copy(SHIPPED, tmp_path / TOKENIZER_FILE)
    queries = [*EDGE, *random_queries(1, 300), "surrogate \ud800 text"]
    vocab = sorted(
        {t for q in queries for w in tokenizer_words(tokenizer(512), clean_text(q)) for t in ANALYZER(w)}
    )
    term_index = {t: i for i, t in enumerate(vocab[::2])}  # half the terms: the rest are dropped
    meta = {
        "terms": "words",
        "analyzer": analyzer_section(),
        "transformer": {"query_max_length": max_length},
    }
    encoder = WordsQueryEncoder(meta, term_index, tmp_path)
    tok = tokenizer(max_length)
    batch = encoder.encode(queries)
    for i, text in enumerate(queries):
        want = reference_row(tok, clean_text(text), term_index)  # lone surrogates: U+FFFD
        terms, weights = batch.row(i)
        assert dict(zip(terms.tolist(), weights.tolist(), strict=True)) == want, text
        single_terms, _ = encoder.encode([text]).row(0)
        assert single_terms.tolist() == terms.tolist()


def test_the_fast_split_is_for_bert_tokenizers_only():
    """A tokenizer that is not BERT's (here: whitespace words, BPE) always tokenizes."""
    from lsr.encoders.words import bert_words_tokenizer

    assert bert_words_tokenizer(tokenizer(128))
    other = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token=None))
    other.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    assert not bert_words_tokenizer(other)
    left = tokenizer(128)
    left.enable_truncation(128, direction="left")
    assert not bert_words_tokenizer(left)
