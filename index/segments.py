"""A live index opened for reading: one committed generation of segments, searched with one top-k.

Global internal doc ids number the segments' docs one after the other, in manifest order
(``base[i] + local id``), deleted docs included; so the order (score desc, global id asc) is the
order a fresh index built from the surviving docs (in that order) would give, ties included.
Segments are searched in order with the same kernels as a plain index, deleted docs skipped
inside them (``Index.live``); when all segments share one quantization scale (a live index
enforces it), the k-th score found so far is the next segment's starting threshold (it prunes
whole blocks in safe and approx mode). Query term ids beyond a segment's vocabulary (BM25 grows
its vocabulary with later segments) have no postings there and are dropped for that segment.
"""

from __future__ import annotations

import threading
from collections import Counter
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lsr.index.builder import INDEX_FORMAT, INDEX_FORMAT_VERSION
from lsr.index.io import ArtifactError, directory_bytes, read_meta
from lsr.index.manifest import Manifest, read_manifest, read_tombstones, segment_dir
from lsr.index.search import Index, SearchResult, prune_batch, prune_query
from lsr.index.shards import ShardedIndex, is_sharded_index, sharded_meta
from lsr.index.sparse import SCORE_DTYPE, SparseBatch
from lsr.index.topk import top_k

# Files held by open readers in this process (absolute paths, counted): a writer in the same
# process leaves them on disk after a merge; the next writer open removes them.
_HELD: Counter[str] = Counter()
_HELD_LOCK = threading.Lock()


def held_paths() -> set[str]:
    with _HELD_LOCK:
        return {p for p, n in _HELD.items() if n > 0}


def _hold(paths: list[str], delta: int) -> None:
    with _HELD_LOCK:
        for p in paths:
            _HELD[p] += delta


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


def load_segment(index_dir: Path, entry: Any, mmap: bool = True) -> Index:
    """One segment of a manifest, its deletions applied (``Index.live``), its uid checked."""
    seg = Index.load(segment_dir(index_dir, entry.name), mmap=mmap)
    if seg.meta.get("uid") != entry.uid or seg.n_docs != entry.n_docs:
        raise ArtifactError(
            f"segment {entry.name} of {index_dir} is not the one its manifest names (uid "
            f"{seg.meta.get('uid')}, {seg.n_docs} docs; expected {entry.uid}, {entry.n_docs}): damaged index"
        )
    if entry.n_deleted:
        seg.live = np.ascontiguousarray(~read_tombstones(index_dir, entry), dtype=np.uint8)
    return seg


class SegmentedIndex(Index):
    """The segments of one committed generation, searched like :class:`Index` (same signatures).

    ``term_ptr`` sums the segments' posting counts per term (document frequencies over all
    segments, deleted docs included); ``doc_ids`` and ``impacts`` are empty: the postings stay in
    the segments (``segments``), which the search methods read."""

    def __init__(self, path: Path, manifest: Manifest, segments: list[Index]):
        self.path = path
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
        self._held = [str(segment_dir(path, e.name).resolve()) for e in manifest.segments]
        self._held += [str((path / e.tombstones).resolve()) for e in manifest.segments if e.tombstones]
        _hold(self._held, +1)

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
        path = Path(path)
        manifest = manifest or read_manifest(path)
        if manifest is None:
            raise ArtifactError(f"{path} has no manifest (segments_N.json): open it with Index.load")
        return cls(path, manifest, [load_segment(path, e, mmap) for e in manifest.segments])

    def close(self) -> None:
        """Release the files this reader holds (a writer in this process may then remove them)."""
        if self._held:
            _hold(self._held, -1)
            self._held = []

    def __del__(self) -> None:
        self.close()

    # --- what Index offers --------------------------------------------------------------------------

    @cached_property
    def doc_keys(self) -> list[str]:
        return [key for seg in self.segments for key in seg.doc_keys]

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
    ) -> SearchResult:
        """Top-k over all segments for one query (see :meth:`Index.search`)."""
        k = self._check_k(k)
        params = self._check_params(mode, alpha, beta)
        terms, weights = self._check_query(q_terms, q_weights)
        terms, weights = prune_query(terms, weights, params)
        lives = [seg.filtered_live(filter) for seg in self.segments]
        best = _RunningTopK(k)
        for i, seg in enumerate(self.segments):
            cut = int(np.searchsorted(terms, seg.n_terms))
            threshold = best.threshold if self.same_scale else 0.0
            kk = min(k, max(seg.n_docs, 1))
            d, s = seg.search_raw(terms[:cut], weights[:cut], kk, params, threshold, lives[i])
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
    ) -> list[SearchResult]:
        """Top-k over all segments for a batch: each segment's batch kernel in turn, the k-th scores
        found so far as the next segment's per-query thresholds."""
        k = self._check_k(k)
        params = self._check_params(mode, alpha, beta)
        queries.validate(self.n_terms)
        queries = prune_batch(queries, params)
        n = len(queries)
        best = [_RunningTopK(k) for _ in range(n)]
        for i, seg in enumerate(self.segments):
            sub = restrict_batch(queries, seg.n_terms)
            kk = min(k, max(seg.n_docs, 1))
            thresholds = np.array([b.threshold if self.same_scale else 0.0 for b in best], SCORE_DTYPE)
            live = seg.filtered_live(filter)
            out_docs, out_scores, counts = seg.search_batch_raw(sub, kk, params, threads, thresholds, live)
            for q in range(n):
                best[q].add(out_docs[q, : counts[q]], out_scores[q, : counts[q]], i, self)
        return [b.result(self) for b in best]


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
    df = np.zeros(n_terms, np.int64)
    for seg in segments:
        df[: seg.n_terms] += np.diff(np.asarray(seg.term_ptr))
    return np.concatenate([[0], np.cumsum(df)]).astype(np.int64)


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
