"""A sharded index: N complete ``lsr-index`` directories of one build, searched as one.

Layout (``lsr-sharded`` version 1, written by :func:`lsr.sharded.build_sharded`):
    sharded.json         format, version, ``build_id``, split (hash | range), encoder section,
                         quantization scale, ``n_docs``, and per shard {name, n_docs, n_postings, uid}
    shard-NNN/           an ``lsr-index`` directory; its meta's ``shard`` section names the build id and
                         its position; ``corpus_pos.npy`` (int64[n_docs], input order) holds each
                         document's position in the corpus

Every shard has the whole vocabulary and the same quantization scale (and, for BM25, impacts from the
whole corpus's statistics), so a document's score is the one a single index gives it. Global doc id =
shard base (docs of earlier shards) + local id. The merged top-k orders by (score desc, corpus
position asc): the order of one index built from the corpus in its order, ties included.

Each shard is searched by the shard's own :class:`Index` here, or by a :class:`RemoteShard`
(``lsr.ray_serve``: a Ray actor per shard replica, deployed by Ray Serve). A remote call returns a
future at once, so one thread sends a query to every shard and then waits for all of them; a remote
shard that fails or does not answer within its ``timeout_s`` leaves its shard out: the result is a
:class:`PartialResult` naming the missing shards.
"""

from __future__ import annotations

import bisect
import json
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from lsr.index.builder import INDEX_FORMAT, INDEX_FORMAT_VERSION
from lsr.index.io import ArtifactError, read_meta
from lsr.index.keys import ChainedKeys
from lsr.index.search import Index, SearchResult, prune_batch, prune_query, summed_doc_freq
from lsr.index.sparse import PTR_DTYPE, TERM_DTYPE, WEIGHT_DTYPE, SparseBatch

logger = logging.getLogger(__name__)

SHARDED_FORMAT = "lsr-sharded"
SHARDED_FORMAT_VERSION = 1
SHARDED_FILE = "sharded.json"
POSITIONS_FILE = "corpus_pos.npy"


def is_sharded_index(path: str | Path) -> bool:
    return (Path(path) / SHARDED_FILE).is_file()


def shard_dir_name(i: int) -> str:
    return f"shard-{i:03d}"


@dataclass(frozen=True)
class PartialResult(SearchResult):
    """A merged result that misses the documents of some shards (their backends failed)."""

    missing: tuple[str, ...] = ()


class RemoteShard(Protocol):
    """A shard searched elsewhere, in its local doc ids. Both calls return at once; the future holds
    one result per query (``Index.search_batch``'s) or the error. ``timeout_s``: how long a search
    waits for it before leaving the shard out; ``calls``: calls sent so far (a metric)."""

    name: str
    timeout_s: float
    calls: int

    def submit(self, queries: SparseBatch, k: int, kwargs: dict[str, Any]) -> Future[list[SearchResult]]: ...

    def ping(self) -> Future[Any]: ...


# sends a batch (queries, k, search options) to every remote shard at once: one future per shard
Scatter = Callable[[SparseBatch, int, dict[str, Any]], list[Future]]


def read_sharded_manifest(path: str | Path) -> dict[str, Any]:
    """The ``sharded.json`` of ``path``.

    Raises:
        ArtifactError: missing, unparsable, or of another format or version.
    """
    file = Path(path) / SHARDED_FILE
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{file}: not a sharded index manifest ({exc})") from None
    if manifest.get("format") != SHARDED_FORMAT or manifest.get("format_version") != SHARDED_FORMAT_VERSION:
        raise ArtifactError(
            f"{file}: format {manifest.get('format')!r} v{manifest.get('format_version')!r}, "
            f"expected {SHARDED_FORMAT!r} v{SHARDED_FORMAT_VERSION}; rebuild with lsr index --shards"
        )
    return manifest


