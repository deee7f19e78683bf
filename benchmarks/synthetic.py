"""A seeded generator of SPLADE-like sparse collections, for benchmarking retrieval engines.

The model
---------
* **Vocabulary**: ``n_terms`` terms named ``t0 .. t{n-1}``. Each term has a popularity
  rank; a seeded permutation maps ranks to term ids, so ids do not encode frequency.
* **Background** (Zipf): a background draw picks the term of rank ``r`` with probability
  proportional to ``1 / (r + 1) ** term_zipf``.
* **Topics**: ``n_topics`` latent topics, each a distribution over ``topic_size`` terms.
  A topic's terms are drawn without replacement with probability proportional to
  ``popularity ** topic_term_bias`` (Gumbel top-k), so popular terms belong to many topics
  and rare ones to few; within a topic, the term at position ``j`` is drawn with
  probability proportional to ``1 / (j + 1) ** topic_zipf``. Topics themselves have
  Zipf-like sizes (``topic_popularity_zipf``).
* **Documents** mix 1 to 3 topics (probabilities ``topics_per_doc``) plus background.
  A document's target length is log-normal with mean ``doc_nnz``; it draws
  ``ceil(oversample * length)`` terms (a fraction ``background_fraction`` from the
  background, the rest from a uniformly chosen topic of its own) and keeps the first
  ``length`` distinct ones, in draw order. A term drawn ``c`` times weighs more.
* **Weights** are ``ln(1 + x)`` (SPLADE's saturation) of a log-normal
  ``x = exp(weight_mu + weight_sigma * z)`` times a specificity factor in [0.35, 1] that
  grows with the term's popularity rank (rare terms weigh more, as in SPLADE) times
  ``1 + 0.5 * ln(c)``; median about 0.5, maximum about 3-4. They are rounded to ``decimals``
  digits, so the JSONL written by :func:`write_collection_jsonl` reads back to exactly
  the same float32 values. All draws use Walker alias tables (O(1) per draw).
* **Queries** pick a source document uniformly and take ``query_len`` terms: a share
  ``query_mix[0]`` of the source's own terms (without replacement, heavier terms first
  more often), ``query_mix[1]`` drawn from the source's topics and ``query_mix[2]`` from the
  background. Source terms weigh ``sqrt(doc weight)`` times noise, the others a smaller
  log-normal weight, so the source and its topical neighbours form the top-k.

Everything is a pure function of the :class:`SyntheticConfig` (``seed`` included):
the topic model, every chunk of ``chunk_docs`` documents and the queries each draw from
their own ``SeedSequence(seed, spawn_key=...)`` stream, so chunks can be made in parallel
threads and the result never depends on scheduling. Changing ``chunk_docs`` changes the
collection. One million documents take about 20-30 s on two cores; the CSR arrays
take ~8 bytes per non-zero (about 1 GB at the default size).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lsr.data.sparse_jsonl import round_weights, write_sparse_jsonl
from lsr.index.sparse import PTR_DTYPE, TERM_DTYPE, SparseBatch, concat

logger = logging.getLogger(__name__)

_STREAM_MODEL, _STREAM_DOCS, _STREAM_QUERIES = 0, 1, 2


@dataclass(frozen=True)
class SyntheticConfig:
    """Every knob of the generator; the defaults give the 1M-document benchmark collection."""

    n_docs: int = 1_000_000
    n_terms: int = 30_000
    n_topics: int = 1_000
    topic_size: int = 400
    doc_nnz: float = 120.0
    doc_nnz_sigma: float = 0.35
    min_doc_nnz: int = 8
    max_doc_nnz: int = 400
    topics_per_doc: tuple[float, ...] = (0.5, 0.3, 0.2)
    background_fraction: float = 0.3
    term_zipf: float = 0.8
    topic_zipf: float = 0.8
    topic_popularity_zipf: float = 0.5
    topic_term_bias: float = 0.5
    oversample: float = 1.6
    weight_mu: float = -0.45
    weight_sigma: float = 0.8
    n_queries: int = 1_000
    query_len: tuple[int, int] = (30, 40)
    query_mix: tuple[float, float, float] = (0.6, 0.25, 0.15)
    query_weight_mu: float = -1.2
    query_weight_sigma: float = 0.5
    decimals: int = 5
    chunk_docs: int = 50_000
    threads: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_docs < 1 or self.n_terms < 1 or self.n_topics < 1:
            raise ValueError("n_docs, n_terms and n_topics must be positive")
        if not 1 <= self.topic_size <= self.n_terms:
            raise ValueError(f"topic_size must lie in [1, n_terms={self.n_terms}], got {self.topic_size}")
        if not 1 <= self.min_doc_nnz <= self.max_doc_nnz <= self.n_terms:
            raise ValueError("need 1 <= min_doc_nnz <= max_doc_nnz <= n_terms")
        if not 0.0 <= self.background_fraction <= 1.0:
            raise ValueError("background_fraction must lie in [0, 1]")
        if len(self.topics_per_doc) < 1 or not math.isclose(sum(self.topics_per_doc), 1.0):
            raise ValueError("topics_per_doc must be probabilities of 1, 2, ... topics summing to 1")
        if not math.isclose(sum(self.query_mix), 1.0) or min(self.query_mix) < 0:
            raise ValueError("query_mix must be three non-negative shares summing to 1")
        if not 1 <= self.query_len[0] <= self.query_len[1]:
            raise ValueError("query_len must be (min, max) with 1 <= min <= max")
        if self.oversample < 1.0 or self.chunk_docs < 1:
            raise ValueError("oversample must be >= 1 and chunk_docs >= 1")

    def describe(self) -> dict[str, Any]:
        return asdict(self)


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _zipf(n: int, exponent: float) -> NDArray[np.float64]:
    p = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
    return p / p.sum()


@dataclass(frozen=True)
class AliasTable:
    """Walker's alias method: O(1) draws from a fixed discrete distribution."""

    prob: NDArray[np.float64]
    alias: NDArray[np.int64]

    @classmethod
    def build(cls, p: NDArray[np.float64]) -> AliasTable:
        n = len(p)
        scaled = p * (n / p.sum())
        prob = np.ones(n, dtype=np.float64)
        alias = np.arange(n, dtype=np.int64)
        small = [i for i in range(n) if scaled[i] < 1.0]
        large = [i for i in range(n) if scaled[i] >= 1.0]
        while small and large:
            s, g = small.pop(), large.pop()
            prob[s], alias[s] = scaled[s], g
            scaled[g] -= 1.0 - scaled[s]
            (small if scaled[g] < 1.0 else large).append(g)
        return cls(prob, alias)

    def draw(self, rng: np.random.Generator, shape: int | tuple[int, ...]) -> NDArray[np.int64]:
        u = rng.random(shape) * len(self.prob)
        i = u.astype(np.int64)
        return np.where(u - i < self.prob[i], i, self.alias[i])


