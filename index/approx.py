"""Approximate search over statically pruned posting lists (Seismic's static pruning).

``BuildOptions.approx_lists = N`` (config ``index.approx_lists``) writes ``approx/`` inside an index
that keeps the forward index of exact weights: an ordinary ``lsr-index`` directory over the same
internal doc ids whose posting list of term t holds the N postings of t with the highest impacts
(ties to the lower doc id; a shorter list is kept whole), in doc order, with block-max data of its
own. Search in mode ``approx`` without a filter then runs the block-max kernel over these lists for
the top k' = max(2k, k + 16) candidates and rescores them with the full query's exact weights
(lsr.index.rescore): the scores returned are exact, the candidates are what the pruned lists find.

The query-time knob is approx's ``budget`` (documents scored), as on the full lists, and here it also
cuts the query (two-step SPLADE, Seismic's query_cut): the candidates come from the query's
heaviest terms holding :func:`query_mass` (budget) of its weight, 0.6 at a budget of 512 documents
up to all of it from 8,192 (and without a budget); the rescoring uses every term. A smaller
budget cuts both the blocks scored and the query's terms, whose posting runs set the cost of
bounding the blocks, so latency falls with recall on one number (benchmarks/RESULTS.md,
"Approximate search: fixed costs and the budget on pruned lists"). N is fixed at build time
(longer lists: higher recall at every budget, more bytes). An index without ``approx/`` searches
approx over its full lists as before.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numba
import numpy as np

from lsr.index.blockmax import build_blockmax
from lsr.index.io import ArtifactError, atomic_directory, save_array, write_meta
from lsr.index.kernels.prune import _mass_cut, _prune_float_lists, _prune_lists, _pruned_lengths
from lsr.index.sparse import SparseBatch

if TYPE_CHECKING:
    from lsr.index.search import Index

logger = logging.getLogger(__name__)

APPROX_DIR = "approx"
FULL_QUERY_BUDGET = 8192  # from this budget on (and without one) the pruned lists see the whole query
MIN_MASS = 0.6  # the share of the query's weight kept at a budget of 512 documents and below


def query_mass(budget: int) -> float:
    """The share of the query's weight whose heaviest terms search the pruned lists at ``budget``:
    0.1 more per doubling, MIN_MASS at 512 documents and below, 1 from FULL_QUERY_BUDGET on and
    without a budget (0). The steps are where budget and query cut together gave the fastest search
    at each recall on synthetic 200k (benchmarks/RESULTS.md, "Approximate search: fixed costs")."""
    if budget == 0 or budget >= FULL_QUERY_BUDGET:
        return 1.0
    return min(1.0, max(MIN_MASS, 1.0 - 0.1 * math.log2(FULL_QUERY_BUDGET / budget)))


def cut_query(terms: np.ndarray, weights: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """A checked query cut to its heaviest terms holding query_mass(budget) of its weight (term order
    kept); the whole query when that share is 1."""
    mass = query_mass(budget)
    if mass >= 1.0 or len(terms) < 2:
        return terms, weights
    return _mass_cut(terms, weights, mass)


def cut_batch(queries: SparseBatch, budget: int) -> SparseBatch:
    """:func:`cut_query` for each query of a checked batch."""
    if query_mass(budget) >= 1.0:
        return queries
    return SparseBatch.from_rows(cut_query(*queries.row(i), budget) for i in range(len(queries)))


def check_approx_lists(n_keep: Any) -> int:
    """``n_keep`` as an int: postings kept per term, >= 1 (0 means no pruned lists to the callers)."""
    if isinstance(n_keep, bool) or not isinstance(n_keep, (int, np.integer)) or n_keep < 1:
        raise ValueError(f"approx_lists must be an integer >= 1 (postings kept per term), got {n_keep!r}")
    return int(n_keep)


def pruned_postings(
    term_ptr: np.ndarray, doc_ids: np.ndarray, impacts: np.ndarray, n_keep: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(term_ptr, doc_ids, impacts) with each list cut to its ``n_keep`` highest impacts (integer or
    float; ties to the lower doc id)."""
    n_keep = check_approx_lists(n_keep)
    term_ptr = np.asarray(term_ptr, np.int64)
    ptr = _pruned_lengths(term_ptr, n_keep)
    docs = np.zeros(int(ptr[-1]), doc_ids.dtype)
    out_impacts = np.zeros(int(ptr[-1]), impacts.dtype)
    postings = (term_ptr, np.asarray(doc_ids), np.asarray(impacts))
    out = (ptr, docs, out_impacts, numba.get_num_threads())
    if np.issubdtype(impacts.dtype, np.floating):
        _prune_float_lists(*postings, n_keep, *out)
    else:
        _prune_lists(*postings, n_keep, int(np.iinfo(impacts.dtype).max), *out)
    return ptr, docs, out_impacts