def sharded_meta(path: str | Path) -> dict[str, Any]:
    """A sharded index's meta without loading it: the first shard's ``meta.json`` with the whole
    build's ``n_docs`` and ``n_postings`` and the manifest as ``sharded`` (the shards are checked when
    it is opened)."""
    path = Path(path)
    manifest = read_sharded_manifest(path)
    first = read_meta(path / manifest["shards"][0]["name"], INDEX_FORMAT, (INDEX_FORMAT_VERSION,))
    n_postings = sum(int(e["n_postings"]) for e in manifest["shards"])
    return {**first, "n_docs": manifest["n_docs"], "n_postings": n_postings, "sharded": manifest}


def check_shard(path: Path, manifest: dict[str, Any], i: int, meta: dict[str, Any]) -> None:
    """Refuse a shard of another build, position or encoder than the manifest names.

    Raises:
        ArtifactError: naming the shard and what differs.
    """
    entry = manifest["shards"][i]
    shard = meta.get("shard") or {}
    where = path / entry["name"]
    if meta.get("encoder") != manifest["encoder"]:
        raise ArtifactError(
            f"{where} was encoded by {_encoder_name(meta.get('encoder'))}, the sharded index by "
            f"{_encoder_name(manifest['encoder'])}: every shard must come from one encoder"
        )
    if shard.get("build_id") != manifest["build_id"]:
        raise ArtifactError(
            f"{where} belongs to build {shard.get('build_id')!r}, not to this sharded index's build "
            f"{manifest['build_id']!r}: shards of two builds are mixed; rebuild with lsr index --shards"
        )
    if shard.get("index") != i or meta.get("uid") != entry.get("uid") or meta["n_docs"] != entry["n_docs"]:
        raise ArtifactError(f"{where} is not shard {i} that {path / SHARDED_FILE} lists (uid or size differ)")


def _encoder_name(section: Any) -> str:
    section = section or {}
    model = section.get("model")
    return repr(section.get("name")) + (f" ({model})" if model else "")


def load_shards(path: str | Path, mmap: bool = True) -> tuple[dict[str, Any], list[Index]]:
    """The manifest and every shard, checked against it (before any search).

    Raises:
        ArtifactError: a missing shard, a shard of another build or encoder (naming it).
    """
    path = Path(path)
    manifest = read_sharded_manifest(path)
    shards = []
    for i, entry in enumerate(manifest["shards"]):
        where = path / entry["name"]
        if not (where / "meta.json").is_file():
            raise ArtifactError(
                f"{where} is missing: the sharded index {path} lists {len(manifest['shards'])} shards; "
                "rebuild it (lsr index --shards) or restore that shard"
            )
        index = Index.load(where, mmap=mmap)
        check_shard(path, manifest, i, index.meta)
        shards.append(index)
    return manifest, shards


