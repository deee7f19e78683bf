"""A live index opened for reading: one committed generation of segments, searched with one top-k.

Global internal doc ids number the segments' docs one after the other, in manifest order
(``base[i] + local id``), deleted docs included; so the order (score desc, global id asc) is the
order a fresh index built from the surviving docs (in that order) would give, ties included.
Safe and approx mode search all segments in one kernel call (their blocks ranked together, one heap;
``lsr.index.kernels.blockmax._bmp_multi_query``; the bounds from the generation's merged block
maxima, ``lsr.index.blockmax.MergedBounds``, of the segments within ``MERGED_BOUNDS_MB``, and from
the other segments' own block-max arrays: ``SegmentedIndex.bound_plan``), a selective filter scores
just its allowed docs (``lsr.index.kernels.allowed``); exact mode, a generation of one segment, and
segments of other scales or array types, go segment by segment with the plain kernels, deleted docs
skipped inside them (``Index.live``) and the k-th score found so far as the next segment's
threshold. Query term ids beyond a segment's vocabulary (BM25 grows its vocabulary with later
segments) have no postings there and are dropped for that segment. Opening a generation takes a
reader lease (lsr.index.manifest).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import numba
import numpy as np
from numpy.typing import NDArray

from lsr.index.blockmax import MergedBounds
from lsr.index.builder import INDEX_FORMAT, INDEX_FORMAT_VERSION
from lsr.index.checksum import SELF_KEY
from lsr.index.io import ArtifactError, directory_bytes, read_meta
from lsr.index.kernels.allowed import _allowed_search_one
from lsr.index.kernels.blockmax import _bmp_multi_search_batch, _bmp_multi_search_one
from lsr.index.keys import ChainedKeys
from lsr.index.manifest import (
    Manifest,
    generations,
    read_manifest,
    read_tombstones,
    segment_dir,
    write_lease,
)
from lsr.index.merged_file import bounds_key, mapped_merged_bounds
from lsr.index.search import (
    AllowedArgs,
    FilterCache,
    Filtered,
    Index,
    SearchParams,
    SearchResult,
    allowed_batch,
    block_live_of,
    max_threads,
    prune_batch,
    prune_query,
    summed_doc_freq,
    typed_list,
)
from lsr.index.shards import ShardedIndex, is_sharded_index, sharded_meta
from lsr.index.sparse import SCORE_DTYPE, SparseBatch
from lsr.index.subindex import Parts
from lsr.index.topk import top_k

OPEN_ATTEMPTS = 3
# the most MB the merged block maxima of a generation take (``SegmentedIndex.bound_plan``; in its
# mapped bounds file, lsr.index.merged_file): about 8 bytes per sparse run, so ~8M runs (~100,000
# docs of the benchmark corpus), built in ~0.1-0.25 s; bigger segments are read from their own
# memory-mapped block-max arrays
MERGED_BOUNDS_MB = 64.0


def is_live_index(path: str | Path) -> bool:
    """True if ``path`` holds a manifest (a live index that has been written to)."""
    return read_manifest(Path(path)) is not None


def open_index(path: str | Path, mmap: bool = True) -> Index:
    """A plain index (no manifest) as :class:`Index`, unchanged; a live one as :class:`SegmentedIndex`;
    a sharded one (``sharded.json``) as :class:`~lsr.index.shards.ShardedIndex` over its local shards."""
    path = Path(path)
    if is_sharded_index(path):
        return ShardedIndex.open(path, mmap=mmap)
    manifest = read_manifest(path) if path.is_dir() else None
    if manifest is None:
        return Index.load(path, mmap=mmap)
    return SegmentedIndex.open(path, manifest, mmap=mmap)


def index_meta(path: str | Path) -> dict[str, Any]:
    """An index's meta without loading it: a plain index's ``meta.json``; for a live index, its last
    segment's, with ``n_docs`` the live documents and a ``live`` section (generation, segments)."""
    path = Path(path)
    if is_sharded_index(path):
        return sharded_meta(path)
    manifest = read_manifest(path) if path.is_dir() else None
    if manifest is None:
        return read_meta(path, INDEX_FORMAT, (INDEX_FORMAT_VERSION,))
    last = manifest.segments[-1]
    meta = read_meta(segment_dir(path, last.name), INDEX_FORMAT, (INDEX_FORMAT_VERSION,))
    n_live = sum(e.n_docs - e.n_deleted for e in manifest.segments)
    return {
        **meta,
        "n_docs": n_live,
        "live": {"generation": manifest.generation, "segments": len(manifest.segments)},
    }


