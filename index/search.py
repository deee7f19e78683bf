"""Index: load a memory-mapped index directory and search it.

This is the validation boundary: queries are checked and cast here once, then
handed to the kernels in :mod:`lsr.index.kernels.score`, which trust their input.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import numba
import numpy as np
from numba.typed import List as NumbaList
from numpy.typing import NDArray

from lsr.index.approx import cut_batch, cut_query, load_approx_lists
from lsr.index.blockmax import DEFAULT_BLOCK_SIZE, BlockMax
from lsr.index.builder import INDEX_FORMAT, INDEX_FORMAT_VERSION
from lsr.index.fields import Fields, live_filtered
from lsr.index.integrity import check_blockmax, check_postings
from lsr.index.io import (
    ArtifactError,
    CorruptArtifactError,
    directory_bytes,
    load_array,
    plain_name,
    read_checked,
    read_meta,
)
from lsr.index.kernels.allowed import SCAN_RATIO as ALLOWED_SCAN_RATIO
from lsr.index.kernels.allowed import _allowed_search_batch, _allowed_search_one, _posting_sums
from lsr.index.kernels.blockmax import _bmp_search_batch, _bmp_search_one, _prune_terms, _workspace
from lsr.index.kernels.check import _canonical_query
from lsr.index.kernels.rescore import _forward_allowed_batch, _forward_allowed_one
from lsr.index.kernels.score import SCAN_RATIO, _search_batch, _search_one
from lsr.index.keys import DocKeys
from lsr.index.rescore import Forward, PostingsScores, rescored_batch, rescored_search
from lsr.index.sparse import SCORE_DTYPE, TERM_DTYPE, WEIGHT_DTYPE, SparseBatch, canonical_row
from lsr.index.subindex import FilterIndex, Parts, build_subindex

logger = logging.getLogger(__name__)

# safe mode, and approx without a budget, score every posting (the exact kernel: safe's top k) on
# collections of at most this many documents: there bounding and ordering the blocks costs more than
# scoring a query's whole lists. Measured on the float32 index with the exact kernel's chunked
# collection (benchmarks/RESULTS.md, "Unsigned indices"), one thread, mean us exhaustive against
# block-max safe, each query's fastest of 5 in passes over all queries / 5 times in a row: SciFact
# (5,183 docs) 18 / 141 and 15 / 80; DL pool (24,884) 32 / 59 and 23 / 24; synthetic 100k 89 / 140
# and 59 / 69; 200k 171 / 221 and 118 / 120; 500k 376 / 407 and 328 / 263 (block-max ahead)
EXHAUSTIVE_DOCS = 200_000
# approx with a budget of at least this fraction of such a collection scores every posting too: the
# block-max search of so large a budget costs more there, and exhaustive results are exact. Same runs,
# one thread, mean ms (benchmarks/RESULTS.md, "Seismic's grid widened"): SciFact with the shipped splade
# (5,183 docs) budget 512 / 1024 / 2048 0.018 / 0.023 / 0.038 against exhaustive 0.012; DL pool (24,884)
# budget 1024 / 1536 / 2048 0.019 / 0.020 / 0.023 against 0.022; 200k synthetic budget 4096 0.087
# against 0.147
EXHAUSTIVE_BUDGET_FRACTION = 1 / 12


MODES = ("exact", "safe", "approx")
MAX_K = 100_000  # a batch holds n_queries x k results: a larger k is a mistake, not a request
# a filter allowing at most this fraction of the documents keeps its allowed ids (FilterCache), so
# that a query may score just them instead of searching the blocks (Filtered.direct)
ALLOWED_FRACTION = 0.05
# the cost model choosing, per query, how a filter is served (Filtered.path), in about ns on one core,
# measured by benchmarks/live_bench.py --only filters at 1M docs (RESULTS.md): block-max search costs
# about BLOCK_COST per posting of the query's terms without a filter; with one, that times
# Filtered.block_factor (a run of allowed docs: the fraction of blocks holding one, at least 0.2;
# scattered docs: pruning is weak, the k-th allowed score is low, up to 4x as much); rescoring
# doubles it. The allowed-docs kernel costs POSTINGS_COST per posting scanned (min(df, SCAN_RATIO x
# allowed) per term), the forward index FORWARD_COST per forward entry of the allowed docs, 2x when
# they are scattered (a cache miss per row).
BLOCK_COST = 2.0
POSTINGS_COST = 1.5
FORWARD_COST = 2.4
# a filter's own index over its allowed docs (lsr.index.subindex) is built on the filter's
# FILTER_INDEX_AFTER-th use (a one-off filter never pays the build: a scan of every posting) when
# the cheapest other path is estimated above FILTER_INDEX_MIN_COST (ns) per query; the filter
# cache keeps at most FilterCache.max_bytes of them per opened index (FILTER_INDEX_BYTES by default,
# config service.filter_index_mb), dropping the least recently used filter's first
FILTER_INDEX_AFTER = 2
FILTER_INDEX_MIN_COST = 50_000.0
FILTER_INDEX_BYTES = 256 << 20

# the leading arguments of the block-max kernels:
# postings, block-max arrays, ub_ratio, ub_slack, block size, n_blocks
BmpArgs = tuple[
    tuple[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, ...], np.float32, np.float32, int, int
]


# the leading arguments of the allowed-docs kernels: segments' postings (a numba typed list), their
# n_terms and first global doc ids, the allowed global ids (ascending) and each segment's share of them
# and the allowed docs' bits and ranks by global id (Filtered)
AllowedArgs = tuple[
    Any,
    NDArray[np.int64],
    NDArray[np.int64],
    NDArray[np.int32],
    NDArray[np.int64],
    NDArray[np.uint8],
    NDArray[np.int32],
]


@dataclass(frozen=True)
class SearchParams:
    """How to search: ``exact`` scores every posting; ``safe`` (block-max, alpha = beta = 1) returns
    exactly the same top-k; ``approx`` trades recall for speed. Its one knob is ``budget``: score at
    most about that many documents per query (whole blocks, highest upper bound first), then rescore
    the best candidates with exact weights; recall and latency fall together as the budget shrinks
    (benchmarks/RESULTS.md has the curve); 0: no budget. An index with pruned lists (``index.approx``,
    lsr.index.approx) searches those instead, where the budget also cuts the query to its heaviest
    terms (lsr.index.approx.query_mass), and rescores their best candidates with the whole query. The
    expert knobs ``alpha`` (stop when the k-th score exceeds alpha x the best remaining block bound)
    and ``beta`` (keep that fraction of the query's terms, heaviest first) also apply. On a collection
    of at most ``Index.exhaustive_docs`` documents safe mode, and approx without a budget or with one of
    at least ``EXHAUSTIVE_BUDGET_FRACTION`` of the documents, score every posting of the whole query
    instead (``beta`` and ``alpha`` ignored): faster there, and exact."""

    mode: str = "exact"
    alpha: float = 1.0
    beta: float = 1.0
    budget: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} is not one of {list(MODES)}")
        for name in ("alpha", "beta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise ValueError(f"{name} must be a number in (0, 1], got {value!r}")
        budget = self.budget
        if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 0:
            raise ValueError(f"budget must be an integer >= 0 (documents scored; 0: none), got {budget!r}")
        if self.mode != "approx" and (self.alpha != 1 or self.beta != 1 or budget != 0):
            raise ValueError(
                f"mode {self.mode!r} is exact: alpha and beta must be 1 and budget 0 (use mode='approx')"
            )

    def max_blocks(self, block_size: int, n_blocks: int) -> int:
        """Blocks the budget allows: ceil(budget / block_size), at least 1; all of them without one."""
        if self.budget == 0:
            return n_blocks
        return max(1, min(n_blocks, -(-int(self.budget) // block_size)))


@dataclass(frozen=True)
class SearchResult:
    """One query's ranked list: internal doc ids and scores, best first. The index's kernels give int32
    ids and float32 scores; re-ranked and candidate lists (lsr.searcher) carry int64 ids, float64 scores."""

    docs: NDArray[np.integer]
    scores: NDArray[np.floating]

    def __len__(self) -> int:
        return len(self.docs)


def _decode(directory: Path, name: str, meta: dict[str, Any]) -> str:
    try:
        return read_checked(directory, name, meta).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptArtifactError(directory / name, f"is not UTF-8 ({exc})") from None


# what Index.load relies on in meta.json (checked by read_meta)
INDEX_FIELDS = {
    "n_docs": int,
    "n_terms": int,
    "n_postings": int,
    "arrays": dict,
    "impacts": dict,
    "files": list,
}


SAFE = SearchParams("safe")  # approx served as safe (Index._whole_query)


class Index:
    """A loaded index. Arrays are memory-mapped; only ids and vocabulary are read into memory."""

    scan_ratio: int = SCAN_RATIO  # exact mode: see lsr.index.kernels.score
    exhaustive_docs: int = EXHAUSTIVE_DOCS  # safe and approx without a budget: exhaustive up to here
    supports_budget: bool = True  # approx's budget (a live or sharded index's kernels have none)
    doc_id_dtype: type[np.integer] = np.int32  # of the doc ids in results (a live index's: int64)
    forward: Forward | None = None  # a live index (lsr.index.segments) rescores nothing
    rescore: bool = False
    approx: Index | None = None  # the statically pruned lists (lsr.index.approx), None without them

    def __init__(self, path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]):
        self.path = path
        self.meta = meta
        self.term_ptr = arrays["term_ptr"]
        self.doc_ids = arrays["doc_ids"]
        self.impacts = arrays["impacts"]
        self.n_docs: int = meta["n_docs"]
        self.n_terms: int = meta["n_terms"]
        self.scale = np.float32(meta["impacts"]["scale"])
        self.blockmax: BlockMax | None = None
        # blocks scored and blocks with a positive bound, summed over single-query block-max searches
        # on this object (a diagnostic for benchmarks; reset it by assigning zeros)
        self.block_counters = np.zeros(2, np.int64)
        self.filter_cache = FilterCache()
        self.live = np.zeros(0, np.uint8)
        # the forward index of exact weights (lsr.index.rescore); while ``rescore`` is true, search and
        # search_batch return the top k by exact score, not by quantized score
        self.forward = Forward.from_index_arrays(arrays, meta)
        self.rescore = self.forward is not None

    @property
    def live(self) -> NDArray[np.uint8]:
        """1 = live, per internal doc; empty: every doc is live (a plain index). A live index's
        segments get theirs from the manifest's tombstones (lsr.index.segments). Assigning it empties
        the filter cache (its masks and filter indexes hold the old deletions)."""
        return self._live

    @live.setter
    def live(self, value: NDArray[np.uint8]) -> None:
        self._live = value
        self._unfiltered = Filtered(value)
        cache = self.__dict__.get("filter_cache")
        if cache is not None:
            cache.clear()

    @classmethod
    def load(cls, path: str | Path, mmap: bool = True, blockmax: bool = True) -> Index:
        """Open an index directory (``blockmax=False``: without its block-max data, e.g. to rebuild it).

        Raises:
            ArtifactError: missing, half-written, foreign or other-version directory.
        """
        path = Path(path)
        meta = read_meta(path, INDEX_FORMAT, (INDEX_FORMAT_VERSION,), INDEX_FIELDS)
        missing = sorted({"term_ptr", "doc_ids", "impacts"} - set(meta["arrays"]))
        if missing or not isinstance(meta["impacts"].get("scale"), (int, float)):
            raise ArtifactError(
                f"{path}/meta.json lacks arrays {missing} or impacts.scale; rebuild the index"
            )
        arrays = {name: load_array(path, name, spec, mmap=mmap) for name, spec in meta["arrays"].items()}
        if len(arrays["term_ptr"]) != meta["n_terms"] + 1:
            raise ArtifactError(f"{path}: term_ptr length does not match n_terms; rebuild the index")
        for name in meta["files"]:
            if not plain_name(name):
                raise ArtifactError(f"{path}/meta.json lists file {str(name)[:80]!r}: corrupt, rebuild it")
            if not (path / name).is_file():
                raise ArtifactError(f"{path / name} is missing; the index is incomplete, rebuild it")
        check_postings(path, meta, arrays)
        index = cls(path, meta, arrays)
        index.blockmax = BlockMax.load(path, meta) if blockmax else None
        if index.blockmax is not None:
            check_blockmax(index.blockmax, index.term_ptr, index.doc_ids, index.n_docs)
            index.approx = load_approx_lists(index)
        return index

    @cached_property
    def doc_keys(self) -> Sequence[str]:
        """External doc id of each internal doc (decoded when read; see :class:`DocKeys`)."""
        path = self.path / "ids.txt"
        try:
            keys = DocKeys(read_checked(self.path, "ids.txt", self.meta))
        except UnicodeDecodeError as exc:
            raise CorruptArtifactError(path, f"is not UTF-8 ({exc})") from None
        if len(keys) != self.n_docs:
            raise ArtifactError(f"{path} has {len(keys)} ids for {self.n_docs} docs")
        return keys

    @cached_property
    def fields(self) -> Fields | None:
        """The metadata columns (``fields/``), None without any."""
        return Fields.load(self.path)

    def filtered_live(self, filter: Any) -> NDArray[np.uint8]:
        """The kernels' live array with ``filter`` applied (None: ``self.live``).

        Raises:
            FieldError: an unknown field, a malformed filter, or an index without fields.
        """
        if filter is None:
            return self.live
        return live_filtered(self.live, self.n_docs, self.fields, filter)

    def _filtered(self, filter: Any, uses: int = 1) -> Filtered:
        """The kernels' live array with ``filter`` applied, and its allowed ids when few enough to score
        directly; a filter's are cached (``filter_cache``), ``uses``: the queries it serves now."""
        if filter is None:
            return self._unfiltered
        compute = partial(self.filtered_live, filter)
        return self.filter_cache.get(filter, compute, self.forward, self._filter_block_size, uses)

    @property
    def _filter_block_size(self) -> int:
        return self.blockmax.block_size if self.blockmax is not None else DEFAULT_BLOCK_SIZE

    def _route(self, filter: Any, terms: NDArray[np.int32], n_queries: int = 1) -> tuple[Filtered, str]:
        """``filter`` evaluated (cached), and the cheapest way to serve the query with ``terms`` (a
        batch: all its rows' terms) by :meth:`Filtered.costs`. When that is still dear (above the
        cache's ``min_cost`` per query), the filter's own index is asked for
        (:meth:`FilterCache.indexed`: built from the filter's second use)."""
        f = self._filtered(filter, n_queries)
        if f.allowed is None:  # no filter, or a broad one
            return f, "blocks"
        costs = f.costs(self.term_ptr, terms, self.rescore, n_queries)
        path = min(costs, key=costs.__getitem__)
        dear = costs[path] > self.filter_cache.min_cost * n_queries
        if f.sub is None and len(f.allowed) and dear:
            f = self.filter_cache.indexed(f, self._build_subindex)
            if f.sub is not None:
                path = f.path(self.term_ptr, terms, self.rescore, n_queries)
        return f, path

    def _build_subindex(self, f: Filtered, max_bytes: int) -> FilterIndex | None:
        """The index of ``f``'s allowed docs (lsr.index.subindex); None: larger than ``max_bytes``,
        or the index's postings cannot be gathered into one."""
        gathered = self._subindex_parts()
        if gathered is None:
            return None
        parts, bases = gathered
        return build_subindex(parts, bases, f, self, self._filter_block_size, max_bytes)

    def _subindex_parts(self) -> tuple[Parts, NDArray[np.int64]] | None:
        """The postings a filter's own index is gathered from, and each part's first doc id."""
        return [(self.term_ptr, self.doc_ids, self.impacts)], np.zeros(1, np.int64)

    @cached_property
    def vocab(self) -> list[str]:
        try:
            return json.loads(_decode(self.path, "vocab.json", self.meta))
        except json.JSONDecodeError as exc:
            raise CorruptArtifactError(self.path / "vocab.json", f"is not valid JSON ({exc})") from None

    @cached_property
    def term_index(self) -> dict[str, int]:
        return {term: i for i, term in enumerate(self.vocab)}

    @property
    def encoder_dir(self) -> Path:
        """Where the query encoder's files are (inference-free: tokenizer, weight table)."""
        return self.path

    def doc_freq(self) -> NDArray[np.int64]:
        """Documents per term id: posting list lengths (a live index's deleted documents included)."""
        return np.diff(np.asarray(self.term_ptr)).astype(np.int64)

    @property
    def nbytes(self) -> int:
        """Bytes on disk of the whole index directory."""
        return directory_bytes(self.path)

    @property
    def postings_nbytes(self) -> int:
        return int(self.term_ptr.nbytes + self.doc_ids.nbytes + self.impacts.nbytes)

    def _check_k(self, k: int) -> int:
        """k in [1, MAX_K]; above n_docs it is clamped (only matching documents come back anyway)."""
        if type(k) is int and 1 <= k <= MAX_K:  # the common case, checked first
            return min(k, self._k_cap)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if k > MAX_K:
            raise ValueError(f"k = {k} is larger than the maximum {MAX_K}: ask for fewer results")
        return int(min(k, self._k_cap))

    @property
    def _k_cap(self) -> int:
        """The largest k worth asking for: the number of documents (1 for an empty index)."""
        return max(self.n_docs, 1)

    def _check_query(self, q_terms: Any, q_weights: Any) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
        terms = np.asarray(q_terms)
        if _fast_canonical(terms, q_weights, self.n_terms):
            return terms, q_weights
        if terms.size and not np.issubdtype(terms.dtype, np.integer):
            raise ValueError(f"query term ids must be integers, got dtype {terms.dtype}")
        terms, weights = canonical_row(terms.astype(np.int64), np.asarray(q_weights, dtype=np.float64))
        if len(terms) and (terms[0] < 0 or terms[-1] >= self.n_terms):
            raise ValueError(f"query term ids must lie in [0, {self.n_terms}); got {terms[0]}..{terms[-1]}")
        return terms.astype(TERM_DTYPE), weights.astype(WEIGHT_DTYPE)

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
        """Top-k for one query, on the calling thread (the kernels release the GIL).

        Args:
            q_terms: term ids (repeats are summed).
            q_weights: one weight > 0 per term id.
            k: how many documents to return at most; only matching documents are returned.
            mode, alpha, beta, budget: see :class:`SearchParams`.
            filter: a metadata filter (lsr.index.fields): only the docs it allows.
        """
        k = self._check_k(k)
        params = self._check_params(mode, alpha, beta, budget)
        full = self._check_query(q_terms, q_weights)
        if self._on_approx_lists(params, filter):
            assert self.approx is not None
            terms, weights = cut_query(*prune_query(*full, params), params.budget)
            return SearchResult(*rescored_search(self.approx, terms, weights, k, params, self.live, full))
        f, path = self._route(filter, full[0])
        if path == "subindex":
            return self._sub_search(f, full, k, params)
        return self._search_checked(full, k, params, f, path)

    def _sub_search(
        self, f: Filtered, full: tuple[NDArray[np.int32], NDArray[np.float32]], k: int, params: SearchParams
    ) -> SearchResult:
        """A checked query served by the filter's own index (unfiltered search there), in this
        index's doc ids."""
        assert f.sub is not None
        sub = f.sub.index
        result = sub._search_checked(full, sub._check_k(k), params, Filtered(sub.live), "blocks")
        return f.sub_results([result], self.doc_id_dtype)[0]

    def _sub_search_batch(
        self, f: Filtered, queries: SparseBatch, k: int, params: SearchParams, threads: int | None
    ) -> list[SearchResult]:
        """:meth:`_sub_search` for a checked batch."""
        assert f.sub is not None
        sub = f.sub.index
        results = sub._search_batch_checked(
            queries, sub._check_k(k), params, threads, Filtered(sub.live), "blocks"
        )
        return f.sub_results(results, self.doc_id_dtype)

    def _search_checked(
        self,
        full: tuple[NDArray[np.int32], NDArray[np.float32]],
        k: int,
        params: SearchParams,
        f: Filtered,
        path: str,
    ) -> SearchResult:
        """:meth:`search` of a checked query ``full`` served by ``path`` (``Filtered.costs``)."""
        params = self._whole_query(params)
        terms, weights = prune_query(*full, params)
        if path == "forward":
            return SearchResult(*self._forward_allowed(f, *full, k))
        allowed = f if path == "postings" else None
        if self.rescore or prunes(params):  # a pruned query's candidates: by the whole query
            return SearchResult(
                *rescored_search(self, terms, weights, k, params, f.live, full, allowed=allowed)
            )
        if allowed is not None:
            docs, scores = self.allowed_raw(allowed, terms, weights, k)
        else:
            docs, scores = self.search_raw(terms, weights, k, params, live=f.live)
        return SearchResult(docs, scaled(scores, self.scale))

    def _on_approx_lists(self, params: SearchParams, filter: Any) -> bool:
        """Whether a search runs on the pruned lists: approx without a filter, when built."""
        return self.approx is not None and params.mode == "approx" and filter is None

    def _forward_allowed(
        self, f: Filtered, terms: NDArray[np.int32], weights: NDArray[np.float32], k: int
    ) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
        """The allowed docs' top k by exact score, straight from the forward index: the result of
        rescored filtered search, bit for bit (lsr.index.kernels.rescore._forward_allowed_query)."""
        fw = self.forward
        assert fw is not None and f.allowed is not None
        return _forward_allowed_one(
            fw.indptr, fw.terms, fw.weights, self.n_terms, f.allowed, terms, weights, k
        )

    def _allowed_args(self, f: Filtered) -> AllowedArgs:
        """The allowed-docs kernels' leading arguments: this index as one segment."""
        assert f.allowed is not None and f.rank is not None
        ptr = np.array([0, len(f.allowed)], np.int64)
        one = np.array([self.n_terms], np.int64)
        return self.postings_list, one, np.zeros(1, np.int64), f.allowed, ptr, f.bits, f.rank

    def allowed_raw(
        self, f: Filtered, terms: NDArray[np.int32], weights: NDArray[np.float32], k: int
    ) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
        """The allowed-docs kernel's top k of a checked query (kernel scores, as :meth:`search_raw`)."""
        return _allowed_search_one(*self._allowed_args(f), terms, weights, k)

    def allowed_batch_raw(
        self, f: Filtered, queries: SparseBatch, k: int, threads: int | None
    ) -> tuple[NDArray[np.int32], NDArray[np.float32], NDArray[np.int64]]:
        """:meth:`allowed_raw` for a checked batch (as :meth:`search_batch_raw`)."""
        return allowed_batch(self._allowed_args(f), queries, k, threads)

    @cached_property
    def postings_scores(self) -> PostingsScores:
        """Candidates' scores read back from this index's posting lists (lsr.index.rescore)."""
        return PostingsScores(self.term_ptr, self.doc_ids, self.impacts, float(self.scale))

    @property
    def scorer(self) -> Forward | PostingsScores:
        """What rescores candidates: the forward index of exact weights, else the posting lists (an
        approx query pruned to its heaviest terms, on an index without a forward index)."""
        return self.forward if self.forward is not None else self.postings_scores

    @cached_property
    def postings_list(self) -> Any:
        """A numba typed list holding this index's (term_ptr, doc_ids, impacts)."""
        return typed_list([(self.term_ptr, self.doc_ids, self.impacts)])

    def search_raw(
        self,
        terms: NDArray[np.int32],
        weights: NDArray[np.float32],
        k: int,
        params: SearchParams,
        threshold: float = 0.0,
        live: NDArray[np.uint8] | None = None,
    ) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
        """The kernels' top-k of a checked (and, for approx, pruned) query: kernel scores, not yet times
        ``scale``; only live documents (``live``, default ``self.live``) scoring above ``threshold`` (a
        live index's earlier segments)."""
        if len(terms) == 0 or self.n_docs == 0:
            return np.zeros(0, np.int32), np.zeros(0, SCORE_DTYPE)
        thr = np.float32(threshold)
        live = self.live if live is None else live
        if self._exhaustive(params):
            return _search_one(
                self.term_ptr,
                self.doc_ids,
                self.impacts,
                self.n_docs,
                terms,
                weights,
                k,
                self.scan_ratio,
                live,
                thr,
            )
        return _bmp_search_one(
            *self._bmp_args()[:5],
            self._workspace(k),
            terms,
            weights,
            k,
            np.float32(params.alpha),
            self._max_blocks(params),
            self.block_counters,
            live,
            thr,
            self._block_live(live),
        )

    def _workspace(self, k: int) -> tuple[np.ndarray, ...]:
        """This thread's block-max workspace for k (lsr.index.kernels.blockmax._workspace), kept for
        the next query: the kernel leaves it clean, and allocating its n_blocks-long arrays per query
        cost more than a small query's search."""
        local = self.__dict__.get("_local") or self.__dict__.setdefault("_local", threading.local())
        kept = getattr(local, "workspace", None)
        if kept is None or kept[0] != k:
            bm = self.blockmax
            assert bm is not None, "_check_params refuses the block-max modes without block-max data"
            kept = local.workspace = (k, _workspace(bm.n_blocks, bm.block_size, k))
        return kept[1]

    def _check_params(self, mode: str, alpha: float, beta: float, budget: int = 0) -> SearchParams:
        params = search_params(mode, alpha, beta, budget)
        if params.budget and not self.supports_budget:
            raise ValueError(
                f"budget {params.budget} applies to a single index, and {self.path} is a live or sharded "
                "index: search it with mode 'safe', or approx with alpha/beta"
            )
        if params.mode != "exact" and self.blockmax is None:
            raise ValueError(
                f"mode {mode!r} needs block-max data, and {self.path} has none: build it with "
                "`lsr index --blockmax-for INDEX` (or lsr.index.blockmax.build_blockmax)"
            )
        return params

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
        """Top-k for a batch of queries, spread over ``threads`` (default: all cores); ``filter``: one
        metadata filter for the whole batch."""
        k = self._check_k(k)
        params = self._check_params(mode, alpha, beta, budget)
        queries.validate(self.n_terms)
        if self._on_approx_lists(params, filter):
            assert self.approx is not None
            pruned = cut_batch(prune_batch(queries, params), params.budget)
            batch = rescored_batch(self.approx, pruned, k, params, threads, self.live, queries)
            return [SearchResult(*r) for r in batch]
        f, path = self._route(filter, np.asarray(queries.term_ids), len(queries))
        if path == "subindex":
            return self._sub_search_batch(f, queries, k, params, threads)
        return self._search_batch_checked(queries, k, params, threads, f, path)

    def _search_batch_checked(
        self, full: SparseBatch, k: int, params: SearchParams, threads: int | None, f: Filtered, path: str
    ) -> list[SearchResult]:
        """:meth:`search_batch` of a checked batch ``full`` served by ``path`` (``Filtered.costs``)."""
        params = self._whole_query(params)
        queries = prune_batch(full, params)
        if path == "forward":
            out_docs, out_scores, counts = self._forward_allowed_batch(f, full, k, threads)
            return [
                SearchResult(out_docs[i, : counts[i]], out_scores[i, : counts[i]]) for i in range(len(full))
            ]
        allowed = f if path == "postings" else None
        if self.rescore or prunes(params):  # pruned queries' candidates: by the whole queries
            batch = rescored_batch(self, queries, k, params, threads, f.live, full, allowed)
            return [SearchResult(*r) for r in batch]
        if allowed is not None:
            out_docs, out_scores, counts = self.allowed_batch_raw(allowed, queries, k, threads)
        else:
            out_docs, out_scores, counts = self.search_batch_raw(queries, k, params, threads, live=f.live)
        return [
            SearchResult(out_docs[i, : counts[i]], scaled(out_scores[i, : counts[i]], self.scale))
            for i in range(len(queries))
        ]

    def _forward_allowed_batch(
        self, f: Filtered, queries: SparseBatch, k: int, threads: int | None
    ) -> tuple[NDArray[np.int32], NDArray[np.float32], NDArray[np.int64]]:
        """:meth:`_forward_allowed` for a checked batch: (docs [n, k], exact scores [n, k], counts [n])."""
        fw = self.forward
        assert fw is not None and f.allowed is not None
        n = len(queries)
        out = np.full((n, k), -1, np.int32), np.zeros((n, k), SCORE_DTYPE), np.zeros(n, np.int64)
        if n:
            workers = max(1, min(threads or max_threads(), max_threads(), n))
            previous = numba.get_num_threads()
            numba.set_num_threads(workers)
            try:
                q = (queries.indptr, queries.term_ids, queries.weights)
                _forward_allowed_batch(
                    fw.indptr, fw.terms, fw.weights, self.n_terms, f.allowed, *q, k, workers, *out
                )
            finally:
                numba.set_num_threads(previous)
        return out

    def search_batch_raw(
        self,
        queries: SparseBatch,
        k: int,
        params: SearchParams,
        threads: int | None = None,
        thresholds: NDArray[np.float32] | None = None,
        live: NDArray[np.uint8] | None = None,
    ) -> tuple[NDArray[np.int32], NDArray[np.float32], NDArray[np.int64]]:
        """The batch kernels on checked (and pruned) queries: (docs [n, k], kernel scores [n, k], counts
        [n]); ``thresholds`` (float32[n], default 0): see :meth:`search_raw`."""
        n_queries = len(queries)
        out_docs = np.full((n_queries, k), -1, dtype=np.int32)
        out_scores = np.zeros((n_queries, k), dtype=SCORE_DTYPE)
        counts = np.zeros(n_queries, dtype=np.int64)
        if thresholds is None:
            thresholds = np.zeros(n_queries, SCORE_DTYPE)
        if n_queries and self.n_docs:
            workers = max(1, min(threads or max_threads(), max_threads()))
            previous = numba.get_num_threads()
            numba.set_num_threads(workers)
            try:
                out = (out_docs, out_scores, counts, thresholds)
                live = self.live if live is None else live
                self._run_batch(params, queries, k, min(workers, n_queries), out, live)
            finally:
                numba.set_num_threads(previous)
        return out_docs, out_scores, counts

    def _run_batch(
        self,
        params: SearchParams,
        queries: SparseBatch,
        k: int,
        n_workers: int,
        out: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        live: np.ndarray,
    ) -> None:
        out_docs, out_scores, counts, thresholds = out
        q = (queries.indptr, queries.term_ids, queries.weights)
        if self._exhaustive(params):
            _search_batch(
                self.term_ptr,
                self.doc_ids,
                self.impacts,
                self.n_docs,
                *q,
                k,
                n_workers,
                out_docs,
                out_scores,
                counts,
                self.scan_ratio,
                live,
                thresholds,
            )
            return
        _bmp_search_batch(
            *self._bmp_args(),
            *q,
            k,
            np.float32(params.alpha),
            self._max_blocks(params),
            n_workers,
            out_docs,
            out_scores,
            counts,
            live,
            thresholds,
            self._block_live(live),
        )

    def _whole_query(self, params: SearchParams) -> SearchParams:
        """Safe mode for approx without a budget (or with a large one) on a collection scored
        exhaustively: every posting of the whole query costs no more there than the query cut by
        ``beta`` and its candidates rescored (SciFact with the shipped splade, one thread: 0.047 against
        0.086 ms at beta 0.5; synthetic 16k documents: level), and its results are exact."""
        if params.mode == "approx" and self._exhaustive(params):
            return SAFE
        return params

    def _exhaustive(self, params: SearchParams) -> bool:
        """Whether the kernels score every posting: exact mode, and on a small collection safe mode and
        approx without a budget or with a large one (:meth:`_whole_query`), faster there than any
        block-max stop."""
        small = self.n_docs <= self.exhaustive_docs
        wide = params.budget == 0 or params.budget >= self.n_docs * EXHAUSTIVE_BUDGET_FRACTION
        return params.mode == "exact" or (small and wide)

    def _max_blocks(self, params: SearchParams) -> int:
        bm = self.blockmax
        assert bm is not None, "_check_params refuses the block-max modes without block-max data"
        return params.max_blocks(bm.block_size, bm.n_blocks)

    def _block_live(self, live: np.ndarray) -> NDArray[np.uint8]:
        """uint8[n_blocks]: 1 where a block holds a live doc (empty when every doc is live); the last
        one computed is kept (a segment's deletions serve every query)."""
        if not len(live):
            return live
        cached = getattr(self, "_block_live_cache", None)
        if cached is not None and cached[0] is live:
            return cached[1]
        bm = self.blockmax
        assert bm is not None
        blocks = block_live_of(live, bm.n_blocks, bm.block_size)
        self._block_live_cache = (live, blocks)
        return blocks

    def _bmp_args(self) -> BmpArgs:
        bm = self.blockmax
        assert bm is not None, "_check_params refuses the block-max modes without block-max data"
        bmx = (
            bm.row_of,
            bm.dense_max,
            bm.dense_base,
            bm.dense_off,
            bm.tb_ptr,
            bm.tb_block,
            bm.tb_max,
            bm.tb_base,
            bm.tb_off,
            bm.dense_before,
        )
        return (
            (self.term_ptr, self.doc_ids, self.impacts),
            bmx,
            bm.ub_ratio,
            bm.ub_slack,
            bm.block_size,
            bm.n_blocks,
        )


def summed_doc_freq(parts: Sequence[Index], n_terms: int) -> NDArray[np.int64]:
    """Documents per term id over several indexes (a live index's segments, a sharded index's shards):
    the sum of their posting list lengths, over ``n_terms`` terms (a part may have fewer)."""
    df = np.zeros(n_terms, np.int64)
    for part in parts:
        part_df = part.doc_freq()
        df[: len(part_df)] += part_df
    return df


@dataclass(frozen=True)
class Filtered:
    """A filter evaluated on one opened index: ``live`` (uint8[n_docs], deletions applied; empty: every
    doc). When at most ALLOWED_FRACTION of the docs are allowed: ``allowed`` (their ascending ids),
    ``bits`` and ``rank`` (by doc id: allowed as bits, position among the allowed ids) for the
    allowed-docs kernel, ``block_factor`` and ``forward_cost`` (None without a forward index) for the
    cost model, and once built the filter's own index (``sub``, lsr.index.subindex). ``key``: the
    filter's key in the index's FilterCache."""

    live: NDArray[np.uint8]
    allowed: NDArray[np.int32] | None = None
    bits: NDArray[np.uint8] = field(default_factory=lambda: np.zeros(0, np.uint8))
    rank: NDArray[np.int32] | None = None
    block_factor: float = 1.0
    forward_cost: float | None = None
    key: str = ""
    sub: FilterIndex | None = None

    def costs(
        self, term_ptr: NDArray[np.int64], terms: NDArray[np.int32], forward: bool, n_queries: int = 1
    ) -> dict[str, float]:
        """The estimated cost (about ns) of each way to serve the query with ``terms`` (a batch: all
        its rows' terms, ``n_queries`` rows): "blocks" (block-max search over the blocks holding an
        allowed doc), "postings" (the allowed-docs kernel), with ``forward`` (a rescoring index)
        "forward" (the allowed docs' exact scores from the forward index), and "subindex" (search of
        the filter's own index, as block-max search of an index that small)."""
        n_allowed = len(self.allowed) if self.allowed is not None else 0
        total, scanned = _posting_sums(term_ptr, terms, ALLOWED_SCAN_RATIO * n_allowed)
        scale = 2.0 if forward else 1.0  # rescoring the candidates
        costs = {"blocks": scale * BLOCK_COST * self.block_factor * total}
        if self.allowed is None:
            return costs
        costs["postings"] = scale * POSTINGS_COST * scanned
        if forward and self.forward_cost is not None:
            costs["forward"] = self.forward_cost * n_queries
        if self.sub is not None:
            sub_total, _ = _posting_sums(self.sub.index.term_ptr, terms, 0)
            costs["subindex"] = scale * BLOCK_COST * sub_total
        return costs

    def path(
        self, term_ptr: NDArray[np.int64], terms: NDArray[np.int32], forward: bool, n_queries: int = 1
    ) -> str:
        """The way to serve the query with the lowest estimated cost (:meth:`costs`)."""
        costs = self.costs(term_ptr, terms, forward, n_queries)
        return min(costs, key=costs.__getitem__)

    def sub_results(self, results: list[SearchResult], dtype: type[np.integer]) -> list[SearchResult]:
        """Results of the filter's own index, its local ids replaced by the index's (``allowed``)."""
        assert self.allowed is not None
        return [SearchResult(self.allowed[r.docs].astype(dtype), r.scores) for r in results]


class FilterCache:
    """The masks and allowed ids of the last ``size`` filters used on one opened index (a live index's
    generation: its deletions never change), as search engines keep a filter cache: a filter repeated
    across queries is evaluated over the metadata columns once. A selective filter used at least
    ``build_after`` times, whose queries cost more than ``min_cost`` (ns) on the other paths, also
    gets its own index (``Filtered.sub``, :meth:`indexed`); those take at most ``max_bytes``
    together (0: none are built), the least recently used filter's dropped first."""

    def __init__(
        self,
        size: int = 16,
        max_bytes: int = FILTER_INDEX_BYTES,
        build_after: int = FILTER_INDEX_AFTER,
        min_cost: float = FILTER_INDEX_MIN_COST,
    ):
        self.size = size
        self.max_bytes = max_bytes
        self.build_after = build_after
        self.min_cost = min_cost
        self.entries: OrderedDict[str, Filtered] = OrderedDict()
        self.uses: dict[str, int] = {}
        self.pending: set[str] = set()  # filters whose index is being built, or would not fit
        self.lock = threading.Lock()

    def get(
        self,
        filter: Any,
        compute: Callable[[], NDArray[np.uint8]],
        forward: Forward | None = None,
        block_size: int = 16,
        uses: int = 1,
    ) -> Filtered:
        """``filter`` evaluated (``compute()`` gives its mask; its errors propagate, nothing is cached
        then); ``forward``: the index's forward arrays, to price scoring the allowed docs by them;
        ``uses``: the queries it serves now (a batch counts each)."""
        key = self.key_of(filter)
        with self.lock:
            hit = self._hit(key, uses)
        if hit is not None:
            return hit
        entry = replace(filtered_of(compute(), forward, block_size), key=key)
        with self.lock:
            hit = self._hit(key, uses)  # another thread cached it meanwhile (maybe with its index)
            if hit is not None:
                return hit
            self.entries[key] = entry
            self.uses[key] = self.uses.get(key, 0) + uses
            while len(self.entries) > self.size:
                old, _ = self.entries.popitem(last=False)
                self.uses.pop(old, None)
                self.pending.discard(old)
        return entry

    def _hit(self, key: str, uses: int) -> Filtered | None:
        """The cached entry of ``key``, counted as used ``uses`` more times and made the most recent
        (lock held); None when it is not cached."""
        hit = self.entries.get(key)
        if hit is not None:
            self.entries.move_to_end(key)
            self.uses[key] += uses
        return hit

    @staticmethod
    def key_of(filter: Any) -> str:
        """A filter's key in ``entries``."""
        return json.dumps(filter, sort_keys=True, default=str)

    def indexed(self, f: Filtered, build: Callable[[Filtered, int], FilterIndex | None]) -> Filtered:
        """``f`` with its own index: the cached one, or one built now (``build(f, max_bytes)``; None:
        it would not fit) when this is at least the filter's ``build_after``-th use and no other
        thread is building it; else ``f`` as it is. Other filters' indexes are dropped, least
        recently used first, until the new one fits within ``max_bytes``."""
        key = f.key
        with self.lock:
            current = self.entries.get(key)
            if current is not None and current.sub is not None:
                return current
            if self.uses.get(key, 0) < self.build_after or key in self.pending or self.max_bytes <= 0:
                return f
            self.pending.add(key)
        try:
            sub = build(f, self.max_bytes)
        except BaseException:
            with self.lock:
                self.pending.discard(key)
            raise
        with self.lock:
            if sub is None:  # too large: stays pending, not tried again while the filter is cached
                return f
            self.pending.discard(key)
            if key not in self.entries:  # evicted meanwhile: serves this search, is not cached
                return replace(f, sub=sub)
            self._make_room(sub.nbytes)
            current = replace(self.entries[key], sub=sub)
            self.entries[key] = current
            return current

    def clear(self) -> None:
        """Forget every filter (the index's deletions changed)."""
        with self.lock:
            self.entries.clear()
            self.uses.clear()
            self.pending.clear()

    def _make_room(self, nbytes: int) -> None:
        """Drop filter indexes, least recently used first, until ``nbytes`` more fit (lock held)."""
        used = self._index_bytes()
        for key, entry in list(self.entries.items()):
            if used + nbytes <= self.max_bytes:
                return
            if entry.sub is not None:
                used -= entry.sub.nbytes
                self.entries[key] = replace(entry, sub=None)

    @property
    def index_bytes(self) -> int:
        """Bytes held by the cached filters' own indexes."""
        with self.lock:
            return self._index_bytes()

    def _index_bytes(self) -> int:
        """:attr:`index_bytes` (lock held)."""
        return sum(e.sub.nbytes for e in self.entries.values() if e.sub is not None)


def set_filter_index_bytes(index: Index, max_bytes: int) -> None:
    """The byte budget of the filter indexes (FilterCache.max_bytes) of ``index``, or of each of its
    parts (a sharded index's shards)."""
    for part in (index, *getattr(index, "segments", ())):
        cache = getattr(part, "filter_cache", None)
        if cache is not None:
            cache.max_bytes = max_bytes


def filtered_of(live: NDArray[np.uint8], forward: Forward | None, block_size: int = 16) -> Filtered:
    """A filter's :class:`Filtered` from its mask: the allowed ids when few enough to score directly,
    and the price of scoring them through ``forward`` (entries x FORWARD_COST, times 4 when the
    allowed docs are scattered: fewer than half of them next to another allowed doc)."""
    if not len(live) or np.count_nonzero(live) > ALLOWED_FRACTION * len(live):
        return Filtered(live)
    return with_allowed(live, forward, block_size)


def with_allowed(live: NDArray[np.uint8], forward: Forward | None = None, block_size: int = 16) -> Filtered:
    """A mask's :class:`Filtered` with its allowed ids, bits, ranks and costs, however many."""
    allowed = np.flatnonzero(live).astype(np.int32)
    bits = np.packbits(live.astype(bool), bitorder="little")
    rank = np.full(len(live), -1, np.int32)
    rank[allowed] = np.arange(len(allowed), dtype=np.int32)
    scattered = np.count_nonzero(np.diff(allowed) == 1) < len(allowed) // 2  # few allowed neighbours
    blocks = len(np.unique(allowed // block_size)) / max(1, -(-len(live) // block_size))
    factor = min(1 + block_size * blocks, 4.0) if scattered else max(blocks, 0.2)
    cost = None
    if forward is not None:
        entries = float((forward.indptr[allowed + 1] - forward.indptr[allowed]).sum())
        cost = FORWARD_COST * entries * (2 if scattered else 1)
    return Filtered(live, allowed, bits, rank, factor, cost)


def block_live_of(live: NDArray[np.uint8], n_blocks: int, block_size: int) -> NDArray[np.uint8]:
    """uint8[n_blocks]: 1 where a block of ``block_size`` docs holds a doc that ``live`` allows."""
    padded = np.zeros(n_blocks * block_size, np.uint8)
    padded[: len(live)] = live
    return np.ascontiguousarray(padded.reshape(n_blocks, block_size).any(axis=1), dtype=np.uint8)


def allowed_batch(
    args: AllowedArgs, queries: SparseBatch, k: int, threads: int | None
) -> tuple[NDArray[np.int32], NDArray[np.float32], NDArray[np.int64]]:
    """The allowed-docs kernel on a checked batch: (docs [n, k], kernel scores [n, k], counts [n])."""
    n = len(queries)
    out = np.full((n, k), -1, np.int32), np.zeros((n, k), SCORE_DTYPE), np.zeros(n, np.int64)
    if n:
        workers = max(1, min(threads or max_threads(), max_threads(), n))
        previous = numba.get_num_threads()
        numba.set_num_threads(max(workers, 1))
        try:
            q = (queries.indptr, queries.term_ids, queries.weights)
            _allowed_search_batch(*args, *q, k, workers, *out)
        finally:
            numba.set_num_threads(previous)
    return out


_PARAMS: dict[tuple[Any, ...], SearchParams] = {}  # search_params' validated settings
_PARAMS_MAX = 1024


def search_params(mode: str, alpha: float, beta: float, budget: int) -> SearchParams:
    """``SearchParams(mode, alpha, beta, budget)``, validated once per distinct setting: a service
    asks for the same few settings on every query, and validating them again cost about 1 us of a
    SciFact query's 25. The key holds each value's type (``True == 1``, but a bool is refused)."""
    key = (mode, type(alpha), alpha, type(beta), beta, type(budget), budget)
    try:
        return _PARAMS[key]
    except (KeyError, TypeError):  # TypeError: an unhashable value, refused below
        pass
    params = SearchParams(mode, alpha, beta, budget)
    if len(_PARAMS) < _PARAMS_MAX:
        _PARAMS[key] = params
    return params


def scaled(scores: NDArray[np.float32], scale: np.float32) -> NDArray[np.float32]:
    """Kernel scores in the encoder's units (``scale``: the impacts' quantization step; 1 for float
    impacts, where the kernels' own array is returned)."""
    return scores if scale == 1 else scores * scale


def typed_list(items: list[Any]) -> Any:
    """A numba typed list of ``items`` (all of one numba type), for kernels that take many segments."""
    out = NumbaList()
    for item in items:
        out.append(item)
    return out


def _fast_canonical(terms: np.ndarray, weights: Any, n_terms: int) -> bool:
    """Whether a query arrives canonical in the kernels' dtypes (term ids ascending and in range,
    weights finite and > 0): then it is searched as it is, without copies (the common case: queries
    from a SparseBatch or an encoder)."""
    return (
        isinstance(weights, np.ndarray)
        and terms.dtype == TERM_DTYPE
        and weights.dtype == WEIGHT_DTYPE
        and terms.ndim == 1
        and terms.shape == weights.shape
        and terms.flags.c_contiguous
        and weights.flags.c_contiguous
        and _canonical_query(terms, weights, n_terms)
    )


def max_threads() -> int:
    """Numba's thread pool size (``NUMBA_NUM_THREADS``, default: all cores). numba.config sets its
    attributes from the environment at import, so mypy cannot see them."""
    return int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]


def prunes(params: SearchParams) -> bool:
    """Whether ``params`` prune queries to their heaviest terms (block-max modes with ``beta < 1``)."""
    return params.mode != "exact" and params.beta < 1


def prune_batch(queries: SparseBatch, params: SearchParams) -> SparseBatch:
    """Query-term pruning of a batch (approx mode with ``beta < 1``; else the batch itself)."""
    if not prunes(params):
        return queries
    return SparseBatch.from_rows(
        _prune_terms(*queries.row(i), _keep(int(n), params.beta)) for i, n in enumerate(queries.row_nnz())
    )


def prune_query(
    terms: NDArray[np.int32], weights: NDArray[np.float32], params: SearchParams
) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
    """Query-term pruning of one checked query (block-max modes; beta = 1 keeps every term)."""
    if not prunes(params) or not len(terms):
        return terms, weights
    return _prune_terms(terms, weights, _keep(len(terms), params.beta))


def _keep(n_terms: int, beta: float) -> int:
    """How many query terms query-term pruning keeps: ceil(beta * n), at least one."""
    return max(1, int(np.ceil(beta * n_terms - 1e-9)))
