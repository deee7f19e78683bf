"""Build the inverted index: forward sparse vectors (CSR batches) -> CSC posting lists on disk.

Two streaming passes over the batches, so the corpus never sits in memory:
    1. count postings per term and find the largest weight (for quantization);
    2. quantize each batch and scatter it into memory-mapped output arrays.

Directory layout written here (``INDEX_FORMAT`` version ``INDEX_FORMAT_VERSION``):
    meta.json      format, version, counts, quantization, array dtypes/shapes, caller's sections
    term_ptr.npy   int64[n_terms + 1]
    doc_ids.npy    int32[n_postings], ascending within each term
    impacts.npy    uint8 | uint16 | float32 [n_postings]
    ids.txt        external doc id of internal doc i on line i
    vocab.json     term string of term id t at position t
Optional artifacts (block-max data, a docstore) live beside these files and
describe themselves; the core arrays never change shape for them.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import shutil
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lsr.index.io import atomic_directory, save_array, write_meta
from lsr.index.kernels.invert import _scatter_postings
from lsr.index.sparse import DOC_DTYPE, PTR_DTYPE, SparseBatch

logger = logging.getLogger(__name__)

INDEX_FORMAT = "lsr-index"
INDEX_FORMAT_VERSION = 1
IMPACT_DTYPES = {"uint8": np.uint8, "uint16": np.uint16, "float32": np.float32}


def quantization_scale(max_weight: float, impact_dtype: str) -> float:
    """Linear quantization step: the largest weight maps to the dtype's maximum."""
    if impact_dtype == "float32" or max_weight <= 0:
        return 1.0
    return float(max_weight) / float(np.iinfo(IMPACT_DTYPES[impact_dtype]).max)


def quantize(weights: np.ndarray, impact_dtype: str, scale: float) -> np.ndarray:
    """Map weights to impacts: ``round(w / scale)`` clipped to [1, max].

    The floor of 1 keeps every posting: a tiny positive weight still matches.
    """
    dtype = IMPACT_DTYPES[impact_dtype]
    if dtype is np.float32:
        return weights.astype(np.float32)
    q = np.rint(weights.astype(np.float64) / scale)
    return np.clip(q, 1, np.iinfo(dtype).max).astype(dtype)


def _count_pass(batches: Iterable[SparseBatch], n_terms: int) -> tuple[np.ndarray, int, float, int]:
    counts = np.zeros(n_terms, dtype=np.int64)
    n_docs, max_weight, empty_docs = 0, 0.0, 0
    for batch in batches:
        batch.validate(n_terms)
        counts += np.bincount(batch.term_ids, minlength=n_terms)
        n_docs += len(batch)
        empty_docs += int(np.count_nonzero(batch.row_nnz() == 0))
        if batch.nnz:
            max_weight = max(max_weight, float(batch.weights.max()))
    return counts, n_docs, max_weight, empty_docs


