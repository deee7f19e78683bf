"""lsr.analysis.Analyzer: Lucene EnglishAnalyzer-like tokenization, stopwords and stemming (``Analyzer()``
is Lucene's; the default BM25 uses the Snowball English stemmer and tokens of 2+ characters)."""

from __future__ import annotations

import pickle

import pytest

from lsr.analysis import LANGUAGES, LUCENE_STOPWORDS, NLTK_STOPWORDS, Analyzer, language_stopwords
from lsr.config import BM25Config
from lsr.errors import ConfigError


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
    with pytest.raises(
        ValueError, match=r"stopwords 'smart' is not one of \['lucene', 'nltk', 'none', 'arabic', "
    ):
        Analyzer(stopwords="smart")


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
@pytest.mark.parametrize("name", ["min_length", "porter_min_stem"])
def test_invalid_lengths(name, bad):
    with pytest.raises(ValueError, match=name):
        Analyzer(**{name: bad})


# ---- short words, possessives, stopword lists (examples checked by hand against Lucene and bm25s) ----


@pytest.mark.parametrize(
    ("word", "term"), [("s", "s"), ("us", "us"), ("os", "os"), ("gas", "ga"), ("news", "new")]
)
def test_porter_leaves_one_and_two_letter_words_like_lucene(word, term):
    # Lucene's PorterStemmer stems only words of 3+ characters; Snowball's Porter would give "" and "u"
    assert Analyzer(stemmer="porter", min_length=1)(word) == [term]


def test_no_empty_terms_from_short_words():
    text = "the U.S. is in us and s of x"
    for stemmer in ("porter", "english", "none"):
        terms = Analyzer(stemmer=stemmer)(text)
        assert "" not in terms
        assert terms == ["u", "s", "us", "s", "x"]


def test_min_length_two_drops_single_characters_like_bm25s():
    assert Analyzer(stemmer="english", min_length=2)("the U.S. vitamin D and x-ray us") == [
        "vitamin",
        "ray",
        "us",
    ]


@pytest.mark.parametrize("text", ["the cell's membrane", "THE CELL'S MEMBRANE", "the cell\u2019s membrane"])
@pytest.mark.parametrize("min_length", [1, 2])
def test_possessive_is_dropped_with_either_length(text, min_length):
    assert Analyzer(stemmer="english", min_length=min_length)(text) == ["cell", "membran"]


def test_plural_possessive_and_contractions():
    # "cells'" keeps "cells" (Lucene's possessive filter drops only 's); "don't" splits on the apostrophe
    assert Analyzer(stemmer="none")("the cells' walls don't") == ["cells", "walls", "don", "t"]
    assert Analyzer(stemmer="none", min_length=2)("the cells' walls don't") == ["cells", "walls", "don"]


def test_nltk_list_drops_pronouns_and_auxiliaries():
    assert len(NLTK_STOPWORDS) == 153 and LUCENE_STOPWORDS <= NLTK_STOPWORDS
    text = "I am interested in what they have published about their systems"
    assert Analyzer(stemmer="none", stopwords="nltk")(text) == ["interested", "published", "systems"]
    assert Analyzer(stemmer="none", stopwords="lucene")(text) == [
        "i",
        "am",
        "interested",
        "what",
        "have",
        "published",
        "about",
        "systems",
    ]


def test_analyzer_pickles_after_use():
    a = Analyzer()
    assert a("running studies") == ["run", "studi"]  # builds the stemmer
    b = pickle.loads(pickle.dumps(a))
    assert b("running studies") == ["run", "studi"]


# ---- other languages: the Snowball stemmer and Lucene's stopword list, chosen by encoder.bm25.language ----


def test_languages_are_pystemmers():
    import Stemmer

    assert set(LANGUAGES) == set(Stemmer.algorithms()) - {"porter", "dutch_porter"}
    for language in LANGUAGES:  # every language builds, and a stopword list where there is one
        cfg = BM25Config(language=language)
        assert cfg.stemmer == language
        assert cfg.stopwords == (
            "lucene" if language == "english" else language if language in language_stopwords() else "none"
        )
        Analyzer(cfg.stemmer, cfg.stopwords)("a b c")


def analyzer_for(language: str) -> Analyzer:
    cfg = BM25Config(language=language)
    return Analyzer(cfg.stemmer, cfg.stopwords, cfg.lowercase, cfg.min_length, cfg.porter_min_stem)


def test_french_stems_and_drops_its_stopwords():
    text = "Les chercheurs ont étudié l'effet des vitamines sur les cancers du sein."
    # les, ont, des, sur, du: French stopwords; l' is one character (min_length 2); plurals stemmed
    assert analyzer_for("french")(text) == ["chercheur", "étudi", "effet", "vitamin", "cancer", "sein"]
    # the English analyzer keeps the French function words and stems otherwise
    english = analyzer_for("english")(text)
    assert "les" in english and "des" in english and "chercheur" in english


def test_german_stems_and_drops_its_stopwords():
    text = "Die Forscher untersuchten die Wirkung der Vitamine auf Krebserkrankungen in den Häusern."
    assert analyzer_for("german")(text) == [
        "forsch",
        "untersucht",
        "wirkung",
        "vitamin",
        "krebserkrank",
        "haus",
    ]


def test_an_unknown_language_names_the_supported_ones():
    with pytest.raises(
        ConfigError, match=r"language = 'klingon' is not one of \['arabic', .*'french', .*'german'"
    ):
        BM25Config(language="klingon")
    with pytest.raises(ConfigError, match="are English; for language 'french' use auto"):
        BM25Config(language="french", stemmer="porter")
    assert BM25Config() == BM25Config(language="english", stemmer="english", stopwords="lucene")  # unchanged
