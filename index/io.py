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
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

META_FILE = "meta.json"


class ArtifactError(ValueError):
    """An artifact directory is missing, incomplete, foreign or of another format version."""


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


def write_meta(directory: Path, meta: dict[str, Any]) -> None:
    write_json(directory / META_FILE, meta)


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
        raise ArtifactError(f"{meta_path} is corrupt ({exc}); rebuild the {kind}") from None
    if not isinstance(meta, dict) or meta.get("format") != kind:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ArtifactError(f"{directory} holds format {found!r}, not {kind!r}")
    version = meta.get("format_version")
    if version not in supported_versions:
        raise ArtifactError(
            f"{directory} is {kind} format version {version}; this lsr reads versions "
            f"{list(supported_versions)}: rebuild it with this version of lsr"
        )
    return meta


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
    except (ValueError, OSError) as exc:
        raise ArtifactError(f"{path} is not a readable .npy file ({exc}); rebuild it") from None
    if str(arr.dtype) != spec["dtype"] or list(arr.shape) != list(spec["shape"]):
        raise ArtifactError(
            f"{path} has dtype {arr.dtype} and shape {list(arr.shape)}, but meta.json says "
            f"{spec['dtype']} {spec['shape']}: the directory is corrupt, rebuild it"
        )
    return arr


def directory_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in Path(directory).rglob("*") if p.is_file())
