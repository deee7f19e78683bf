"""BM25 as a sparse encoder: per (doc, term) impacts, so BM25 runs through the same index.

Document side, Lucene's BM25 (the (k1 + 1) factor is a constant and is left out,
as in Lucene 8+):

    impact(t, d) = idf(t) * tf / (tf + k1 * (1 - b + b * |d| / avgdl))
    idf(t)       = ln(1 + (N - df + 0.5) / (df + 0.5))

Query side: each analyzed query term weighs its count in the query (Anserini's
bag-of-words query).

:meth:`BM25Encoder.encode` returns term frequencies. The statistics pass reads
them back from the written vectors (df: rows that hold a term; |d|: the sum of a
row), so each document is analyzed once; :class:`BM25Impacts` then rewrites each
written shard as impacts (see :mod:`lsr.encoders.base`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lsr.analysis import Analyzer
from lsr.config import BM25Config, EncoderConfig, from_dict
from lsr.encoders.base import CorpusEncoder, CorpusStats, Finish
from lsr.encoders.hf import count_row, rows_to_batch
from lsr.index.sparse import WEIGHT_DTYPE, SparseBatch

logger = logging.getLogger(__name__)


def make_analyzer(cfg: BM25Config) -> Analyzer:
    return Analyzer(cfg.stemmer, cfg.stopwords, cfg.lowercase, cfg.min_length, cfg.porter_min_stem)


def bm25_impacts(
    tf: np.ndarray, doc_len: np.ndarray, idf: np.ndarray, avgdl: float, k1: float, b: float
) -> np.ndarray:
    """Vectorized impacts for postings with term frequency ``tf`` in docs of length ``doc_len``."""
    norm = k1 * (1.0 - b + b * doc_len / avgdl)
    return (idf * tf / (tf + norm)).astype(WEIGHT_DTYPE)


def row_lengths(tf: SparseBatch) -> np.ndarray:
    """int64[rows]: the length of each document, the sum of its term frequencies."""
    cumulative = np.zeros(tf.nnz + 1, dtype=np.int64)
    np.cumsum(tf.weights.astype(np.int64), out=cumulative[1:])
    return cumulative[tf.indptr[1:]] - cumulative[tf.indptr[:-1]]


class BM25Encoder(CorpusEncoder):
    """Analyzed terms with their frequencies; the vocabulary grows in order of first occurrence."""

    name = "bm25"
    stats_from = "vectors"

    def __init__(self, cfg: EncoderConfig):
        self.cfg = cfg.bm25
        self.analyzer = make_analyzer(self.cfg)
        self._term_ids: dict[str, int] = {}

    @property
    def vocab(self) -> list[str]:
        return list(self._term_ids)

    def seed_vocab(self, vocab: Sequence[str]) -> None:
        """Start from an existing vocabulary (a live index's): its terms keep their ids, new terms follow."""
        self._term_ids = {term: i for i, term in enumerate(vocab)}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "bm25": {k: getattr(self.cfg, k) for k in self.cfg.__dataclass_fields__}}

    def encode(self, texts: Sequence[str]) -> SparseBatch:
        """Term frequencies, one row per text (a text without terms gets an empty row)."""
        return rows_to_batch([self._term_frequencies(text) for text in texts])

    def _term_frequencies(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        counts = Counter(self.analyzer(text))
        ids = self._term_ids
        term_ids = np.fromiter((ids.setdefault(t, len(ids)) for t in counts), np.int64, len(counts))
        tf = np.fromiter(counts.values(), np.float32, len(counts))
        order = np.argsort(term_ids)
        return term_ids[order], tf[order]

    def statistics(self, source: Iterable[SparseBatch]) -> CorpusStats:
        """df, N and the total length from the written term-frequency batches, one at a time."""
        n_terms = len(self._term_ids)
        df = np.zeros(n_terms, dtype=np.int64)
        n_rows = n_docs = total_len = 0
        for batch in source:
            df += np.bincount(batch.term_ids, minlength=n_terms)
            n_rows += len(batch)
            # N and avgdl count only documents with at least one term, as Lucene's docCount does
            n_docs += int(np.count_nonzero(batch.row_nnz()))
            total_len += int(batch.weights.astype(np.int64).sum())
        if n_rows > n_docs:
            logger.warning(
                "%d document(s) have no terms after analysis; they can never match", n_rows - n_docs
            )
        return CorpusStats(n_docs, df, total_len)

    def finish(self, stats: CorpusStats | None) -> Finish:
        if stats is None:
            raise ValueError("BM25 impacts need the corpus statistics (df, N, avgdl)")
        return Finish(reweight=BM25Impacts(stats.idf(), max(stats.avgdl, 1e-9), self.cfg.k1, self.cfg.b))


@dataclass(frozen=True)
class BM25Impacts:
    """Term-frequency rows -> BM25 impacts, given the corpus IDF (float64[n_terms]) and avgdl."""

    idf: np.ndarray
    avgdl: float
    k1: float
    b: float

    def __call__(self, tf: SparseBatch) -> SparseBatch:
        lengths = np.repeat(row_lengths(tf), tf.row_nnz())
        tf64 = tf.weights.astype(np.float64)
        weights = bm25_impacts(tf64, lengths, self.idf[tf.term_ids], self.avgdl, self.k1, self.b)
        return SparseBatch(tf.indptr, tf.term_ids, weights)


def legacy_bm25(section: dict[str, Any]) -> dict[str, Any]:
    """An index's ``bm25`` meta section, completed for indexes written before a key existed: such an
    index kept every token (``min_length`` 1) and stemmed every token (``porter_min_stem`` 1), whatever
    today's defaults are, so its queries are analyzed as its documents were."""
    return {"min_length": 1, "porter_min_stem": 1, **section}


class BM25QueryEncoder:
    """Analyzed query terms weighted by their count; terms outside the index vocabulary are dropped."""

    def __init__(self, cfg: BM25Config, term_index: dict[str, int]):
        self.analyzer = make_analyzer(cfg)
        self.term_index = term_index

    @classmethod
    def from_meta(
        cls, meta: dict[str, Any], term_index: dict[str, int], directory: Path | None = None
    ) -> BM25QueryEncoder:
        return cls(from_dict(BM25Config, legacy_bm25(meta["bm25"]), "encoder.bm25"), term_index)

    def encode(self, texts: Sequence[str]) -> SparseBatch:
        ti = self.term_index
        return rows_to_batch([count_row(Counter(ti[t] for t in self.analyzer(x) if t in ti)) for x in texts])
