"""The REST search service: a FastAPI app factory, run by uvicorn (``lsr serve``).

Each index is opened once as a :class:`lsr.searcher.Searcher` (memory-mapped arrays plus the query
encoder its meta.json names, so queries are encoded exactly as the documents were) and warmed up in
the background; ``/readyz`` turns ready when every index is. Searches run on search threads
(``lsr.service.lean.SearchPool``, one per core the process may use; the numba kernels release the
GIL), so the event loop keeps answering health checks while a search runs; a request that takes
longer than ``timeout_s`` is answered 503. The search routes read, parse and validate a well-formed
body on a lean path (``lsr.service.lean``), answered from the service middleware before the router;
every other request gets FastAPI's own handling.

A reload (``POST /v1/indexes/{name}/reload``) opens the new version beside the old one and swaps one
reference; a request holds the version it started with until it is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hmac
import itertools
import json
import logging
import math
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)
from pydantic.json_schema import WithJsonSchema
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message
from uvicorn.supervisors import Multiprocess

from lsr import __version__
from lsr.config import ServiceConfig
from lsr.data.trec import trec_order
from lsr.deadline import Deadline
from lsr.explain import contributions, query_terms
from lsr.index import SearchParams, SearchResult
from lsr.index.search import MAX_K, set_filter_index_bytes
from lsr.index.segments import index_meta
from lsr.index.sparse import SparseBatch
from lsr.searcher import Plan, Queries, Searcher
from lsr.service.batching import EncodeBatcher
from lsr.service.health import HealthServer, Heartbeat
from lsr.service.lean import DirectHandler, SearchPool, make_lean
from lsr.service.metrics import Metrics
from lsr.service.openapi import (
    BODY_ERRORS,
    V1_ERRORS,
    BatchAnswer,
    DeleteAnswer,
    DocAnswer,
    ExplainAnswer,
    Health,
    IndexesAnswer,
    Ready,
    ReloadAnswer,
    SearchAnswer,
    UpsertAnswer,
    error_responses,
    install_openapi,
)
from lsr.service.settings import (
    SETTINGS_ENV,
    ApiKey,
    check_indexes,
    check_reload_path,
    from_env,
    index_roots,
    to_json,
)

logger = logging.getLogger("lsr.service")
access_logger = logging.getLogger("lsr.service.access")

OPEN_PATHS = ("/healthz", "/readyz", "/metrics")  # never need the API key
FIELDS = ("title", "text")
WARMUP_TEXT = "warm up the query encoder"
TIE_OVERFETCH = 0.5  # trec_pages fetches this much past the page end (benchmarks/tie_order_bench.py)
MAX_EXPLAIN = 100  # documents one explain request asks about


class ApiError(Exception):
    """An error answered as ``{"error": {"status", "message"}}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# --- served indexes -------------------------------------------------------------------------------


@dataclass
class ServedIndex:
    """One version of one served index. Immutable once published; a reload publishes a new one."""

    name: str
    path: str
    searcher: Any  # lsr.searcher.Searcher (or an object with the same interface)
    generation: int
    loaded_at: float
    load_seconds: float
    has_dense: bool = False  # the searcher has a dense re-rank stage (``Searcher.dense``)
    # its text queries may be encoded together (a batch-invariant query encoder, lsr.service.batching)
    batch_encode: bool = False
    batcher: Any = None  # the EncodeBatcher, set when published

    @property
    def index(self) -> Any:
        return self.searcher.index

    def modes(self) -> list[str]:
        return ["exact", "safe", "approx"] if self.index.blockmax is not None else ["exact"]

    def doc_index(self, key: str) -> int | None:
        return self.searcher.doc_positions.get(key)

    def describe(self) -> dict[str, Any]:
        meta = self.index.meta
        enc = meta.get("encoder", {})
        return {
            "name": self.name,
            "path": self.path,
            "generation": self.generation,
            "loaded_at": self.loaded_at,
            "load_seconds": round(self.load_seconds, 3),
            "n_docs": int(self.index.n_docs),
            "n_terms": int(self.index.n_terms),
            "n_postings": int(meta.get("n_postings", len(self.index.doc_ids))),
            "bytes": int(self.index.nbytes),
            "impacts": meta.get("impacts", {}).get("dtype"),
            "encoder": {"name": enc.get("name"), "model": enc.get("model")},
            "modes": self.modes(),
            "docstore": self.searcher.docstore is not None,
            "dense_rerank": self.has_dense,
        }


def latest_generation(path: str) -> int | None:
    """The newest committed generation of a live index directory (None: a plain index)."""
    from lsr.index.manifest import generations

    gens = generations(Path(path))
    return gens[-1] if gens else None


def open_searcher(path: str, filter_index_mb: int = ServiceConfig.filter_index_mb) -> Searcher:
    """A searcher of the index at ``path``, its filter indexes kept within ``filter_index_mb``."""
    searcher = Searcher(path)
    set_filter_index_bytes(searcher.index, filter_index_mb << 20)
    return searcher


def default_opener(settings: ServiceConfig) -> Callable[[str], Any]:
    """How the service opens an index: here (``Searcher``, a sharded one too), or with ``service.ray``
    a sharded index through Ray Serve shard deployments (``lsr.ray_serve``)."""
    if settings.ray is None:
        return functools.partial(open_searcher, filter_index_mb=settings.filter_index_mb)
    address, replicas = settings.ray, settings.ray_replicas

    def open_on_ray(path: str) -> Any:
        from lsr.index.shards import is_sharded_index
        from lsr.ray_serve import deploy_sharded

        return deploy_sharded(path, address, replicas) if is_sharded_index(path) else Searcher(path)

    return open_on_ray


def load_served_index(
    name: str, path: str, generation: int, warmup: bool, opener: Callable[[str], Any] = open_searcher
) -> ServedIndex:
    """Open an index and its query encoder, and (with ``warmup``) run the encoder and every search
    mode once, so that model loading and numba dispatch happen before the first request."""
    start = time.perf_counter()
    searcher = opener(path)
    served = ServedIndex(name, str(path), searcher, generation, time.time(), 0.0)
    try:  # the dense stage opens lazily; open it now so that requests never pay for it
        served.has_dense = getattr(searcher, "dense", None) is not None
    except Exception as exc:  # a broken dense stage disables rerank, not the index
        logger.warning(
            "index %r: the dense re-rank stage failed to open (%s); rerank 'dense' is off", name, exc
        )
    if warmup:
        index = searcher.index
        _ = index.doc_keys, index.term_index
        with contextlib.suppress(Exception):  # an index of pre-encoded vectors has no text encoder
            searcher.encode_texts([WARMUP_TEXT])
        n = min(3, index.n_terms)
        if n:
            for mode in served.modes():
                index.search(list(range(n)), [1.0] * n, k=10, mode=mode)
        served.doc_index("")
    with contextlib.suppress(Exception):  # no text encoder, or one that fails: it does at each query too
        served.batch_encode = bool(getattr(searcher.query_encoder, "batch_invariant", False))
    served.load_seconds = time.perf_counter() - start
    return served


