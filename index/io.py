"""On-disk artifacts: atomic directory writes, ``meta.json`` with format versions, array loading.

Every artifact (encoded vectors, index, and later block-max data and checkpoints)
is a directory holding one ``.npy`` per array and a ``meta.json`` written last.
A directory is complete if and only if its ``meta.json`` exists and parses, so a
crash can leave at worst a hidden ``.NAME.tmp-*`` directory, never a
half-written artifact under the real name.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import shutil
import sys
import uuid
from collections.abc import Iterator, Mapping
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
    """Rename a finished directory to ``out``; an existing ``out`` is swapped with it in one atomic
    step where the system can (Linux ``renameat2(RENAME_EXCHANGE)``), so a process killed at any moment
    leaves ``out`` either the old artifact or the new one, never missing; then the old one is removed."""
    if not out.exists():
        os.replace(src, out)
        return
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
    if _exchange(src, out):
        os.replace(src, old)  # src now holds the old artifact
    else:  # two renames: a kill between them leaves out missing (the old artifact at .NAME.old-*)
        os.replace(out, old)
        os.replace(src, out)
    shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: the file system or kernel cannot
        return False
    raise OSError(errno, os.strerror(errno), str(b))


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


def read_meta(
    directory: str | Path,
    kind: str,
    supported_versions: tuple[int, ...],
    fields: Mapping[str, type] | None = None,
) -> dict[str, Any]:
    """Read and check ``directory/meta.json``.

    Args:
        kind: the expected ``meta["format"]`` (e.g. ``"lsr-index"``).
        supported_versions: the ``format_version`` values this code reads.
        fields: the fields the reader relies on and their types (see :func:`check_fields`); an
            ``arrays`` field is also checked entry by entry (dtype, shape).

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
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise CorruptArtifactError(meta_path, f"is not valid JSON ({str(exc)[:200]})") from None
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
    check_fields(meta, meta_path, fields or {})
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


def check_fields(meta: Mapping[str, Any], where: Path, fields: Mapping[str, type]) -> None:
    """Each of ``fields`` is present with its type: ``int`` a non-negative integer, ``float`` a finite
    number, ``dict``/``list``/``str`` as named; ``arrays`` a mapping of ``{dtype, shape}`` specs.

    Raises:
        ArtifactError: naming ``where``, the field and its value.
    """
    for key, kind in fields.items():
        if key not in meta:
            raise ArtifactError(f"{where} lacks the field {key!r}: the file is corrupt, rebuild it")
        if not _of_type(meta[key], kind):
            raise ArtifactError(
                f"{where}: field {key!r} is {_short(meta[key])}, not a valid {kind.__name__}: "
                "the file is corrupt, rebuild it"
            )
    arrays = meta.get("arrays")
    if arrays is None:
        return
    if not isinstance(arrays, dict):
        raise ArtifactError(f"{where}: field 'arrays' is {_short(arrays)}, not a mapping; rebuild it")
    for name, spec in arrays.items():
        if not plain_name(name) or not _array_spec(spec):
            raise ArtifactError(f"{where}: array {name!r} has spec {_short(spec)}, not {{dtype, shape}}")


def _of_type(value: Any, kind: type) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < 1e30
    return isinstance(value, kind)


def _array_spec(spec: Any) -> bool:
    if not isinstance(spec, dict) or not isinstance(spec.get("shape"), list):
        return False
    if not all(_of_type(n, int) for n in spec["shape"]) or not isinstance(spec.get("dtype"), str):
        return False
    try:
        np.dtype(spec["dtype"])
    except TypeError:
        return False
    return True


def plain_name(name: Any) -> bool:
    """A file name inside an artifact directory: a short string without a path separator."""
    return isinstance(name, str) and 0 < len(name) <= 200 and not any(c in name for c in "/\\\0")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


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
    # a plain ndarray over the same mapped memory: numba types an np.memmap argument on its slow path
    # (about 0.7 us per array per call, more than a small query's scoring on some paths)
    return arr.view(np.ndarray) if isinstance(arr, np.memmap) else arr


def directory_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in Path(directory).rglob("*") if p.is_file())
