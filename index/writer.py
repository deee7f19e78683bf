"""The writer of a live index: add, delete, merge; every operation commits one generation.

    with IndexWriter("indexes/scifact") as w:         # takes write.lock, cleans up stray files
        w.add(batch, ids, vocab)                       # a new segment; existing ids are updates
        w.delete(["doc-7"])                            # tombstones
        w.merge()                                      # all segments, without deleted docs, into one

An operation is acknowledged when it returns: its segment files and tombstones were fsynced,
then the new manifest was committed (temp file, fsync, rename, fsync of the directory). Files of
older generations are removed after the commit, except those of the previous generation (a reader
that has just read that manifest may still be taking its lease) and those an open reader's lease
names (:class:`~lsr.index.segments.SegmentedIndex`, in any process; lsr.index.manifest); the next
writer removes what is left. A crash at any point leaves the last committed generation intact;
what it half wrote is not named by any manifest and is removed by the next writer.

Segments written here share the first segment's impact dtype, quantization scale (weights above
its largest weight are clipped) and block size, and are never reordered. A segment's vocabulary
is a prefix of every later segment's (BM25 and pre-encoded vectors may add terms; transformer
encoders have a fixed vocabulary).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lsr.index.blockmax import block_count
from lsr.index.builder import BuildOptions, build_index
from lsr.index.docstore import DocStore, DocStoreWriter
from lsr.index.io import ArtifactError
from lsr.index.manifest import (
    LOCK_FILE,
    MANIFEST_RE,
    ROOT_SEGMENT,
    Manifest,
    SegmentEntry,
    fsync_dir,
    fsync_tree,
    generations,
    leased_files,
    read_manifest,
    read_tombstones,
    segment_dir,
    write_lock,
    write_manifest,
    write_tombstones,
)
from lsr.index.merged_file import BOUNDS_PREFIX, Layout, stray_bounds
from lsr.index.search import Index
from lsr.index.sparse import PTR_DTYPE, TERM_DTYPE, WEIGHT_DTYPE, SparseBatch, concat

logger = logging.getLogger(__name__)

SECTIONS = ("lsr_version", "encoder", "source", "config", "config_hash", "vectors_config")
DOCSTORE_NAMES = ("docstore.jsonl", "docstore.offsets.npy")
# hidden work files of a writer (manifest and tombstone temporaries, segments being built, encodes of
# added documents and their vector temporaries, BM25 merge corpora) and a reader's bounds file being
# written (lsr.index.merged_file): a crashed writer's or reader's are removed
TEMP_PREFIXES = (".segments_", ".del-", ".seg-", ".docs-", ".add-", "..add-", ".merge-", ".bounds-")


class VocabularyError(ValueError):
    """Vectors over another vocabulary than the index's."""


@dataclass(frozen=True)
class MergePolicy:
    """When :meth:`IndexWriter.maybe_merge` merges: more than ``max_segments`` segments (the newest,
    smallest ones are merged into one, leaving ``max_segments``), or a segment with more than
    ``max_deleted`` of its docs deleted (rewritten alone)."""

    max_segments: int = 10
    max_deleted: float = 0.3

    def __post_init__(self) -> None:
        if (
            isinstance(self.max_segments, bool)
            or not isinstance(self.max_segments, int)
            or self.max_segments < 1
        ):
            raise ValueError(f"max_segments must be an integer >= 1, got {self.max_segments!r}")
        if not 0 < self.max_deleted <= 1:
            raise ValueError(f"max_deleted must lie in (0, 1], got {self.max_deleted!r}")


@dataclass
class WriteResult:
    """What an operation did: external ids added, updated (added again: the old copy is deleted),
    deleted, unknown (asked to delete, not in the index), and the committed generation."""

    generation: int
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)


@dataclass
class Docs:
    """Stored fields of added docs (a docstore for the new segment): title and text per doc."""

    titles: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    metadata: list[dict[str, Any]] | None = None  # one per doc (the fields of lsr.index.fields)