def build_index(
    batches: Callable[[], Iterable[SparseBatch]],
    n_terms: int,
    doc_keys: Sequence[str] | Path,
    vocab: Sequence[str] | Path,
    out: str | Path,
    impact_dtype: str = "uint8",
    sections: dict[str, Any] | None = None,
    extra_files: dict[str, Path] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Build an index directory atomically and return its meta.

    Args:
        batches: called twice; each call yields the corpus as CSR batches in doc order.
        n_terms: vocabulary size; term ids lie in [0, n_terms).
        doc_keys: external doc ids in internal order (a list, or a path to an ids.txt).
        vocab: term strings by term id (a list, or a path to a vocab.json).
        out: the index directory; replaced only once the new one is complete.
        impact_dtype: "uint8", "uint16" or "float32".
        sections: extra JSON sections for meta.json (encoder, resolved config, source).
        extra_files: files copied into the index under the given names (e.g. a docstore).
        overwrite: replace an existing ``out``.
    """
    if impact_dtype not in IMPACT_DTYPES:
        raise ValueError(f"impact dtype {impact_dtype!r} is not one of {sorted(IMPACT_DTYPES)}")
    counts, n_docs, max_weight, empty_docs = _count_pass(batches(), n_terms)
    term_ptr = np.zeros(n_terms + 1, dtype=PTR_DTYPE)
    np.cumsum(counts, out=term_ptr[1:])
    n_postings = int(term_ptr[-1])
    scale = quantization_scale(max_weight, impact_dtype)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        arrays = {"term_ptr": save_array(tmp, "term_ptr", term_ptr)}
        _fill_pass(batches(), tmp, term_ptr, impact_dtype, scale, n_docs)
        arrays["doc_ids"] = {"dtype": np.dtype(DOC_DTYPE).name, "shape": [n_postings]}
        arrays["impacts"] = {"dtype": np.dtype(IMPACT_DTYPES[impact_dtype]).name, "shape": [n_postings]}
        n_keys = _write_lines_or_copy(doc_keys, tmp / "ids.txt")
        if n_keys != n_docs:
            raise ValueError(f"{n_keys} doc ids for {n_docs} vectors: ids and vectors disagree")
        _write_vocab(vocab, tmp / "vocab.json", n_terms)
        for name, src in (extra_files or {}).items():
            shutil.copyfile(src, tmp / name)
        meta = {
            "format": INDEX_FORMAT,
            "format_version": INDEX_FORMAT_VERSION,
            "uid": uuid.uuid4().hex,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "n_docs": n_docs,
            "n_terms": n_terms,
            "n_postings": n_postings,
            "impacts": {"dtype": impact_dtype, "method": "linear" if impact_dtype != "float32" else "none",
                        "scale": scale, "max_weight": max_weight},
            "stats": {"doc_nnz_avg": n_postings / max(n_docs, 1), "empty_docs": empty_docs},
            "arrays": arrays,
            "files": sorted(["ids.txt", "vocab.json", *(extra_files or {})]),
            **(sections or {}),
        }
        write_meta(tmp, meta)
    logger.info("built index %s: %d docs, %d terms, %d postings", out, n_docs, n_terms, n_postings)
    return meta


def _fill_pass(batches: Iterable[SparseBatch], tmp: Path, term_ptr: np.ndarray, impact_dtype: str,
               scale: float, n_docs: int) -> None:
    n_postings = int(term_ptr[-1])
    doc_ids = np.lib.format.open_memmap(tmp / "doc_ids.npy", mode="w+", dtype=DOC_DTYPE, shape=(n_postings,))
    impacts = np.lib.format.open_memmap(
        tmp / "impacts.npy", mode="w+", dtype=IMPACT_DTYPES[impact_dtype], shape=(n_postings,)
    )
    fill_pos = term_ptr[:-1].copy()
    doc_offset = 0
    for batch in batches:
        q = quantize(batch.weights, impact_dtype, scale)
        _scatter_postings(batch.indptr, batch.term_ids, q, doc_offset, fill_pos, doc_ids, impacts)
        doc_offset += len(batch)
    if doc_offset != n_docs or not np.array_equal(fill_pos, term_ptr[1:]):
        raise RuntimeError("the vector source changed between the two build passes")
    doc_ids.flush()
    impacts.flush()
    del doc_ids, impacts


def _write_lines_or_copy(lines: Sequence[str] | Path, dest: Path) -> int:
    if isinstance(lines, Path):
        shutil.copyfile(lines, dest)
        with open(dest, encoding="utf-8") as f:
            return sum(1 for _ in f)
    with open(dest, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
    return len(lines)


def _write_vocab(vocab: Sequence[str] | Path, dest: Path, n_terms: int) -> None:
    terms = json.loads(vocab.read_text(encoding="utf-8")) if isinstance(vocab, Path) else list(vocab)
    if len(terms) != n_terms:
        raise ValueError(f"vocabulary has {len(terms)} terms, but n_terms is {n_terms}")
    dest.write_text(json.dumps(terms, ensure_ascii=False), encoding="utf-8")
