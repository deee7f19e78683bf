"""The one retrieval path: a batch of queries and a :class:`Plan` in, ranked internal doc ids out.

    searcher = Searcher("indexes/scifact")
    plan = Plan(k=10, rerank="dense", depth=100)
    results = searcher.search_batch(Queries(texts=["vitamin d", "coffee"]), plan)
    run = searcher.to_run(["q1", "q2"], results)          # external ids only at the edge
    hits = searcher.hits(results[0])                      # rank, doc id, score, title

A batch travels encode -> first stage -> optional re-rank, each step a method:

* **encode** fills what the plan needs: the sparse query vectors (the index's own query encoder) and
  the dense embeddings (the dense stage's model), under the encoder's thread-safety rule;
* **first stage**: ``sparse`` (the index kernels: exact / safe / approx, batch kernel on
  ``threads``), ``dense`` / ``dense-float`` (a flat scan of the dense stage's PQ codes or float
  vectors) or ``candidates`` (each query's given candidates scored by the index; candidates that
  share no term with the query sink below the matched ones in their given order);
* **re-rank** (``dense`` / ``dense-float``): the first stage's top ``depth`` re-scored by the dense
  stage and fused (lsr.dense.fusion); the rest follow in first-stage order, below.

Results are :class:`lsr.index.SearchResult` in internal doc ids, best first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray
from tqdm.auto import tqdm

from lsr.config import SearchConfig
from lsr.data.docstore import DocStore, DocStoreWriter
from lsr.data.trec import Run
from lsr.dense.fusion import FUSION_METHODS
from lsr.dense.stage import DenseStage
from lsr.encoders import QueryEncoder, load_query_encoder, plus, query_idf
from lsr.errors import LsrError
from lsr.index import Index, SearchParams, SearchResult, SparseBatch, max_threads
from lsr.index.keys import KeyPositions
from lsr.index.segments import SegmentedIndex, open_index
from lsr.index.shards import ShardedIndex
from lsr.index.sparse import concat
from lsr.index.topk import top_k
from lsr.timing import latency_summary, time_queries

logger = logging.getLogger(__name__)

FIRST_STAGES = ("sparse", "dense", "dense-float", "candidates")
RERANKS = ("none", "dense", "dense-float")
MODES = ("exact", "safe", "approx")
# Query encoders that may run on several threads at once. Others encode under one lock per searcher:
# bm25 and a model of word terms (``terms: words``; PyStemmer's stemmer object is not thread-safe) and
# the dense model (its Hugging Face tokenizer call reconfigures the shared Rust tokenizer's truncation on
# every call).
THREAD_SAFE_ENCODERS = ("splade", "unicoil", "inference-free")

T = TypeVar("T")


@dataclass(frozen=True)
class Plan:
    """How a batch of queries is answered; checked on construction (errors name the bad value).

    ``k`` results per query. ``first_stage``: see the module docstring. ``mode`` / ``alpha`` /
    ``beta`` / ``budget``: the sparse kernels (lsr.index.SearchParams; ``budget``: approx's documents
    scored per query at most, 0: none). ``rerank``: none, dense (PQ codes) or
    dense-float (stored float vectors) re-scoring of the first stage's top ``depth`` (the first stage
    fetches ``max(k, depth)``). ``fusion`` / ``fusion_weight``: "auto" / negative take the values
    stored in the dense meta. ``threads`` (0: all cores) and ``batch_size``: the sparse batch kernel.
    ``filter``: a metadata filter (lsr.index.fields: term, terms, range, exists, and/or/not) applied
    inside the sparse kernels (first stage ``sparse`` only). ``offset`` (paging, "from"): skip that
    many results; ranks ``offset + 1 .. offset + k`` come back, in the one order (score desc, then doc
    id asc), so consecutive pages never repeat a document.
    """

    k: int = 10
    first_stage: str = "sparse"
    mode: str = "exact"
    alpha: float = 1.0
    beta: float = 1.0
    budget: int = 0
    rerank: str = "none"
    depth: int = 100
    fusion: str = "auto"
    fusion_weight: float = -1.0
    threads: int = 0
    batch_size: int = 1024
    offset: int = 0
    filter: Any = None

    def __post_init__(self) -> None:
        _check_int("k", self.k, 1)
        _check_int("offset", self.offset, 0)
        if self.filter is not None and self.first_stage != "sparse":
            raise ValueError(
                f"a filter applies to the sparse first stage, not first_stage {self.first_stage!r}"
            )
        _check_choice("first_stage", self.first_stage, FIRST_STAGES)
        _check_choice("rerank", self.rerank, RERANKS)
        _check_int("depth", self.depth, 1)
        _check_choice("fusion", self.fusion, ("auto", *FUSION_METHODS))
        if not isinstance(self.fusion_weight, int | float) or not self.fusion_weight <= 1:
            raise ValueError(
                f"fusion_weight {self.fusion_weight!r} must lie in [0, 1] (or be negative: the stored weight)"
            )
        _check_int("threads", self.threads, 0)
        _check_int("batch_size", self.batch_size, 1)
        if self.rerank != "none" and self.first_stage not in ("sparse", "candidates"):
            raise ValueError(
                f"rerank {self.rerank!r} re-scores sparse candidates; first_stage {self.first_stage!r} "
                "is dense already (use rerank 'none')"
            )
        _ = self.params  # mode, alpha, beta, budget: the index's own checks

    @classmethod
    def from_config(cls, search: SearchConfig, **overrides: Any) -> Plan:
        """The plan of a config's ``search`` section (``rerank_depth`` is ``depth``), with overrides."""
        plan = cls(
            k=search.k,
            mode=search.mode,
            alpha=search.alpha,
            beta=search.beta,
            budget=search.budget,
            rerank=search.rerank,
            depth=search.rerank_depth,
            fusion=search.fusion,
            fusion_weight=search.fusion_weight,
            threads=search.threads,
            batch_size=search.batch_size,
        )
        return dataclasses.replace(plan, **overrides)

    @property
    def params(self) -> SearchParams:
        return SearchParams(self.mode, self.alpha, self.beta, self.budget)

    @property
    def fetch(self) -> int:
        """Results the first stage returns: ``max(offset + k, depth)`` with a re-rank, else ``offset + k``."""
        end = self.offset + self.k
        return max(end, self.depth) if self.rerank != "none" else end

    def kernel_kwargs(self) -> dict[str, Any]:
        kwargs = {"mode": self.mode, "alpha": self.alpha, "beta": self.beta, "filter": self.filter}
        return {**kwargs, "budget": self.budget} if self.budget else kwargs


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} = {value!r} must be an integer >= {low}")


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} {value!r} is not one of {list(choices)}")


