"""lsr.analysis.Analyzer: Lucene EnglishAnalyzer-like tokenization, stopwords and stemming."""

from __future__ import annotations

import pickle

import pytest

from lsr.analysis import LUCENE_STOPWORDS, Analyzer


def test_lowercases():
    assert Analyzer(stemmer="none")("HeLLo WORLD") == ["hello", "world"]


def test_lowercase_can_be_turned_off():
    assert Analyzer(stemmer="none", stopwords="none", lowercase=False)("HeLLo World") == ["HeLLo", "World"]


def test_lucene_stopwords_are_removed():
    assert Analyzer(stemmer="none")("The cat is on the mat and it is not a dog") == ["cat", "mat", "dog"]


def test_all_lucene_stopwords_vanish():
    assert len(LUCENE_STOPWORDS) == 33
    assert Analyzer()(" ".join(sorted(LUCENE_STOPWORDS))) == []
    assert Analyzer()(" ".join(sorted(LUCENE_STOPWORDS)).upper()) == []  # after lowercasing


def test_non_lucene_stopwords_are_kept():
    # "he", "she", "we" and "from" are in NLTK's list, not in Lucene's
    assert Analyzer(stemmer="none")("he she we from") == ["he", "she", "we", "from"]


def test_stopwords_none_keeps_them():
    assert Analyzer(stemmer="none", stopwords="none")("the cat") == ["the", "cat"]


@pytest.mark.parametrize(
    ("word", "stem"),
    [
        ("running", "run"),
        ("studies", "studi"),
        ("cats", "cat"),
        ("ponies", "poni"),
        ("caresses", "caress"),
        ("relational", "relat"),
        ("generalizations", "gener"),
    ],
)
def test_porter_stemming(word, stem):
    assert Analyzer()(word) == [stem]


def test_porter_differs_from_porter2():
    # Porter (Lucene's PorterStemFilter, Anserini) vs Snowball English (Porter2)
    assert Analyzer(stemmer="porter")("generously") == ["gener"]
    assert Analyzer(stemmer="english")("generously") == ["generous"]


@pytest.mark.parametrize("text", ["John's car", "JOHN'S CAR", "John\u2019s car"])
def test_possessive_s_is_removed(text):
    assert Analyzer()(text) == ["john", "car"]


def test_stemmer_none_keeps_words():
    got = Analyzer(stemmer="none")("Running studies of John's cats")
    assert got == ["running", "studies", "john", "cats"]


def test_punctuation_splits_tokens():
    # (cases where Lucene's UAX#29 tokenizer and a \w+ split agree)
    assert Analyzer(stemmer="none")("Hello, world! e-mail (snake_case)") == [
        "hello",
        "world",
        "e",
        "mail",
        "snake_case",
    ]


def test_empty_and_blank_text():
    assert Analyzer()("") == []
    assert Analyzer()("  \n\t ... !!") == []


def test_order_and_repeats_are_kept():
    assert Analyzer()("dogs chase cats; cats chase dogs") == ["dog", "chase", "cat", "cat", "chase", "dog"]


@pytest.mark.parametrize("kwargs", [{"stemmer": "snowball"}, {"stemmer": "Porter"}, {"stemmer": ""}])
def test_invalid_stemmer_name(kwargs):
    with pytest.raises(ValueError, match="stemmer"):
        Analyzer(**kwargs)


def test_invalid_stopwords_name():
    with pytest.raises(ValueError, match="stopwords"):
        Analyzer(stopwords="nltk")


def test_analyzer_pickles_after_use():
    a = Analyzer()
    assert a("running studies") == ["run", "studi"]  # builds the stemmer
    b = pickle.loads(pickle.dumps(a))
    assert b("running studies") == ["run", "studi"]
