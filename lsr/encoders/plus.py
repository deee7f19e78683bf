"""BM25 plus a learned model in one sparse vector: ``--encoder bm25+unicoil`` (or ``bm25+splade``,
``bm25+inference-free``).

A document's vector is the learned model's vector over the model's terms beside its BM25 impacts over
analyzed terms, which the vocabulary names ``bm25:TERM`` (so a wordpiece ``cell``, or a word-terms
uniCOIL's ``cell``, and BM25's ``cell`` stay two terms). :class:`Columns` maps each part's own term ids
to the joint ones: a fixed model vocabulary first, at its own ids, then the BM25 terms in order of first
appearance; a vocabulary that grows with the corpus (a model of word terms, :mod:`lsr.encoders.words`)
interleaves with BM25's, each batch's new model terms before its new BM25 terms. A query's vector is
``model_weight`` x the model's query vector beside BM25's bag of words. One dot product over one index
is therefore

    score(q, d) = BM25(q, d) + model_weight x learned(q, d)

exactly (safe mode and block-max pruning apply as to any index), where a fusion of two result lists
would see only each list's top-k. The weight (``encoder.plus.model_weight``, set at index time) lives
on the query side, in the index meta: documents keep the model's and BM25's own weights.

With the model's ``encoder.query_idf`` p > 0 (``learned_query_idf`` in the meta) the searcher
multiplies the model's query columns, not BM25's, by idf(t)^p of the index, as for the model alone.

The learned part never needs corpus statistics except an inference-free model without its own query
table (refused: it would need a second pass over the texts); the BM25 part gets them from the written
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
from lsr.errors import ConfigError
from lsr.index.sparse import PTR_DTYPE, TERM_DTYPE, WEIGHT_DTYPE, SparseBatch

PREFIX = "bm25:"  # the vocabulary's name for an analyzed BM25 term


def split_columns(batch: SparseBatch, high: np.ndarray, local: np.ndarray) -> tuple[SparseBatch, SparseBatch]:
    """Row for row, the entries whose term is not ``high`` and those whose term is, each term id
    replaced by ``local[id]`` (its id within its part). ``high``: bool[n_terms]; ``local``: int[n_terms],
    increasing within each part (so each part's rows stay ascending)."""
    is_high = high[batch.term_ids]
    ptr_high = np.concatenate([[0], np.cumsum(is_high, dtype=np.int64)])[batch.indptr]
    ptr_low = batch.indptr - ptr_high
    local_ids = local[batch.term_ids].astype(TERM_DTYPE)
    low_part = SparseBatch(ptr_low.astype(PTR_DTYPE), local_ids[~is_high], batch.weights[~is_high])
    return low_part, SparseBatch(ptr_high.astype(PTR_DTYPE), local_ids[is_high], batch.weights[is_high])


def join_columns(
    low: SparseBatch, high: SparseBatch, low_ids: np.ndarray, high_ids: np.ndarray
) -> SparseBatch:
    """Row ``i`` = the entries of ``low``'s and ``high``'s rows ``i``, their term ids mapped through
    ``low_ids`` and ``high_ids`` (which never share an id), in ascending order."""
    if len(low) != len(high):
        raise ValueError(f"join_columns: {len(low)} rows beside {len(high)}")
    rows = np.concatenate([np.repeat(np.arange(len(low)), low.row_nnz()),
                           np.repeat(np.arange(len(high)), high.row_nnz())])  # fmt: skip
    term_ids = np.concatenate([low_ids[low.term_ids], high_ids[high.term_ids]]).astype(np.int64)
    order = np.lexsort((term_ids, rows))
    weights = np.concatenate([low.weights, high.weights]).astype(WEIGHT_DTYPE)[order]
    return SparseBatch(low.indptr + high.indptr, term_ids[order].astype(TERM_DTYPE), weights)


class Columns:
    """The joint vocabulary of a ``bm25+MODEL`` index: the model's terms and the ``bm25:`` terms, each
    part's local ids mapped to joint ids in order of first appearance (a fixed model vocabulary: its
    terms first, at their own ids, then the BM25 terms)."""

    def __init__(self) -> None:
        self.vocab: list[str] = []
        self.ids = {"model": np.zeros(0, np.int64), "bm25": np.zeros(0, np.int64)}

    def sync(self, model_vocab: Sequence[str], bm25_vocab: Sequence[str]) -> None:
        """Joint ids for the terms each part added since the last call (the model's first)."""
        for part, vocab, prefix in (("model", model_vocab, ""), ("bm25", bm25_vocab, PREFIX)):
            new = vocab[len(self.ids[part]) :]
            if len(new):
                added = np.arange(len(self.vocab), len(self.vocab) + len(new), dtype=np.int64)
                self.ids[part] = np.concatenate([self.ids[part], added])
                self.vocab += [prefix + t for t in new]

    def join(self, model: SparseBatch, bm25: SparseBatch) -> SparseBatch:
        return join_columns(model, bm25, self.ids["model"], self.ids["bm25"])

    def split(self, batch: SparseBatch) -> tuple[SparseBatch, SparseBatch]:
        """(the model's part, the BM25 part) over their own ids."""
        high = np.zeros(len(self.vocab), bool)
        high[self.ids["bm25"]] = True
        local = np.zeros(len(self.vocab), np.int64)
        for part in ("model", "bm25"):
            local[self.ids[part]] = np.arange(len(self.ids[part]))
        return split_columns(batch, high, local)


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
        self.model = learned(learned_config(cfg, learned_name))
        if self.model.stats_from is not None:
            raise ConfigError(
                f"--encoder {self.name}: the model at {cfg.model or '(default)'} needs a corpus pass of "
                f"its own ({self.model.stats_from}); give it a query table (idf.json), or use "
                f"{learned_name} alone"
            )
        self.bm25 = BM25Encoder(cfg)
        self.columns = Columns()
        self.columns.sync(self.model.vocab, [])
        self.read_ahead = self.model.read_ahead

    @property
    def vocab(self) -> list[str]:
        return self.columns.vocab

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
        model, bm25 = self.model.encode(texts), self.bm25.encode(texts)
        self.columns.sync(self.model.vocab, self.bm25.vocab)
        return self.columns.join(model, bm25)

    def statistics(self, source: Iterable[SparseBatch]) -> CorpusStats:
        return self.bm25.statistics(self.columns.split(batch)[1] for batch in source)

    def finish(self, stats: CorpusStats | None) -> Finish:
        impacts = self.bm25.finish(stats).reweight
        assert impacts is not None  # BM25 always reweights

        def reweight(batch: SparseBatch) -> SparseBatch:
            learned, tf = self.columns.split(batch)
            return self.columns.join(learned, impacts(tf))

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
        # each part's terms at their joint ids: the query encoders write those ids directly
        model_terms = {t: i for t, i in term_index.items() if not t.startswith(PREFIX)}
        bm25_terms = {t[len(PREFIX) :]: i for t, i in term_index.items() if t.startswith(PREFIX)}
        self.identity = np.arange(len(term_index), dtype=np.int64)
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
        return join_columns(learned, self.bm25.encode(texts), self.identity, self.identity)
