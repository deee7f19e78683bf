"""``lsr export``: an index in another engine's format, the one way lsr hands its vectors to other tools.

========  =========================================================  ==========================
``--to``  writes                                                     weights
========  =========================================================  ==========================
anserini  sparse-vector JSONL for Anserini's ``JsonVectorCollection``  integers (see below)
          (``-impact -pretokenized``; pyserini reads it too)
seismic   sparse-vector JSONL, as ``SeismicIndex.build`` reads it      floats: impact x scale
ciff      CIFF (PISA, Anserini, JASS, BMP; ``lsr index --ciff``)       integers
bmp       a BMP index file (``pip install bmp``), built by BMP's own    integers
          ``ciff2bmp`` from the CIFF export
========  =========================================================  ==========================

Integer weights: an index with uint8/uint16 impacts exports its impacts as they are (multiply by the
index's ``scale``, printed by ``lsr info``, for the weights); a float32 index needs ``quantize``: each
weight becomes ``round(w x quantize)`` and postings that round to 0 are left out (Lucene and CIFF
read a weight as a term frequency, an integer; Anserini truncates floats).

A live index (segments) is exported after ``lsr merge``; documents are in the index's order.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lsr.errors import LsrError
from lsr.index.sparse import PTR_DTYPE, TERM_DTYPE, WEIGHT_DTYPE, SparseBatch
from lsr.weights import integer_weights

EXPORT_FORMATS = ("anserini", "seismic", "ciff", "bmp")
INTEGER_FORMATS = ("anserini", "ciff", "bmp")


def _load(index_dir: str | Path) -> Any:
    from lsr.index import Index
    from lsr.index.segments import read_manifest

    path = Path(index_dir)
    if path.is_dir() and read_manifest(path) is not None:
        raise LsrError(f"{path} is a live index (segments): run `lsr merge {path}` first, then export it")
    return Index.load(path, blockmax=False)


def integer_converter(index: Any, quantize: float | None) -> Callable[[np.ndarray], np.ndarray]:
    """What turns a run of the index's impacts into integer weights (int64): uint impacts as they are, or
    ``round(impact x scale x quantize)`` (a chunk at a time, for the CIFF writer).

    Raises:
        LsrError: float32 impacts and no ``quantize``.
    """
    if quantize is not None:
        scale = float(index.scale)
        return lambda impacts: integer_weights(np.asarray(impacts, np.float64) * scale, quantize)
    if np.asarray(index.impacts[:0]).dtype.kind == "f":
        raise LsrError(
            f"{index.path} has float32 impacts: give a quantization factor (--quantize 100: "
            "weights x 100 rounded)"
        )
    return lambda impacts: np.asarray(impacts, np.int64)


def doc_major(index: Any, values: np.ndarray) -> SparseBatch:
    """The index's postings as one CSR batch (a row per document, terms ascending), ``values`` as the
    weights; postings whose value is not positive are left out."""
    term_of = np.repeat(np.arange(index.n_terms, dtype=np.int64), np.diff(index.term_ptr))
    docs = np.asarray(index.doc_ids)
    keep = values > 0
    term_of, docs, values = term_of[keep], docs[keep], values[keep]
    order = np.argsort(docs, kind="stable")  # term-major in, so each row's terms stay ascending
    indptr = np.zeros(index.n_docs + 1, dtype=PTR_DTYPE)
    np.cumsum(np.bincount(docs, minlength=index.n_docs), out=indptr[1:])
    return SparseBatch(indptr, term_of[order].astype(TERM_DTYPE), values[order].astype(WEIGHT_DTYPE))


def export_index(
    index_dir: str | Path,
    to: str,
    out: str | Path,
    quantize: float | None = None,
    overwrite: bool = False,
    bmp_block_size: int = 32,
) -> dict[str, Any]:
    """Write the index at ``index_dir`` as ``to`` (one of :data:`EXPORT_FORMATS`) at ``out``; return counts
    (``docs``, ``postings`` written, ``format``, ``weights``: how the weights were written).

    Raises:
        LsrError: an unknown format, a block size below 1, ``quantize`` for seismic, float32 impacts
            without ``quantize`` for an integer format, a live index, or bmp without the ``bmp`` package.
        FileExistsError: ``out`` exists and ``overwrite`` is false.
    """
    if to not in EXPORT_FORMATS:
        raise LsrError(f"export format {to!r} is not one of {list(EXPORT_FORMATS)}")
    if bmp_block_size < 1:
        raise LsrError(f"--bmp-block-size {bmp_block_size} must be >= 1")
    if to == "seismic" and quantize is not None:
        raise LsrError(
            "--quantize applies to the integer formats (anserini, ciff, bmp); seismic reads floats"
        )
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    index = _load(index_dir)
    if to == "seismic":
        weights = np.asarray(index.impacts).astype(np.float64) * float(index.scale)
        n = _write_jsonl(index, weights, out, decimals=6, fixed=False)
        return {"format": to, "docs": index.n_docs, "postings": n, "weights": "float (impact x scale)"}
    to_int = integer_converter(index, quantize)
    how = f"round(weight x {quantize:g})" if quantize is not None else f"impacts (x {float(index.scale):g})"
    if to == "anserini":
        n = _write_jsonl(index, to_int(index.impacts), out, decimals=0, fixed=True)
        return {"format": to, "docs": index.n_docs, "postings": n, "weights": how}
    if to == "ciff":
        counts = _write_ciff(index, to_int, out)
    else:
        counts = _write_bmp(index, to_int, out, bmp_block_size)
    return {"format": to, "docs": counts["docs"], "postings": counts["postings"], "weights": how}


def _write_jsonl(index: Any, values: np.ndarray, out: Path, decimals: int, fixed: bool) -> int:
    from lsr.data.sparse_jsonl import write_sparse_jsonl

    batch = doc_major(index, values)
    write_sparse_jsonl(out, index.doc_keys, [batch], index.vocab, decimals, fixed=fixed, overwrite=True)
    return len(batch.term_ids)


def _write_ciff(index: Any, to_int: Callable[[np.ndarray], np.ndarray], out: Path) -> dict[str, int]:
    from lsr.ciff import write_ciff

    description = f"lsr export of {index.path}"
    ptr, docs, keys = index.term_ptr, index.doc_ids, index.doc_keys
    return write_ciff(out, index.vocab, ptr, docs, index.impacts, keys, description, to_int)


def _write_bmp(
    index: Any, to_int: Callable[[np.ndarray], np.ndarray], out: Path, block_size: int
) -> dict[str, int]:
    """CIFF into a temporary folder, then BMP's own ``ciff2bmp`` (a BMP index is built by BMP)."""
    try:
        import bmp
    except ImportError:
        raise LsrError("--to bmp needs the bmp package (pip install bmp)") from None
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        counts = _write_ciff(index, to_int, Path(tmp) / "index.ciff")
        built = Path(tmp) / "index.bmp"
        # BMP prints its progress to stdout, and on a file it cannot read exits the process (Rust's
        # process::exit): ours is a valid CIFF file (tests/unit/test_ciff.py)
        bmp.ciff2bmp(str(Path(tmp) / "index.ciff"), str(built), block_size, False)
        if not built.is_file():
            raise LsrError(f"bmp's ciff2bmp wrote no index for {index.path}")
        with open(built, "rb+") as f:
            os.fsync(f.fileno())
        if out.is_dir():
            shutil.rmtree(out)
        os.replace(built, out)
    return counts