@dataclass
class Queries:
    """A batch of queries: texts and/or encoded forms; :meth:`Searcher.encode` fills what a plan
    needs from the texts. ``candidates``: internal doc ids per query, best first (first_stage
    "candidates")."""

    texts: list[str] | None = None
    sparse: SparseBatch | None = None
    dense: np.ndarray | None = None
    candidates: list[np.ndarray] | None = None

    def __len__(self) -> int:
        for part in (self.texts, self.sparse, self.dense, self.candidates):
            if part is not None:
                return len(part)
        return 0

    def __post_init__(self) -> None:
        sizes = {
            name: len(part)
            for name, part in vars(self).items()
            if part is not None and name in ("texts", "sparse", "dense", "candidates")
        }
        if len(set(sizes.values())) > 1:
            raise ValueError(f"the parts of a query batch differ in length: {sizes}")

    def slice(self, start: int, end: int) -> Queries:
        return Queries(
            None if self.texts is None else self.texts[start:end],
            None if self.sparse is None else self.sparse.slice(start, end),
            None if self.dense is None else self.dense[start:end],
            None if self.candidates is None else self.candidates[start:end],
        )

    @staticmethod
    def concat(parts: Sequence[Queries]) -> Queries:
        """One batch of several (each part holding the same kinds of forms)."""
        if len(parts) == 1:  # one query (a service request): nothing to join
            return parts[0]

        def joined(name: str) -> list | None:
            values = [getattr(p, name) for p in parts]
            return None if not values or any(v is None for v in values) else values

        texts, sparse, dense, cands = (joined(n) for n in ("texts", "sparse", "dense", "candidates"))
        return Queries(
            None if texts is None else [t for part in texts for t in part],
            None if sparse is None else concat(sparse),
            None if dense is None else np.concatenate(dense),
            None if cands is None else [c for part in cands for c in part],
        )


