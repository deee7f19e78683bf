"""A live generation's merged block maxima on disk (``bounds-HASH/`` in the live index directory), so that
a warm reader maps them instead of holding them in anonymous memory.

:class:`~lsr.index.blockmax.MergedBounds` is derived data: the first block-max search of an opened
generation builds it straight into the files of a hidden temporary directory (``np.lib.format``
memory maps, their blocks reserved with ``posix_fallocate`` first, so a full disk is an ``OSError``
here, not a ``SIGBUS`` on a write through the mapping), seals them (``meta.json``: the key below, the
ratio, array specs, each file's size and CRC-32) and renames the directory into place
(``lsr.index.io.atomic_directory``: a reader killed at any moment leaves the old directory or the new
one, never half of one; its hidden temporaries are removed by the next writer). Later readers of the
same segments (other processes, the next generation after a delete-only commit, a restart) map it.

The directory's name hashes its **key**: each merged segment's name, uid, block-max meta checksum,
place and first global block, the generation's blocks and terms, and the format version; the key is
also in the meta and must equal the reader's, so a file is only ever read for the exact inputs it was
built from (the build is deterministic: two processes racing write the same bytes, and the later
rename replaces the earlier directory, whose mapped files stay valid for whoever maps them). Opening
one reads every byte against its CRC-32 (~30 ms per 64 MB): a truncated, corrupt or foreign file is
logged and rebuilt, never searched. Not written (built in memory, as before, with a log line) when the
directory cannot be written (read-only) or the disk is full. No fsync: a file torn by a power loss
fails its checksum and is rebuilt. The writer's cleanup removes a bounds directory once it belongs to
no generation it keeps (``lsr.index.writer.IndexWriter.cleanup``), so the adds leave at most the current
and the previous generation's.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from lsr.index.blockmax import MERGED_ARRAYS, Allocate, MergedBounds, allocate_in_memory
from lsr.index.checksum import checksum_problems, listed_files
from lsr.index.io import (
    META_FILE,
    ArtifactError,
    CorruptArtifactError,
    atomic_directory,
    load_array,
    read_meta,
    write_meta,
)

logger = logging.getLogger(__name__)

BOUNDS_PREFIX = "bounds-"
MERGED_FORMAT = "lsr-merged-bounds"
MERGED_FORMAT_VERSION = 1
MERGED_FIELDS = {"key": dict, "ratio": float, "arrays": dict}  # what load_bounds relies on in meta.json
Build = Callable[[Allocate], MergedBounds]  # MergedBounds.build with its inputs bound


def bounds_key(segments: list[dict[str, Any]], total_blocks: int, n_terms: int) -> dict[str, Any]:
    """What a generation's merged maxima are built from: ``segments`` (per merged segment, in order:
    name, uid, block-max meta checksum, place, first global block), blocks and terms."""
    return {
        "format_version": MERGED_FORMAT_VERSION,
        "segments": segments,
        "total_blocks": total_blocks,
        "n_terms": n_terms,
    }


def bounds_dir(index_dir: Path, key: dict[str, Any]) -> Path:
    digest = hashlib.blake2b(json.dumps(key, sort_keys=True).encode("utf-8"), digest_size=10).hexdigest()
    return index_dir / f"{BOUNDS_PREFIX}{digest}"


def mapped_merged_bounds(index_dir: Path, key: dict[str, Any], build: Build) -> MergedBounds:
    """The merged maxima of ``key`` mapped from their bounds directory in ``index_dir``: the one there
    (if sound), else built into a new one; built in memory where it cannot be written."""
    directory = bounds_dir(index_dir, key)
    try:
        found = load_bounds(directory, key)
    except (ArtifactError, OSError) as exc:  # OSError: e.g. replaced by another process while read
        logger.warning("%s cannot be used (%s); rebuilding it", directory, exc)
        found = None
    if found is not None:
        return found
    try:
        return write_bounds(directory, key, build)
    except OSError as exc:
        # another reader may have put its (identical) directory in place between our check and rename
        try:
            found = load_bounds(directory, key)
        except (ArtifactError, OSError):
            found = None
        if found is not None:
            return found
        logger.info("merged block maxima kept in memory: cannot write %s (%s)", directory, exc)
        return build(allocate_in_memory)


def load_bounds(directory: Path, key: dict[str, Any]) -> MergedBounds | None:
    """The merged maxima mapped from ``directory`` (None if there is none), every byte checked.

    Raises:
        ArtifactError: the directory holds another key or another format version.
        CorruptArtifactError: a file is missing, truncated, of the wrong dtype or shape, or fails its
            checksum.
    """
    if not directory.is_dir():
        return None
    meta = read_meta(directory, MERGED_FORMAT, (MERGED_FORMAT_VERSION,), MERGED_FIELDS)
    if meta["key"] != key:
        raise ArtifactError(f"{directory} holds the merged block maxima of other segments")
    listed = listed_files(meta)
    missing = [name for name in MERGED_ARRAYS if name not in meta["arrays"] or f"{name}.npy" not in listed]
    if missing:
        raise CorruptArtifactError(directory / META_FILE, f"lacks the arrays or checksums of {missing}")
    arrays = {name: load_array(directory, name, meta["arrays"][name]) for name in MERGED_ARRAYS}
    problems = checksum_problems(directory, meta)
    if problems:
        raise CorruptArtifactError(directory / problems[0][0], problems[0][1])
    return MergedBounds(arrays, meta["ratio"], directory)


def write_bounds(directory: Path, key: dict[str, Any], build: Build) -> MergedBounds:
    """Build the merged maxima into mapped files of a temporary directory, seal it, rename it to
    ``directory`` (replacing one there); return them, mapped.

    Raises:
        OSError: the index directory cannot be written, or the disk is full.
    """
    made: list[Path] = []
    try:
        with atomic_directory(directory, overwrite=True) as tmp:
            made.append(tmp)
            merged = _build_into(tmp, key, build)
    except OSError:  # the rename lost a race (or the disk is full): leave no temporary behind
        for tmp in made:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    merged.path = directory
    return merged


def _build_into(tmp: Path, key: dict[str, Any], build: Build) -> MergedBounds:
    """The merged maxima built into mapped files of ``tmp``, sealed with their meta."""
    merged = build(partial(_mapped_array, tmp))
    meta = {
        "format": MERGED_FORMAT,
        "format_version": MERGED_FORMAT_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "key": key,
        "ratio": float(merged.ratio),
        "arrays": {name: {"dtype": str(a.dtype), "shape": list(a.shape)} for name, a in merged.named.items()},
    }
    write_meta(tmp, meta)
    return merged


def _mapped_array(directory: Path, name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A new ``name.npy`` in ``directory``, mapped for writing, its blocks reserved."""
    path = directory / f"{name}.npy"
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    finally:
        os.close(fd)
    return array


# a generation as its bounds files' keys see it: its segments' (name, uid) in order, and its blocks
Layout = tuple[list[tuple[str, str]], int]


def stray_bounds(path: Path, layouts: list[Layout]) -> bool:
    """Whether the bounds directory ``path`` belongs to none of ``layouts`` (the generations the writer
    keeps: each keyed segment at its place, the same number of blocks), or is unreadable: the writer's
    cleanup removes it. A reader still mapping it keeps its pages (an unlinked file stays mapped)."""
    try:
        key = json.loads((path / META_FILE).read_text(encoding="utf-8"))["key"]
        keyed = [(int(s["place"]), (str(s["name"]), str(s["uid"]))) for s in key["segments"]]
        blocks = int(key["total_blocks"])
    except (OSError, ValueError, KeyError, TypeError):
        return True
    return not any(
        blocks == total and all(place < len(segments) and segments[place] == seg for place, seg in keyed)
        for segments, total in layouts
    )
