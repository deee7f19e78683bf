"""Open-time invariants of an index and its block-max data (the kernels in
:mod:`lsr.index.kernels.check`), raised as :class:`~lsr.index.io.CorruptArtifactError` naming the file.

Checksums (every byte) are :mod:`lsr.index.checksum`'s and ``lsr verify``'s; these checks are what
keeps a damaged file that still has the right size, dtype and shape from sending a numba kernel
outside an array: one pass over the postings and one over the block-max runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lsr.index.io import CorruptArtifactError
from lsr.index.kernels.check import _check_blockmax, _check_postings

if TYPE_CHECKING:
    from lsr.index.blockmax import BlockMax

SUPER = 256  # blocks (dense rows) or runs (sparse entries) per base offset: lsr.index.kernels.blockmax_build

_POSTINGS = {
    1: ("term_ptr.npy", "term_ptr is not a non-decreasing run from 0 to the postings count (term {})"),
    2: ("doc_ids.npy", "holds a doc id outside [0, n_docs) at posting {}"),
    3: ("doc_ids.npy", "doc ids do not ascend within a term at posting {}"),
    4: ("impacts.npy", "holds an impact that is not finite and > 0 at posting {}"),
}
_BLOCKMAX = {
    5: ("tb_ptr.npy", "is not a non-decreasing run from 0 to the sparse entries count (term {})"),
    6: ("row_of.npy", "does not number the dense terms 0, 1, ... in term order (term {})"),
    7: ("dense_off.npy", "dense run offsets leave the posting list of term {}"),
    8: ("tb_block.npy", "a block's run of term {} holds docs of another block"),
    9: ("tb_off.npy", "the sparse runs of term {} do not tile its posting list"),
}


def check_postings(path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Raise if the CSC arrays of the index in ``path`` break what the exhaustive kernel relies on:
    lengths against the meta's counts, then the one pass of :func:`_check_postings`."""
    term_ptr, doc_ids, impacts = arrays["term_ptr"], arrays["doc_ids"], arrays["impacts"]
    if len(term_ptr) != meta["n_terms"] + 1:
        raise CorruptArtifactError(
            path / "term_ptr.npy", f"does not hold n_terms + 1 = {meta['n_terms'] + 1}"
        )
    if not len(doc_ids) == len(impacts) == meta["n_postings"]:
        raise CorruptArtifactError(path / "doc_ids.npy", f"or impacts.npy do not hold {meta['n_postings']}")
    code, where = _check_postings(term_ptr, doc_ids, impacts, meta["n_docs"])
    if code:
        name, what = _POSTINGS[code]
        raise CorruptArtifactError(path / name, what.format(where))


def check_blockmax(bmx: BlockMax, term_ptr: np.ndarray, doc_ids: np.ndarray, n_docs: int) -> None:
    """Raise if ``bmx`` does not fit sound postings (shapes, counts, then every run's bounds)."""
    shape = _shape_problem(bmx, len(term_ptr) - 1, n_docs)
    if shape:
        name, what = shape
        raise CorruptArtifactError(bmx.path / name, what)
    code, where = _check_blockmax(
        term_ptr,
        doc_ids,
        bmx.block_size,
        bmx.n_blocks,
        bmx.row_of,
        bmx.dense_base,
        bmx.dense_off,
        bmx.tb_ptr,
        bmx.tb_block,
        bmx.tb_base,
        bmx.tb_off,
        bmx.dense_before,
    )
    if code:
        name, what = _BLOCKMAX[code]
        raise CorruptArtifactError(bmx.path / name, what.format(where))


def _shape_problem(bmx: BlockMax, n_terms: int, n_docs: int) -> tuple[str, str] | None:
    meta: dict[str, Any] = bmx.meta
    size = bmx.block_size
    if not (isinstance(size, int) and 1 <= size <= SUPER and bmx.n_blocks == max(1, -(-n_docs // size))):
        return "meta.json", f"block size {size} and {bmx.n_blocks} blocks do not fit {n_docs} docs"
    if not (
        np.isfinite(bmx.ub_ratio) and bmx.ub_ratio > 0 and np.isfinite(bmx.ub_slack) and bmx.ub_slack >= 1
    ):
        return (
            "meta.json",
            f"bad bound scaling ub_ratio {meta.get('ub_ratio')}, ub_slack {meta.get('ub_slack')}",
        )
    n_dense, n_sparse = len(bmx.dense_max), len(bmx.tb_block)
    expected = {
        "row_of": (n_terms,),
        "dense_before": (n_terms,),
        "dense_max": (n_dense, bmx.n_blocks),
        "dense_base": (n_dense, bmx.n_blocks // SUPER + 1),
        "dense_off": (n_dense, bmx.n_blocks + 1),
        "tb_ptr": (n_terms + 1,),
        "tb_max": (n_sparse,),
        "tb_off": (n_sparse,),
        "tb_base": (n_sparse // SUPER + 1,),
    }
    for name, shape in expected.items():
        if getattr(bmx, name).shape != shape:
            return f"{name}.npy", f"has shape {list(getattr(bmx, name).shape)}, expected {list(shape)}"
    return None