class IndexWriter:
    """The single writer of a live index directory (a plain index becomes one on its first commit)."""

    def __init__(self, path: str | Path, policy: MergePolicy | None = None):
        self.path = Path(path)
        self.policy = policy or MergePolicy()
        self._lock: Any = None
        self.segments: list[Index] = []
        self.deleted: list[np.ndarray] = []
        self.positions: dict[str, tuple[str, int]] = {}  # live external id -> (segment uid, local id)
        self.seg_index: dict[str, int] = {}  # segment uid -> its position in the manifest

    def __enter__(self) -> IndexWriter:
        if not self.path.is_dir():
            raise ArtifactError(f"{self.path} is not an index directory")
        self._lock = write_lock(self.path)
        self._lock.__enter__()
        try:
            self._load(read_manifest(self.path) or self._plain_manifest())
            self.cleanup(keep=self._previous())
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None

    # --- state ------------------------------------------------------------------------------------

    def _plain_manifest(self) -> Manifest:
        """Generation 0: a plain index as one segment (``.``) without deletions."""
        root = Index.load(self.path, blockmax=False)
        impacts = root.meta["impacts"]
        bm = self.path / "blockmax" / "meta.json"
        block_size = None
        if bm.is_file():
            block_size = json.loads(bm.read_text(encoding="utf-8"))["block_size"]
        settings = {
            "impact_dtype": impacts["dtype"],
            "scale": impacts["scale"] if impacts["dtype"] != "float32" else None,
            "block_size": block_size,
        }
        entry = SegmentEntry(ROOT_SEGMENT, root.meta["uid"], root.n_docs)
        return Manifest(0, [entry], 1, settings)

    def _previous(self) -> Manifest | None:
        """The generation before the current one, if its manifest is still here and readable."""
        gens = [g for g in generations(self.path) if g < self.generation]
        try:
            return read_manifest(self.path, gens[-1]) if gens else None
        except ArtifactError:
            return None

    def _load(self, manifest: Manifest, deleted: list[np.ndarray] | None = None) -> None:
        """Make ``manifest`` the writer's state: its segments (those already open reused), their
        deletions (``deleted``: as just committed, else read from the tombstones) and the id map,
        updated for what changed (O(changed documents), not O(index) per commit)."""
        old = dict(zip(self._uids(), zip(self.segments, self.deleted, strict=True), strict=True))
        self.manifest = manifest
        self.segments = [old[e.uid][0] if e.uid in old else self._open_segment(e) for e in manifest.segments]
        if deleted is None:
            deleted = [read_tombstones(self.path, e, manifest.checksums) for e in manifest.segments]
        self.deleted = deleted
        self.seg_index = {e.uid: i for i, e in enumerate(manifest.segments)}
        for uid, (seg, dead) in old.items():
            if uid not in self.seg_index:
                self._unmap(seg, uid, np.flatnonzero(~dead))
        for i, (entry, seg) in enumerate(zip(manifest.segments, self.segments, strict=True)):
            if entry.uid in old:
                self._unmap(seg, entry.uid, np.flatnonzero(self.deleted[i] & ~old[entry.uid][1]))
            else:
                keys = seg.doc_keys
                self.positions.update(
                    (keys[j], (entry.uid, j)) for j in np.flatnonzero(~self.deleted[i]).tolist()
                )

    def _uids(self) -> list[str]:
        return [e.uid for e in self.manifest.segments] if hasattr(self, "manifest") else []

    def _unmap(self, seg: Index, uid: str, locals_: np.ndarray) -> None:
        """Drop these docs of segment ``uid`` from the id map (unless the id now maps elsewhere)."""
        keys = seg.doc_keys
        for j in locals_.tolist():
            if self.positions.get(keys[j]) == (uid, j):
                del self.positions[keys[j]]

    def _deleted_with(self, keys: Sequence[str]) -> list[np.ndarray]:
        """The deletion bitmaps with these (known) ids deleted: changed segments copied, others shared."""
        deleted = list(self.deleted)
        copied: set[int] = set()
        for key in keys:
            uid, local = self.positions[key]
            i = self.seg_index[uid]
            if i not in copied:
                deleted[i] = deleted[i].copy()
                copied.add(i)
            deleted[i][local] = True
        return deleted

    def _open_segment(self, entry: SegmentEntry) -> Index:
        seg = Index.load(segment_dir(self.path, entry.name), blockmax=False)
        if seg.meta.get("uid") != entry.uid:
            raise ArtifactError(f"segment {entry.name} of {self.path} is not the one its manifest names")
        return seg

    @property
    def generation(self) -> int:
        return self.manifest.generation

    @property
    def vocab_segment(self) -> Index:
        return max(self.segments, key=lambda s: s.n_terms)

    @property
    def vocab(self) -> list[str]:
        return self.vocab_segment.vocab

    @property
    def n_live(self) -> int:
        return len(self.positions)

    # --- operations -------------------------------------------------------------------------------

    def add(
        self,
        batch: SparseBatch,
        ids: Sequence[str],
        vocab: Sequence[str],
        docs: Docs | None = None,
        grow_vocab: bool = False,
        stats: dict[str, Any] | None = None,
    ) -> WriteResult:
        """Add docs as a new segment and commit; ids already in the index are updates.

        Args:
            batch: one row per doc, term ids into ``vocab``.
            vocab: the index's vocabulary, possibly followed by new terms (only with ``grow_vocab``).
            docs: titles and texts for the segment's docstore.
            stats: encoder statistics recorded with the segment (BM25: ``total_len``).

        Raises:
            ValueError: ids duplicated, empty or with whitespace, or not one per row.
            VocabularyError: ``vocab`` does not start with the index's vocabulary, or adds terms to a
                fixed vocabulary.
        """
        _check_ids(ids, len(batch))
        batch.validate(len(vocab))
        self._check_vocab(vocab, grow_vocab)
        if len(batch) == 0:
            return WriteResult(self.generation)
        entry = self._write_segment(lambda out: self._build(out, batch, ids, vocab, docs), stats)
        updated = [key for key in ids if key in self.positions]
        deleted = self._deleted_with(updated)
        gen = self._commit([*self.manifest.segments, entry], [*deleted, np.zeros(entry.n_docs, bool)])
        return WriteResult(gen, added=[k for k in ids if k not in set(updated)], updated=updated)

    def delete(self, ids: Sequence[str]) -> WriteResult:
        """Delete docs by external id and commit (nothing is committed when no id is known)."""
        known = list(dict.fromkeys(k for k in ids if k in self.positions))
        unknown = list(dict.fromkeys(k for k in ids if k not in self.positions))
        if not known:
            return WriteResult(self.generation, unknown=unknown)
        gen = self._commit(list(self.manifest.segments), self._deleted_with(known))
        return WriteResult(gen, deleted=known, unknown=unknown)

    def merge(self, start: int = 0, end: int | None = None) -> WriteResult:
        """Rewrite segments ``[start, end)`` (default: all) without their deleted docs, as one segment
        in their place, and commit."""
        end = len(self.segments) if end is None else end
        if not 0 <= start < end <= len(self.segments):
            raise ValueError(f"segments [{start}, {end}) is not a range of the {len(self.segments)} segments")
        names = [e.name for e in self.manifest.segments[start:end]]
        if end - start < len(self.segments) and not any((~d).any() for d in self.deleted[start:end]):
            segments = [*self.manifest.segments[:start], *self.manifest.segments[end:]]
            gen = self._commit(segments, [*self.deleted[:start], *self.deleted[end:]])
            return WriteResult(gen, merged=names)  # nothing live left: the segments just go
        entry = self._write_segment(lambda out: self._build_merged(out, start, end), None)
        return self.replace(start, end, entry, names)

    def replace(
        self, start: int, end: int, entry: SegmentEntry, names: list[str] | None = None
    ) -> WriteResult:
        """Commit ``entry`` (written by :meth:`write_segment`) in place of segments ``[start, end)``."""
        segments = [*self.manifest.segments[:start], entry, *self.manifest.segments[end:]]
        deleted = [*self.deleted[:start], np.zeros(entry.n_docs, bool), *self.deleted[end:]]
        gen = self._commit(segments, deleted)
        return WriteResult(gen, merged=names or [])

    def maybe_merge(self) -> list[WriteResult]:
        """Apply the merge policy (see :class:`MergePolicy`); return what it merged."""
        done = []
        for i, entry in enumerate(list(self.manifest.segments)):
            if entry.n_docs and entry.n_deleted / entry.n_docs > self.policy.max_deleted:
                done.append(self.merge(i, i + 1))
        excess = len(self.segments) - self.policy.max_segments
        if excess > 0:
            done.append(self.merge(len(self.segments) - excess - 1))
        return done

    # --- segments ---------------------------------------------------------------------------------

    def write_segment(
        self, build: Callable[[Path], dict[str, Any]], stats: dict[str, Any] | None
    ) -> SegmentEntry:
        """Run ``build(out)`` (it builds an index directory at ``out``), fsync it, return its entry."""
        return self._write_segment(build, stats)

    def _write_segment(
        self, build: Callable[[Path], dict[str, Any]], stats: dict[str, Any] | None
    ) -> SegmentEntry:
        name = f"seg-{self.manifest.next_segment:06d}"
        self.manifest.next_segment += 1
        out = self.path / name
        if out.exists():  # a crashed writer's leftover that cleanup could not remove (held)
            shutil.rmtree(out)
        meta = build(out)
        fsync_tree(out)
        fsync_dir(self.path)
        return SegmentEntry(name, meta["uid"], meta["n_docs"], stats=stats or {})

    def build_options(self, fresh_scale: bool = False) -> BuildOptions:
        """The options of a new segment: the index's impact dtype, scale and block size."""
        s = self.manifest.settings
        scale = None if fresh_scale else s.get("scale")
        fields = self.vocab_segment.fields
        schema = fields.schema if fields is not None else None
        return BuildOptions(s["impact_dtype"], block_size=s.get("block_size"), scale=scale, fields=schema)

    def sections(self) -> dict[str, Any]:
        """The meta sections a new segment copies from the index (encoder, config, versions)."""
        meta = self.vocab_segment.meta
        return {key: meta[key] for key in SECTIONS if key in meta}

    def encoder_files(self) -> dict[str, Path]:
        """Files the query side needs (inference-free: tokenizer, weight table), copied into segments."""
        seg = self.vocab_segment
        skip = {"ids.txt", "vocab.json", *DOCSTORE_NAMES}
        return {name: seg.path / name for name in seg.meta.get("files", []) if name not in skip}

    def _build(
        self, out: Path, batch: SparseBatch, ids: Sequence[str], vocab: Sequence[str], docs: Docs | None
    ) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(dir=self.path, prefix=".docs-") as tmp:
            files = dict(self.encoder_files())
            if docs is not None:
                files.update(_write_docstore(Path(tmp), ids, docs))
            return build_index(
                lambda: [batch],
                len(vocab),
                list(ids),
                list(vocab),
                out,
                self.build_options(),
                sections=self.sections(),
                extra_files=files,
            )

    def _build_merged(self, out: Path, start: int, end: int) -> dict[str, Any]:
        vocab = self.vocab
        rows: list[SparseBatch] = []
        ids: list[str] = []
        docs = Docs(metadata=[])
        for i in range(start, end):
            seg, live = self.segments[i], ~self.deleted[i]
            rows.append(live_rows(seg, live))
            ids += [key for key, keep in zip(seg.doc_keys, live, strict=True) if keep]
            _append_docs(seg, live, docs)
        batch = _concat_rows(rows)
        return self._build(out, batch, ids, vocab, docs if len(docs.texts) == len(ids) else None)

    # --- commit and cleanup -----------------------------------------------------------------------

    def _commit(self, segments: list[SegmentEntry], deleted: list[np.ndarray]) -> int:
        gen = self.generation + 1
        entries = []
        for entry, dead in zip(segments, deleted, strict=True):
            n_deleted = int(dead.sum())
            tomb = entry.tombstones
            if n_deleted != entry.n_deleted:
                tomb = write_tombstones(self.path, entry.name, gen, dead) if n_deleted else None
            entries.append(SegmentEntry(entry.name, entry.uid, entry.n_docs, n_deleted, tomb, entry.stats))
        fsync_dir(self.path)
        previous = self.manifest
        manifest = Manifest(gen, entries, self.manifest.next_segment, dict(self.manifest.settings))
        write_manifest(self.path, manifest)
        self._load(manifest, deleted)
        self.cleanup(keep=previous)
        return gen

    def cleanup(self, keep: Manifest | None = None) -> list[str]:
        """Remove what no manifest kept here names: older manifests, unreferenced segments and
        tombstones, bounds files (lsr.index.merged_file) of neither kept generation, temporary files
        of a crashed writer or reader, and a plain index's own files once it is no segment any more.
        ``keep``: a previous generation whose files stay for readers. Returns the names removed."""
        referenced = self.manifest.files | (keep.files if keep else set())
        kept_gens = {self.generation, keep.generation if keep else -1}
        held = leased_files(self.path)  # readers' leases, this process's included
        roots = {e.name for e in self.manifest.segments} | {e.name for e in (keep.segments if keep else [])}
        layouts = [_layout(m) for m in (self.manifest, keep) if m is not None]
        removed = []
        for path in sorted(self.path.iterdir()):
            if _is_stray(path, referenced, kept_gens, layouts) and path.name not in held:
                _remove(path)
                removed.append(path.name)
        if self.generation > 0 and ROOT_SEGMENT not in roots:
            removed += _remove_root_segment(self.path, held)
        if removed:
            logger.info("removed %d stale file(s) from %s: %s", len(removed), self.path, removed[:5])
        return removed

    def _check_vocab(self, vocab: Sequence[str], grow: bool) -> None:
        live = self.vocab
        if len(vocab) < len(live) or list(vocab[: len(live)]) != live:
            raise VocabularyError(
                f"the vectors' vocabulary ({len(vocab)} terms) is not the index's ({len(live)} terms) "
                f"followed by new terms: vectors from another vocabulary (another encoder?) cannot be added "
                f"to {self.path}"
            )
        if len(vocab) > len(live) and not grow:
            raise VocabularyError(
                f"the vectors use {len(vocab) - len(live)} term(s) outside the fixed vocabulary of "
                f"{self.path} (e.g. {list(vocab[len(live) : len(live) + 3])})"
            )


