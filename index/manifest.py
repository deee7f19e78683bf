"""The manifest of a live index: which segments are live, with which deletions, at which generation.

A live index directory holds immutable segments (each a plain ``lsr-index`` directory, see
:mod:`lsr.index.builder`) and one manifest per committed generation, ``segments_N.json``, as
Lucene's ``segments_N``. The manifest with the highest N is the index; a commit writes
``segments_{N+1}.json`` through a temporary file, fsync and rename (then fsyncs the directory),
so a reader sees generation N or N + 1, never a mix. Every file a manifest names is written and
fsynced before the manifest, and never changed afterwards: deletions of a segment live in a
tombstone file named after the generation that wrote it (``del-SEGMENT-gN.npy``, a packed bitmap
of the segment's deleted internal doc ids, 1 = deleted, ``np.packbits`` big-endian bit order).

Readers in other processes hold their files with a lease: ``leases/PID-GEN-ID.json`` lists the
names (segments, tombstones, manifest) of the generation a reader opened; the writer's cleanup
removes no file a lease names, and removes leases whose process is gone. A reader writes its lease
before it opens the files and then checks they are all still there (else it drops the lease and
opens the newest generation again); the writer also keeps the previous generation's files, so a
reader that read manifest N has until generation N + 2 is committed to take its lease.

A plain index (no manifest) is a live index of one segment named ``.`` (the directory itself)
with no deletions; its first write commits ``segments_1.json``. One writer at a time holds
``write.lock`` (an ``flock``; it records the holder's pid for the error message).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import json
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lsr.index.checksum import file_crc32, file_entries, json_crc32
from lsr.index.io import ArtifactError, CorruptArtifactError

MANIFEST_FORMAT = "lsr-manifest"
MANIFEST_FORMAT_VERSION = 1
MANIFEST_RE = re.compile(r"^segments_(\d+)\.json$")
LOCK_FILE = "write.lock"
LEASE_DIR = "leases"
MANIFEST_CRC_KEY = "manifest_crc32"  # the CRC-32 of the manifest's canonical JSON without this key
ROOT_SEGMENT = "."  # a plain index directory, opened as a live index: its own files are the segment


class WriteLockError(RuntimeError):
    """Another writer holds the index's ``write.lock``."""


def manifest_name(generation: int) -> str:
    return f"segments_{generation}.json"


def segment_dir(index_dir: Path, name: str) -> Path:
    return index_dir if name == ROOT_SEGMENT else index_dir / name


@dataclass
class SegmentEntry:
    """One segment of a manifest: its directory name, uid (its meta.json ``uid``), doc count, and the
    tombstone file of its deletions (None: no deletions)."""

    name: str
    uid: str
    n_docs: int
    n_deleted: int = 0
    tombstones: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)  # encoder statistics (BM25: total length)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "uid": self.uid,
            "n_docs": self.n_docs,
            "n_deleted": self.n_deleted,
            "tombstones": self.tombstones,
            "stats": self.stats,
        }


@dataclass
class Manifest:
    """A committed generation (``generation`` 0: a plain index, never committed)."""

    generation: int
    segments: list[SegmentEntry]
    next_segment: int = 1
    settings: dict[str, Any] = field(default_factory=dict)  # impact dtype, fixed scale, block size
    # {tombstone file: {size, crc32}} as read from a committed manifest (written by write_manifest)
    checksums: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "format_version": MANIFEST_FORMAT_VERSION,
            "generation": self.generation,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "next_segment": self.next_segment,
            "settings": self.settings,
            "segments": [s.to_json() for s in self.segments],
        }

    @property
    def files(self) -> set[str]:
        """Names in the index directory that this generation needs (segments and tombstones)."""
        names = {s.name for s in self.segments if s.name != ROOT_SEGMENT}
        return names | {s.tombstones for s in self.segments if s.tombstones}


def generations(index_dir: Path) -> list[int]:
    """Committed generations found in ``index_dir``, ascending."""
    found = (MANIFEST_RE.match(p.name) for p in index_dir.iterdir()) if index_dir.is_dir() else ()
    return sorted(int(m.group(1)) for m in found if m)


def read_manifest(index_dir: Path, generation: int | None = None) -> Manifest | None:
    """The manifest of ``generation`` (default: the latest); None for a plain index.

    Raises:
        ArtifactError: a manifest that is truncated, corrupt or of another format version.
    """
    gens = generations(index_dir)
    if not gens:
        return None
    gen = gens[-1] if generation is None else generation
    path = index_dir / manifest_name(gen)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        _check_format(path, data)
        return Manifest(
            generation=int(data["generation"]),
            segments=[SegmentEntry(**s) for s in data["segments"]],
            next_segment=int(data["next_segment"]),
            settings=dict(data["settings"]),
            checksums=dict(data.get("checksums", {})),
        )
    except ArtifactError:
        raise
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(
            f"{path} is truncated or corrupt ({type(exc).__name__}: {exc}); the index cannot be opened "
            "at this generation: restore the directory from a backup or rebuild the index"
        ) from None


