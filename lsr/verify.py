"""``lsr verify PATH``: every byte of an artifact against its recorded checksums, then its invariants.

PATH is an index (plain, or live: its manifest, tombstones and every segment), a vectors directory
or a dense stage. Sub-artifacts (``blockmax/``, ``fields/``, ``dense/``) are verified with their
index, and ``approx/`` (pruned lists, lsr.index.approx) with its own ``blockmax/``. Each problem
names its file; an artifact written before checksums existed gets a note and only the structural
checks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsr.index.checksum import CHECKSUMS_KEY, SELF_KEY, checksum_problems, json_crc32, listed_files
from lsr.index.io import META_FILE, ArtifactError

SUBDIRS = ("blockmax", "fields", "dense", "approx")


@dataclass
class Report:
    """What ``verify`` checked: artifacts (path, files whose bytes were checked), notes and problems."""

    checked: list[tuple[Path, int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(path: str | Path) -> Report:
    """Verify the artifact at ``path`` (see the module docstring); never raises for damage, reports it."""
    from lsr.index.manifest import generations

    path = Path(path)
    report = Report()
    if not path.is_dir():
        report.problems.append((path, "is not a directory"))
    elif generations(path):
        _live_index(path, report)
    else:
        _artifact(path, report)
    return report


def _live_index(path: Path, report: Report) -> None:
    from lsr.index.manifest import read_manifest, segment_dir
    from lsr.index.segments import SegmentedIndex

    try:
        manifest = read_manifest(path)
    except ArtifactError as exc:
        report.problems.append((path, str(exc)))
        return
    assert manifest is not None
    if not manifest.checksums and any(s.tombstones for s in manifest.segments):
        report.notes.append(f"{path}: the manifest carries no tombstone checksums (written by an older lsr)")
    for entry in manifest.segments:
        _artifact(segment_dir(path, entry.name), report)
    _file_problems(path, {"checksums": {"files": manifest.checksums}}, report)  # the manifest's tombstones
    _try(report, path, lambda: SegmentedIndex.open(path, manifest).close())


def _artifact(directory: Path, report: Report, recurse: bool = True) -> None:
    meta = _read_meta(directory, report)
    if meta is None:
        return
    _file_problems(directory, meta, report)
    kind = meta.get("format")
    opener = _OPENERS.get(str(kind))
    if opener is None:
        report.problems.append((directory / META_FILE, f"holds an unknown format {kind!r}"))
        return
    _try(report, directory, lambda: opener(directory))
    if recurse:
        for sub in SUBDIRS:
            if (directory / sub / META_FILE).is_file():
                _artifact(directory / sub, report, recurse=sub == "approx")


def _read_meta(directory: Path, report: Report) -> dict[str, Any] | None:
    meta_path = directory / META_FILE
    try:
        meta = json.loads(meta_path.read_bytes())
    except FileNotFoundError:
        report.problems.append((meta_path, "is missing (not an artifact, or a half-written one)"))
        return None
    except (ValueError, UnicodeDecodeError) as exc:
        report.problems.append((meta_path, f"is not valid JSON ({exc})"))
        return None
    if not isinstance(meta, dict):
        report.problems.append((meta_path, "is not a JSON object"))
        return None
    if SELF_KEY not in meta and CHECKSUMS_KEY in meta:
        report.problems.append((meta_path, f"has checksums but no {SELF_KEY}"))
        return None
    if SELF_KEY not in meta:
        report.notes.append(f"{directory}: carries no checksums (written before lsr recorded them)")
    elif json_crc32(meta) != meta[SELF_KEY]:
        report.problems.append((meta_path, "fails its checksum"))
        return None
    return meta


def _file_problems(directory: Path, meta: dict[str, Any], report: Report) -> None:
    for name, what in checksum_problems(directory, meta):
        report.problems.append((directory / name, what))
    report.checked.append((directory, len(listed_files(meta))))


def _try(report: Report, where: Path, check: Callable[[], Any]) -> None:
    """Run an opener's structural checks; a damaged artifact is a problem, not an exception."""
    try:
        check()
    except (ArtifactError, ValueError, OSError, KeyError, TypeError, IndexError) as exc:
        report.problems.append((getattr(exc, "path", where), getattr(exc, "problem", None) or str(exc)))


def _open_index(directory: Path) -> None:
    from lsr.index.docstore import DocStore
    from lsr.index.search import Index

    index = Index.load(directory)
    if "approx_lists" in index.meta:  # an index's pruned lists: postings and block-max data only
        return
    _ = index.doc_keys, index.vocab, index.fields
    if (directory / "docstore.offsets.npy").is_file():
        DocStore(directory)


def _open_vectors(directory: Path) -> None:
    from lsr.vectors import Vectors

    vectors = Vectors(directory)
    n_docs = 0
    for batch in vectors.batches():
        batch.validate(vectors.n_terms)
        n_docs += len(batch)
    if n_docs != vectors.n_docs or sum(1 for _ in vectors.iter_ids()) != n_docs:
        raise ArtifactError(f"{directory}: shards and ids.txt do not hold {vectors.n_docs} docs")


def _open_dense(directory: Path) -> None:
    from lsr.index.pq import DenseCodes

    DenseCodes.load(directory)


def _open_fields(directory: Path) -> None:
    from lsr.index.fields import Fields

    Fields.load(directory.parent)


_OPENERS: dict[str, Callable[[Path], None]] = {
    "lsr-index": _open_index,
    "lsr-vectors": _open_vectors,
    "lsr-dense": _open_dense,
    "lsr-fields": _open_fields,
    "lsr-blockmax": lambda directory: None,  # loaded and checked with its index
}


def format_report(report: Report) -> list[str]:
    """Lines for the terminal: notes, each problem with its file, then a summary."""
    lines = [f"note: {note}" for note in report.notes]
    lines += [f"DAMAGED {path}: {what}" for path, what in report.problems]
    files = sum(n for _, n in report.checked)
    state = "ok" if report.ok else f"{len(report.problems)} problem(s)"
    lines.append(f"{state}: {len(report.checked)} artifact(s), {files} file(s) checked")
    return lines