def _check_ids(ids: Sequence[str], n_rows: int) -> None:
    if len(ids) != n_rows:
        raise ValueError(f"{len(ids)} doc ids for {n_rows} vectors: one id per document")
    bad = [key for key in ids if not isinstance(key, str) or not key or any(c.isspace() for c in key)]
    if bad:
        raise ValueError(f"doc ids must be non-empty strings without whitespace, got {bad[:3]!r}")
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = [k for k in ids if k in seen or seen.add(k)]  # type: ignore[func-returns-value]
        raise ValueError(f"doc ids repeat within one batch, e.g. {dup[:3]!r}: give each document once")


def live_rows(seg: Index, live: np.ndarray) -> SparseBatch:
    """The live docs of a segment as CSR rows (in internal id order), weights = impact x scale."""
    term_ptr = np.asarray(seg.term_ptr)
    doc_ids = np.asarray(seg.doc_ids)
    terms = np.repeat(np.arange(seg.n_terms, dtype=TERM_DTYPE), np.diff(term_ptr))
    keep = live[doc_ids] if len(doc_ids) else np.zeros(0, bool)
    docs, terms = doc_ids[keep], terms[keep]
    weights = np.asarray(seg.impacts)[keep].astype(np.float64) * float(seg.scale)
    order = np.lexsort((terms, docs))
    new_id = np.cumsum(live) - 1  # internal id -> position among the live docs
    counts = (
        np.bincount(new_id[docs], minlength=int(live.sum()))
        if len(docs)
        else np.zeros(int(live.sum()), np.int64)
    )
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(PTR_DTYPE)
    return SparseBatch(indptr, terms[order].astype(TERM_DTYPE), weights[order].astype(WEIGHT_DTYPE))


