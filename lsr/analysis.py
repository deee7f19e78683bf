"""Text analysis for lexical models: tokenize, lowercase, drop stopwords, stem.

``Analyzer()`` (Porter, Lucene's 33 stopwords, every token kept) mirrors Lucene's EnglishAnalyzer as
Anserini uses it, so the Lucene preset of our BM25 and pyserini's agree; like Lucene's
PorterStemmer, tokens of one or two characters are not stemmed (Snowball's Porter would turn
``s`` into an empty term and ``us`` into ``u``). The default BM25 analyzer is set in
``lsr.config.BM25Config``. Stemming uses PyStemmer (the Snowball project's C stemmers) with a cache.

Other languages: every language PyStemmer stems (:data:`LANGUAGES`) has its Snowball stemmer, and a
stopword list where Lucene's analyzer for that language has one (``lsr/stopwords/LANGUAGE.txt``, taken
from Lucene by ``scripts/extract_stopwords.py``; none for esperanto, polish, sesotho and yiddish).
"""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files
from typing import Any

# Lucene's EnglishAnalyzer.ENGLISH_STOP_WORDS_SET (the default Anserini uses; also bm25s' "english").
LUCENE_STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their "
    "then there these they this to was will with".split()
)
# NLTK's English list (179 words; bm25s' "english_plus"), without the apostrophe forms, which never
# survive tokenization: "don't" is split into "don" and "t", both in the list.
NLTK_STOPWORDS = frozenset(
    "a about above after again against ain all am an and any are aren as at be because been before "
    "being below between both but by can couldn d did didn do does doesn doing don down during each "
    "few for from further had hadn has hasn have haven having he her here hers herself him himself "
    "his how i if in into is isn it its itself just ll m ma me mightn more most mustn my myself "
    "needn no nor not now o of off on once only or other our ours ourselves out over own re s same "
    "shan she should shouldn so some such t than that the their theirs them themselves then there "
    "these they this those through to too under until up ve very was wasn we were weren what when "
    "where which while who whom why will with won wouldn y you your yours yourself yourselves".split()
)
# the languages PyStemmer's Snowball stemmers cover (Stemmer.algorithms(), less the "porter" and
# "dutch_porter" variants); tests/unit/test_analysis.py checks the list against the installed PyStemmer
LANGUAGES = (
    "arabic", "armenian", "basque", "catalan", "czech", "danish", "dutch", "english", "esperanto", "estonian",
    "finnish", "french", "german", "greek", "hindi", "hungarian", "indonesian", "irish", "italian",
    "lithuanian", "nepali", "norwegian", "persian", "polish", "portuguese", "romanian", "russian", "serbian",
    "sesotho", "spanish", "swedish", "tamil", "turkish", "yiddish",
)  # fmt: skip
ENGLISH_STOPWORDS = {"lucene": LUCENE_STOPWORDS, "nltk": NLTK_STOPWORDS, "none": frozenset()}
STEMMERS = ("porter", "none", *LANGUAGES)  # porter: Lucene's (English); a language: its Snowball stemmer
_STOPWORDS = files("lsr").joinpath("stopwords")  # package data


def language_stopwords() -> tuple[str, ...]:
    """The languages with a stopword list (package data ``lsr/stopwords``)."""
    return tuple(sorted(p.name[:-4] for p in _STOPWORDS.iterdir() if p.name.endswith(".txt")))


@cache
def stopword_list(name: str) -> frozenset[str]:
    """``lucene``, ``nltk``, ``none`` (English choices), or a language's list.

    Raises:
        ValueError: a name that is none of those, naming the ones there are.
    """
    if name in ENGLISH_STOPWORDS:
        return ENGLISH_STOPWORDS[name]
    if name not in language_stopwords():
        known = [*ENGLISH_STOPWORDS, *language_stopwords()]
        raise ValueError(f"stopwords {name!r} is not one of {known}")
    text = _STOPWORDS.joinpath(f"{name}.txt").read_text(encoding="utf-8")
    return frozenset(w for w in text.splitlines() if w and not w.startswith("#"))


_TOKEN = re.compile(r"\w+", re.UNICODE)
_POSSESSIVE = re.compile(r"['\u2019][sS]\b")


class Analyzer:
    """``text -> list of terms``; deterministic and picklable (the stemmer is built lazily).

    Steps: lowercase, drop a possessive ``'s``, split on non-word characters, drop stopwords and
    tokens shorter than ``min_length`` characters, stem.
    """

    def __init__(
        self,
        stemmer: str = "porter",
        stopwords: str = "lucene",
        lowercase: bool = True,
        min_length: int = 1,
        porter_min_stem: int = 3,
    ):
        if stemmer not in STEMMERS:
            raise ValueError(f"stemmer {stemmer!r} is not one of {list(STEMMERS)}")
        for name, value in (("min_length", min_length), ("porter_min_stem", porter_min_stem)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} {value!r} must be an integer >= 1")
        self.stemmer_name = stemmer
        self.stopwords = stopword_list(stopwords)
        self.lowercase = lowercase
        self.min_length = min_length
        # Lucene's PorterStemmer leaves words of one or two characters as they are (3); 1 stems every token,
        # as indexes built before this setting existed did
        self.porter_min_stem = porter_min_stem
        self._stemmer: Any = None  # a Stemmer.Stemmer, built on first use (PyStemmer has no type hints)

    def _stem(self, tokens: list[str]) -> list[str]:
        if self.stemmer_name == "none":
            return tokens
        if self._stemmer is None:
            import Stemmer  # PyStemmer

            self._stemmer = Stemmer.Stemmer(self.stemmer_name)
            self._stemmer.maxCacheSize = 100_000
        stems: list[str] = self._stemmer.stemWords(tokens)
        if self.stemmer_name == "porter":
            shortest = self.porter_min_stem
            return [s if len(t) >= shortest else t for t, s in zip(tokens, stems, strict=True)]
        return stems

    def __call__(self, text: str) -> list[str]:
        if self.lowercase:
            text = text.lower()
        text = _POSSESSIVE.sub("", text)
        stop, shortest = self.stopwords, self.min_length
        tokens = [t for t in _TOKEN.findall(text) if len(t) >= shortest and t not in stop]
        return self._stem(tokens)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_stemmer": None}