def build_approx_lists(index_dir: str | Path, n_keep: int, block_size: int) -> dict[str, Any]:
    """Write (or rewrite) ``index_dir/approx`` for the index in ``index_dir``; return its meta.

    Raises:
        ValueError: ``n_keep`` < 1.
    """
    from lsr.index.search import Index

    n_keep = check_approx_lists(n_keep)
    index = Index.load(index_dir, blockmax=False)
    ptr, docs, impacts = pruned_postings(index.term_ptr, index.doc_ids, index.impacts, n_keep)
    impacts, impacts_meta = _candidate_impacts(impacts, index.meta["impacts"])
    with atomic_directory(Path(index_dir) / APPROX_DIR, overwrite=True) as tmp:
        arrays = {
            "term_ptr": save_array(tmp, "term_ptr", ptr),
            "doc_ids": save_array(tmp, "doc_ids", docs),
            "impacts": save_array(tmp, "impacts", impacts),
        }
        meta = {
            **{key: index.meta[key] for key in ("format", "format_version", "n_docs", "n_terms")},
            "impacts": impacts_meta,
            "uid": uuid.uuid4().hex,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "n_postings": int(ptr[-1]),
            "approx_lists": {"index_uid": index.meta.get("uid"), "n_keep": n_keep},
            "arrays": arrays,
            "files": [],
        }
        meta = write_meta(tmp, meta)
        build_blockmax(tmp, block_size)
    total = index.meta["n_postings"]
    logger.info("approx lists: %d of %d postings (%d per term at most)", ptr[-1], total, n_keep)
    return meta


def _candidate_impacts(impacts: np.ndarray, meta: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """The pruned lists' impacts and their meta ``impacts``: float32 impacts (cut by their exact values)
    are stored as uint8, since the lists only find candidates, which are rescored from the full lists:
    uint8 block maxima are exact where float32 ones are rounded up to 1/255 of the largest impact, and
    their kernel was 1.35x faster on synthetic 200k (benchmarks/RESULTS.md, "float32 impacts by
    default"); integer impacts are kept as they are."""
    from lsr.index.builder import quantization_scale, quantize

    if not np.issubdtype(impacts.dtype, np.floating):
        return impacts, meta
    scale = quantization_scale(float(impacts.max(initial=0.0)), "uint8")
    return quantize(impacts, "uint8", scale), {**meta, "dtype": "uint8", "scale": scale}


def load_approx_lists(index: Index) -> Index | None:
    """The pruned lists of ``index`` as an Index rescoring with ``index``'s forward arrays, or without
    them from ``index``'s full posting lists; None without ``approx/``.

    Raises:
        ArtifactError: lists built for another index, or without block-max data.
    """
    from lsr.index.search import Index

    path = index.path / APPROX_DIR
    if not path.exists():
        return None
    pruned = Index.load(path)
    built_for = pruned.meta.get("approx_lists", {}).get("index_uid")
    if built_for != index.meta.get("uid") or pruned.n_docs != index.n_docs:
        raise ArtifactError(
            f"{path} was built for index {built_for}, but {index.path} is index {index.meta.get('uid')}: "
            "rebuild the index"
        )
    if pruned.blockmax is None:
        raise ArtifactError(f"{path} has no block-max data: rebuild the index")
    pruned.forward = index.forward
    pruned.postings_scores = index.postings_scores
    return pruned