def _concat_rows(rows: list[SparseBatch]) -> SparseBatch:
    return concat(rows) if rows else SparseBatch.empty()


def _append_docs(seg: Index, live: np.ndarray, docs: Docs) -> None:
    """Titles and texts of a segment's live docs, from its docstore (none without one)."""
    if not DocStoreWriter.files(seg.path):
        return
    store = DocStore(seg.path)
    for local in np.flatnonzero(live).tolist():
        doc = store.get(local)
        docs.titles.append(doc.get("title", ""))
        docs.texts.append(doc.get("text", ""))
        if docs.metadata is not None:
            docs.metadata.append(doc.get("metadata") or {})


def _write_docstore(tmp: Path, ids: Sequence[str], docs: Docs) -> dict[str, Path]:
    writer = DocStoreWriter(tmp)
    metadata = docs.metadata if docs.metadata is not None else [{}] * len(docs.texts)
    for key, title, text, meta in zip(ids, docs.titles, docs.texts, metadata, strict=True):
        writer.add(key, title, text, meta)
    writer.close()
    return DocStoreWriter.files(tmp)


def _is_stray(path: Path, referenced: set[str], kept_gens: set[int], layouts: list[Layout]) -> bool:
    """Whether cleanup removes ``path``: not the lock, named by no kept manifest (``referenced``, their
    generations ``kept_gens``), or a bounds directory of none of their ``layouts``."""
    name = path.name
    if name == LOCK_FILE or name in referenced:
        return False
    if name.startswith(BOUNDS_PREFIX):
        return stray_bounds(path, layouts)
    m = MANIFEST_RE.match(name)
    if m:
        return int(m.group(1)) not in kept_gens
    if name.startswith(TEMP_PREFIXES):
        return True
    return name.startswith(("seg-", "del-"))


def _layout(manifest: Manifest) -> Layout:
    """A generation's segments (name, uid) and block count, as its bounds files' keys record them
    (none without block-max data)."""
    size = manifest.settings.get("block_size")
    blocks = sum(block_count(e.n_docs, size) for e in manifest.segments) if size else -1
    return [(e.name, e.uid) for e in manifest.segments], blocks


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _remove_root_segment(path: Path, held: set[str]) -> list[str]:
    """The files of the plain index a live index started from, once no kept manifest names it
    (``meta.json`` last, so a crash here leaves nothing that looks complete)."""
    meta_path = path / "meta.json"
    if not meta_path.is_file() or ROOT_SEGMENT in held:
        return []
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    names = [f"{n}.npy" for n in meta.get("arrays", {})] + list(meta.get("files", [])) + ["blockmax"]
    names += ["doc_order.npy", "docstore.jsonl", "docstore.offsets.npy"]
    removed = [n for n in dict.fromkeys(names) if (path / n).exists()]
    for n in removed:
        _remove(path / n)
    meta_path.unlink()
    return [*removed, "meta.json"]