@dataclass(frozen=True)
class Hit:
    rank: int
    doc_id: str
    score: float
    title: str = ""
    fields: dict[str, str] = field(default_factory=dict)


class Searcher:
    """An index, its query encoder and (when it has one) its dense stage, searched through plans."""

    def __init__(self, index_dir: str | Path | Index):
        self.index: Index = index_dir if isinstance(index_dir, Index) else open_index(index_dir)
        self.docstore = _docstore(self.index)
        self._open_lock = threading.Lock()  # lazy opening of the encoders and the dense stage
        encoder = self.index.meta.get("encoder", {})
        thread_safe = encoder.get("name") in THREAD_SAFE_ENCODERS and encoder.get("terms") != "words"
        self._sparse_lock: Any = contextlib.nullcontext() if thread_safe else threading.Lock()
        self._dense_lock = threading.Lock()
        self._lazy: dict[str, Any] = {}

    def _once(self, name: str, make: Callable[[], T]) -> T:
        """``make()`` run once per searcher, also when several threads ask at the same time."""
        if name not in self._lazy:
            with self._open_lock:
                if name not in self._lazy:
                    self._lazy[name] = make()
        return self._lazy[name]

    # --- the parts: encoders, dense stage, ids -----------------------------------------------------

    @property
    def query_encoder(self) -> QueryEncoder:
        return self._once("query_encoder", self._load_query_encoder)

    def _load_query_encoder(self) -> QueryEncoder:
        """The index's query encoder; one that can leave out the terms with no postings here (they
        cannot score) is told which terms have postings."""
        encoder = load_query_encoder(
            self.index.meta["encoder"], self.index.term_index, self.index.encoder_dir
        )
        restrict = getattr(encoder, "restrict_terms", None)
        if restrict is not None:
            restrict(np.flatnonzero(self.index.doc_freq() > 0))
        return encoder

    @property
    def dense(self) -> DenseStage | None:
        """The index's dense stage (``<index>/dense``), opened on first use; None if it has none, or if the
        index is live (its documents changed since the stage was built: no dense stage over segments)."""
        if isinstance(self.index, (SegmentedIndex, ShardedIndex)):  # no dense stage over shards either
            return None
        return self._once("dense", lambda: DenseStage.open(self.index.path, self.index.doc_keys))

    def require_dense(self, what: str = "dense") -> DenseStage:
        """The dense stage, for a first stage or re-rank named ``what``.

        Raises:
            LsrError: the index has none, or ``dense-float`` and it keeps no float vectors.
        """
        if self.dense is None:
            raise LsrError(
                f"index {self.index.path} has no dense stage: add one with "
                f"lsr index --dense-for {self.index.path}"
            )
        if what == "dense-float" and self.dense.codes.vectors is None:
            raise LsrError(
                f"{self.dense.codes.path} keeps no float vectors: rebuild with --keep-float "
                "(dense.keep_float) to use dense-float"
            )
        return self.dense

    def check(self, plan: Plan) -> None:
        """Fail before any work when the index cannot answer ``plan`` (no dense stage or float vectors)."""
        for what in (plan.first_stage, plan.rerank):
            if what in ("dense", "dense-float"):
                self.require_dense(what)

    @property
    def doc_positions(self) -> KeyPositions:
        """Internal doc id of each external id (the last one of an id the index holds twice)."""
        return self._once("doc_positions", lambda: KeyPositions(self.index.doc_keys))

    def internal_ids(self, doc_ids: Sequence[str]) -> np.ndarray:
        """int64 internal ids of external ids, in order.

        Raises:
            LsrError: an id that is not in this index (the message names a few).
        """
        pos = self.doc_positions.find(doc_ids)
        unknown = [d for d, p in zip(doc_ids, pos.tolist(), strict=True) if p < 0]
        if unknown:
            raise LsrError(f"{len(unknown)} doc id(s) not in index {self.index.path}, e.g. {unknown[:3]}")
        return pos

    # --- encode ------------------------------------------------------------------------------------

    def encode_texts(self, texts: Sequence[str]) -> SparseBatch:
        """Sparse query vectors of texts, by the index's own query encoder (under its thread rule),
        weighted by the collection's IDF when the index says so (``encoder.query_idf``)."""
        encoder = self.query_encoder
        with self._sparse_lock:
            batch = encoder.encode(texts)
        table = self.query_idf_table
        return batch if table is None else query_idf.reweight(batch, table)

    @cached_property
    def query_idf_table(self) -> NDArray[np.float32] | None:
        """``idf(t) ** p`` per term id of this index (lsr.encoders.query_idf), None when p is 0; a
        ``bm25+MODEL`` index: the model's power on the model's columns, 1 on BM25's."""
        meta = self.index.meta.get("encoder", {})
        power = float(meta.get("query_idf") or 0.0)
        learned = float(meta.get("learned_query_idf") or 0.0)
        if power == 0 and learned == 0:
            return None
        table = query_idf.idf_table(self.index.doc_freq(), self.index.n_docs, power or learned)
        if learned:
            table[plus.bm25_columns(self.index.term_index)] = 1.0
        return table

    def encode_dense(self, texts: Sequence[str]) -> np.ndarray:
        """Dense query embeddings [n, dim] by the dense stage's model (one encode at a time)."""
        dense = self.require_dense()
        with self._dense_lock:
            return dense.encode_queries(texts)

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

    def encode(self, queries: Queries, plan: Plan) -> Queries:
        """``queries`` with the forms ``plan`` needs filled in from the texts (given forms are kept).

        Raises:
            ValueError: a form is needed and there are no texts to encode it from.
        """
        need_sparse = plan.first_stage in ("sparse", "candidates") and queries.sparse is None
        need_dense = (
            plan.first_stage in ("dense", "dense-float") or plan.rerank != "none"
        ) and queries.dense is None
        if not (need_sparse or need_dense):
            return queries
        texts = queries.texts
        if texts is None:
            what = "sparse vectors" if need_sparse else "dense embeddings"
            raise ValueError(f"the plan needs {what} of the queries: give their texts")
        return dataclasses.replace(
            queries,
            sparse=self.encode_texts(texts) if need_sparse else queries.sparse,
            dense=self.encode_dense(texts) if need_dense else queries.dense,
        )

    # --- first stage -------------------------------------------------------------------------------

    def first_stage(self, queries: Queries, plan: Plan, progress: bool = False) -> list[SearchResult]:
        """The first ``plan.fetch`` results of each query (encoded forms must be present)."""
        if plan.first_stage == "sparse":
            return self._sparse(_need(queries.sparse, "sparse"), plan, progress)
        if plan.first_stage == "candidates":
            return self._candidates(
                _need(queries.sparse, "sparse"), _need(queries.candidates, "candidates"), plan
            )
        emb = _need(queries.dense, "dense")
        use_float = plan.first_stage == "dense-float"
        return [SearchResult(*top_k(self.dense_scan(q, use_float), plan.fetch)) for q in emb]

    def kernel_kwargs(self, plan: Plan) -> dict[str, Any]:
        """The index's search keywords for ``plan``; a budget only on a single index (the live and
        sharded indexes' kernels have none).

        Raises:
            ValueError: a budget on a live or sharded index.
        """
        if plan.budget:
            self.index._check_params(plan.mode, plan.alpha, plan.beta, plan.budget)
        return plan.kernel_kwargs()

    def _sparse(self, queries: SparseBatch, plan: Plan, progress: bool) -> list[SearchResult]:
        kwargs = self.kernel_kwargs(plan)
        if len(queries) == 1:  # one query: the single-query kernel on this thread
            return [self.index.search(*queries.row(0), k=plan.fetch, **kwargs)]
        out: list[SearchResult] = []
        bar = tqdm(total=len(queries), desc="search", unit="q", disable=not progress)
        for start in range(0, len(queries), plan.batch_size):
            sub = queries.slice(start, min(start + plan.batch_size, len(queries)))
            out += self.index.search_batch(sub, k=plan.fetch, threads=plan.threads or None, **kwargs)
            bar.update(len(sub))
        bar.close()
        return out

    def _candidates(
        self, queries: SparseBatch, candidates: list[np.ndarray], plan: Plan
    ) -> list[SearchResult]:
        """Each query's candidates by their index score (exhaustive, nothing pruned); a candidate that
        shares no term with the query gets ``-(rank + 1) / (n + 1)``, keeping its given order below."""
        out = []
        for i, cands in enumerate(candidates):
            result = self.index.search(*queries.row(i), k=max(self.index.n_docs, 1))
            matched = dict(zip(result.docs.tolist(), result.scores.tolist(), strict=True))
            n = len(cands)
            scores = np.array(
                [matched.get(d, -(r + 1) / (n + 1)) for r, d in enumerate(np.asarray(cands).tolist())],
                dtype=np.float64,
            )
            order = np.lexsort((np.arange(n), -scores))[: plan.fetch]
            out.append(SearchResult(np.asarray(cands, dtype=np.int64)[order], scores[order]))
        return out

    def dense_scan(self, query: np.ndarray, use_float: bool = False) -> np.ndarray:
        """float32 dense scores of every document for one query embedding (PQ codes or float vectors)."""
        dense = self.require_dense("dense-float" if use_float else "dense")
        if use_float:
            return np.asarray(dense.codes.vectors @ query, dtype=np.float32)
        return dense.codes.scan(query)

    # --- re-rank -----------------------------------------------------------------------------------

    def rerank(self, queries: Queries, results: list[SearchResult], plan: Plan) -> list[SearchResult]:
        """Each result's top ``plan.depth`` re-scored by the dense stage and fused (float64 scores); the
        rest follow in their order below the lowest fused score (``floor - r / (len(tail) + 1)``); cut
        to ``plan.k``. ``rerank="none"``: the results cut to ``plan.k``."""
        page = slice(plan.offset, plan.offset + plan.k)
        if plan.rerank == "none":  # a first page no longer than k is the result itself
            return [
                r
                if plan.offset == 0 and len(r.docs) <= plan.k
                else dataclasses.replace(r, docs=r.docs[page], scores=r.scores[page])
                for r in results
            ]
        dense = self.require_dense(plan.rerank)
        method, weight = dense.resolve_fusion(plan.fusion, plan.fusion_weight)
        emb = _need(queries.dense, "dense")
        use_float = plan.rerank == "dense-float"
        out = []
        for i, result in enumerate(results):
            head, tail = result.docs[: plan.depth], result.docs[plan.depth :]
            scores = np.asarray(result.scores[: plan.depth], dtype=np.float64)
            docs, fused = dense.rerank(emb[i], head, scores, method, weight, use_float)
            floor = float(fused.min()) - 1.0 if len(fused) else 0.0
            below = floor - np.arange(len(tail), dtype=np.float64) / (len(tail) + 1)
            out.append(
                SearchResult(
                    np.concatenate([docs, np.asarray(tail, dtype=np.int64)])[page],
                    np.concatenate([fused, below])[page],
                )
            )
        return out

    # --- the whole path ----------------------------------------------------------------------------

    def search_batch(self, queries: Queries, plan: Plan, progress: bool = False) -> list[SearchResult]:
        """encode -> first stage -> re-rank (or the cut to k) for a batch."""
        queries = self.encode(queries, plan)
        return self.rerank(queries, self.first_stage(queries, plan, progress), plan)

    def search(self, text: str, plan: Plan) -> SearchResult:
        """One free-text query.

        Raises:
            ValueError: an empty text.
        """
        if not text.strip():
            raise ValueError("empty query: give some text to search for")
        return self.search_batch(Queries(texts=[text]), plan)[0]

    # --- the edge: external ids --------------------------------------------------------------------

    def to_run(self, qids: Sequence[str], results: Sequence[SearchResult]) -> Run:
        """A run ``{qid: {doc_id: score}}`` in rank order."""
        if len(qids) != len(results):
            raise ValueError(f"{len(qids)} query ids for {len(results)} results")
        keys = self.index.doc_keys
        return {
            qid: {keys[d]: float(s) for d, s in zip(r.docs.tolist(), r.scores.tolist(), strict=True)}
            for qid, r in zip(qids, results, strict=True)
        }

    def hits(self, result: SearchResult, fields: Sequence[str] = ("title",), offset: int = 0) -> list[Hit]:
        """Ranked hits with external ids, scores as float32 values, and the docstore ``fields`` (when
        the index has a docstore; ``title`` also goes to ``Hit.title``); ranks start at ``offset + 1``
        (a page of a paged plan)."""
        keys = self.index.doc_keys
        store = self.docstore if fields else None
        hits = []
        scores = np.asarray(result.scores).astype(np.float32).tolist()
        for rank, (d, s) in enumerate(zip(result.docs.tolist(), scores, strict=True), start=offset + 1):
            values = store.strings(d, fields) if store is not None else {}
            hits.append(Hit(rank, keys[d], s, values.get("title", ""), values))
        return hits

    # --- timing (lsr search --stats) ---------------------------------------------------------------

    def latency(self, queries: SparseBatch, plan: Plan) -> dict[str, float]:
        """Per-query latency of the sparse kernel on encoded queries, one by one on this thread."""
        kwargs = self.kernel_kwargs(plan)
        ms = time_queries(lambda i: self.index.search(*queries.row(i), k=plan.k, **kwargs), len(queries))
        return latency_summary(ms)

    def batch_throughput(self, queries: SparseBatch, plan: Plan) -> dict[str, float]:
        """Queries/s of the batch kernel on ``plan.threads`` threads (0: all), after one warm-up batch."""
        kwargs, threads = self.kernel_kwargs(plan), plan.threads or None
        self.index.search_batch(queries.slice(0, min(len(queries), 8)), k=plan.k, threads=threads, **kwargs)
        start = time.perf_counter()
        self.index.search_batch(queries, k=plan.k, threads=threads, **kwargs)
        seconds = time.perf_counter() - start
        return {
            "threads": plan.threads or max_threads(),
            "seconds": seconds,
            "qps": len(queries) / max(seconds, 1e-9),
        }