@dataclass(frozen=True)
class TopicModel:
    """The latent structure shared by documents and queries."""

    rank_to_term: NDArray[np.int32]  # popularity rank -> term id
    term_specificity: NDArray[np.float64]  # by term id: weight factor, larger for rare terms
    background: AliasTable  # over popularity ranks
    topic_sizes: AliasTable  # over topics
    topic_terms: NDArray[np.int32]  # [n_topics, topic_size] term ids, most probable first
    topic_ranks: AliasTable  # over positions within a topic

    @classmethod
    def build(cls, cfg: SyntheticConfig) -> TopicModel:
        rng = _rng(cfg.seed, _STREAM_MODEL)
        rank_to_term = rng.permutation(cfg.n_terms).astype(np.int32)
        specificity = np.empty(cfg.n_terms, dtype=np.float64)
        ranks = np.arange(cfg.n_terms, dtype=np.float64)
        specificity[rank_to_term] = 0.35 + 0.65 * np.log1p(ranks) / math.log(max(cfg.n_terms, 2))
        log_pop = -cfg.term_zipf * np.log1p(ranks)
        topic_terms = np.empty((cfg.n_topics, cfg.topic_size), dtype=np.int32)
        for start in range(0, cfg.n_topics, 64):  # Gumbel top-k, 64 topics at a time
            stop = min(start + 64, cfg.n_topics)
            keys = cfg.topic_term_bias * log_pop + rng.gumbel(size=(stop - start, cfg.n_terms))
            top = np.argpartition(-keys, cfg.topic_size - 1, axis=1)[:, : cfg.topic_size]
            order = np.argsort(-np.take_along_axis(keys, top, axis=1), axis=1)
            topic_terms[start:stop] = rank_to_term[np.take_along_axis(top, order, axis=1)]
        return cls(
            rank_to_term,
            specificity,
            AliasTable.build(_zipf(cfg.n_terms, cfg.term_zipf)),
            AliasTable.build(_zipf(cfg.n_topics, cfg.topic_popularity_zipf)),
            topic_terms,
            AliasTable.build(_zipf(cfg.topic_size, cfg.topic_zipf)),
        )

    def background_terms(self, rng: np.random.Generator, n: int) -> NDArray[np.int32]:
        return self.rank_to_term[self.background.draw(rng, n)]

    def topic_draws(self, rng: np.random.Generator, topics: NDArray[np.int64]) -> NDArray[np.int32]:
        """One term from each of ``topics``."""
        return self.topic_terms[topics, self.topic_ranks.draw(rng, len(topics))]