def request_plan(k: int, params: SearchParams, rerank: str, offset: int = 0, filter: Any = None) -> Plan:
    """The plan of a request: one query's sparse top ``max(offset + k, 100)`` re-scored whole by a dense
    re-rank; each search on one thread (the pool runs requests side by side); ``offset``: paging. A plan
    is immutable: one without a filter is made once for its values (:func:`_unfiltered_plan`)."""
    if filter is None:
        return _unfiltered_plan(k, params, rerank, offset)
    return _plan(k, params, rerank, offset, filter)


@functools.lru_cache(maxsize=4096)
def _unfiltered_plan(k: int, params: SearchParams, rerank: str, offset: int) -> Plan:
    return _plan(k, params, rerank, offset, None)


def _plan(k: int, params: SearchParams, rerank: str, offset: int, filter: Any) -> Plan:
    return Plan(
        k=k,
        mode=params.mode,
        alpha=params.alpha,
        beta=params.beta,
        budget=params.budget,
        rerank=rerank,
        depth=max(offset + k, 100),
        threads=1,
        offset=offset,
        filter=filter,
    )


def search_served(
    served: ServedIndex,
    queries: list[tuple[str | None, dict[str, float] | None]],
    plan: Plan,
    fields: list[str],
    encoded: SparseBatch | None = None,
) -> list[dict[str, Any]]:
    """Validated queries (text or vector each) on one served index: encode each query alone, search,
    format the hits. This is the work a request does in the pool (the load script's in-process
    baseline too). ``encoded``: the sparse vector of a single text query, encoded already."""
    searcher = served.searcher
    if plan.rerank != "none":  # text queries only; each alone, as a single request would be
        texts = [q for q, _ in queries if q is not None]
        if len(texts) != len(queries):  # Service.check_query refuses these before the pool
            raise ValueError(f"rerank {plan.rerank!r} needs a text query, not a vector")
        return [
            {"hits": _hits(served, searcher.search_batch(Queries(texts=[q]), plan)[0], fields, plan.offset)}
            for q in texts
        ]
    if encoded is not None:
        ((text, _),) = queries
        assert text is not None, "a pre-encoded vector comes with its text query"
        parts = [searcher.encode(Queries(texts=[text], sparse=encoded), plan)]
    else:
        parts = [encode_query(searcher, q, v, plan) for q, v in queries]
    results = trec_pages(searcher, parts, plan)
    return [
        _answer(served, part, vector, result, fields, plan.offset)
        for part, (_, vector), result in zip(parts, queries, results, strict=True)
    ]


def encode_query(searcher: Any, text: str | None, vector: dict[str, float] | None, plan: Plan) -> Queries:
    """One query encoded: ``text`` by the index's own query encoder, or a pre-encoded ``vector``."""
    if text is not None:
        return searcher.encode(Queries(texts=[text]), plan)
    return Queries(sparse=searcher.encode_vectors([vector or {}]))


def trec_pages(searcher: Any, parts: list[Queries], plan: Plan) -> list[SearchResult]:
    """Each encoded query's page ``plan.offset .. plan.offset + plan.k`` of its whole ranking in the
    order of run files and ``lsr eval`` (score desc, ties by doc id desc: lsr.data.trec.trec_order).
    The index breaks ties by internal id, and cuts a tie group at k by internal id too; so each
    query's top ``(1 + TIE_OVERFETCH) (offset + k) + 1`` is fetched (a tie group at the page end
    mostly ends within it), and while the page's last score ties with the last one fetched (the
    group may go on past the cut), fetched again twice as deep, until the group is whole.
    Consecutive pages then never repeat or skip a document."""
    end = plan.offset + plan.k
    deep = _deep_plan(plan) if plan.filter is None else _deepen(plan)
    results = searcher.search_batch(Queries.concat(parts), deep)
    return [
        _trec_page(searcher, part, result, deep, plan.offset, end)
        for part, result in zip(parts, results, strict=True)
    ]


def _deepen(plan: Plan) -> Plan:
    """The plan that fetches :func:`trec_pages`' top ``(1 + TIE_OVERFETCH) (offset + k) + 1``."""
    end = plan.offset + plan.k
    return dataclasses.replace(plan, k=end + 1 + int(end * TIE_OVERFETCH), offset=0)


_deep_plan = functools.lru_cache(maxsize=4096)(_deepen)  # an unfiltered plan (hashable), made once


def _trec_page(
    searcher: Any, part: Queries, result: SearchResult, deep: Plan, offset: int, end: int
) -> SearchResult:
    """One query's ranks ``offset .. end - 1`` from its top ``deep.k`` (see :func:`trec_pages`)."""
    fetch = deep.k
    while len(result.docs) == fetch and fetch < MAX_K and result.scores[end - 1] == result.scores[-1]:
        fetch = min(2 * fetch, MAX_K)
        result = searcher.search_batch(part, dataclasses.replace(deep, k=fetch))[0]
    scores = np.asarray(result.scores)
    near = scores[max(offset - 1, 0) : end + 1]  # a tie that reaches into the page
    if not (near[1:] == near[:-1]).any():  # none: the index's order is the trec order here
        return dataclasses.replace(result, docs=result.docs[offset:end], scores=scores[offset:end])
    keys = searcher.index.doc_keys
    internal = {keys[d]: d for d in result.docs.tolist()}
    ranked = trec_order(dict(zip(internal, scores.tolist(), strict=True)))[offset:end]
    return dataclasses.replace(  # a sharded index's PartialResult keeps its missing shards
        result,
        docs=np.array([internal[key] for key, _ in ranked], dtype=np.int64),
        scores=np.array([score for _, score in ranked], dtype=scores.dtype),
    )


def _answer(
    served: ServedIndex,
    query: Queries,
    vector: dict[str, float] | None,
    result: SearchResult,
    fields: list[str],
    offset: int = 0,
) -> dict[str, Any]:
    assert query.sparse is not None
    out: dict[str, Any] = {
        "query_terms": int(query.sparse.row_nnz()[0]),
        "hits": _hits(served, result, fields, offset),
    }
    missing = getattr(result, "missing", ())
    if missing:  # a sharded index whose remote shards did not all answer (lsr.index.shards)
        out["partial"], out["missing_shards"] = True, list(missing)
    if vector is not None:
        ti = served.index.term_index
        unknown = [t for t in vector if t not in ti]
        if unknown:
            out["ignored_terms"] = unknown[:20]
    return out


