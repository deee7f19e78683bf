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
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lsr.index.approx import build_approx_lists, check_approx_lists
from lsr.index.blockmax import DEFAULT_BLOCK_SIZE, build_blockmax, check_block_size
from lsr.index.fields import build_fields
from lsr.index.io import atomic_directory, save_array, write_meta
from lsr.index.kernels.invert import _quantize_linear, _scatter_postings, _sort_postings, scatter_chunks
from lsr.index.reorder import REORDER_METHODS, bp_order, resolve_reorder
from lsr.index.rescore import FORWARD_CHOICES, ForwardWriter
from lsr.index.sparse import DOC_DTYPE, PTR_DTYPE, SparseBatch

logger = logging.getLogger(__name__)

INDEX_FORMAT = "lsr-index"
INDEX_FORMAT_VERSION = 1
INTEGER_IMPACT_DTYPES: dict[str, type[np.unsignedinteger]] = {"uint8": np.uint8, "uint16": np.uint16}
IMPACT_DTYPES: dict[str, type[np.number]] = {**INTEGER_IMPACT_DTYPES, "float32": np.float32}


def quantization_scale(max_weight: float, impact_dtype: str) -> float:
    """Linear quantization step: the largest weight maps to the dtype's maximum."""
    if impact_dtype == "float32" or max_weight <= 0:
        return 1.0
    return float(max_weight) / float(np.iinfo(INTEGER_IMPACT_DTYPES[impact_dtype]).max)


def quantize(weights: np.ndarray, impact_dtype: str, scale: float) -> np.ndarray:
    """Map weights to impacts: ``round(w / scale)`` clipped to [1, max].

    The floor of 1 keeps every posting: a tiny positive weight still matches.
    """
    if impact_dtype == "float32":
        return weights.astype(np.float32)
    dtype = INTEGER_IMPACT_DTYPES[impact_dtype]
    out = np.empty(len(weights), dtype)
    _quantize_linear(weights, float(scale), float(np.iinfo(dtype).max), out)
    return out


@dataclass(frozen=True)
class BuildOptions:
    """How to build: impact quantization, document reordering, block-max data.

    Attributes:
        impact_dtype: "uint8", "uint16" or "float32".
        reorder: "none", "bp" (recursive graph bisection down to ``block_size`` docs), or "auto": bp
            from ``lsr.index.reorder.AUTO_MIN_DOCS`` documents up.
        bp_iterations: swap rounds per bisection level.
        block_size: docs per block of the block-max artifact; None builds no block-max data.
        scale: a fixed quantization step (a live index's segments share their first segment's, so
            that their scores compare); None derives it from the largest weight.
        fields: metadata fields ``{name: keyword | int | float | date}`` to store as columns (from the
            docstore's ``metadata``; lsr.index.fields); None or empty: none.
        forward: "none", or "float32": also store each document's exact weights, so that searches
            rescore their candidates exactly (lsr.index.rescore); integer impacts only (float32
            impacts are exact already).
        approx_lists: 0, or N: also write the statically pruned lists of approx search (each term's
            N highest-impact postings, lsr.index.approx); needs block-max data. Their candidates are
            rescored with the forward index where there is one, else from the full posting lists.
    """

    impact_dtype: str = "uint8"
    reorder: str = "none"
    bp_iterations: int = 2
    block_size: int | None = DEFAULT_BLOCK_SIZE
    scale: float | None = None
    fields: dict[str, str] | None = None
    forward: str = "none"
    approx_lists: int = 0

    def __post_init__(self) -> None:
        if self.approx_lists != 0:
            check_approx_lists(self.approx_lists)
            if self.block_size is None:
                raise ValueError(f"approx_lists {self.approx_lists} needs block-max data (a block_size)")
        if self.forward not in FORWARD_CHOICES:
            raise ValueError(f"forward {self.forward!r} is not one of {list(FORWARD_CHOICES)}")
        if self.scale is not None and not (self.scale > 0 and np.isfinite(self.scale)):
            raise ValueError(f"a fixed quantization scale must be finite and > 0, got {self.scale!r}")
        if self.impact_dtype not in IMPACT_DTYPES:
            raise ValueError(f"impact dtype {self.impact_dtype!r} is not one of {sorted(IMPACT_DTYPES)}")
        if self.reorder not in REORDER_METHODS:
            raise ValueError(f"reorder {self.reorder!r} is not one of {list(REORDER_METHODS)}")
        if self.block_size is not None:
            check_block_size(self.block_size)

    @property
    def keeps_forward(self) -> bool:
        return self.forward != "none" and self.impact_dtype in INTEGER_IMPACT_DTYPES


