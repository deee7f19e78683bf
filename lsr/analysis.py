"""Text analysis for lexical models: tokenize, lowercase, drop stopwords, stem.

The defaults mirror Lucene's EnglishAnalyzer as Anserini uses it (Porter
stemmer, Lucene's 33 English stopwords), so our BM25 and pyserini's agree.
Stemming uses PyStemmer (the Snowball project's C stemmers) with a cache.
"""

from __future__ import annotations

import re
from typing import Any

# Lucene's EnglishAnalyzer.ENGLISH_STOP_WORDS_SET (the default Anserini uses).
LUCENE_STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their "
    "then there these they this to was will with".split()
)
_TOKEN = re.compile(r"\w+", re.UNICODE)
_POSSESSIVE = re.compile(r"['\u2019][sS]\b")


class Analyzer:
    """``text -> list of terms``; deterministic and picklable (the stemmer is built lazily)."""

    def __init__(self, stemmer: str = "porter", stopwords: str = "lucene", lowercase: bool = True):
        if stemmer not in ("porter", "english", "none"):
            raise ValueError(f"stemmer {stemmer!r} is not one of ['porter', 'english', 'none']")
        if stopwords not in ("lucene", "none"):
            raise ValueError(f"stopwords {stopwords!r} is not one of ['lucene', 'none']")
        self.stemmer_name = stemmer
        self.stopwords = LUCENE_STOPWORDS if stopwords == "lucene" else frozenset()
        self.lowercase = lowercase
        self._stemmer: Any = None  # a Stemmer.Stemmer, built on first use (PyStemmer has no type hints)

    def _stem(self, tokens: list[str]) -> list[str]:
        if self.stemmer_name == "none":
            return tokens
        if self._stemmer is None:
            import Stemmer  # PyStemmer

            self._stemmer = Stemmer.Stemmer(self.stemmer_name)
            self._stemmer.maxCacheSize = 100_000
        return self._stemmer.stemWords(tokens)

    def __call__(self, text: str) -> list[str]:
        if self.lowercase:
            text = text.lower()
        text = _POSSESSIVE.sub("", text)
        tokens = [t for t in _TOKEN.findall(text) if t not in self.stopwords]
        return self._stem(tokens)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_stemmer": None}
