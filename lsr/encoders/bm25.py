"""BM25 as a sparse encoder: per (doc, term) impacts, so BM25 runs through the same index.

Document side, Lucene's BM25 (the (k1 + 1) factor is a constant and is left out,
as in Lucene 8+):

    impact(t, d) = idf(t) * tf / (tf + k1 * (1 - b + b * |d| / avgdl))
    idf(t)       = ln(1 + (N - df + 0.5) / (df + 0.5))

Query side: each analyzed query term weighs its count in the query (Anserini's
bag-of-words query). Encoding takes two passes: the first tokenizes and writes
term frequencies shard by shard while counting document lengths; the second,
once df and avgdl are known, rewrites each shard's weights as impacts.
"""

from __future__ import annotations

import logging
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from lsr.analysis import Analyzer
from lsr.config import BM25Config
from lsr.data.corpus import Doc
from lsr.index.sparse import WEIGHT_DTYPE, SparseBatch
from lsr.vectors import VectorWriter

logger = logging.getLogger(__name__)


def make_analyzer(cfg: BM25Config) -> Analyzer:
    return Analyzer(stemmer=cfg.stemmer, stopwords=cfg.stopwords, lowercase=cfg.lowercase)


def bm25_impacts(
    tf: np.ndarray, doc_len: np.ndarray, idf: np.ndarray, avgdl: float, k1: float, b: float
) -> np.ndarray:
    """Vectorized impacts for postings with term frequency ``tf`` in docs of length ``doc_len``."""
    norm = k1 * (1.0 - b + b * doc_len / avgdl)
    return (idf * tf / (tf + norm)).astype(WEIGHT_DTYPE)


class BM25Encoder:
    name = "bm25"

    def __init__(self, cfg: BM25Config):
        self.cfg = cfg
        self.analyzer = make_analyzer(cfg)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "bm25": {k: getattr(self.cfg, k) for k in self.cfg.__dataclass_fields__}}

    def encode_corpus(self, docs: Iterable[Doc], writer: VectorWriter, progress: bool = False) -> list[str]:
        vocab: dict[str, int] = {}
        doc_len = array("q")
        for doc in tqdm(docs, desc="bm25: analyze", unit="doc", disable=not progress):
            counts = Counter(self.analyzer(doc.contents))
            term_ids = np.fromiter((vocab.setdefault(t, len(vocab)) for t in counts), np.int64, len(counts))
            tf = np.fromiter(counts.values(), np.float32, len(counts))
            order = np.argsort(term_ids)
            writer.add(doc.id, term_ids[order], tf[order], doc.title, doc.text)
            doc_len.append(sum(counts.values()))
        self._rewrite_as_impacts(writer, np.frombuffer(doc_len, dtype=np.int64), len(vocab), progress)
        empty = int(np.count_nonzero(np.frombuffer(doc_len, dtype=np.int64) == 0))
        if empty:
            logger.warning("%d document(s) have no terms after analysis; they can never match", empty)
        return list(vocab)

    def _rewrite_as_impacts(
        self, writer: VectorWriter, doc_len: np.ndarray, n_terms: int, progress: bool
    ) -> None:
        # N and avgdl count only documents with at least one term, as Lucene's docCount does
        n_docs = int(np.count_nonzero(doc_len))
        df = np.zeros(n_terms, dtype=np.int64)
        for _, batch in writer.iter_shards():  # one shard in memory at a time
            df += np.bincount(batch.term_ids, minlength=n_terms)
        idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
        avgdl = float(doc_len.sum()) / n_docs if n_docs else 1.0
        first = 0
        for name, batch in tqdm(
            writer.iter_shards(),
            total=len(writer.shards),
            desc="bm25: impacts",
            unit="shard",
            disable=not progress,
        ):
            lengths = np.repeat(doc_len[first : first + len(batch)], batch.row_nnz())
            weights = bm25_impacts(
                batch.weights.astype(np.float64),
                lengths,
                idf[batch.term_ids],
                max(avgdl, 1e-9),
                self.cfg.k1,
                self.cfg.b,
            )
            writer.replace_shard(name, SparseBatch(batch.indptr, batch.term_ids, weights))
            first += len(batch)


class BM25QueryEncoder:
    """Analyzed query terms weighted by their count; terms outside the index vocabulary are dropped."""

    def __init__(self, cfg: BM25Config, term_index: dict[str, int]):
        self.analyzer = make_analyzer(cfg)
        self.term_index = term_index

    def terms(self, text: str) -> list[str]:
        return self.analyzer(text)

    def encode(self, texts: Sequence[str]) -> SparseBatch:
        rows = []
        for text in texts:
            counts = Counter(t for t in self.analyzer(text) if t in self.term_index)
            rows.append(([self.term_index[t] for t in counts], list(counts.values())))
        return SparseBatch.from_rows(rows)