class ShardedIndex(Index):
    """The shards of one build searched as one index (global doc ids, exact merge)."""

    supports_budget = False  # a budget per shard would not be the index's budget

    def __init__(
        self,
        path: Path,
        manifest: dict[str, Any],
        shards: list[Index],
        backends: Sequence[RemoteShard] | None = None,
        scatter: Scatter | None = None,
    ):
        self.path = path
        self.manifest = manifest
        self.segments = shards  # the name lsr.searcher's per-segment docstore reads
        self.names = [e["name"] for e in manifest["shards"]]
        self.remote = backends is not None
        self.backends: Sequence[RemoteShard] = backends or []
        self.scatter: Scatter = scatter or self._submit_each  # e.g. one hop to the backends' event loop
        self.bases = np.concatenate([[0], np.cumsum([s.n_docs for s in shards])]).astype(np.int64)
        self.n_docs = int(self.bases[-1])
        self._starts = self.bases.tolist()
        self.n_terms = shards[0].n_terms
        self.term_ptr = np.zeros(0, np.int64)
        self.doc_ids = np.zeros(0, np.int32)
        self.impacts = np.zeros(0, shards[0].impacts.dtype)
        self.scale = shards[0].scale
        n_postings = sum(int(s.meta["n_postings"]) for s in shards)
        self.meta = {**shards[0].meta, "n_docs": self.n_docs, "n_postings": n_postings, "sharded": manifest}
        self.blockmax = shards[0].blockmax if all(s.blockmax for s in shards) else None
        self.block_counters = np.zeros(2, np.int64)
        self.live = np.zeros(0, np.uint8)
        self.positions = [_positions(s) for s in shards]
        self.failed: dict[str, str] = {}  # shard name -> the last error of its backend (remote only)

    @classmethod
    def open(
        cls,
        path: str | Path,
        backends: Sequence[RemoteShard] | None = None,
        mmap: bool = True,
        scatter: Scatter | None = None,
    ) -> ShardedIndex:
        """``scatter``: how a batch reaches every backend at once (default: each one's ``submit``)."""
        manifest, shards = load_shards(path, mmap)
        if backends is not None and len(backends) != len(shards):
            raise ValueError(f"{len(backends)} backends for {len(shards)} shards")
        return cls(Path(path), manifest, shards, backends, scatter)

    # --- what Index offers --------------------------------------------------------------------------

    @cached_property
    def doc_keys(self) -> Sequence[str]:
        """The shards' ids in order (no object a document)."""
        return ChainedKeys([shard.doc_keys for shard in self.segments])

    @cached_property
    def vocab(self) -> list[str]:
        return self.segments[0].vocab

    @cached_property
    def term_index(self) -> dict[str, int]:
        return self.segments[0].term_index

    @property
    def encoder_dir(self) -> Path:
        return self.segments[0].encoder_dir

    def doc_freq(self) -> NDArray[np.int64]:
        """Summed over the shards: one index's document frequencies."""
        return summed_doc_freq(self.segments, self.n_terms)

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.segments)

    @property
    def postings_nbytes(self) -> int:
        return sum(s.postings_nbytes for s in self.segments)

    def segment_of(self, doc: int) -> tuple[int, int]:
        """The shard holding global doc id ``doc``, and its local id there."""
        i = bisect.bisect_right(self._starts, doc) - 1  # a Python list: no numpy call per hit
        return i, int(doc) - self._starts[i]

    def missing_shards(self) -> list[str]:
        """Shards whose backend failed on its last call (remote backends only)."""
        return sorted(self.failed)

    def probe(self) -> list[str]:
        """Ping every remote shard once (``backend.ping()``, side by side); the shards that do not answer."""
        if self.remote:
            self._gather([b.ping() for b in self.backends], [b.timeout_s for b in self.backends])
        return self.missing_shards()

    # --- search: scatter, then merge ----------------------------------------------------------------

    def search(
        self,
        q_terms: Any,
        q_weights: Any,
        k: int = 10,
        mode: str = "exact",
        alpha: float = 1.0,
        beta: float = 1.0,
        filter: Any = None,
        budget: int = 0,
    ) -> SearchResult:
        """Top-k over all shards for one query (see :meth:`Index.search`)."""
        k = self._check_k(k)
        params = self._check_params(mode, alpha, beta, budget)
        terms, weights = prune_query(*self._check_query(q_terms, q_weights), params)
        kwargs = {"mode": mode, "alpha": alpha, "beta": 1.0, "filter": filter}  # terms pruned here, once
        if not self.remote:
            per_shard = [[s.search(terms, weights, k=k, **kwargs)] for s in self.segments]
            return self._merge_all(per_shard, k, 1)[0]
        row = SparseBatch(
            np.array([0, len(terms)], PTR_DTYPE),
            np.asarray(terms, TERM_DTYPE),
            np.asarray(weights, WEIGHT_DTYPE),
        )
        return self._merge_all(self._scatter(row, k, {**kwargs, "threads": 1}), k, 1)[0]

    def search_batch(
        self,
        queries: SparseBatch,
        k: int = 10,
        threads: int | None = None,
        mode: str = "exact",
        alpha: float = 1.0,
        beta: float = 1.0,
        filter: Any = None,
        budget: int = 0,
    ) -> list[SearchResult]:
        """Top-k over all shards for a batch: each shard's batch kernel, then one merge per query."""
        k = self._check_k(k)
        queries.validate(self.n_terms)
        queries = prune_batch(queries, self._check_params(mode, alpha, beta, budget))
        kwargs = {"threads": threads, "mode": mode, "alpha": alpha, "beta": 1.0, "filter": filter}
        if not self.remote:
            per_shard = [s.search_batch(queries, k=k, **kwargs) for s in self.segments]
            return self._merge_all(per_shard, k, len(queries))
        return self._merge_all(self._scatter(queries, k, kwargs), k, len(queries))

    def _scatter(self, queries: SparseBatch, k: int, kwargs: dict[str, Any]) -> list[Any]:
        """``queries`` sent to every remote shard at once, then their answers; None for a failed shard."""
        return self._gather(self.scatter(queries, k, kwargs), [b.timeout_s for b in self.backends])

    def _submit_each(self, queries: SparseBatch, k: int, kwargs: dict[str, Any]) -> list[Future]:
        return [b.submit(queries, k, kwargs) for b in self.backends]

    def _gather(self, futures: Sequence[Future], timeouts: Sequence[float]) -> list[Any]:
        """Each future's result, waiting at most its shard's timeout from now; None for one that failed
        or is late (its shard is remembered as missing until it answers again)."""
        start = time.monotonic()
        out: list[Any] = []
        for name, future, timeout in zip(self.names, futures, timeouts, strict=True):
            try:
                out.append(future.result(timeout=max(0.0, start + timeout - time.monotonic())))
                self.failed.pop(name, None)
            except Exception as exc:  # a dead or late replica: answer from the other shards
                logger.warning("shard %s did not answer (%r); answering without it", name, exc)
                self.failed[name] = repr(exc)
                out.append(None)
        return out

    def _merge_all(
        self, per_shard: Sequence[list[SearchResult] | None], k: int, n: int
    ) -> list[SearchResult]:
        missing = tuple(name for name, r in zip(self.names, per_shard, strict=True) if r is None)
        merged = []
        for q in range(n):
            parts = [(i, r[q]) for i, r in enumerate(per_shard) if r is not None]
            docs, scores = merge_topk(parts, self.bases, self.positions, k)
            merged.append(PartialResult(docs, scores, missing) if missing else SearchResult(docs, scores))
        return merged


