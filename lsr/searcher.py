"""Searcher: an index plus the query encoder its meta names, searched by text or by vector."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from lsr.config import SearchConfig
from lsr.data.docstore import DocStore, DocStoreWriter
from lsr.data.trec import Run
from lsr.encoders import QueryEncoder, load_query_encoder
from lsr.errors import LsrError
from lsr.index import Index, SearchParams, SearchResult, SparseBatch
from lsr.timing import latency_summary, numba_threads, time_queries

if TYPE_CHECKING:
    from lsr.dense_stage import DenseStage

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Hit:
    rank: int
    doc_id: str
    score: float
    title: str = ""


class Searcher:
    def __init__(self, index_dir: str | Path):
        self.index = Index.load(index_dir)
        self.docstore = DocStore(index_dir) if DocStoreWriter.files(Path(index_dir)) else None

    @cached_property
    def query_encoder(self) -> QueryEncoder:
        return load_query_encoder(self.index.meta["encoder"], self.index.term_index, self.index.path)

    def encode_texts(self, texts: Sequence[str]) -> SparseBatch:
        return self.query_encoder.encode(texts)

    def encode_vectors(self, vectors: Sequence[Mapping[str, float]]) -> SparseBatch:
        """Pre-encoded queries (term -> weight); terms outside the index vocabulary are dropped, counted
        and reported in one warning."""
        ti = self.index.term_index
        unknown = sum(1 for v in vectors for t in v if t not in ti)
        if unknown:
            hit = sum(1 for v in vectors if any(t not in ti for t in v))
            logger.warning(
                "%d query term(s) in %d of %d queries are not in the index vocabulary; ignored",
                unknown,
                hit,
                len(vectors),
            )
        return SparseBatch.from_rows(
            ([ti[t] for t in v if t in ti], [w for t, w in v.items() if t in ti]) for v in vectors
        )

    def search(
        self,
        text: str,
        k: int = 10,
        params: SearchParams | None = None,
        rerank: str | None = None,
        depth: int = 100,
        fusion: str = "auto",
        fusion_weight: float = -1.0,
    ) -> list[Hit]:
        """One free-text query; hits carry titles when the index has a docstore.

        ``rerank="dense"``: the sparse top ``max(depth, k)`` re-scored by the index's dense stage and
        fused (``fusion``/``fusion_weight``: auto / negative = as stored in the dense meta).
        """
        if not text.strip():
            raise ValueError("empty query: give some text to search for")
        query = self.encode_texts([text])
        if rerank in (None, "none"):
            return self.hits(self.index.search(*query.row(0), k=k, **_kwargs(params)))
        dense = self.require_dense(rerank)
        result = self.index.search(*query.row(0), k=max(k, depth), **_kwargs(params))
        method, weight = dense.resolve_fusion(fusion, fusion_weight)
        emb = dense.encode_queries([text])[0]
        docs, fused = dense.rerank(emb, result.docs, result.scores, method, weight)
        return self.hits(SearchResult(docs[:k], fused[:k].astype(np.float32)))

    @cached_property
    def dense(self) -> DenseStage | None:
        """The index's dense stage (``<index>/dense``), opened on first use; None if it has none."""
        from lsr.dense_stage import DenseStage

        return DenseStage.open(self.index.path, self.index.doc_keys)

    def require_dense(self, rerank: str | None = "dense") -> DenseStage:
        if rerank not in ("dense", "dense-float"):
            raise LsrError(f"rerank {rerank!r} is not one of ['none', 'dense']")
        if self.dense is None:
            raise LsrError(
                f"index {self.index.path} has no dense stage: add one with "
                f"lsr index --dense-for {self.index.path}"
            )
        return self.dense

    @cached_property
    def doc_positions(self) -> dict[str, int]:
        """Internal doc id of each external id."""
        return {key: i for i, key in enumerate(self.index.doc_keys)}

    def rerank_run(
        self,
        qids: Sequence[str],
        texts: Sequence[str],
        sparse_run: Run,
        depth: int = 100,
        fusion: str = "auto",
        fusion_weight: float = -1.0,
        use_float: bool = False,
        query_emb: np.ndarray | None = None,
    ) -> Run:
        """Re-score each query's sparse top ``depth`` with the dense stage and fuse; documents of
        ``sparse_run`` below the depth follow in their sparse order (with lower scores)."""
        dense = self.require_dense()
        method, weight = dense.resolve_fusion(fusion, fusion_weight)
        if query_emb is None:
            query_emb = dense.encode_queries(texts)
        keys = self.index.doc_keys
        run: Run = {}
        for i, qid in enumerate(qids):
            (cands, scores), tail = self.run_head(qid, sparse_run.get(qid), depth)
            docs, fused = dense.rerank(query_emb[i], cands, scores, method, weight, use_float)
            out = {keys[d]: float(f) for d, f in zip(docs.tolist(), fused.tolist(), strict=True)}
            floor = float(fused.min()) - 1.0 if len(fused) else 0.0
            for r, d in enumerate(tail):
                out[d] = floor - r / (len(tail) + 1)
            run[qid] = out
        return run

    def run_head(
        self, qid: str, docs: Mapping[str, float] | None, depth: int
    ) -> tuple[tuple[np.ndarray, np.ndarray], list[str]]:
        """One query's run split at ``depth``: ``((internal ids, scores) of the top, best first), the
        external ids below it in order)``.

        Raises:
            LsrError: a document of the top is not in this index.
        """
        ranked = sorted((docs or {}).items(), key=lambda kv: -kv[1])
        head = ranked[:depth]
        pos = self.doc_positions
        unknown = [d for d, _ in head if d not in pos]
        if unknown:
            raise LsrError(
                f"query {qid}: {len(unknown)} candidate(s) not in index {self.index.path}, e.g. {unknown[:3]}"
            )
        cands = np.fromiter((pos[d] for d, _ in head), dtype=np.int64, count=len(head))
        scores = np.fromiter((s for _, s in head), dtype=np.float64, count=len(head))
        return (cands, scores), [d for d, _ in ranked[depth:]]

    def latency(self, queries: SparseBatch, k: int, params: SearchParams | None = None) -> dict[str, float]:
        """Per-query latency of encoded queries, one by one on this thread (see lsr.timing)."""
        kwargs = _kwargs(params)
        ms = time_queries(lambda i: self.index.search(*queries.row(i), k=k, **kwargs), len(queries))
        return latency_summary(ms)

    def hits(self, result: SearchResult) -> list[Hit]:
        keys = self.index.doc_keys
        hits = []
        pairs = zip(result.docs.tolist(), result.scores.tolist(), strict=True)
        for rank, (d, s) in enumerate(pairs, start=1):
            title = self.docstore.get(d).get("title", "") if self.docstore is not None else ""
            hits.append(Hit(rank, keys[d], s, title))
        return hits

    def batch_throughput(
        self, queries: SparseBatch, k: int, threads: int = 0, params: SearchParams | None = None
    ) -> dict[str, float]:
        """Queries/s of the batch kernel on ``threads`` threads (0: all), after one warm-up batch."""
        kwargs = _kwargs(params)
        self.index.search_batch(
            _slice(queries, 0, min(len(queries), 8)), k=k, threads=threads or None, **kwargs
        )
        start = time.perf_counter()
        self.index.search_batch(queries, k=k, threads=threads or None, **kwargs)
        seconds = time.perf_counter() - start
        return {
            "threads": threads or numba_threads(),
            "seconds": seconds,
            "qps": len(queries) / max(seconds, 1e-9),
        }

    def run(
        self,
        qids: Sequence[str],
        queries: SparseBatch,
        k: int,
        threads: int = 0,
        batch_size: int = 1024,
        progress: bool = False,
        params: SearchParams | None = None,
    ) -> Run:
        """Search encoded queries in batches; return a run ``{qid: {doc_id: score}}`` in rank order."""
        if len(qids) != len(queries):
            raise ValueError(f"{len(qids)} query ids for {len(queries)} encoded queries")
        empty = int(np.count_nonzero(queries.row_nnz() == 0))
        if empty:
            logger.warning(
                "%d of %d queries have no term in the index vocabulary; they return nothing", empty, len(qids)
            )
        keys = self.index.doc_keys
        run: Run = {}
        bar = tqdm(total=len(qids), desc="search", unit="q", disable=not progress)
        for start in range(0, len(qids), batch_size):
            sub = _slice(queries, start, min(start + batch_size, len(qids)))
            results = self.index.search_batch(sub, k=k, threads=threads or None, **_kwargs(params))
            for qid, res in zip(qids[start : start + len(sub)], results, strict=True):
                docs, scores = res.docs.tolist(), res.scores.tolist()
                run[qid] = {keys[d]: float(s) for d, s in zip(docs, scores, strict=True)}
            bar.update(len(sub))
        bar.close()
        return run

    def encode_query_texts(self, queries: Mapping[str, str]) -> tuple[list[str], SparseBatch]:
        """``(query ids, encoded queries)``; empty texts are warned about once (they return nothing)."""
        blank = [qid for qid, text in queries.items() if not text.strip()]
        if blank:
            logger.warning(
                "%d empty query text(s) (e.g. query id %r); they return nothing", len(blank), blank[0]
            )
        qids = list(queries)
        return qids, self.encode_texts([queries[q] for q in qids])

    def run_texts(
        self,
        queries: Mapping[str, str],
        k: int,
        threads: int = 0,
        batch_size: int = 1024,
        progress: bool = False,
    ) -> Run:
        return self.run(*self.encode_query_texts(queries), k, threads, batch_size, progress)


def search_params(cfg: SearchConfig) -> SearchParams:
    """The index search parameters of a config's ``search`` section."""
    return SearchParams(cfg.mode, cfg.alpha, cfg.beta)


def _kwargs(params: SearchParams | None) -> dict:
    if params is None:
        return {}
    return {"mode": params.mode, "alpha": params.alpha, "beta": params.beta}


def _slice(batch: SparseBatch, start: int, end: int) -> SparseBatch:
    lo, hi = batch.indptr[start], batch.indptr[end]
    return SparseBatch(batch.indptr[start : end + 1] - lo, batch.term_ids[lo:hi], batch.weights[lo:hi])