def _hits(
    served: ServedIndex, result: SearchResult, fields: list[str], offset: int = 0
) -> list[dict[str, Any]]:
    return [
        {"rank": h.rank, "id": h.doc_id, "score": h.score, **h.fields}
        for h in served.searcher.hits(result, fields, offset)
    ]


# --- request bodies -------------------------------------------------------------------------------

Number = StrictFloat | StrictInt


def _integral(value: Any) -> Any:
    """JSON Schema counts 350.0 as an integer: take it as 350 (a fraction stays refused)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Int = Annotated[StrictInt, BeforeValidator(_integral)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        """An optional field is left out, never null (as the schema documents it)."""
        if isinstance(data, dict):
            nulls = [key for key, value in data.items() if value is None]
            if nulls:
                raise ValueError(f"{nulls[0]!r} is null: leave an optional field out instead")
        return data


# Optional fields are documented without null (WithJsonSchema; validation is unchanged): the service
# refuses null where it wants a value, so the schema says so; "exactly one of query or vector" is a oneOf.
OptStr = Annotated[StrictStr | None, WithJsonSchema({"type": "string"})]
WEIGHTS = (1e-30, 1e6)  # a vector weight's range: float32 holds it, and sums of products stay finite
OptVector = Annotated[
    dict[str, Number] | None,
    WithJsonSchema(
        {
            "type": "object",
            "additionalProperties": {"type": "number", "minimum": WEIGHTS[0], "maximum": WEIGHTS[1]},
        }
    ),
]
# a document id: no whitespace or control characters (run files and id lists are whitespace-separated)
DOC_ID_PATTERN = r"^[^\s\u0000-\u001f\u007f-\u009f]+$"
OptFields = Annotated[
    list[Literal["title", "text"]] | None,
    WithJsonSchema({"type": "array", "items": {"type": "string", "enum": list(FIELDS)}}),
]
OptFilter = Annotated[
    dict[str, Any] | None,
    WithJsonSchema(
        {"type": "object", "description": "a metadata filter: term, terms, range, exists, and/or/not"}
    ),
]
ONE_OF_QUERY_VECTOR: dict[str, Any] = {"oneOf": [{"required": ["query"]}, {"required": ["vector"]}]}


class SearchOptions(_Body):
    index: OptStr = None
    k: Int = 10
    offset: Int = Field(0, alias="from")  # paging: ranks from + 1 .. from + k
    filter: OptFilter = None  # a metadata filter (lsr.index.fields)
    mode: Literal["exact", "safe", "approx"] = "exact"
    alpha: Number = 1.0
    beta: Number = 1.0
    budget: Int = 0  # approx: documents scored per query at most (0: none)
    rerank: Literal["none", "dense"] = "none"
    fields: OptFields = None


class SearchRequest(SearchOptions):
    """One query: ``query`` text or a pre-encoded sparse ``vector`` ({term: weight > 0})."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=ONE_OF_QUERY_VECTOR)
    query: OptStr = None
    vector: OptVector = None


class BatchQuery(_Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra=ONE_OF_QUERY_VECTOR)
    id: OptStr = None
    query: OptStr = None
    vector: OptVector = None


class BatchRequest(SearchOptions):
    queries: list[BatchQuery] = Field(json_schema_extra={"minItems": 1})  # maxItems: --max-batch


class ExplainRequest(_Body):
    """Why documents scored what they did for one query (``query`` text or a ``vector``): each query
    term's weight x the document's impact, for each of ``ids``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=ONE_OF_QUERY_VECTOR)
    index: OptStr = None
    query: OptStr = None
    vector: OptVector = None
    ids: list[StrictStr] = Field(min_length=1, max_length=MAX_EXPLAIN)


class ReloadRequest(_Body):
    path: OptStr = None


class DocIn(_Body):
    """A document to add or update: ``text`` (and ``title``), encoded by the index's own encoder, or a
    pre-encoded sparse ``vector`` ({term: weight > 0})."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"oneOf": [{"required": ["text"]}, {"required": ["vector"]}]}
    )
    id: StrictStr = Field(pattern=DOC_ID_PATTERN)
    title: StrictStr = ""
    text: OptStr = None
    vector: OptVector = None


class DocsRequest(_Body):
    docs: list[DocIn] = Field(min_length=1)


# --- the service ----------------------------------------------------------------------------------


class Admission:
    """At most ``limit`` searches in flight (running in the search pool or queued for it); one more is
    refused at once with a 503 (Retry-After: 1) rather than queued without limit. Used from the event
    loop only (enter) and the futures' done callbacks, which run on the loop too: a plain counter.

    A search request that arrives while the limit is reached is refused by the middleware before its
    body is read or parsed (:meth:`full`): under a flood most requests are refused, and a refusal then
    costs the event loop a few tens of microseconds instead of the routing, JSON parsing and validation
    of a whole request (about 0.3 ms), so a health check queued behind a few hundred of them still
    answers within milliseconds."""

    PATHS = frozenset({"/v1/search", "/v1/search/batch", "/v1/explain"})  # the routes that search

    def __init__(self, limit: int):
        self.limit = limit
        self.count = 0
        self.shed = 0

    def full(self) -> bool:
        return self.count >= self.limit

    def refusal(self) -> ApiError:
        self.shed += 1
        return ApiError(
            503, f"the service is at its limit of {self.limit} searches in flight (max_in_flight); retry"
        )

    def enter(self) -> None:
        if self.full():
            raise self.refusal()
        self.count += 1

    def leave(self) -> None:
        self.count -= 1