def merge_topk(
    parts: Sequence[tuple[int, SearchResult]], bases: np.ndarray, positions: Sequence[np.ndarray], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The top ``k`` of per-shard results ``(shard, local result)``: global ids (int32 when they fit,
    like one index's) and float32 scores, by score desc then corpus position asc."""
    if not parts:
        return np.zeros(0, np.int32), np.zeros(0, np.float32)
    docs = np.concatenate([bases[i] + np.asarray(r.docs, np.int64) for i, r in parts])
    scores = np.concatenate([np.asarray(r.scores, np.float32) for _, r in parts])
    pos = np.concatenate([positions[i][np.asarray(r.docs, np.int64)] for i, r in parts])
    order = np.lexsort((pos, -scores))[:k]
    dtype = np.int32 if len(bases) and bases[-1] <= np.iinfo(np.int32).max else np.int64
    return docs[order].astype(dtype), scores[order]


def _positions(shard: Index) -> np.ndarray:
    """Corpus position of each internal doc of a shard (through ``doc_order`` when it was reordered)."""
    file = shard.path / POSITIONS_FILE
    if not file.is_file():
        raise ArtifactError(f"{file} is missing; rebuild the sharded index (lsr index --shards)")
    pos = np.load(file)
    order = shard.path / "doc_order.npy"
    return pos[np.load(order)] if order.is_file() else pos