def warn_empty(qids: Sequence[str], queries: Queries) -> None:
    """Warn once about empty query texts and about encoded queries with no index term (both return
    nothing)."""
    blank = [qid for qid, text in zip(qids, queries.texts or [], strict=False) if not text.strip()]
    if blank:
        logger.warning("%d empty query text(s) (e.g. query id %r); they return nothing", len(blank), blank[0])
    if queries.sparse is not None:
        empty = int(np.count_nonzero(queries.sparse.row_nnz() == 0))
        if empty:
            logger.warning(
                "%d of %d queries have no term in the index vocabulary; they return nothing", empty, len(qids)
            )


class SegmentDocStore:
    """The docstores of a live index's segments (or a sharded index's shards), by global internal doc
    id (empty fields for a segment without one)."""

    def __init__(self, index: SegmentedIndex | ShardedIndex):
        self.index = index
        self.stores = [DocStore(s.path) if DocStoreWriter.files(s.path) else None for s in index.segments]

    def get(self, doc: int) -> dict[str, Any]:
        i, local = self.index.segment_of(doc)
        store = self.stores[i]
        return store.get(local) if store is not None else {}

    def strings(self, doc: int, fields: Sequence[str]) -> dict[str, Any]:
        """``DocStore.strings`` of a global doc id (empty strings for a segment without a docstore)."""
        i, local = self.index.segment_of(doc)
        store = self.stores[i]
        return store.strings(local, fields) if store is not None else {f: "" for f in fields}


def _docstore(index: Index) -> DocStore | SegmentDocStore | None:
    if isinstance(index, (SegmentedIndex, ShardedIndex)):
        return SegmentDocStore(index)
    return DocStore(index.path) if DocStoreWriter.files(index.path) else None


def _need(part: T | None, name: str) -> T:
    if part is None:
        raise ValueError(
            f"the queries carry no {name} form: encode them for the plan first (Searcher.encode)"
        )
    return part
