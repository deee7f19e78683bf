"""BM25 plus a learned model in one sparse vector: ``--encoder bm25+unicoil`` (or ``bm25+splade``,
``bm25+inference-free``).

A document's vector is the learned model's vector over the model's vocabulary, followed by its BM25
impacts over analyzed terms, which the vocabulary names ``bm25:TERM`` (so a wordpiece ``cell`` and the
stemmed word ``cell`` stay two terms). A query's vector is ``model_weight`` x the model's query vector,
followed by BM25's bag of words. One dot product over one index is therefore

    score(q, d) = BM25(q, d) + model_weight x learned(q, d)

exactly (safe mode and block-max pruning apply as to any index), where a fusion of two result lists
would see only each list's top-k. The weight (``encoder.plus.model_weight``, set at index time) lives
on the query side, in the index meta: documents keep the model's and BM25's own weights.

With the model's ``encoder.query_idf`` p > 0 (``learned_query_idf`` in the meta) the searcher
multiplies the model's query columns, not BM25's, by idf(t)^p of the index, as for the model alone.

The learned part never needs corpus statistics except an inference-free model without its own query
table (refused: it would need a second pass over the texts). A uniCOIL of word terms
(:mod:`lsr.encoders.words`) is refused too: its vocabulary grows with the corpus, where BM25's columns
follow the model's fixed ones; the BM25 part gets them from the written
term frequencies, as plain BM25 does (:mod:`lsr.encoders.bm25`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lsr.config import EncoderConfig, PlusConfig, from_dict
from lsr.encoders.base import CorpusEncoder, CorpusStats, Finish, QueryEncoder
from lsr.encoders.bm25 import BM25Encoder, BM25QueryEncoder
from lsr.encoders.unicoil import writes_words
from lsr.encoders.words import TERMS_FILE
from lsr.errors import ConfigError
from lsr.index.sparse import PTR_DTYPE, TERM_DTYPE, WEIGHT_DTYPE, SparseBatch

PREFIX = "bm25:"  # the vocabulary's name for an analyzed BM25 term


def split_columns(batch: SparseBatch, first: int) -> tuple[SparseBatch, SparseBatch]:
    """``(terms < first, terms >= first shifted down by first)``, row for row."""
    high = batch.term_ids >= first
    ptr_high = np.concatenate([[0], np.cumsum(high, dtype=np.int64)])[batch.indptr]
    ptr_low = batch.indptr - ptr_high
    low_part = SparseBatch(ptr_low.astype(PTR_DTYPE), batch.term_ids[~high], batch.weights[~high])
    shifted = (batch.term_ids[high] - first).astype(TERM_DTYPE)
    return low_part, SparseBatch(ptr_high.astype(PTR_DTYPE), shifted, batch.weights[high])


def join_columns(low: SparseBatch, high: SparseBatch, first: int) -> SparseBatch:
    """Row ``i`` = ``low``'s row ``i`` then ``high``'s row ``i`` with its term ids shifted up by ``first``
    (ascending when ``low``'s ids are below ``first``)."""
    if len(low) != len(high):
        raise ValueError(f"join_columns: {len(low)} rows beside {len(high)}")
    rows = np.concatenate([np.repeat(np.arange(len(low)), low.row_nnz()),
                           np.repeat(np.arange(len(high)), high.row_nnz())])  # fmt: skip
    order = np.argsort(rows, kind="stable")  # each row's low entries, then its high entries
    term_ids = np.concatenate([low.term_ids, high.term_ids.astype(np.int64) + first])[order]
    weights = np.concatenate([low.weights, high.weights]).astype(WEIGHT_DTYPE)[order]
    return SparseBatch(low.indptr + high.indptr, term_ids.astype(TERM_DTYPE), weights)


def learned_config(cfg: EncoderConfig, name: str) -> EncoderConfig:
    """The config of the learned part: ``cfg`` named ``name`` (``splade``, ``unicoil``, ...)."""
    return dataclasses.replace(cfg, name=name)


class PlusEncoder(CorpusEncoder):
    """The document side: the learned model's weights, then BM25 impacts (see the module docstring)."""

    stats_from = "vectors"
    resumable = False  # the BM25 vocabulary grows in memory as documents are read

    def __init__(
        self, cfg: EncoderConfig, learned: Callable[[EncoderConfig], CorpusEncoder], learned_name: str
    ):
        self.name = f"bm25+{learned_name}"
        self.cfg = cfg
        if writes_words(learned_config(cfg, learned_name)):
            raise ConfigError(
                f"--encoder {self.name}: the uniCOIL at {cfg.model} writes word terms ({TERMS_FILE}), a "
                "vocabulary that grows with the corpus, where BM25's terms follow the model's fixed one; "
                f"use {learned_name} alone"
            )
        self.model = learned(learned_config(cfg, learned_name))
        if self.model.stats_from is not None:
            raise ConfigError(
                f"--encoder {self.name}: the model at {cfg.model or '(default)'} needs a corpus pass of "
                f"its own ({self.model.stats_from}); give it a query table (idf.json), or use "
                f"{learned_name} alone"
            )
        self.bm25 = BM25Encoder(cfg)
        self.first = len(self.model.vocab)
        self.read_ahead = self.model.read_ahead

    @property
    def vocab(self) -> list[str]:
        return list(self.model.vocab) + [PREFIX + t for t in self.bm25.vocab]

    def seed_vocab(self, vocab: Sequence[str]) -> None:
        """Start from an existing index's vocabulary (its BM25 terms keep their ids)."""
        self.bm25.seed_vocab([t[len(PREFIX) :] for t in vocab[self.first :]])

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "learned": self.model.describe(),
            "bm25": self.bm25.describe()["bm25"],
            "plus": {"model_weight": self.cfg.plus.model_weight},
            # the model's encoder.query_idf, applied to the model's columns only (lsr.searcher); an index
            # written before this key scored the model's query weights as they are
            "learned_query_idf": getattr(self.model, "query_idf", 0.0),
        }

    def encode(self, texts: Sequence[str]) -> SparseBatch:
        return join_columns(self.model.encode(texts), self.bm25.encode(texts), self.first)

    def statistics(self, source: Iterable[SparseBatch]) -> CorpusStats:
        return self.bm25.statistics(split_columns(batch, self.first)[1] for batch in source)

    def finish(self, stats: CorpusStats | None) -> Finish:
        impacts = self.bm25.finish(stats).reweight
        assert impacts is not None  # BM25 always reweights

        def reweight(batch: SparseBatch) -> SparseBatch:
            learned, tf = split_columns(batch, self.first)
            return join_columns(learned, impacts(tf), self.first)

        return Finish(reweight=reweight, files=self.model.finish(None).files)


