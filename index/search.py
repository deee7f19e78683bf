"""Index: load a memory-mapped index directory and search it.

This is the validation boundary: queries are checked and cast here once, then
handed to the kernels in :mod:`lsr.index.kernels.score`, which trust their input.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numba
import numpy as np
from numpy.typing import NDArray

from lsr.index.blockmax import BlockMax
from lsr.index.builder import INDEX_FORMAT, INDEX_FORMAT_VERSION
from lsr.index.fields import Fields, live_filtered
from lsr.index.io import ArtifactError, directory_bytes, load_array, plain_name, read_meta
from lsr.index.kernels.blockmax import _bmp_search_batch, _bmp_search_one, _prune_terms
from lsr.index.kernels.score import SCAN_RATIO, _search_batch, _search_one
from lsr.index.sparse import SCORE_DTYPE, TERM_DTYPE, WEIGHT_DTYPE, SparseBatch, canonical_row

logger = logging.getLogger(__name__)

MODES = ("exact", "safe", "approx")
MAX_K = 100_000  # a batch holds n_queries x k results: a larger k is a mistake, not a request

# the leading arguments of the block-max kernels:
# postings, block-max arrays, ub_ratio, ub_slack, block size, n_blocks
BmpArgs = tuple[
    tuple[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, ...], np.float32, np.float32, int, int
]


@dataclass(frozen=True)
class SearchParams:
    """How to search: ``exact`` scores every posting; ``safe`` (block-max, alpha = beta = 1) returns
    exactly the same top-k; ``approx`` trades recall for speed with ``alpha`` (stop when the k-th
    score exceeds alpha x the best remaining block bound) and ``beta`` (keep that fraction of the
    query's terms, heaviest first)."""

    mode: str = "exact"
    alpha: float = 1.0
    beta: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode {self.mode!r} is not one of {list(MODES)}")
        for name in ("alpha", "beta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise ValueError(f"{name} must be a number in (0, 1], got {value!r}")
        if self.mode != "approx" and (self.alpha != 1 or self.beta != 1):
            raise ValueError(f"mode {self.mode!r} is exact: alpha and beta must be 1 (use mode='approx')")


@dataclass(frozen=True)
class SearchResult:
    """One query's ranked list: internal doc ids and scores, best first. The index's kernels give int32
    ids and float32 scores; re-ranked and candidate lists (lsr.searcher) carry int64 ids, float64 scores."""

    docs: NDArray[np.integer]
    scores: NDArray[np.floating]

    def __len__(self) -> int:
        return len(self.docs)


# what Index.load relies on in meta.json (checked by read_meta)
INDEX_FIELDS = {
    "n_docs": int,
    "n_terms": int,
    "n_postings": int,
    "arrays": dict,
    "impacts": dict,
    "files": list,
}


class Index:
    """A loaded index. Arrays are memory-mapped; only ids and vocabulary are read into memory."""

    scan_ratio: int = SCAN_RATIO  # exact mode: see lsr.index.kernels.score

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
        # 1 = live, per internal doc; empty: every doc is live (a plain index). A live index's
        # segments get theirs from the manifest's tombstones (lsr.index.segments).
        self.live: NDArray[np.uint8] = np.zeros(0, np.uint8)

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
        index = cls(path, meta, arrays)
        index.blockmax = BlockMax.load(path, meta) if blockmax else None
        return index

    @cached_property
    def doc_keys(self) -> list[str]:
        """External doc id of each internal doc."""
        with open(self.path / "ids.txt", encoding="utf-8") as f:
            keys = f.read().splitlines()
        if len(keys) != self.n_docs:
            raise ArtifactError(f"{self.path}/ids.txt has {len(keys)} ids for {self.n_docs} docs")
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

    @cached_property
    def vocab(self) -> list[str]:
        return json.loads((self.path / "vocab.json").read_text(encoding="utf-8"))

    @cached_property
    def term_index(self) -> dict[str, int]:
        return {term: i for i, term in enumerate(self.vocab)}

    @property
    def encoder_dir(self) -> Path:
        """Where the query encoder's files are (inference-free: tokenizer, weight table)."""
        return self.path

    @property
    def nbytes(self) -> int:
        """Bytes on disk of the whole index directory."""
        return directory_bytes(self.path)

    @property
    def postings_nbytes(self) -> int:
        return int(self.term_ptr.nbytes + self.doc_ids.nbytes + self.impacts.nbytes)

    def _check_k(self, k: int) -> int:
        """k in [1, MAX_K]; above n_docs it is clamped (only matching documents come back anyway)."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if k > MAX_K:
            raise ValueError(f"k = {k} is larger than the maximum {MAX_K}: ask for fewer results")
        return int(min(k, max(self.n_docs, 1)))

    def _check_query(self, q_terms: Any, q_weights: Any) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
        terms = np.asarray(q_terms)
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
    ) -> SearchResult:
        """Top-k for one query, on the calling thread (the kernels release the GIL).

        Args:
            q_terms: term ids (repeats are summed).
            q_weights: one weight > 0 per term id.
            k: how many documents to return at most; only matching documents are returned.
            mode, alpha, beta: see :class:`SearchParams`.
            filter: a metadata filter (lsr.index.fields): only the docs it allows.
        """
        k = self._check_k(k)
        params = self._check_params(mode, alpha, beta)
        terms, weights = self._check_query(q_terms, q_weights)
        terms, weights = prune_query(terms, weights, params)
        docs, scores = self.search_raw(terms, weights, k, params, live=self.filtered_live(filter))
        return SearchResult(docs, scores * self.scale)

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
        if params.mode == "exact":
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
            *self._bmp_args(),
            terms,
            weights,
            k,
            np.float32(params.alpha),
            self.block_counters,
            live,
            thr,
            self._block_live(live),
        )

    def _check_params(self, mode: str, alpha: float, beta: float) -> SearchParams:
        params = SearchParams(mode, alpha, beta)
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
    ) -> list[SearchResult]:
        """Top-k for a batch of queries, spread over ``threads`` (default: all cores); ``filter``: one
        metadata filter for the whole batch."""
        k = self._check_k(k)
        params = self._check_params(mode, alpha, beta)
        queries.validate(self.n_terms)
        queries = prune_batch(queries, params)
        live = self.filtered_live(filter)
        out_docs, out_scores, counts = self.search_batch_raw(queries, k, params, threads, live=live)
        return [
            SearchResult(out_docs[i, : counts[i]], out_scores[i, : counts[i]] * self.scale)
            for i in range(len(queries))
        ]

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
        if params.mode == "exact":
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
            n_workers,
            out_docs,
            out_scores,
            counts,
            live,
            thresholds,
            self._block_live(live),
        )

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
        padded = np.zeros(bm.n_blocks * bm.block_size, np.uint8)
        padded[: len(live)] = live
        blocks = np.ascontiguousarray(padded.reshape(bm.n_blocks, bm.block_size).any(axis=1), dtype=np.uint8)
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


def max_threads() -> int:
    """Numba's thread pool size (``NUMBA_NUM_THREADS``, default: all cores). numba.config sets its
    attributes from the environment at import, so mypy cannot see them."""
    return int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]


def prune_batch(queries: SparseBatch, params: SearchParams) -> SparseBatch:
    """Query-term pruning of a batch (approx mode with ``beta < 1``; else the batch itself)."""
    if params.mode == "exact" or params.beta >= 1:
        return queries
    return SparseBatch.from_rows(
        _prune_terms(*queries.row(i), _keep(int(n), params.beta)) for i, n in enumerate(queries.row_nnz())
    )


def prune_query(
    terms: NDArray[np.int32], weights: NDArray[np.float32], params: SearchParams
) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
    """Query-term pruning of one checked query (block-max modes; beta = 1 keeps every term)."""
    if params.mode == "exact" or not len(terms):
        return terms, weights
    return _prune_terms(terms, weights, _keep(len(terms), params.beta))


def _keep(n_terms: int, beta: float) -> int:
    """How many query terms query-term pruning keeps: ceil(beta * n), at least one."""
    return max(1, int(np.ceil(beta * n_terms - 1e-9)))