@dataclass
class _Pass1:
    counts: np.ndarray
    n_docs: int = 0
    max_weight: float = 0.0
    empty_docs: int = 0
    forward: list[SparseBatch] | None = None  # kept only when reordering needs the forward index
    row_nnz: list[np.ndarray] | None = None  # kept only for the forward index of exact weights


def _count_pass(batches: Iterable[SparseBatch], n_terms: int, keep_forward: bool, keep_nnz: bool) -> _Pass1:
    stats = _Pass1(np.zeros(n_terms, dtype=np.int64), forward=[] if keep_forward else None)
    stats.row_nnz = [] if keep_nnz else None
    for batch in batches:
        batch.validate(n_terms)
        stats.counts += np.bincount(batch.term_ids, minlength=n_terms)
        stats.n_docs += len(batch)
        stats.empty_docs += int(np.count_nonzero(batch.row_nnz() == 0))
        if batch.nnz:
            stats.max_weight = max(stats.max_weight, float(batch.weights.max()))
        if stats.row_nnz is not None:
            stats.row_nnz.append(batch.row_nnz().astype(np.int64))
        if stats.forward is not None:
            stats.forward.append(
                SparseBatch(np.asarray(batch.indptr), np.asarray(batch.term_ids), np.zeros(0, np.float32))
            )
    return stats


def _doc_order(stats: _Pass1, n_terms: int, options: BuildOptions) -> tuple[np.ndarray | None, dict]:
    """The reordering permutation (new doc i = original doc perm[i]) and its meta section."""
    if resolve_reorder(options.reorder, stats.n_docs) == "none" or stats.n_docs == 0:
        stats.forward = None
        return None, {"method": "none", "requested": options.reorder}
    assert stats.forward is not None, "_count_pass keeps the forward index whenever reorder is not 'none'"
    start = time.perf_counter()
    batches = stats.forward
    offsets = np.cumsum([0] + [b.nnz for b in batches[:-1]])
    indptr = np.concatenate(
        [np.zeros(1, np.int64)] + [b.indptr[1:] + off for b, off in zip(batches, offsets, strict=True)]
    )
    forward = SparseBatch(
        indptr.astype(PTR_DTYPE), np.concatenate([b.term_ids for b in batches]), np.zeros(0, np.float32)
    )
    leaf_size = options.block_size or DEFAULT_BLOCK_SIZE
    perm = bp_order(forward, n_terms, leaf_size=leaf_size, iterations=options.bp_iterations)
    section = {
        "method": "bp",
        "requested": options.reorder,
        "iterations": options.bp_iterations,
        "leaf_size": leaf_size,
        "seconds": round(time.perf_counter() - start, 3),
    }
    return perm, section