def load_segment(
    index_dir: Path, entry: Any, mmap: bool = True, checksums: dict[str, Any] | None = None
) -> Index:
    """One segment of a manifest, its deletions applied (``Index.live``), its uid checked."""
    seg = Index.load(segment_dir(index_dir, entry.name), mmap=mmap)
    if seg.meta.get("uid") != entry.uid or seg.n_docs != entry.n_docs:
        raise ArtifactError(
            f"segment {entry.name} of {index_dir} is not the one its manifest names (uid "
            f"{seg.meta.get('uid')}, {seg.n_docs} docs; expected {entry.uid}, {entry.n_docs}): damaged index"
        )
    if entry.n_deleted:
        seg.live = np.ascontiguousarray(~read_tombstones(index_dir, entry, checksums), dtype=np.uint8)
    return seg


class SegmentedIndex(Index):
    """The segments of one committed generation, searched like :class:`Index` (same signatures).

    ``term_ptr`` sums the segments' posting counts per term (document frequencies over all
    segments, deleted docs included); ``doc_ids`` and ``impacts`` are empty: the postings stay in
    the segments (``segments``), which the search methods read."""

    supports_budget = False  # the multi-segment kernel has no block budget
    doc_id_dtype = np.int64

    def __init__(self, path: Path, manifest: Manifest, segments: list[Index], mmap: bool = True):
        self.path = path
        self.mmap = mmap  # False: the merged block maxima too are built in memory
        self.manifest = manifest
        self.generation = manifest.generation
        self.segments = segments
        self.bases = np.concatenate([[0], np.cumsum([s.n_docs for s in segments])]).astype(np.int64)
        self.n_docs = int(self.bases[-1])
        self.n_live = self.n_docs - sum(e.n_deleted for e in manifest.segments)
        self.vocab_segment = max(segments, key=lambda s: s.n_terms) if segments else None
        self.n_terms = self.vocab_segment.n_terms if self.vocab_segment else 0
        self.term_ptr = _summed_term_ptr(segments, self.n_terms)
        self.doc_ids = np.zeros(0, np.int32)
        self.impacts = np.zeros(0, segments[0].impacts.dtype if segments else np.uint8)
        self.meta = self._live_meta()
        scales = {float(s.scale) for s in segments}
        self.same_scale = len(scales) <= 1  # one scale: thresholds carry from segment to segment
        self.scale = np.float32(scales.pop() if len(scales) == 1 else 1.0)
        self.blockmax = segments[0].blockmax if segments and all(s.blockmax for s in segments) else None
        self.block_counters = np.zeros(2, np.int64)
        self.live = np.zeros(0, np.uint8)
        self.lease: Path | None = None  # set by open(): this reader's lease on the generation's files
        self.filter_cache = FilterCache()
        self.merged_bounds_mb = MERGED_BOUNDS_MB  # see bound_plan; set before the first search

    def _live_meta(self) -> dict[str, Any]:
        """The newest segment's meta (encoder, config), with the whole generation's counts."""
        newest = self.vocab_segment.meta if self.vocab_segment else {}
        return {
            **newest,
            "n_docs": self.n_docs,
            "n_terms": self.n_terms,
            "n_postings": int(self.term_ptr[-1]),
            "live": {"generation": self.generation, "segments": len(self.segments), "n_live": self.n_live},
        }

    @classmethod
    def open(cls, path: str | Path, manifest: Manifest | None = None, mmap: bool = True) -> SegmentedIndex:
        """Open ``manifest`` (default: the newest), holding its files with a lease (lsr.index.manifest);
        if a file of it is gone before the lease was seen (two commits meanwhile), the newest
        generation is opened instead."""
        path = Path(path)
        for attempt in range(OPEN_ATTEMPTS):
            manifest = manifest if manifest is not None and attempt == 0 else read_manifest(path)
            if manifest is None:
                raise ArtifactError(f"{path} has no manifest (segments_N.json): open it with Index.load")
            lease = write_lease(path, manifest)
            try:
                index = cls(
                    path,
                    manifest,
                    [load_segment(path, e, mmap, manifest.checksums) for e in manifest.segments],
                    mmap,
                )
            except (ArtifactError, FileNotFoundError):
                if lease is not None:
                    lease.unlink(missing_ok=True)
                if attempt + 1 == OPEN_ATTEMPTS or generations(path)[-1:] == [manifest.generation]:
                    raise
                continue
            index.lease = lease
            return index
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Release this reader's lease (a writer may then remove the generation's files)."""
        if self.lease is not None:
            self.lease.unlink(missing_ok=True)
            self.lease = None

    def __del__(self) -> None:
        if hasattr(self, "lease"):
            self.close()

    # --- what Index offers --------------------------------------------------------------------------

    @cached_property
    def doc_keys(self) -> Sequence[str]:
        """The segments' ids in order, deleted documents' included (no object a document)."""
        return ChainedKeys([seg.doc_keys for seg in self.segments])

    @cached_property
    def vocab(self) -> list[str]:
        return self.vocab_segment.vocab if self.vocab_segment else []

    @cached_property
    def term_index(self) -> dict[str, int]:
        return {term: i for i, term in enumerate(self.vocab)}

    @property
    def encoder_dir(self) -> Path:
        return self.vocab_segment.path if self.vocab_segment else self.path

    @property
    def nbytes(self) -> int:
        return directory_bytes(self.path)

    @property
    def postings_nbytes(self) -> int:
        return sum(s.postings_nbytes for s in self.segments)

    @cached_property
    def live_mask(self) -> NDArray[np.bool_]:
        """bool[n_docs]: True for live docs, by global id."""
        parts = [s.live.astype(bool) if len(s.live) else np.ones(s.n_docs, bool) for s in self.segments]
        return np.concatenate(parts) if parts else np.zeros(0, bool)

    def filtered_live(self, filter: Any) -> NDArray[np.uint8]:
        """The live docs a filter allows, by global id (each segment's mask, concatenated).

        Raises:
            FieldError: an unknown field, a malformed filter, or a segment without fields.
        """
        if filter is None:
            return np.ascontiguousarray(self.live_mask, dtype=np.uint8)
        parts = [seg.filtered_live(filter) for seg in self.segments]
        full = [
            p if len(p) else np.ones(seg.n_docs, np.uint8)
            for p, seg in zip(parts, self.segments, strict=True)
        ]
        return np.concatenate(full) if full else np.zeros(0, np.uint8)

    def segment_of(self, doc: int) -> tuple[int, int]:
        """The position of the segment holding global doc id ``doc``, and its local id there."""
        i = int(np.searchsorted(self.bases, doc, side="right")) - 1
        return i, int(doc - self.bases[i])

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
        """Top-k over all segments for one query (see :meth:`Index.search`): a selective filter's
        allowed docs scored directly, block-max modes in one kernel call over all segments, exact mode
        (or segments the one-call kernels cannot take together) segment by segment."""
        k = self._check_k(k)
        params = self._check_params(mode, alpha, beta, budget)
        full = self._check_query(q_terms, q_weights)
        f, path = self._route(filter, full[0])
        if path == "subindex":
            return self._sub_search(f, full, k, params)
        terms, weights = prune_query(*full, params)
        live = f.live
        if self._multi is not None and path == "postings":
            docs, scores = _allowed_search_one(*self._allowed_args(f), terms, weights, k)
            return SearchResult(docs.astype(np.int64), scores * self.scale)
        if params.mode != "exact" and self._one_call:
            docs, scores = _bmp_multi_search_one(
                *self._one_call_args(),
                terms,
                weights,
                k,
                np.float32(params.alpha),
                self.block_counters,
                live,
                self._global_block_live(live),
            )
            return SearchResult(docs.astype(np.int64), scores * self.scale)
        if len(self.segments) == 1:  # its own kernel, no merging of results
            seg = self.segments[0]
            d, s = seg.search_raw(terms, weights, min(k, max(seg.n_docs, 1)), params, 0.0, live)
            return SearchResult(d.astype(np.int64), s * self.scale)
        best = _RunningTopK(k)
        for i, seg in enumerate(self.segments):
            cut = int(np.searchsorted(terms, seg.n_terms))
            threshold = best.threshold if self.same_scale else 0.0
            kk = min(k, max(seg.n_docs, 1))
            d, s = seg.search_raw(
                terms[:cut], weights[:cut], kk, params, threshold, self._segment_live(live, i)
            )
            best.add(d, s, i, self)
        return best.result(self)

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
        """Top-k over all segments for a batch: the one-call kernels as in :meth:`search`, else each
        segment's batch kernel in turn, the k-th scores found so far as the next one's thresholds."""
        k = self._check_k(k)
        params = self._check_params(mode, alpha, beta, budget)
        queries.validate(self.n_terms)
        f, path = self._route(filter, np.asarray(queries.term_ids), len(queries))
        if path == "subindex":
            return self._sub_search_batch(f, queries, k, params, threads)
        queries = prune_batch(queries, params)
        live = f.live
        direct = path == "postings" and self._multi is not None
        if direct or (params.mode != "exact" and self._one_call):
            if direct:
                out_docs, out_scores, counts = allowed_batch(self._allowed_args(f), queries, k, threads)
            else:
                out_docs, out_scores, counts = self._multi_batch(queries, k, params, threads, live)
            return [
                SearchResult(
                    out_docs[i, : counts[i]].astype(np.int64), out_scores[i, : counts[i]] * self.scale
                )
                for i in range(len(queries))
            ]
        n = len(queries)
        best = [_RunningTopK(k) for _ in range(n)]
        for i, seg in enumerate(self.segments):
            sub = restrict_batch(queries, seg.n_terms)
            kk = min(k, max(seg.n_docs, 1))
            thresholds = np.array([b.threshold if self.same_scale else 0.0 for b in best], SCORE_DTYPE)
            out_docs, out_scores, counts = seg.search_batch_raw(
                sub, kk, params, threads, thresholds, self._segment_live(live, i)
            )
            for q in range(n):
                best[q].add(out_docs[q, : counts[q]], out_scores[q, : counts[q]], i, self)
        return [b.result(self) for b in best]

    def _segment_live(self, live: NDArray[np.uint8], i: int) -> NDArray[np.uint8]:
        """Segment i's part of a mask by global id: the mask itself in a generation of one segment, so
        that the segment's kernel keeps its block mask across queries (``Index._block_live``)."""
        if not len(live) or len(self.segments) == 1:
            return live
        return live[self.bases[i] : self.bases[i + 1]]

    def _multi_batch(
        self, queries: SparseBatch, k: int, params: SearchParams, threads: int | None, live: NDArray[np.uint8]
    ) -> tuple[NDArray[np.int32], NDArray[np.float32], NDArray[np.int64]]:
        assert self._multi is not None
        n = len(queries)
        out = np.full((n, k), -1, np.int32), np.zeros((n, k), SCORE_DTYPE), np.zeros(n, np.int64)
        if n:
            workers = max(1, min(threads or max_threads(), max_threads(), n))
            previous = numba.get_num_threads()
            numba.set_num_threads(workers)
            try:
                _bmp_multi_search_batch(
                    *self._one_call_args(),
                    queries.indptr,
                    queries.term_ids,
                    queries.weights,
                    k,
                    np.float32(params.alpha),
                    workers,
                    *out,
                    live,
                    self._global_block_live(live),
                )
            finally:
                numba.set_num_threads(previous)
        return out

    # --- the one-call kernels' arguments ------------------------------------------------------------

    @cached_property
    def _multi(self) -> tuple[Any, NDArray[np.int64], NDArray[np.float32]] | None:
        """The one-call kernels' per-segment arguments, built once per opened generation: a typed list
        of each segment's (doc_ids, impacts, dense_base, dense_off), int64[n, 4] = (n_terms, n_blocks,
        first doc, first block), float32[n, 2] = (ub_ratio, ub_slack); None when the segments cannot
        go to one kernel call (no block-max data, other scales or block sizes, arrays of other types)."""
        segs = self.segments
        if not segs or not self.same_scale or self.blockmax is None:
            return None
        if len({s.blockmax.block_size for s in segs if s.blockmax}) != 1:
            return None
        scoring = [_scoring_item(s) for s in segs]
        if len({numba.typeof(c) for c in scoring}) != 1:
            return None
        n_blocks = np.array([s.blockmax.n_blocks for s in segs if s.blockmax], np.int64)
        seg_int = np.stack(
            [
                np.array([s.n_terms for s in segs], np.int64),
                n_blocks,
                self.bases[:-1],
                np.concatenate([[0], np.cumsum(n_blocks)[:-1]]).astype(np.int64),
            ],
            axis=1,
        )
        seg_ub = np.array(
            [[s.blockmax.ub_ratio, s.blockmax.ub_slack] for s in segs if s.blockmax], np.float32
        )
        self._postings = typed_list([(s.term_ptr, s.doc_ids, s.impacts) for s in segs])
        return typed_list(scoring), np.ascontiguousarray(seg_int), seg_ub

    @cached_property
    def bound_plan(self) -> tuple[list[int], list[int]]:
        """(merged, own): the segments whose block maxima the one-call kernel reads merged
        (``merged_bounds``), and those it reads from their own memory-mapped arrays (the per-segment
        bound pass, one directory and run list per (term, segment)). Smallest first, segments are
        merged while the merged maxima stay within ``merged_bounds_mb``: a generation's big, stable
        segments (a tiered merge policy's) are not copied again by every commit that adds a small
        one. Own segments' arrays of different types (one kernel type) merge them all."""
        assert self._multi is not None
        segs = self.segments
        total_blocks = int(self._multi[1][-1, 3] + self._multi[1][-1, 1])
        scaled = len({float(s.blockmax.ub_ratio) for s in segs if s.blockmax}) > 1
        sizes = [MergedBounds.estimate_nbytes(s.blockmax, total_blocks, scaled) for s in segs if s.blockmax]
        merged: list[int] = []
        used = 0
        for i in sorted(range(len(segs)), key=lambda i: (sizes[i], i)):
            if used + sizes[i] > self.merged_bounds_mb * 1e6:
                break
            merged.append(i)
            used += sizes[i]
        own = [i for i in range(len(segs)) if i not in set(merged)]
        if len({numba.typeof(_own_item(segs[i])) for i in own}) > 1:
            return list(range(len(segs))), []
        return sorted(merged), own

    @cached_property
    def merged_bounds(self) -> MergedBounds:
        """The merged segments' block maxima (``MergedBounds``; ``bound_plan``), built by the first
        block-max search of a generation of two or more segments (one segment is searched by its own
        kernel), shared with every other opened generation of the same segments in the same places
        (``shared_merged_bounds``)."""
        assert self._multi is not None
        return shared_merged_bounds(self, self.bound_plan[0])

    @cached_property
    def _own_bounds(self) -> tuple[Any, NDArray[np.int64]]:
        """The one-call kernel's typed list of the own segments' block-max arrays (``_own_item``; the
        first segment's when none, never read) and int64[n_segments]: each one's item, -1 merged."""
        own = self.bound_plan[1]
        own_of = np.full(len(self.segments), -1, np.int64)
        own_of[own] = np.arange(len(own))
        items = [_own_item(self.segments[i]) for i in own] or [_own_item(self.segments[0])]
        return typed_list(items), own_of

    @property
    def _one_call(self) -> bool:
        """Whether safe and approx searches go to the one-call block-max kernel (two or more segments
        it can take together); else segment by segment (one segment: its own kernel)."""
        return self._multi is not None and len(self.segments) > 1

    def _one_call_args(
        self,
    ) -> tuple[tuple[Any, ...], Any, NDArray[np.int64], Any, NDArray[np.int64], NDArray[np.float32], int]:
        """The one-call block-max kernel's leading arguments (merged bounds, own segments' bounds,
        per-segment arrays, block size)."""
        assert self._multi is not None
        return (self.merged_bounds.arrays, *self._own_bounds, *self._multi, self.block_size)

    @property
    def block_size(self) -> int:
        return self.blockmax.block_size if self.blockmax is not None else 0

    def _allowed_args(self, f: Filtered) -> AllowedArgs:
        assert self._multi is not None and f.allowed is not None and f.rank is not None
        ptr = np.searchsorted(f.allowed, self.bases).astype(np.int64)
        return self._postings, self._multi[1][:, 0].copy(), self.bases, f.allowed, ptr, f.bits, f.rank

    def _filtered(self, filter: Any, uses: int = 1) -> Filtered:
        """uint8[n_docs] by global id: the live docs a filter allows, empty when every doc is (no filter,
        no deletion); and the allowed ids when few enough to score directly; cached per filter."""
        if filter is None:
            return Filtered(self._live_u8 if self.n_live < self.n_docs else np.zeros(0, np.uint8))
        compute = partial(self.filtered_live, filter)
        return self.filter_cache.get(filter, compute, None, self._filter_block_size, uses)

    def _subindex_parts(self) -> tuple[Parts, NDArray[np.int64]] | None:
        """The segments' postings, when they can be searched in one kernel call (one scale and array
        types): a filter's own index is gathered from them."""
        if self._multi is None:
            return None
        return [(s.term_ptr, s.doc_ids, s.impacts) for s in self.segments], self.bases[:-1]

    @cached_property
    def _live_u8(self) -> NDArray[np.uint8]:
        return np.ascontiguousarray(self.live_mask, dtype=np.uint8)

    def _global_block_live(self, live: NDArray[np.uint8]) -> NDArray[np.uint8]:
        """uint8[all segments' blocks]: 1 where a block holds a doc ``live`` allows (empty: all)."""
        if not len(live):
            return live
        if live is self.__dict__.get("_live_u8"):
            return self._block_live_u8
        return self._blocks_of(live)

    @cached_property
    def _block_live_u8(self) -> NDArray[np.uint8]:
        return self._blocks_of(self._live_u8)

    def _blocks_of(self, live: NDArray[np.uint8]) -> NDArray[np.uint8]:
        parts = [
            block_live_of(
                live[self.bases[i] : self.bases[i + 1]], seg.blockmax.n_blocks, seg.blockmax.block_size
            )
            for i, seg in enumerate(self.segments)
            if seg.blockmax is not None
        ]
        return np.concatenate(parts) if parts else np.zeros(0, np.uint8)


# the merged block maxima of the opened generations, by their merged segments' (path, uid, place,
# first block), the generation's blocks and terms
_MERGED: weakref.WeakValueDictionary[tuple[Any, ...], MergedBounds]
_MERGED = weakref.WeakValueDictionary()
_MERGED_LOCK = threading.Lock()


def shared_merged_bounds(index: SegmentedIndex, chosen: list[int]) -> MergedBounds:
    """The merged block maxima of the ``chosen`` segments of ``index`` (places, ascending), mapped from
    their bounds file (``lsr.index.merged_file``: built into it by the first reader; in memory when the
    index is opened with ``mmap=False`` or its directory cannot be written), opened once (under a
    lock, so concurrent first searches build it once) and shared while any opened index holds it: a
    delete-only commit keeps the segments, so its generation reuses the previous one's, and two
    readers of one generation share it."""
    assert index._multi is not None
    seg_int = index._multi[1]
    segments = index.segments
    total_blocks = int(seg_int[-1, 3] + seg_int[-1, 1])
    places = tuple(
        (str(segments[i].path), str(segments[i].meta.get("uid")), i, int(seg_int[i, 3])) for i in chosen
    )
    key = (places, total_blocks, index.n_terms)
    with _MERGED_LOCK:
        merged = _MERGED.get(key)
        if merged is None:
            merged = _open_merged_bounds(index, chosen, seg_int[chosen, 3], total_blocks)
            _MERGED[key] = merged
    return merged


def _open_merged_bounds(
    index: SegmentedIndex, chosen: list[int], firsts: NDArray[np.int64], total_blocks: int
) -> MergedBounds:
    """Build the merged maxima (``firsts``: the chosen segments' first global blocks) into their bounds
    file, or map it (``mapped_merged_bounds``); in memory for an index opened with ``mmap=False``."""
    segments = [index.segments[i] for i in chosen]
    blockmaxes = [s.blockmax for s in segments if s.blockmax is not None]  # all: see _multi
    term_ptrs = [s.term_ptr for s in segments]
    build = partial(MergedBounds.build, blockmaxes, term_ptrs, chosen, firsts, total_blocks, index.n_terms)
    if not index.mmap:
        return build()
    names = [index.manifest.segments[i].name for i in chosen]
    entries = [
        _key_entry(name, seg, i, int(first))
        for name, seg, i, first in zip(names, segments, chosen, firsts, strict=True)
    ]
    return mapped_merged_bounds(index.path, bounds_key(entries, total_blocks, index.n_terms), build)


def _key_entry(name: str, seg: Index, place: int, first: int) -> dict[str, Any]:
    """A merged segment in its bounds file's key: what identifies its block-max arrays, and where they go."""
    bm_meta = seg.blockmax.meta if seg.blockmax is not None else {}
    blockmax = bm_meta.get(SELF_KEY) or bm_meta.get("created")
    return {"name": name, "uid": seg.meta.get("uid"), "blockmax": blockmax, "place": place, "first": first}


def _own_item(seg: Index) -> tuple[np.ndarray, ...]:
    """A segment's item in the one-call kernel's typed list of own block-max arrays
    (``lsr.index.kernels.blockmax._own_terms``)."""
    bm = seg.blockmax
    assert bm is not None
    return (
        seg.term_ptr,
        bm.row_of,
        bm.dense_max,
        bm.tb_ptr,
        bm.tb_block,
        bm.tb_max,
        bm.dense_before,
        bm.tb_base,
        bm.tb_off,
    )


def _scoring_item(seg: Index) -> tuple[np.ndarray, ...]:
    """A segment's item in the one-call kernel's typed list (see ``SegmentedIndex._multi``)."""
    bm = seg.blockmax
    assert bm is not None
    return seg.doc_ids, seg.impacts, bm.dense_base, bm.dense_off


class _RunningTopK:
    """The best k (global doc id, score) pairs over the segments searched so far, best first: kernel
    scores while all segments share one scale (the threshold for the next segment), else scaled."""

    def __init__(self, k: int):
        self.k = k
        self.docs = np.zeros(0, np.int64)
        self.scores = np.zeros(0, SCORE_DTYPE)

    @property
    def threshold(self) -> float:
        return float(self.scores[-1]) if len(self.scores) == self.k else 0.0

    def add(self, docs: np.ndarray, scores: np.ndarray, segment: int, index: SegmentedIndex) -> None:
        if not len(docs):
            return
        if not index.same_scale:
            scores = (scores * index.segments[segment].scale).astype(SCORE_DTYPE)
        all_docs = np.concatenate([self.docs, docs.astype(np.int64) + int(index.bases[segment])])
        self.docs, self.scores = top_k(np.concatenate([self.scores, scores]), self.k, all_docs)

    def result(self, index: SegmentedIndex) -> SearchResult:
        scores = self.scores * index.scale if index.same_scale else self.scores
        return SearchResult(self.docs, scores)


def restrict_batch(queries: SparseBatch, n_terms: int) -> SparseBatch:
    """The batch without term ids >= ``n_terms`` (a segment with a shorter vocabulary)."""
    keep = np.asarray(queries.term_ids) < n_terms
    if keep.all():
        return queries
    rows = np.repeat(np.arange(len(queries)), np.diff(queries.indptr))
    counts = np.bincount(rows[keep], minlength=len(queries))
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(queries.indptr.dtype)
    return SparseBatch(indptr, np.asarray(queries.term_ids)[keep], np.asarray(queries.weights)[keep])


def _summed_term_ptr(segments: list[Index], n_terms: int) -> NDArray[np.int64]:
    return np.concatenate([[0], np.cumsum(summed_doc_freq(segments, n_terms))]).astype(np.int64)


def segment_summary(index: SegmentedIndex) -> list[dict[str, Any]]:
    """Per segment: name, docs, deleted, live, bytes on disk (``lsr info``)."""
    out = []
    for entry, seg in zip(index.manifest.segments, index.segments, strict=True):
        out.append(
            {
                "name": entry.name,
                "n_docs": entry.n_docs,
                "n_deleted": entry.n_deleted,
                "n_live": entry.n_docs - entry.n_deleted,
                "bytes": directory_bytes(seg.path) if entry.name != "." else seg.postings_nbytes,
                "tombstones": entry.tombstones,
            }
        )
    return out