class Service:
    """State shared by the routes: settings, served indexes, the search pool, metrics."""

    def __init__(self, settings: ServiceConfig, opener: Callable[[str], Any] = open_searcher):
        self.settings = settings
        self.opener = opener
        self.key = ApiKey(settings)
        self.roots = index_roots(settings)
        self.metrics = Metrics()
        self.indexes: dict[str, ServedIndex] = {}
        self.ready = False
        self.load_error: str | None = None
        self.started = time.time()
        self.pool = SearchPool(settings.pool_threads)
        self.admission = Admission(settings.admitted)
        self.direct: dict[str, DirectHandler] = {}  # POST paths answered before the router (lean.py)
        self.reload_locks: dict[str, asyncio.Lock] = {}
        self.write_locks: dict[str, asyncio.Lock] = {}
        self._load_task: asyncio.Task | None = None

    # loading -------------------------------------------------------------------------------------

    async def load_all(self) -> None:
        try:
            for name, path in self.settings.indexes.items():
                served = await asyncio.to_thread(
                    load_served_index, name, path, 1, self.settings.warmup, self.opener
                )
                self._publish(served)
                logger.info(
                    "index %r loaded from %s in %.2f s (%d docs)",
                    name,
                    path,
                    served.load_seconds,
                    served.index.n_docs,
                )
            self.ready = True
        except Exception as exc:  # reported by /readyz; the process stays up for inspection
            self.load_error = f"{type(exc).__name__}: {exc}"
            logger.error("loading the indexes failed: %s", self.load_error)

    def _publish(self, served: ServedIndex) -> None:
        if served.batch_encode:  # half the search threads encode at most: the others search
            slots = max(1, self.settings.pool_threads // 2)
            served.batcher = EncodeBatcher(self.pool, served.searcher.encode_texts, slots)
        self.indexes[served.name] = served  # one reference swap: atomic for readers
        self.metrics.docs.labels(served.name).set(served.index.n_docs)
        self.metrics.generation.labels(served.name).set(served.generation)
        for shard in getattr(served.index, "backends", ()):  # a sharded index's remote shards
            self.metrics.shard_calls(served.name, shard)

    def get(self, name: str | None) -> ServedIndex:
        if not self.ready:
            if self.load_error:
                raise ApiError(503, f"the service failed to load its indexes: {self.load_error}")
            raise ApiError(503, "the service is still loading its indexes; retry when /readyz answers 200")
        if name is None:
            name = next(iter(self.settings.indexes))
        served = self.indexes.get(name)
        if served is None:
            raise ApiError(404, f"unknown index {name!r}; served indexes: {list(self.settings.indexes)}")
        return served

    async def reload(self, name: str, path: str | None) -> dict[str, Any]:
        old = self.get(name)
        lock = self.reload_locks.setdefault(name, asyncio.Lock())
        async with lock:
            old = self.get(name)
            new_path = old.path
            if path:
                try:
                    new_path = str(check_reload_path(path, self.roots))
                except PermissionError as exc:
                    self.metrics.reloads.labels(name, "refused").inc()
                    raise ApiError(403, str(exc)) from None
            if not os.path.exists(new_path):
                raise ApiError(404, f"no index at {path or new_path!r} to reload {name!r} from")
            try:
                new = await asyncio.to_thread(
                    load_served_index, name, new_path, old.generation + 1, self.settings.warmup, self.opener
                )
            except (OSError, ValueError) as exc:
                self.metrics.reloads.labels(name, "failed").inc()
                raise ApiError(
                    400,
                    f"reloading index {name!r} from {new_path} failed: {exc}; still serving "
                    f"generation {old.generation} from {old.path}",
                ) from exc
            self._publish(new)
        self.metrics.reloads.labels(name, "ok").inc()
        logger.info("index %r reloaded: generation %d from %s", name, new.generation, new.path)
        return {"previous": {"path": old.path, "generation": old.generation}, **new.describe()}

    async def refresh_loop(self) -> None:
        """Every ``refresh_s`` seconds, reopen each served index whose newest committed generation is
        not the one served (a write by another worker or process): a poll of the directory listing,
        so a commit anywhere is searchable in every worker within ``refresh_s`` plus the reopen."""
        if self.settings.refresh_s <= 0:
            return
        while True:
            await asyncio.sleep(self.settings.refresh_s)
            if not self.ready:
                continue
            for name, served in list(self.indexes.items()):
                newest = await asyncio.to_thread(latest_generation, served.path)
                if newest is not None and newest != getattr(served.index, "generation", 0):
                    try:
                        await self.reload(name, None)
                    except ApiError as exc:  # e.g. a damaged newest generation: keep serving the old one
                        logger.warning("refreshing index %r failed: %s", name, exc.message)

    async def write(self, served: ServedIndex, fn: Callable[[Any], Any]) -> Any:
        """``fn(LiveIndex)`` (one write, committed and durable when it returns), then the served index
        reopened at the new generation, so the write is searchable when the answer is sent."""
        from lsr.errors import IndexLockedError, LsrError
        from lsr.live import LiveIndex

        lock = self.write_locks.setdefault(served.name, asyncio.Lock())
        async with lock:
            try:
                result = await asyncio.to_thread(fn, LiveIndex(served.path))
            except IndexLockedError as exc:
                raise ApiError(409, str(exc)) from None
            except (LsrError, ValueError) as exc:
                raise ApiError(400, f"index {served.name!r} unchanged: {exc}") from None
            if result.generation != getattr(served.index, "generation", 0):
                await self.reload(served.name, None)
        return result

    # searching -----------------------------------------------------------------------------------

    async def run(
        self, served: ServedIndex, fn: Callable[..., Any], *args: Any, text: str | None = None
    ) -> Any:
        """``fn(*args)`` in the search pool, answered 503 past the timeout (the pool thread finishes
        its search in the background; numba kernels cannot be interrupted). With ``text``: the query
        is encoded first by the index's batcher (with other requests' queries) and its vector is
        ``fn``'s last argument."""
        self.admission.enter()
        self.metrics.in_flight.inc()
        future = None
        try:
            with Deadline(self.settings.timeout_s):
                if text is not None:
                    args = (*args, await served.batcher.encode(text))
                future = self.pool.submit(fn, *args)
                future.add_done_callback(self._search_done)
                return await future
        except asyncio.TimeoutError:
            self.metrics.timeouts.labels(served.name).inc()
            raise ApiError(
                503,
                f"the search on index {served.name!r} took longer than the "
                f"{self.settings.timeout_s:g} s timeout; ask for a smaller k or batch, or use "
                "mode 'approx'",
            ) from None
        finally:
            if future is None:  # the encoding failed or timed out: no search holds the admission
                self._search_done(None)

    def _search_done(self, _: Any) -> None:
        self.metrics.in_flight.dec()
        self.admission.leave()

    def check_options(self, served: ServedIndex, body: SearchOptions) -> SearchParams:
        """The search options checked: 422 outside the schema (its bounds are the settings' limits),
        400 for what the schema cannot state or only the index knows."""
        s = self.settings
        if body.k < 1 or body.k > s.max_k:
            raise ApiError(422, f"k = {body.k} must lie in [1, {s.max_k}]")
        if body.offset < 0:
            raise ApiError(422, f"from = {body.offset} must be >= 0")
        if body.offset + body.k > s.max_k:
            raise ApiError(400, f"from + k = {body.offset + body.k} must be at most {s.max_k}")
        if body.filter is not None:
            _check_filter(served, body)
        params = _search_params(body)
        if body.mode not in served.modes():
            raise ApiError(
                400,
                f"mode {body.mode!r} needs block-max data, which index {served.name!r} lacks "
                "(build it with `lsr index --blockmax-for INDEX`)",
            )
        if params.budget:
            try:
                served.searcher.kernel_kwargs(request_plan(body.k, params, "none"))
            except ValueError as exc:
                raise ApiError(400, f"index {served.name!r}: {exc}") from None
        if body.rerank == "dense" and not served.has_dense:
            raise ApiError(400, f"index {served.name!r} has no dense re-rank stage; use rerank 'none'")
        if body.fields and served.searcher.docstore is None:
            raise ApiError(400, f"index {served.name!r} has no docstore: no fields {body.fields} to return")
        return params

    def check_query(
        self, query: str | None, vector: dict[str, float] | None, rerank: str, where: str = ""
    ) -> None:
        s = self.settings
        if (query is None) == (vector is None):
            raise ApiError(422, f"{where}give exactly one of 'query' (text) or 'vector' ({{term: weight}})")
        if query is not None:
            if not query.strip():
                raise ApiError(422, f"{where}empty query: give some text to search for")
            if len(query) > s.max_query_chars:
                raise ApiError(
                    422, f"{where}query of {len(query)} characters exceeds the maximum {s.max_query_chars}"
                )
            n_tokens = len(query.split())
            if n_tokens > s.max_query_tokens:
                raise ApiError(
                    400, f"{where}query of {n_tokens} tokens exceeds the maximum {s.max_query_tokens}"
                )
            return
        assert vector is not None
        if rerank != "none":
            raise ApiError(400, f"{where}rerank {rerank!r} needs a text query, not a vector")
        if len(vector) > s.max_vector_terms:
            raise ApiError(
                422, f"{where}vector of {len(vector)} terms exceeds the maximum {s.max_vector_terms}"
            )
        check_weights(vector, where)

    def search_one(
        self,
        served: ServedIndex,
        query: str | None,
        vector: dict[str, float] | None,
        plan: Plan,
        fields: list[str],
        encoded: SparseBatch | None = None,
    ) -> dict[str, Any]:
        return search_served(served, [(query, vector)], plan, fields, encoded)[0]

    def search_many(
        self, served: ServedIndex, queries: list[BatchQuery], plan: Plan, fields: list[str]
    ) -> list[dict[str, Any]]:
        answers = search_served(served, [(q.query, q.vector) for q in queries], plan, fields)
        return [{"id": q.id, **a} for q, a in zip(queries, answers, strict=True)]

    def fields_of(self, served: ServedIndex, body: SearchOptions) -> list[str]:
        if body.fields is not None:
            return list(dict.fromkeys(body.fields))
        return ["title"] if served.searcher.docstore is not None else []


def _check_filter(served: ServedIndex, body: SearchOptions) -> None:
    if body.rerank != "none":
        raise ApiError(400, "a filter applies to the sparse search; use rerank 'none'")
    try:
        served.index.filtered_live(body.filter)
    except ValueError as exc:
        raise ApiError(400, f"bad filter for index {served.name!r}: {exc}") from None


def _search_params(body: SearchOptions) -> SearchParams:
    for name, value in (("alpha", body.alpha), ("beta", body.beta)):
        if not 0 < value <= 1:  # the schema's range
            raise ApiError(422, f"{name} must be a number in (0, 1], got {value!r}")
    if body.budget < 0:
        raise ApiError(422, f"budget must be an integer >= 0, got {body.budget!r}")
    try:  # what the schema cannot state: alpha and beta 1, budget 0 outside mode approx
        return SearchParams(body.mode, float(body.alpha), float(body.beta), int(body.budget))
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


# --- middleware: API key, body size, metrics, one log line per request ---------------------------


class ServiceMiddleware:
    """Pure ASGI: checks the API key and the body size before the app reads anything (a declared
    Content-Length over the maximum is refused unread), then times the request, counts it and logs it
    as one JSON line."""

    def __init__(self, app: Any, service: Service):
        self.app = app
        self.service = service
        # request ids: a random prefix per process, then a counter (unique without a syscall a request)
        self._id_prefix = os.urandom(5).hex()
        self._ids = itertools.count()

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        service = self.service
        start = time.perf_counter()
        status = [500]
        state = scope.setdefault("state", {})
        state["log"] = {}

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            error = self._precheck(scope) or self._shed(scope)
            if error is None:
                error, receive = await self._buffer_chunked(scope, receive)
            direct = self._direct(scope) if error is None else None
            if error is not None:
                await error_response(error.status, error.message)(scope, receive, send_status)
            elif direct is not None:
                await direct(scope, receive, send_status, self.app)
            else:
                await self.app(scope, receive, send_status)
        finally:
            seconds = time.perf_counter() - start
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or state.get("endpoint") or "unmatched"
            index = state.get("index") or "-"
            if endpoint != "/metrics":
                service.metrics.observe(endpoint, index, status[0], seconds)
            if service.settings.log_requests:
                client = scope.get("client")
                line = {
                    "ts": round(time.time(), 3),
                    "id": state.get("request_id"),
                    "method": scope["method"],
                    "path": scope["path"],
                    "endpoint": endpoint,
                    "index": index,
                    "status": status[0],
                    "ms": round(seconds * 1e3, 3),
                    "client": client[0] if client else None,
                    **state["log"],
                }
                access_logger.info(json.dumps(line))

    def _precheck(self, scope: dict) -> ApiError | None:
        service = self.service
        scope["state"]["request_id"] = f"{self._id_prefix}{next(self._ids):06x}"
        headers = dict(scope["headers"])
        key = service.key.current()
        if key is not None and scope["path"].startswith("/v1/"):
            given = headers.get(b"x-api-key")
            if given is None:
                return ApiError(401, "missing API key: send it in the X-API-Key header")
            if not hmac.compare_digest(given, key.encode("utf-8")):
                return ApiError(401, "wrong API key (X-API-Key)")
        length = headers.get(b"content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                return ApiError(400, f"bad Content-Length header {length[:40]!r}")
            if n > service.settings.max_body_bytes:
                return ApiError(
                    413,
                    f"request body of {n} bytes exceeds the maximum {service.settings.max_body_bytes} bytes",
                )
        return None

    def _direct(self, scope: dict) -> DirectHandler | None:
        """The direct handler of a POST to a path the router would match as it is (no root path)."""
        if scope["method"] != "POST" or scope.get("root_path"):
            return None
        return self.service.direct.get(scope["path"])

    def _shed(self, scope: dict) -> ApiError | None:
        """A search refused unread while the searches in flight are at their limit (Admission)."""
        admission = self.service.admission
        if scope["method"] == "POST" and scope["path"] in Admission.PATHS and admission.full():
            scope["state"]["endpoint"] = scope["path"]
            return admission.refusal()
        return None

    async def _buffer_chunked(self, scope: dict, receive: Callable) -> tuple[ApiError | None, Callable]:
        """A request body is read here, up to the maximum and within ``body_timeout_s``, then replayed
        to the app; past the maximum the request is answered 413 without reading the rest, past the
        timeout 408 (a client trickling its body holds a connection, never a search thread)."""
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return None, receive
        timeout = self.service.settings.body_timeout_s
        try:
            with Deadline(timeout):
                return await self._read_body(receive)
        except asyncio.TimeoutError:
            return ApiError(408, f"the request body did not arrive within {timeout:g} s"), receive

    async def _read_body(self, receive: Callable) -> tuple[ApiError | None, Callable]:
        limit = self.service.settings.max_body_bytes
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None, receive  # the client left; let the app see the disconnect
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                return ApiError(413, f"request body exceeds the maximum {limit} bytes"), receive
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = [False]

        async def replay() -> dict:
            if not sent[0]:
                sent[0] = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return None, replay


try:  # orjson (the bench extra) serializes hits several times faster than json
    import orjson

    def _dumps(data: Any) -> bytes:
        return orjson.dumps(data)
except ImportError:  # pragma: no cover - depends on the environment

    def _dumps(data: Any) -> bytes:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class FastJSONResponse(JSONResponse):
    """JSON without FastAPI's jsonable_encoder pass (the routes return plain dicts, lists, str, float)."""

    def render(self, content: Any) -> bytes:
        return _dumps(content)


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    headers = {**(headers or {}), **({"Retry-After": "1"} if status == 503 else {})}
    body = {"error": {"status": status, "message": message}}
    return FastJSONResponse(body, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError, content_type: str) -> tuple[int, str]:
    errors = exc.errors()
    if content_type and "json" not in content_type and any(e.get("loc") == ("body",) for e in errors):
        return 415, f"send the body as JSON with Content-Type: application/json (got {content_type[:60]!r})"
    if any(e.get("type") == "json_invalid" for e in errors):
        e = next(e for e in errors if e.get("type") == "json_invalid")
        ctx = e.get("ctx", {}).get("error", "")
        return 400, f"malformed JSON body: {ctx or e.get('msg')}"
    parts = []
    for e in errors[:5]:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        value = e.get("input")
        shown = "" if isinstance(value, dict | list) or value is None else f" (got {str(value)[:60]!r})"
        parts.append(f"{loc}: {e.get('msg')}{shown}")
    more = f"; and {len(errors) - 5} more" if len(errors) > 5 else ""
    return 422, "; ".join(parts) + more


# --- the app --------------------------------------------------------------------------------------


def create_app(settings: ServiceConfig, opener: Callable[[str], Any] | None = None) -> FastAPI:
    """The service as an ASGI app. ``opener(path)`` opens one index (default: :func:`default_opener`)."""
    service = Service(check_indexes(settings), opener or default_opener(settings))
    if settings.log_requests:
        _log_access()
    app = FastAPI(
        title="lsr search service",
        version=__version__,
        lifespan=_lifespan(service),
        default_response_class=FastJSONResponse,
        description="Learned sparse retrieval over memory-mapped indexes. /v1 routes need the "
        "X-API-Key header when the service has a key. Every error is "
        '{"error": {"status": ..., "message": ...}}.',
        docs_url=None,  # /docs comes from lsr.service.openapi: no Swagger UI from a CDN
        redoc_url=None,
    )
    install_openapi(app, service.key.value is not None, settings)
    app.state.service = service
    _add_error_handlers(app)
    _add_health_routes(app, service)
    _add_index_routes(app, service)
    _add_search_route(app, service)
    _add_batch_route(app, service)
    _add_explain_route(app, service)
    _add_doc_routes(app, service)
    _add_write_routes(app, service)
    _add_page_routes(app)
    _add_middleware(app, service)
    return app


STATIC = Path(__file__).parent / "static"  # the search page: package data (pyproject's package-data)


def _add_page_routes(app: FastAPI) -> None:
    """``/``: the search page (plain HTML, CSS and JavaScript from the package; it calls the /v1 API)."""
    page = (STATIC / "index.html").read_text(encoding="utf-8")

    @app.get("/", include_in_schema=False)
    async def search_page() -> HTMLResponse:
        return HTMLResponse(page)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


def _log_access() -> None:
    """One JSON line per request on the access logger, to stderr (once per process)."""
    if access_logger.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    access_logger.addHandler(handler)
    access_logger.setLevel(logging.INFO)
    access_logger.propagate = False


def _lifespan(service: Service) -> Callable[[FastAPI], Any]:
    """Load the indexes in the background at start-up, beat the heartbeat and start the health port's
    probe server (``service.health_port``); stop them and the search pool at shutdown.

    With several workers (``workers`` > 1, one shared socket) a worker finishes loading before it
    takes connections: a worker still loading would answer 503 to the share of the requests it
    accepts while another worker's ``/readyz`` already said ready. Until the first worker is up,
    connections wait in the socket's backlog."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        service._load_task = asyncio.create_task(service.load_all())
        if service.settings.workers > 1:
            await service._load_task  # load_all never raises: a load error is /readyz's answer
        refresh = asyncio.create_task(service.refresh_loop())
        try:
            async with _health_port(service):
                yield
        finally:
            service._load_task.cancel()
            refresh.cancel()
            service.pool.shutdown()

    return lifespan


@contextlib.asynccontextmanager
async def _health_port(service: Service) -> AsyncIterator[None]:
    """While open: the heartbeat on this event loop and the probe server on ``service.health_port``
    (nothing when it is 0); the port is closed when this exits."""
    settings = service.settings
    if not settings.health_port:
        yield
        return
    heartbeat = Heartbeat()
    beating = asyncio.create_task(heartbeat.run())
    probes = HealthServer(
        settings.host, settings.health_port, heartbeat, settings.health_stale_s, lambda: readiness(service)
    ).start()
    try:
        yield
    finally:
        probes.stop()
        beating.cancel()


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, message = _validation_message(exc, request.headers.get("content-type", ""))
        return error_response(status, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.url.path!r}; see /docs or /openapi.json"
        return error_response(exc.status_code, message, exc.headers)  # a 405 keeps its Allow header

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s", request.url.path)
        return error_response(500, f"internal error: {type(exc).__name__}: {exc}")


def _add_health_routes(app: FastAPI, service: Service) -> None:
    @app.get("/healthz", tags=["health"], response_model=None, responses={200: {"model": Health}})
    async def healthz() -> dict[str, Any]:
        """Liveness: the process answers (also while indexes load or searches run)."""
        return {"status": "ok", "uptime_s": round(time.time() - service.started, 3)}

    not_ready: dict[int | str, dict[str, Any]] = {
        200: {"model": Ready},
        503: {"description": "not ready: {ready, loaded, error}"},
    }

    @app.get("/readyz", tags=["health"], responses=not_ready)
    async def readyz() -> JSONResponse:
        """Readiness: 200 once every index is loaded and warmed up, 503 before (or after a load error)."""
        status, body = await asyncio.to_thread(readiness, service)
        return JSONResponse(body, status_code=status)

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        """Prometheus text format."""
        return PlainTextResponse(service.metrics.render(), media_type=service.metrics.content_type)


def readiness(service: Service) -> tuple[int, dict[str, Any]]:
    """``/readyz``'s status and body, on either port: 200 once every index is loaded (naming sharded
    indexes' shards that do not answer), 503 before or after a load error. Blocking (pings remote
    shards): call it off the event loop. It reads only attributes the loop swaps whole."""
    if not service.ready:
        return 503, {"ready": False, "loaded": list(service.indexes), "error": service.load_error}
    body: dict[str, Any] = {"ready": True, "indexes": list(service.indexes)}
    missing = _missing_shards(service)
    return 200, ({**body, "missing_shards": missing} if missing else body)


def _missing_shards(service: Service) -> dict[str, list[str]]:
    """Served sharded indexes with shards that do not answer now (each remote shard pinged once)."""
    probes = {name: getattr(s.index, "probe", None) for name, s in service.indexes.items()}
    missing = {name: probe() for name, probe in probes.items() if probe is not None}
    return {name: shards for name, shards in missing.items() if shards}


def _add_index_routes(app: FastAPI, service: Service) -> None:
    indexes_responses = error_responses(*V1_ERRORS, ok=IndexesAnswer)

    @app.get("/v1/indexes", tags=["indexes"], response_model=None, responses=indexes_responses)
    async def list_indexes() -> dict[str, Any]:
        """Served indexes: name, path, version, size, encoder, counts, modes."""
        return {"indexes": [served.describe() for served in service.indexes.values()], "ready": service.ready}

    reload_responses = error_responses(403, 404, *BODY_ERRORS, *V1_ERRORS, ok=ReloadAnswer)

    @app.post("/v1/indexes/{name}/reload", tags=["indexes"], response_model=None, responses=reload_responses)
    async def reload_index(name: str, request: Request, body: ReloadRequest | None = None) -> dict[str, Any]:
        """Open the index again (or from ``path``) beside the served version and swap to it atomically;
        requests in flight finish on the old version."""
        request.state.index = name if name in service.settings.indexes else None
        return await service.reload(name, body.path if body else None)


def _add_search_route(app: FastAPI, service: Service) -> None:
    @app.post(
        "/v1/search",
        tags=["search"],
        responses=error_responses(404, *BODY_ERRORS, *V1_ERRORS, ok=SearchAnswer),
    )
    async def search(body: SearchRequest, request: Request) -> FastJSONResponse:
        """Top-k for one query: ``query`` text (encoded by the index's own query encoder) or a
        pre-encoded ``vector``."""
        served = service.get(body.index)
        request.state.index = served.name
        request.state.log.update(k=body.k, mode=body.mode, n_queries=1)
        params = service.check_options(served, body)
        service.check_query(body.query, body.vector, body.rerank)
        start = time.perf_counter()
        batched = served.batcher is not None and body.query is not None and body.rerank == "none"
        out = await service.run(
            served,
            service.search_one,
            served,
            body.query,
            body.vector,
            request_plan(body.k, params, body.rerank, body.offset, body.filter),
            service.fields_of(served, body),
            text=body.query if batched else None,
        )
        service.metrics.searched(served.name)
        return FastJSONResponse(
            {
                "index": served.name,
                "generation": served.generation,
                "k": body.k,
                "mode": body.mode,
                "took_ms": round((time.perf_counter() - start) * 1e3, 3),
                **out,
            }
        )

    make_lean(app, "/v1/search", SearchRequest, search, service.direct)


def _add_batch_route(app: FastAPI, service: Service) -> None:
    batch_responses = error_responses(404, *BODY_ERRORS, *V1_ERRORS, ok=BatchAnswer)

    @app.post("/v1/search/batch", tags=["search"], responses=batch_responses)
    async def search_batch(body: BatchRequest, request: Request) -> FastJSONResponse:
        """Top-k for each of up to ``max_batch`` queries (text or vectors), in order."""
        served = service.get(body.index)
        request.state.index = served.name
        n = len(body.queries)
        request.state.log.update(k=body.k, mode=body.mode, n_queries=n)
        if not 1 <= n <= service.settings.max_batch:
            raise ApiError(422, f"a batch holds 1 to {service.settings.max_batch} queries, got {n}")
        params = service.check_options(served, body)
        for i, q in enumerate(body.queries):
            service.check_query(q.query, q.vector, body.rerank, where=f"queries[{i}]: ")
        fields = service.fields_of(served, body)
        plan = request_plan(body.k, params, body.rerank, body.offset, body.filter)
        start = time.perf_counter()
        parts = max(1, min(service.settings.threads, n))
        chunks = [body.queries[i::parts] for i in range(parts)]  # round robin over the pool's threads
        done = await asyncio.gather(
            *(service.run(served, service.search_many, served, chunk, plan, fields) for chunk in chunks)
        )
        results: list[Any] = [None] * n
        for i, chunk_results in enumerate(done):
            results[i::parts] = chunk_results
        service.metrics.searched(served.name, n)
        return FastJSONResponse(
            {
                "index": served.name,
                "generation": served.generation,
                "k": body.k,
                "mode": body.mode,
                "took_ms": round((time.perf_counter() - start) * 1e3, 3),
                "results": results,
            }
        )

    make_lean(app, "/v1/search/batch", BatchRequest, search_batch, service.direct)


def _add_explain_route(app: FastAPI, service: Service) -> None:
    @app.post(
        "/v1/explain",
        tags=["search"],
        response_model=None,
        responses=error_responses(404, *BODY_ERRORS, *V1_ERRORS, ok=ExplainAnswer),
    )
    async def explain(body: ExplainRequest, request: Request) -> dict[str, Any]:
        """Why each of ``ids`` scored what it did for the query: each query term the document holds,
        its query weight x the document's impact; they sum to the score (``lsr eval explain``'s numbers)."""
        served = service.get(body.index)
        request.state.index = served.name
        service.check_query(body.query, body.vector, "none")
        unknown = [doc_id for doc_id in body.ids if served.doc_index(doc_id) is None]
        if unknown:
            raise ApiError(404, f"unknown doc id {unknown[0]!r} in index {served.name!r}")
        out = await service.run(served, explain_docs, served, body.query, body.vector, body.ids)
        return {"index": served.name, "generation": served.generation, **out}


def explain_docs(
    served: ServedIndex, text: str | None, vector: dict[str, float] | None, ids: list[str]
) -> dict[str, Any]:
    """The encoded query and each document's term contributions (lsr.explain)."""
    index = served.index
    sparse = encode_query(served.searcher, text, vector, Plan()).sparse
    assert sparse is not None
    terms, weights = sparse.row(0)
    docs = []
    for doc_id in ids:
        found = contributions(index, terms, weights, served.doc_index(doc_id) or 0)
        docs.append(
            {
                "id": doc_id,
                "score": float(np.float32(sum(c.contribution for c in found))),
                "terms": [
                    {
                        "term": c.term,
                        "query_weight": c.query_weight,
                        "doc_impact": c.doc_impact,
                        "contribution": c.contribution,
                    }
                    for c in found
                ],
            }
        )
    query = [{"term": t, "weight": w} for t, w in query_terms(index, terms, weights)]
    return {"scale": float(index.scale), "query_terms": query, "docs": docs}


def _add_doc_routes(app: FastAPI, service: Service) -> None:
    @app.get(
        "/v1/docs/{doc_id:path}",
        tags=["docs"],
        response_model=None,
        responses=error_responses(404, 422, *V1_ERRORS, ok=DocAnswer),
    )
    async def get_doc(doc_id: str, request: Request, index: str | None = None) -> dict[str, Any]:
        """A document by its external id, from the index's docstore (``?index=NAME``)."""
        served = service.get(index)
        request.state.index = served.name
        if served.searcher.docstore is None:
            raise ApiError(404, f"index {served.name!r} has no docstore (it was built from vectors)")
        d = served.doc_index(doc_id)
        if d is None:
            raise ApiError(404, f"unknown doc id {doc_id!r} in index {served.name!r}")
        doc = await asyncio.to_thread(served.searcher.docstore.get, d)
        return {"index": served.name, **doc, "id": doc_id}


def _add_write_routes(app: FastAPI, service: Service) -> None:
    @app.post(
        "/v1/indexes/{name}/docs",
        tags=["docs"],
        response_model=None,
        responses=error_responses(404, 409, *BODY_ERRORS, *V1_ERRORS, ok=UpsertAnswer),
    )
    async def upsert_docs(name: str, body: DocsRequest, request: Request) -> dict[str, Any]:
        """Add documents (an existing id is an update): text, encoded by the index's own encoder, or
        pre-encoded vectors. Answered once the write is committed and durable; searchable by then."""
        served = service.get(name)
        request.state.index = name
        _check_docs(body.docs)
        result = await service.write(served, lambda live: _upsert(live, body.docs))
        return {
            "index": name,
            "generation": result.generation,
            "added": result.added,
            "updated": result.updated,
        }

    @app.delete(
        "/v1/indexes/{name}/docs/{doc_id:path}",
        tags=["docs"],
        response_model=None,
        responses=error_responses(400, 404, 409, 422, *V1_ERRORS, ok=DeleteAnswer),
    )
    async def delete_doc(name: str, doc_id: str, request: Request) -> dict[str, Any]:
        """Delete a document by id (404, nothing changed, for an unknown id)."""
        served = service.get(name)
        request.state.index = name
        result = await service.write(served, lambda live: live.delete([doc_id]))
        if result.unknown:
            raise ApiError(404, f"unknown doc id {doc_id!r} in index {name!r}; nothing changed")
        return {"index": name, "generation": result.generation, "deleted": result.deleted}


def check_weights(vector: dict[str, float], where: str = "") -> None:
    """Each weight a number in ``WEIGHTS`` (the schema's bounds), else 422."""
    low, high = WEIGHTS
    for term, weight in vector.items():
        if not (math.isfinite(weight) and low <= weight <= high):
            raise ApiError(
                422,
                f"{where}vector weight of term {term!r} is {weight!r}: weights must be numbers in "
                f"[{low:g}, {high:g}]",
            )


def _check_docs(docs: list[DocIn]) -> None:
    """422: what the schema states (one of text or vector); 400: what it cannot (some text in title or
    text, ids given once, texts and vectors not mixed)."""
    for i, doc in enumerate(docs):
        if (doc.text is None) == (doc.vector is None):
            raise ApiError(422, f"docs[{i}] ({doc.id!r}): give exactly one of 'text' or 'vector'")
        check_weights(doc.vector or {}, f"docs[{i}] ({doc.id!r}): ")
        if doc.text is not None and not (doc.title + doc.text).strip():
            raise ApiError(400, f"docs[{i}] ({doc.id!r}): the document has no text")
    if len({doc.id for doc in docs}) != len(docs):
        raise ApiError(400, "a document id repeats within the request: give each document once")
    if len({doc.text is None for doc in docs}) > 1:
        raise ApiError(400, "give either texts or vectors in one request, not both")


def _upsert(live: Any, docs: list[DocIn]) -> Any:
    from lsr.data.corpus import Doc

    if docs[0].vector is not None:
        vectors = {d.id: {t: float(w) for t, w in (d.vector or {}).items()} for d in docs}
        return live.add_vectors(vectors, {d.id: (d.title, "") for d in docs})
    return live.add_documents([Doc(d.id, d.title, d.text or "") for d in docs])


def _add_middleware(app: FastAPI, service: Service) -> None:
    app.add_middleware(ServiceMiddleware, service=service)
    if service.settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(service.settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["X-API-Key", "Content-Type"],
        )


def app_from_env() -> FastAPI:
    """The app of ``LSR_SERVICE_SETTINGS`` (a uvicorn factory: each worker process builds its own)."""
    return create_app(from_env())


def serve(settings: ServiceConfig, log_level: str = "info") -> None:
    """Run the service under uvicorn until interrupted (``lsr serve``). Settings reach each worker
    through ``LSR_SERVICE_SETTINGS``. With several workers the parent binds the socket with
    TCP_NODELAY, which the accepted connections inherit (without it, a keep-alive client waits out
    a 40 ms delayed ACK between the response's header and body writes)."""
    os.environ[SETTINGS_ENV] = to_json(settings)
    if settings.ray is not None and settings.workers > 1:
        deploy_shards_once(settings)
    config = uvicorn.Config(
        "lsr.service.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        http="lsr.service.lean:CorkedHTTPProtocol",
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=5,
    )
    if settings.workers == 1:
        uvicorn.Server(config).run()
        return
    sock = config.bind_socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    Multiprocess(config, sockets=[sock]).run()


def deploy_shards_once(settings: ServiceConfig) -> None:
    """Deploy the sharded indexes' Serve applications from this (parent) process, so that the
    workers, each a router, attach to the same shard replicas instead of redeploying them."""
    import ray

    from lsr.index.shards import is_sharded_index
    from lsr.ray_serve import deploy_sharded

    for path in settings.indexes.values():
        if is_sharded_index(path):
            deploy_sharded(path, settings.ray, settings.ray_replicas)
    ray.shutdown()  # the workers connect on their own; the applications stay


def index_summary(path: str | Path) -> dict[str, Any]:
    """Meta of an index directory (plain or live), read without loading it (``lsr serve`` checks paths
    up front)."""
    return index_meta(path)