def build_index(
    batches: Callable[[], Iterable[SparseBatch]],
    n_terms: int,
    doc_keys: Sequence[str] | Path,
    vocab: Sequence[str] | Path,
    out: str | Path,
    options: BuildOptions | None = None,
    sections: dict[str, Any] | None = None,
    extra_files: dict[str, Path] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Build an index directory atomically (block-max data included) and return its meta.

    Args:
        batches: called twice; each call yields the corpus as CSR batches in doc order.
        n_terms: vocabulary size; term ids lie in [0, n_terms).
        doc_keys: external doc ids in input order (a list, or a path to an ids.txt).
        vocab: term strings by term id (a list, or a path to a vocab.json).
        out: the index directory; replaced only once the new one is complete.
        options: quantization, reordering and block-max settings.
        sections: extra JSON sections for meta.json (encoder, resolved config, source).
        extra_files: files copied into the index under the given names (e.g. a docstore).
        overwrite: replace an existing ``out``.
    """
    options = options or BuildOptions()
    stats = _count_pass(batches(), n_terms, options.reorder != "none", options.keeps_forward)
    perm, reorder_meta = _doc_order(stats, n_terms, options)
    stats.forward = None
    term_ptr = np.zeros(n_terms + 1, dtype=PTR_DTYPE)
    np.cumsum(stats.counts, out=term_ptr[1:])
    n_postings = int(term_ptr[-1])
    scale = options.scale or quantization_scale(stats.max_weight, options.impact_dtype)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        writer = _forward_writer(tmp, stats, perm, n_terms, options, scale)
        arrays = _write_postings(
            batches(), tmp, term_ptr, options.impact_dtype, scale, stats.n_docs, perm, writer
        )
        forward_meta: dict[str, Any] = {"dtype": "none"}
        if writer is not None:
            specs, forward_meta = writer.finish()
            arrays.update(specs)
        files = _write_files(tmp, doc_keys, vocab, stats.n_docs, n_terms, perm, extra_files)
        if perm is not None:
            arrays["doc_order"] = save_array(tmp, "doc_order", perm)
        meta = {
            **_index_meta(stats, n_terms, n_postings, options.impact_dtype, scale),
            "reorder": reorder_meta,
            "forward": forward_meta,
            "stats": {"doc_nnz_avg": n_postings / max(stats.n_docs, 1), "empty_docs": stats.empty_docs},
            "arrays": arrays,
            "files": sorted(files),
            **(sections or {}),
        }
        meta = write_meta(tmp, meta)
        if options.fields:
            build_fields(tmp, options.fields, stats.n_docs)
        if options.block_size is not None:
            build_blockmax(tmp, options.block_size)
            if options.approx_lists:
                build_approx_lists(tmp, options.approx_lists, options.block_size)
    logger.info("built index %s: %d docs, %d terms, %d postings", out, stats.n_docs, n_terms, n_postings)
    return meta


def _forward_writer(
    tmp: Path, stats: _Pass1, perm: np.ndarray | None, n_terms: int, options: BuildOptions, scale: float
) -> ForwardWriter | None:
    if stats.row_nnz is None:
        return None
    row_nnz = np.concatenate(stats.row_nnz) if stats.row_nnz else np.zeros(0, np.int64)
    stats.row_nnz = None
    return ForwardWriter(tmp, row_nnz, perm, n_terms, options.forward, scale)


def _write_postings(
    batches: Iterable[SparseBatch],
    tmp: Path,
    term_ptr: np.ndarray,
    impact_dtype: str,
    scale: float,
    n_docs: int,
    perm: np.ndarray | None,
    forward: ForwardWriter | None = None,
) -> dict[str, Any]:
    """Write ``term_ptr``, ``doc_ids`` and ``impacts`` (pass 2; the forward index's rows too); return
    their array specs."""
    n_postings = int(term_ptr[-1])
    arrays = {"term_ptr": save_array(tmp, "term_ptr", term_ptr)}
    _fill_pass(batches, tmp, term_ptr, impact_dtype, scale, n_docs, perm, forward)
    arrays["doc_ids"] = {"dtype": np.dtype(DOC_DTYPE).name, "shape": [n_postings]}
    arrays["impacts"] = {"dtype": np.dtype(IMPACT_DTYPES[impact_dtype]).name, "shape": [n_postings]}
    return arrays


def _write_files(
    tmp: Path,
    doc_keys: Sequence[str] | Path,
    vocab: Sequence[str] | Path,
    n_docs: int,
    n_terms: int,
    perm: np.ndarray | None,
    extra_files: dict[str, Path] | None,
) -> list[str]:
    """Write ``ids.txt`` and ``vocab.json``, copy the extra files; return the names of all of them."""
    _write_doc_keys(doc_keys, tmp / "ids.txt", n_docs, perm)
    _write_vocab(vocab, tmp / "vocab.json", n_terms)
    for name, src in (extra_files or {}).items():
        shutil.copyfile(src, tmp / name)
    return ["ids.txt", "vocab.json", *(extra_files or {})]


def _index_meta(
    stats: _Pass1, n_terms: int, n_postings: int, impact_dtype: str, scale: float
) -> dict[str, Any]:
    """The head of the index's meta.json: format, a new uid, creation time, counts, impacts."""
    return {
        "format": INDEX_FORMAT,
        "format_version": INDEX_FORMAT_VERSION,
        "uid": uuid.uuid4().hex,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "n_docs": stats.n_docs,
        "n_terms": n_terms,
        "n_postings": n_postings,
        "impacts": {
            "dtype": impact_dtype,
            "method": "linear" if impact_dtype != "float32" else "none",
            "scale": scale,
            "max_weight": stats.max_weight,
        },
    }


def _fill_pass(
    batches: Iterable[SparseBatch],
    tmp: Path,
    term_ptr: np.ndarray,
    impact_dtype: str,
    scale: float,
    n_docs: int,
    perm: np.ndarray | None,
    forward: ForwardWriter | None,
) -> None:
    n_postings = int(term_ptr[-1])
    doc_ids = np.lib.format.open_memmap(tmp / "doc_ids.npy", mode="w+", dtype=DOC_DTYPE, shape=(n_postings,))
    impacts = np.lib.format.open_memmap(
        tmp / "impacts.npy", mode="w+", dtype=IMPACT_DTYPES[impact_dtype], shape=(n_postings,)
    )
    new_id = np.arange(n_docs, dtype=DOC_DTYPE)  # input row -> internal doc id
    if perm is not None:
        new_id[perm] = np.arange(n_docs, dtype=DOC_DTYPE)
    fill_pos = term_ptr[:-1].copy()
    doc_offset = 0
    for batch in batches:
        if doc_offset + len(batch) > n_docs:
            raise RuntimeError("the vector source changed between the two build passes")
        q = quantize(batch.weights, impact_dtype, scale)
        chunks = scatter_chunks(batch.nnz, len(fill_pos))
        _scatter_postings(
            batch.indptr, batch.term_ids, q, new_id[doc_offset:], fill_pos, doc_ids, impacts, chunks
        )
        if forward is not None:
            forward.add(batch, q, doc_offset)
        doc_offset += len(batch)
    if doc_offset != n_docs or not np.array_equal(fill_pos, term_ptr[1:]):
        raise RuntimeError("the vector source changed between the two build passes")
    if perm is not None:
        _sort_postings(term_ptr, doc_ids, impacts)
    doc_ids.flush()
    impacts.flush()
    del doc_ids, impacts


def _write_doc_keys(doc_keys: Sequence[str] | Path, dest: Path, n_docs: int, perm: np.ndarray | None) -> None:
    if isinstance(doc_keys, Path):
        with open(doc_keys, encoding="utf-8") as f:
            doc_keys = f.read().splitlines()
    if len(doc_keys) != n_docs:
        raise ValueError(f"{len(doc_keys)} doc ids for {n_docs} vectors: ids and vectors disagree")
    order = perm.tolist() if perm is not None else range(n_docs)
    with open(dest, "w", encoding="utf-8") as f:
        for i in order:
            f.write(doc_keys[i] + "\n")


def _write_vocab(vocab: Sequence[str] | Path, dest: Path, n_terms: int) -> None:
    terms = json.loads(vocab.read_text(encoding="utf-8")) if isinstance(vocab, Path) else list(vocab)
    if len(terms) != n_terms:
        raise ValueError(f"vocabulary has {len(terms)} terms, but n_terms is {n_terms}")
    dest.write_text(json.dumps(terms, ensure_ascii=False), encoding="utf-8")
