"""A filter's own index: the allowed documents' postings gathered into a small in-memory :class:`Index`.

A selective filter whose allowed docs are spread over the whole collection (a random 1%) costs
every other path about one step per posting of the query's terms (``lsr.index.search.Filtered``).
Its sub-index holds just the allowed docs: doc ``i`` of the sub-index is the i-th allowed id
(``Filtered.allowed[i]``, ascending), its postings are the allowed docs' postings with their
impacts, its block-max data is built over them, and (on a rescoring index) its forward rows are
the allowed docs' rows. It is searched by the same kernels as any index, exact, safe or approx,
and its local ids are mapped back through ``allowed``: the mapping keeps the order of doc ids, and
each doc's postings and weights are the same numbers summed in the same order, so the top k, its
scores and its ties are those of the filtered exhaustive search.

The filter cache (``lsr.index.search.FilterCache``) builds one on a filter's second use and keeps
them within a byte budget. Deleted docs are not allowed docs (the filter's mask is ANDed with the
index's live docs), and a cache belongs to one opened index, i.e. one committed generation.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from lsr.index.blockmax import BlockMax, blockmax_arrays
from lsr.index.kernels.subindex import (
    _copy_allowed,
    _count_allowed,
    _find_impacts,
    _gather_rows,
    _transpose_rows,
)
from lsr.index.sparse import DOC_DTYPE

if TYPE_CHECKING:
    from lsr.index.rescore import Forward
    from lsr.index.search import Filtered, Index

logger = logging.getLogger(__name__)

# the postings of the sub-index's parts: (term_ptr, doc_ids, impacts) per segment
Parts = list[tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class FilterIndex:
    """A filter's sub-index (``index``: local doc i is the filter's i-th allowed id), its bytes in
    memory and the seconds its build took."""

    index: Index
    nbytes: int
    build_s: float


def build_subindex(
    parts: Parts,
    bases: NDArray[np.int64],
    f: Filtered,
    like: Index,
    block_size: int,
    max_bytes: int,
) -> FilterIndex | None:
    """The sub-index of ``f``'s allowed docs over the segments' postings ``parts`` (segment i's doc
    ids start at global id ``bases[i]``), with ``like``'s vocabulary size, scale and forward rows
    (when it has a forward index); None when it would take more than ``max_bytes``."""
    from lsr.index.search import Index

    assert f.allowed is not None
    start = time.perf_counter()
    arrays = _gathered(parts, bases, f, like, max_bytes)
    if arrays is None:
        return None
    if like.forward is not None:
        arrays.update(_gathered_forward(like.forward, f.allowed))
    n_postings = len(arrays["doc_ids"])
    meta = {
        "n_docs": len(f.allowed),
        "n_terms": like.n_terms,
        "n_postings": n_postings,
        "impacts": {"scale": float(like.scale)},
        "arrays": {},
        "files": [],
    }
    bm_arrays, info = blockmax_arrays(
        (arrays["term_ptr"], arrays["doc_ids"], arrays["impacts"]), len(f.allowed), block_size
    )
    for arr in (*arrays.values(), *bm_arrays.values()):
        arr.flags.writeable = False  # the kernels are compiled for the read-only memory-mapped arrays
    if like.forward is not None:
        arrays["term_err"] = like.forward.term_err  # its bound holds for any subset of the docs
    sub = Index(like.path, meta, arrays)
    sub.blockmax = BlockMax(like.path, info, bm_arrays)
    nbytes = sub.postings_nbytes + sub.blockmax.nbytes + _forward_nbytes(sub.forward, None)
    seconds = time.perf_counter() - start
    logger.info(
        "filter index of %s: %d docs, %d postings, %.1f MB, built in %.1f ms",
        like.path,
        len(f.allowed),
        n_postings,
        nbytes / 1e6,
        seconds * 1e3,
    )
    return FilterIndex(sub, nbytes, seconds)


def _gathered(
    parts: Parts, bases: NDArray[np.int64], f: Filtered, like: Index, max_bytes: int
) -> dict[str, np.ndarray] | None:
    """term_ptr, doc_ids (ranks among the allowed ids) and impacts of the allowed docs' postings:
    found through the forward index when ``like`` has one (a plain index), else scanned for; None
    when they and the forward rows would take more than ``max_bytes``."""
    assert f.allowed is not None
    impact_dtype = parts[0][2].dtype
    per_posting = np.dtype(DOC_DTYPE).itemsize + impact_dtype.itemsize
    rows_bytes = _forward_nbytes(like.forward, f.allowed)
    fw = like.forward
    if fw is not None and len(parts) == 1 and len(fw.terms) == len(parts[0][1]):
        n_postings = int((fw.indptr[f.allowed + 1] - fw.indptr[f.allowed]).sum())
        if n_postings * per_posting + rows_bytes > max_bytes:
            return None
        found = _found_postings(fw, parts[0], f.allowed, like.n_terms, n_postings)
        if found is not None:
            return found
    counts = np.zeros(like.n_terms, np.int64)
    for (term_ptr, doc_ids, _), base in zip(parts, bases, strict=True):
        _count_allowed(term_ptr, doc_ids, np.int64(base), f.bits, counts)
    if int(counts.sum()) * per_posting + rows_bytes > max_bytes:
        return None
    return _gathered_postings(parts, bases, counts, f, impact_dtype)


def _found_postings(
    fw: Forward,
    postings: tuple[np.ndarray, np.ndarray, np.ndarray],
    allowed: NDArray[np.int32],
    n_terms: int,
    n_postings: int,
) -> dict[str, np.ndarray] | None:
    """The allowed docs' postings from their forward rows, each impact found in the posting lists
    (lsr.index.kernels.subindex); None (and a warning) if a forward entry has no posting."""
    term_ptr = np.zeros(n_terms + 1, np.int64)
    doc_ids = np.empty(n_postings, DOC_DTYPE)
    _transpose_rows(fw.indptr, fw.terms, allowed, term_ptr, doc_ids)
    impacts = np.empty(n_postings, postings[2].dtype)
    missing = _find_impacts(*postings, term_ptr, doc_ids, allowed, impacts)
    if missing:
        logger.warning("%d forward entries have no posting: the filter index scans the postings", missing)
        return None
    return {"term_ptr": term_ptr, "doc_ids": doc_ids, "impacts": impacts}


def _gathered_postings(
    parts: Parts, bases: NDArray[np.int64], counts: NDArray[np.int64], f: Filtered, impact_dtype: np.dtype
) -> dict[str, np.ndarray]:
    """The allowed docs' postings scanned for in ``parts``, ``counts`` per term."""
    assert f.rank is not None
    term_ptr = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=term_ptr[1:])
    cursor = term_ptr[:-1].copy()
    doc_ids = np.empty(int(term_ptr[-1]), DOC_DTYPE)
    impacts = np.empty(int(term_ptr[-1]), impact_dtype)
    for (seg_ptr, seg_docs, seg_impacts), base in zip(parts, bases, strict=True):
        allowed = (np.int64(base), f.bits, f.rank)
        _copy_allowed(seg_ptr, seg_docs, seg_impacts, *allowed, cursor, doc_ids, impacts)
    return {"term_ptr": term_ptr, "doc_ids": doc_ids, "impacts": impacts}


def _gathered_forward(forward: Forward, allowed: NDArray[np.int32]) -> dict[str, np.ndarray]:
    """The allowed docs' forward rows."""
    lengths = forward.indptr[allowed + 1] - forward.indptr[allowed]
    indptr = np.zeros(len(allowed) + 1, np.int64)
    np.cumsum(lengths, out=indptr[1:])
    terms = np.empty(int(indptr[-1]), forward.terms.dtype)
    weights = np.empty(int(indptr[-1]), forward.weights.dtype)
    _gather_rows(forward.indptr, forward.terms, forward.weights, allowed, indptr, terms, weights)
    return {"fwd_indptr": indptr, "fwd_terms": terms, "fwd_weights": weights}


def _forward_nbytes(forward: Forward | None, allowed: NDArray[np.int32] | None) -> int:
    """Bytes of ``forward``'s rows (``allowed``'s only, when given), without the shared ``term_err``."""
    if forward is None:
        return 0
    if allowed is None:
        rows, entries = len(forward.indptr) - 1, len(forward.terms)
    else:
        rows, entries = len(allowed), int((forward.indptr[allowed + 1] - forward.indptr[allowed]).sum())
    return 8 * (rows + 1) + entries * (forward.terms.itemsize + forward.weights.itemsize)