def _check_format(path: Path, data: Any) -> None:
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise ArtifactError(f"{path} is not an {MANIFEST_FORMAT} file")
    if data.get("format_version") != MANIFEST_FORMAT_VERSION:
        raise ArtifactError(
            f"{path} is {MANIFEST_FORMAT} version {data.get('format_version')}; this lsr reads version "
            f"{MANIFEST_FORMAT_VERSION}: open it with the lsr that wrote it, or rebuild the index"
        )
    sealed = MANIFEST_CRC_KEY in data or "checksums" in data  # one flipped byte cannot remove both keys
    if sealed and json_crc32(data, MANIFEST_CRC_KEY) != data.get(MANIFEST_CRC_KEY):
        raise CorruptArtifactError(path, "fails its checksum")


def write_manifest(index_dir: Path, manifest: Manifest) -> Path:
    """Commit ``manifest`` durably: temporary file, fsync, rename, fsync of the directory."""
    path = index_dir / manifest_name(manifest.generation)
    if path.exists():
        raise ArtifactError(f"{path} exists already: another writer committed this generation")
    tmp = index_dir / f".{path.name}.tmp"
    data = manifest.to_json()
    data["checksums"] = file_entries(
        index_dir, sorted(s.tombstones for s in manifest.segments if s.tombstones)
    )
    data[MANIFEST_CRC_KEY] = json_crc32(data, MANIFEST_CRC_KEY)
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(data, indent=1) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(index_dir)
    return path


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(directory: Path) -> None:
    """fsync every file and directory under ``directory`` (a segment, before the manifest names it)."""
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    for path in [*sorted(p for p in directory.rglob("*") if p.is_dir()), directory]:
        fsync_dir(path)


def write_tombstones(index_dir: Path, name: str, generation: int, deleted: np.ndarray) -> str:
    """Write a segment's deletion bitmap (bool[n_docs]) for ``generation``; return its file name."""
    file = f"del-{'root' if name == ROOT_SEGMENT else name}-g{generation}.npy"
    tmp = index_dir / f".{file}.tmp"
    with open(tmp, "wb") as f:
        np.save(f, np.packbits(deleted.astype(bool)), allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, index_dir / file)
    return file


def read_tombstones(
    index_dir: Path, entry: SegmentEntry, checksums: dict[str, Any] | None = None
) -> np.ndarray:
    """bool[n_docs]: the segment's deleted docs (all False without a tombstone file), checked against
    ``checksums`` (the manifest's) when it lists the file."""
    if entry.tombstones is None:
        return np.zeros(entry.n_docs, bool)
    path = index_dir / entry.tombstones
    recorded = (checksums or {}).get(entry.tombstones)
    if recorded is not None and path.is_file() and file_crc32(path) != recorded.get("crc32"):
        raise CorruptArtifactError(path, "fails its checksum")
    try:
        bits = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy's header parser raises ValueError, SyntaxError, TokenError, ...
        raise ArtifactError(f"{path}: unreadable tombstones ({exc}); the index is damaged") from None
    deleted = np.unpackbits(bits, count=entry.n_docs).astype(bool) if bits.size else np.zeros(0, bool)
    if len(deleted) != entry.n_docs or int(deleted.sum()) != entry.n_deleted:
        raise ArtifactError(f"{path} does not match its manifest entry; the index is damaged")
    return deleted


@contextlib.contextmanager
def write_lock(index_dir: Path) -> Iterator[None]:
    """Hold ``index_dir/write.lock`` (an exclusive ``flock``: released when the process dies).

    Raises:
        WriteLockError: another writer (another process, or another writer in this one) holds it.
    """
    fd = os.open(index_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            raise WriteLockError(
                f"{index_dir} is being written by another writer (pid {holder}, {index_dir / LOCK_FILE}); "
                "one writer at a time: wait for it to finish"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def write_lease(index_dir: Path, manifest: Manifest) -> Path | None:
    """Record that this process reads ``manifest``'s files (None: the directory is not writable, and
    the reader goes without a lease)."""
    names = sorted(
        manifest.files | {s.name for s in manifest.segments} | {manifest_name(manifest.generation)}
    )
    lease_dir = index_dir / LEASE_DIR
    path = lease_dir / f"{os.getpid()}-{manifest.generation}-{uuid.uuid4().hex[:8]}.json"
    try:
        lease_dir.mkdir(exist_ok=True)
        tmp = lease_dir / f".{path.name}.tmp"
        tmp.write_text(json.dumps({"pid": os.getpid(), "generation": manifest.generation, "files": names}))
        os.replace(tmp, path)
    except OSError:
        return None
    return path


def leased_files(index_dir: Path) -> set[str]:
    """Names that live readers' leases hold; leases of processes that are gone are removed."""
    lease_dir = index_dir / LEASE_DIR
    if not lease_dir.is_dir():
        return set()
    held: set[str] = set()
    for path in lease_dir.glob("*.json"):
        try:
            lease = json.loads(path.read_text(encoding="utf-8"))
            alive = _pid_alive(int(lease["pid"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being written or removed right now: its reader checks its files after writing it
        if alive:
            held.update(lease["files"])
        else:
            path.unlink(missing_ok=True)
    return held


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
