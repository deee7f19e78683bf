"""On-disk artifacts: atomic directory writes, ``meta.json`` with format versions, array loading.

Every artifact (encoded vectors, index, and later block-max data and checkpoints)
is a directory holding one ``.npy`` per array and a ``meta.json`` written last.
A directory is complete if and only if its ``meta.json`` exists and parses, so a
crash can leave at worst a hidden ``.NAME.tmp-*`` directory, never a
half-written artifact under the real name.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lsr.index.checksum import (
    CHECKSUMS_KEY,
    SELF_KEY,
    bytes_crc32,
    json_crc32,
    listed_files,
    seal,
    size_problems,
)

logger = logging.getLogger(__name__)

META_FILE = "meta.json"
_NOTED: set[str] = set()  # directories already noted as carrying no checksums


class ArtifactError(ValueError):
    """An artifact directory is missing, incomplete, foreign or of another format version."""


class CorruptArtifactError(ArtifactError):
    """A file of an artifact is damaged: truncated, of the wrong size, failing its checksum, or breaking an
    invariant the search kernels rely on. ``path`` is the damaged file, ``problem`` what is wrong."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(
            f"{path} {problem}: the file is corrupt; rebuild the artifact "
            "(`lsr verify PATH` lists every damaged file)"
        )


@contextlib.contextmanager
def atomic_directory(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary directory that replaces ``out`` only if the block succeeds.

    The previous ``out`` (when ``overwrite``) stays in place until the new one is
    complete, then the two are swapped with renames; on any error the temporary
    directory is removed and ``out`` is untouched.

    Raises:
        FileExistsError: ``out`` exists and ``overwrite`` is false.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish_directory(tmp, out)


def publish_directory(src: Path, out: Path) -> None:
    """Rename a finished directory to ``out``; an existing ``out`` is swapped out only at the end."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(out, old)
    os.replace(src, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()


def write_json(path: Path, obj: Any) -> None:
    """Write JSON through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_meta(directory: Path, meta: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Write ``meta.json`` last, sealed with the checksums of the directory's files (but ``skip``); return
    the meta as written."""
    sealed = seal(directory, meta, skip)
    write_json(directory / META_FILE, sealed)
    return sealed


def read_meta(directory: str | Path, kind: str, supported_versions: tuple[int, ...]) -> dict[str, Any]:
    """Read and check ``directory/meta.json``.

    Args:
        kind: the expected ``meta["format"]`` (e.g. ``"lsr-index"``).
        supported_versions: the ``format_version`` values this code reads.

    Raises:
        ArtifactError: with a message that says what is wrong and what to do.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ArtifactError(f"{directory} is not a directory (expected an {kind} directory)")
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        raise ArtifactError(
            f"{directory} has no {META_FILE}: not an {kind} directory, or a half-written one "
            "(an interrupted build); rebuild it"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptArtifactError(meta_path, f"is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != kind:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ArtifactError(f"{directory} holds format {found!r}, not {kind!r}")
    version = meta.get("format_version")
    if version not in supported_versions:
        raise ArtifactError(
            f"{directory} is {kind} format version {version}; this lsr reads versions "
            f"{list(supported_versions)}: rebuild it with this version of lsr"
        )
    check_sealed(directory, meta)
    return meta


def check_sealed(directory: Path, meta: dict[str, Any]) -> None:
    """The cheap half of the checksums, on every open: the meta's self-checksum and each listed file's size.

    Raises:
        CorruptArtifactError: naming the first damaged file.
    """
    if SELF_KEY not in meta and CHECKSUMS_KEY in meta:  # sealed, but its seal is gone: a damaged key
        raise CorruptArtifactError(directory / META_FILE, f"has checksums but no {SELF_KEY}")
    if SELF_KEY not in meta:
        if str(directory) not in _NOTED:
            _NOTED.add(str(directory))
            logger.warning(
                "%s carries no checksums (written before lsr recorded them): not verifiable", directory
            )
        return
    if json_crc32(meta) != meta[SELF_KEY]:
        raise CorruptArtifactError(directory / META_FILE, "fails its checksum")
    problems = size_problems(directory, meta)
    if problems:
        name, what = problems[0]
        raise CorruptArtifactError(directory / name, what)


def read_checked(directory: Path, name: str, meta: dict[str, Any]) -> bytes:
    """The bytes of a file read whole (ids, vocabulary), checked against its checksum entry if it has one.

    Raises:
        CorruptArtifactError: the bytes fail their checksum.
    """
    data = (directory / name).read_bytes()
    entry = listed_files(meta).get(name)
    if entry is not None and bytes_crc32(data) != entry.get("crc32"):
        raise CorruptArtifactError(directory / name, "fails its checksum")
    return data


def save_array(directory: Path, name: str, array: np.ndarray) -> dict[str, Any]:
    """Save ``name.npy`` and return its description for ``meta["arrays"]``."""
    np.save(directory / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
    return {"dtype": str(array.dtype), "shape": list(array.shape)}


def load_array(directory: Path, name: str, spec: dict[str, Any], mmap: bool = True) -> np.ndarray:
    """Load ``name.npy`` (memory-mapped) and check it against its ``meta["arrays"]`` entry."""
    path = directory / f"{name}.npy"
    if not path.is_file():
        raise ArtifactError(f"{path} is missing; the directory is incomplete, rebuild it")
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as exc:  # numpy's header parser raises ValueError, SyntaxError, TokenError, ...
        raise CorruptArtifactError(
            path, f"is not a readable .npy file ({type(exc).__name__}: {exc})"
        ) from None
    if str(arr.dtype) != spec["dtype"] or list(arr.shape) != list(spec["shape"]):
        raise CorruptArtifactError(
            path,
            f"has dtype {arr.dtype} and shape {list(arr.shape)}, "
            f"but meta.json says {spec['dtype']} {spec['shape']}",
        )
    return arr


def directory_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in Path(directory).rglob("*") if p.is_file())