@dataclass
class DocChunk:
    """Documents ``[start, start + len(batch))``: their vectors and topics (-1 pads unused slots)."""

    start: int
    batch: SparseBatch
    topics: NDArray[np.int32]


def _doc_topics(
    cfg: SyntheticConfig, model: TopicModel, rng: np.random.Generator, n: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    n_topics = 1 + np.minimum(
        np.searchsorted(np.cumsum(cfg.topics_per_doc), rng.random(n), side="right"),
        len(cfg.topics_per_doc) - 1,
    )
    topics = model.topic_sizes.draw(rng, (n, len(cfg.topics_per_doc)))
    return n_topics, topics


def _first_distinct(
    row: NDArray[np.int64],
    term: NDArray[np.int64],
    row_start: NDArray[np.int64],
    lengths: NDArray[np.int64],
    n_rows: int,
    n_terms: int,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Per row, the first ``lengths[row]`` distinct terms in draw order, with their draw counts.

    Returns ``(rows, terms, counts)`` sorted by (row, term). One sort of packed
    ``(row, term, position)`` keys finds duplicates and first occurrences together.
    """
    n = len(term)
    pos = np.arange(n, dtype=np.int64) - row_start[row]
    bits = max(1, int(pos.max(initial=0)).bit_length())
    if (n_rows * n_terms) >> (62 - bits):
        raise ValueError("chunk too large to pack (row, term, position) into 64 bits; lower chunk_docs")
    keys = np.sort(((row * n_terms + term) << bits) | pos)
    pair = keys >> bits
    starts = np.flatnonzero(np.concatenate(([True], pair[1:] != pair[:-1])))
    counts = np.diff(np.append(starts, n))
    first_draw = row_start[pair[starts] // n_terms] + (keys[starts] & ((1 << bits) - 1))
    is_first = np.zeros(n, dtype=np.int64)
    is_first[first_draw] = 1
    seen = np.cumsum(is_first)  # distinct terms seen so far, over the whole chunk
    before_row = np.where(row_start > 0, seen[np.maximum(row_start - 1, 0)], 0)
    rows = pair[starts] // n_terms
    keep = seen[first_draw] - before_row[rows] <= lengths[rows]
    return rows[keep], (pair[starts] % n_terms)[keep], counts[keep]


def _make_chunk(cfg: SyntheticConfig, model: TopicModel, index: int) -> DocChunk:
    rng = _rng(cfg.seed, _STREAM_DOCS, index)
    start = index * cfg.chunk_docs
    n = min(cfg.chunk_docs, cfg.n_docs - start)
    sigma = cfg.doc_nnz_sigma
    lengths = np.rint(rng.lognormal(math.log(cfg.doc_nnz) - sigma**2 / 2, sigma, n))
    lengths = np.clip(lengths, cfg.min_doc_nnz, cfg.max_doc_nnz).astype(np.int64)
    n_topics, topics = _doc_topics(cfg, model, rng, n)
    draws = np.ceil(lengths * cfg.oversample).astype(np.int64)
    row_start = np.concatenate(([0], np.cumsum(draws)[:-1]))
    row = np.repeat(np.arange(n, dtype=np.int64), draws)
    slot = (rng.random(len(row)) * n_topics[row]).astype(np.int64)
    term = model.topic_draws(rng, topics[row, slot]).astype(np.int64)
    background = rng.random(len(row)) < cfg.background_fraction
    term[background] = model.background_terms(rng, int(background.sum()))
    rows, terms, counts = _first_distinct(row, term, row_start, lengths, n, cfg.n_terms)
    z = rng.standard_normal(len(terms))
    weights = np.log1p(
        np.exp(cfg.weight_mu + cfg.weight_sigma * z)
        * model.term_specificity[terms]
        * (1.0 + 0.5 * np.log(counts))
    )
    indptr = np.zeros(n + 1, dtype=PTR_DTYPE)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    batch = SparseBatch(indptr, terms.astype(TERM_DTYPE), round_weights(weights, cfg.decimals))
    slots = np.arange(topics.shape[1])[None, :] < n_topics[:, None]
    return DocChunk(start, batch, np.where(slots, topics, -1).astype(np.int32))


def iter_doc_chunks(cfg: SyntheticConfig, model: TopicModel | None = None) -> Iterator[DocChunk]:
    """The documents in chunks of ``cfg.chunk_docs``, in order, made ``cfg.threads`` at a time."""
    model = model or TopicModel.build(cfg)
    n_chunks = -(-cfg.n_docs // cfg.chunk_docs)
    with ThreadPoolExecutor(max_workers=max(1, cfg.threads)) as pool:
        pending = []
        for i in range(n_chunks):
            pending.append(pool.submit(_make_chunk, cfg, model, i))
            if len(pending) > cfg.threads:
                yield pending.pop(0).result()
        for fut in pending:
            yield fut.result()


@dataclass
class SyntheticCollection:
    """Generated documents (in chunks), queries, and where each query came from."""

    config: SyntheticConfig
    chunks: list[DocChunk]
    queries: SparseBatch
    query_source: NDArray[np.int64]  # source document of each query
    model: TopicModel = field(repr=False)
    seconds: float = 0.0

    @property
    def n_docs(self) -> int:
        return self.config.n_docs

    @property
    def n_terms(self) -> int:
        return self.config.n_terms

    @cached_property
    def docs(self) -> SparseBatch:
        """All documents as one batch (a copy: prefer :attr:`batches` for large collections)."""
        return self.chunks[0].batch if len(self.chunks) == 1 else concat([c.batch for c in self.chunks])

    @property
    def batches(self) -> list[SparseBatch]:
        return [c.batch for c in self.chunks]

    @cached_property
    def doc_topics(self) -> NDArray[np.int32]:
        return np.concatenate([c.topics for c in self.chunks])

    @cached_property
    def vocab(self) -> list[str]:
        return term_names(self.config.n_terms)

    @cached_property
    def doc_ids(self) -> list[str]:
        return [f"d{i}" for i in range(self.config.n_docs)]

    @cached_property
    def query_ids(self) -> list[str]:
        return [f"q{i}" for i in range(len(self.queries))]

    def doc_row(self, doc: int) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
        chunk = self.chunks[doc // self.config.chunk_docs]
        return chunk.batch.row(doc - chunk.start)

    def stats(self) -> dict[str, Any]:
        nnz = sum(c.batch.nnz for c in self.chunks)
        return {
            "n_docs": self.n_docs,
            "n_terms": self.n_terms,
            "doc_nnz_avg": nnz / self.n_docs,
            "n_queries": len(self.queries),
            "query_nnz_avg": self.queries.nnz / max(len(self.queries), 1),
            "generate_seconds": round(self.seconds, 3),
        }


def term_names(n_terms: int) -> list[str]:
    return [f"t{i}" for i in range(n_terms)]


def _query_row(
    cfg: SyntheticConfig,
    model: TopicModel,
    rng: np.random.Generator,
    doc_terms: NDArray[np.int32],
    doc_weights: NDArray[np.float32],
    doc_topics: NDArray[np.int32],
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    length = int(rng.integers(cfg.query_len[0], cfg.query_len[1] + 1))
    n_src = min(int(round(cfg.query_mix[0] * length)), len(doc_terms))
    n_topic = int(round(cfg.query_mix[1] * length)) if (doc_topics >= 0).any() else 0
    n_bg = max(length - n_src - n_topic, 0)
    keys = np.log(doc_weights.astype(np.float64)) + rng.gumbel(size=len(doc_terms))
    pick = np.argsort(-keys)[:n_src]  # heavier terms are likelier to be kept
    src_w = np.sqrt(doc_weights[pick].astype(np.float64)) * np.exp(0.2 * rng.standard_normal(n_src))
    own = doc_topics[doc_topics >= 0].astype(np.int64)
    other = np.concatenate(
        [
            model.topic_draws(rng, rng.choice(own, n_topic)) if n_topic else np.zeros(0, np.int32),
            model.background_terms(rng, n_bg),
        ]
    ).astype(np.int64)
    other_w = (
        np.exp(cfg.query_weight_mu + cfg.query_weight_sigma * rng.standard_normal(len(other)))
        * model.term_specificity[other]
    )
    terms = np.concatenate([doc_terms[pick].astype(np.int64), other])
    return terms, np.concatenate([src_w, other_w])


def make_queries(
    cfg: SyntheticConfig, model: TopicModel, collection: SyntheticCollection
) -> tuple[SparseBatch, NDArray[np.int64]]:
    """Queries from source documents (uniform, distinct when there are enough documents)."""
    rng = _rng(cfg.seed, _STREAM_QUERIES)
    sources = rng.choice(cfg.n_docs, size=cfg.n_queries, replace=cfg.n_queries > cfg.n_docs)
    topics = collection.doc_topics
    rows = []
    for doc in sources.tolist():
        terms, weights = _query_row(cfg, model, rng, *collection.doc_row(doc), topics[doc])
        rows.append((terms, weights))
    queries = SparseBatch.from_rows(rows)  # repeated terms are summed
    queries = SparseBatch(queries.indptr, queries.term_ids, round_weights(queries.weights, cfg.decimals))
    return queries, sources.astype(np.int64)


def generate(cfg: SyntheticConfig | None = None) -> SyntheticCollection:
    """Generate the whole collection (documents, then queries) in memory."""
    cfg = cfg or SyntheticConfig()
    start = time.perf_counter()
    model = TopicModel.build(cfg)
    chunks = list(iter_doc_chunks(cfg, model))
    coll = SyntheticCollection(cfg, chunks, SparseBatch.empty(), np.zeros(0, np.int64), model)
    coll.queries, coll.query_source = make_queries(cfg, model, coll)
    coll.seconds = time.perf_counter() - start
    logger.info("synthetic collection: %s", coll.stats())
    return coll


def write_collection_jsonl(coll: SyntheticCollection, folder: str | Path) -> dict[str, Path]:
    """Write ``docs.jsonl`` and ``queries.jsonl`` (sparse-vector JSONL) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"docs": folder / "docs.jsonl", "queries": folder / "queries.jsonl"}
    decimals = coll.config.decimals
    write_sparse_jsonl(
        paths["docs"], coll.doc_ids, coll.batches, coll.vocab, decimals, fixed=True, overwrite=True
    )
    write_sparse_jsonl(
        paths["queries"], coll.query_ids, [coll.queries], coll.vocab, decimals, fixed=True, overwrite=True
    )
    return paths


def term_frequencies(batches: Sequence[SparseBatch], n_terms: int) -> NDArray[np.int64]:
    """Document frequency of each term id."""
    df = np.zeros(n_terms, dtype=np.int64)
    for b in batches:
        df += np.bincount(b.term_ids, minlength=n_terms)
    return df


__all__ = [
    "SyntheticCollection",
    "SyntheticConfig",
    "TopicModel",
    "generate",
    "iter_doc_chunks",
    "make_queries",
    "term_frequencies",
    "term_names",
    "write_collection_jsonl",
]