def bm25_columns(term_index: dict[str, int]) -> np.ndarray:
    """The term ids of a ``bm25+MODEL`` vocabulary's BM25 terms (``bm25:TERM``)."""
    return np.fromiter((i for t, i in term_index.items() if t.startswith(PREFIX)), np.int64)


class PlusQueryEncoder:
    """The query side: ``model_weight`` x the learned query vector, then BM25's bag of words."""

    learned_query: dict[str, type[QueryEncoder]] = {}  # filled by lsr.encoders (learned name -> class)

    def __init__(self, meta: dict[str, Any], term_index: dict[str, int], directory: Path | None):
        learned_meta = meta["learned"]
        name = learned_meta["name"]
        if name not in self.learned_query:
            raise ConfigError(f"encoder {meta.get('name')!r}: no query encoder for its learned part {name!r}")
        model_terms = {t: i for t, i in term_index.items() if not t.startswith(PREFIX)}
        bm25_terms = {
            t[len(PREFIX) :]: i - len(model_terms) for t, i in term_index.items() if t.startswith(PREFIX)
        }
        self.first = len(model_terms)
        self.model = self.learned_query[name].from_meta(learned_meta, model_terms, directory)
        self.bm25 = BM25QueryEncoder.from_meta(meta, bm25_terms)
        self.weight = from_dict(PlusConfig, meta.get("plus", {}), "encoder.plus").model_weight

    @classmethod
    def from_meta(
        cls, meta: dict[str, Any], term_index: dict[str, int], directory: Path | None = None
    ) -> PlusQueryEncoder:
        return cls(meta, term_index, directory)

    def encode(self, texts: Sequence[str]) -> SparseBatch:
        learned = self.model.encode(texts)
        learned = SparseBatch(
            learned.indptr, learned.term_ids, (learned.weights * self.weight).astype(WEIGHT_DTYPE)
        )
        return join_columns(learned, self.bm25.encode(texts), self.first)
