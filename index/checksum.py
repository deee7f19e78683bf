"""File checksums of on-disk artifacts (CRC-32, streamed) and the self-checksum of a JSON document.

Every artifact's ``meta.json`` records, under ``checksums``, the size and CRC-32 of each file of its
directory (``{"algorithm": "crc32", "files": {name: {"size": bytes, "crc32": "8 hex digits"}}}``;
subdirectories are artifacts of their own, with their own ``meta.json``), and under ``meta_crc32``
the CRC-32 of its own canonical JSON without that key. Opening an artifact checks the meta's
self-checksum and every listed file's size (a ``stat``, no read); ``lsr verify`` reads every byte.
An artifact written before checksums existed has neither key: it opens with a note.

Files are read in chunks into one reused buffer, so a large array is never held in memory (and a
memory-mapped one is not read twice into it).
"""

from __future__ import annotations

import json
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ALGORITHM = "crc32"
CHECKSUMS_KEY = "checksums"
SELF_KEY = "meta_crc32"
CHUNK_BYTES = 1 << 20
MAX_THREADS = 16  # files checksummed at once


def file_crc32(path: Path) -> str:
    """The CRC-32 of a file's bytes as 8 hex digits, read in chunks of ``CHUNK_BYTES``."""
    crc = 0
    buf = bytearray(CHUNK_BYTES)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            crc = zlib.crc32(view[:n], crc)
    return f"{crc:08x}"


def bytes_crc32(data: bytes) -> str:
    return f"{zlib.crc32(data):08x}"


def json_crc32(obj: dict[str, Any], key: str = SELF_KEY) -> str:
    """The CRC-32 of ``obj``'s canonical JSON (sorted keys, no spaces) without ``key``."""
    body = {k: v for k, v in obj.items() if k != key}
    return bytes_crc32(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8"))


def directory_files(directory: Path, skip: tuple[str, ...] = ()) -> list[str]:
    """The regular files of ``directory`` an artifact's checksums cover: not hidden (temporaries),
    not ``meta.json``, not in ``skip``; subdirectories are artifacts of their own."""
    return sorted(
        p.name
        for p in directory.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name != "meta.json" and p.name not in skip
    )


def file_entries(directory: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """``{name: {"size", "crc32"}}`` of the named files of ``directory`` (read by parallel threads:
    ``zlib.crc32`` and reads release the GIL)."""
    with ThreadPoolExecutor(max(1, min(len(names), os.cpu_count() or 1, MAX_THREADS))) as pool:
        crcs = list(pool.map(file_crc32, [directory / name for name in names]))
    return {
        name: {"size": (directory / name).stat().st_size, "crc32": crc}
        for name, crc in zip(names, crcs, strict=True)
    }


def seal(directory: Path, meta: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """``meta`` with the checksums of ``directory``'s files (kept if it has them already: a rewrite of the
    meta alone, e.g. new fusion settings, does not bless files it never wrote) and its self-checksum."""
    sealed = dict(meta)
    if CHECKSUMS_KEY not in sealed:
        sealed[CHECKSUMS_KEY] = {
            "algorithm": ALGORITHM,
            "files": file_entries(directory, directory_files(directory, skip)),
        }
    sealed[SELF_KEY] = json_crc32(sealed)
    return sealed


def listed_files(meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``checksums.files`` section of a meta (empty for an artifact written before checksums)."""
    section = meta.get(CHECKSUMS_KEY)
    if not isinstance(section, dict) or not isinstance(section.get("files"), dict):
        return {}
    return section["files"]


def size_problems(directory: Path, meta: dict[str, Any]) -> list[tuple[str, str]]:
    """``(file, what is wrong)`` for each listed file that is missing or of another size (stat only)."""
    problems = []
    for name, entry in listed_files(meta).items():
        path = directory / name
        if not path.is_file():
            problems.append((name, "is missing"))
        elif path.stat().st_size != entry.get("size"):
            problems.append(
                (name, f"has {path.stat().st_size} bytes, its checksum entry says {entry.get('size')}")
            )
    return problems


def checksum_problems(directory: Path, meta: dict[str, Any]) -> list[tuple[str, str]]:
    """``(file, what is wrong)`` for each listed file that is missing, of another size or another CRC-32
    (reads every byte)."""
    problems = size_problems(directory, meta)
    bad = {name for name, _ in problems}
    for name, entry in listed_files(meta).items():
        if name in bad:
            continue
        crc = file_crc32(directory / name)
        if crc != entry.get("crc32"):
            problems.append((name, f"fails its checksum (crc32 {crc}, recorded {entry.get('crc32')})"))
    return problems
