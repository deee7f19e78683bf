"""The block-max artifact: a ``blockmax/`` directory beside an index's posting lists.

Built by :func:`build_blockmax` from an existing index (``lsr index`` builds it
by default); loaded by :class:`lsr.index.Index` for ``mode="safe"`` and
``mode="approx"``. It records the uid of the index it was built from and is
refused if that index is rebuilt. Layout and kernels: ``lsr.index.kernels.blockmax``.
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lsr.index.io import ArtifactError, atomic_directory, load_array, read_meta, save_array, write_meta
from lsr.index.kernels.blockmax_build import (
    SUPER_SHIFT,
    _count_runs,
    _fill_dense,
    _fill_sparse,
    _merge_sparse,
)

logger = logging.getLogger(__name__)

BLOCKMAX_DIR = "blockmax"
BLOCKMAX_FORMAT = "lsr-blockmax"
BLOCKMAX_FORMAT_VERSION = 1
ARRAYS = (
    "row_of",
    "dense_max",
    "dense_base",
    "dense_off",
    "tb_ptr",
    "tb_block",
    "tb_max",
    "tb_base",
    "tb_off",
    "dense_before",
)  # what the search kernels read
MAX_BLOCK_SIZE = 256  # a block's run of one term must fit the uint16 dense offsets
# 32 was tried on 2026-12-02 and left: approx 22% faster at R@10 0.99 on 1M synthetic documents, but
# slower at R@10 >= 0.98 on 200k and fewer of the top 10 per budget on the DL pool (benchmarks/RESULTS.md,
# "Block size 32, tried"); safe mode up to EXHAUSTIVE_DOCS scores exhaustively whatever the size
DEFAULT_BLOCK_SIZE = 16
# slack on upper bounds stored coarser than the impacts (uint16/float32 indexes): ceil() makes the
# stored maxima upper bounds in exact arithmetic; this covers float32 rounding of max * ratio.
COARSE_UB_SLACK = 1.0 + 1e-5


def check_block_size(block_size: int) -> int:
    if (
        isinstance(block_size, bool)
        or not isinstance(block_size, (int, np.integer))
        or not (1 <= block_size <= MAX_BLOCK_SIZE)
    ):
        raise ValueError(f"block size must be an integer in [1, {MAX_BLOCK_SIZE}], got {block_size!r}")
    return int(block_size)


def build_blockmax(
    index_dir: str | Path, block_size: int = DEFAULT_BLOCK_SIZE, dense_fraction: float = 0.25
) -> dict[str, Any]:
    """Build (or rebuild) ``index_dir/blockmax`` for the index in ``index_dir``; return its meta.

    Args:
        block_size: documents per block.
        dense_fraction: a term present in at least this fraction of the blocks gets a dense row
            (a bound and a run offset for every block); rarer terms keep one entry per block.
    """
    from lsr.index.search import Index

    block_size = check_block_size(block_size)
    if not 0 < dense_fraction <= 1:
        raise ValueError(f"dense_fraction must lie in (0, 1], got {dense_fraction!r}")
    index = Index.load(index_dir, blockmax=False)  # the old block-max data may be stale or unreadable
    postings = tuple(np.asarray(a) for a in (index.term_ptr, index.doc_ids, index.impacts))
    arrays, info = blockmax_arrays(postings, index.n_docs, block_size, dense_fraction)
    info = {"index_uid": index.meta.get("uid"), **info}
    meta = _write_blockmax(Path(index_dir) / BLOCKMAX_DIR, arrays, info)
    logger.info(
        "block-max: %d blocks of %d docs, %d dense terms, %d sparse runs",
        info["n_blocks"],
        block_size,
        info["n_dense_terms"],
        info["n_sparse_runs"],
    )
    return meta


def block_count(n_docs: int, block_size: int) -> int:
    """Blocks of ``block_size`` documents over ``n_docs`` (at least one, for an empty index)."""
    return max(1, -(-n_docs // block_size))


def blockmax_arrays(
    postings: tuple[np.ndarray, ...], n_docs: int, block_size: int, dense_fraction: float = 0.25
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The block-max arrays (``ARRAYS``) of CSC postings (term_ptr, doc_ids, impacts) over ``n_docs``
    docs, and their meta fields (without ``index_uid``)."""
    n_blocks = block_count(n_docs, block_size)
    term_ptr, doc_ids, impacts = postings
    runs = _count_runs(term_ptr, doc_ids, block_size)
    is_dense = (runs > 0) & (runs >= dense_fraction * n_blocks)
    dense = _dense_rows(postings, block_size, is_dense, n_blocks)
    sparse = _sparse_entries(postings, block_size, is_dense, runs, n_blocks)
    maxima, ub_ratio, ub_slack = _quantize_maxima(
        (dense.pop("dense_max"), sparse.pop("tb_max")), impacts.dtype
    )
    arrays = {**dense, **sparse, "dense_max": maxima[0], "tb_max": maxima[1]}
    info = {
        "n_docs": n_docs,
        "n_postings": int(len(doc_ids)),
        "block_size": block_size,
        "n_blocks": n_blocks,
        "dense_fraction": dense_fraction,
        "n_dense_terms": len(arrays["dense_max"]),
        "n_sparse_runs": int(arrays["tb_ptr"][-1]),
        "ub_ratio": ub_ratio,
        "ub_slack": ub_slack,
    }
    return arrays, info


def _dense_rows(
    postings: tuple[np.ndarray, ...], block_size: int, is_dense: np.ndarray, n_blocks: int
) -> dict[str, np.ndarray]:
    """The dense terms' rows: ``row_of``, float block maxima (``dense_max``), run offsets."""
    term_ptr, doc_ids, impacts = postings
    dense_terms = np.flatnonzero(is_dense).astype(np.int32)
    row_of = np.full(len(term_ptr) - 1, -1, np.int32)
    row_of[dense_terms] = np.arange(len(dense_terms), dtype=np.int32)
    dense_maxf = np.zeros((len(dense_terms), n_blocks), np.float64)
    dense_base = np.zeros((len(dense_terms), (n_blocks >> SUPER_SHIFT) + 1), np.uint32)
    dense_off = np.zeros((len(dense_terms), n_blocks + 1), np.uint16)
    _fill_dense(term_ptr, doc_ids, impacts, block_size, dense_terms, dense_maxf, dense_base, dense_off)
    return {"row_of": row_of, "dense_max": dense_maxf, "dense_base": dense_base, "dense_off": dense_off}


def _sparse_entries(
    postings: tuple[np.ndarray, ...], block_size: int, is_dense: np.ndarray, runs: np.ndarray, n_blocks: int
) -> dict[str, np.ndarray]:
    """The sparse terms' (block, float max) entries, run offsets and ``dense_before``."""
    term_ptr, doc_ids, impacts = postings
    sparse_runs = np.where(is_dense, 0, runs)
    tb_ptr = np.concatenate([[0], np.cumsum(sparse_runs)]).astype(np.int64)
    n_sparse = int(tb_ptr[-1])
    tb_block = np.empty(n_sparse, np.uint16 if n_blocks <= 65536 else np.int32)
    tb_maxf = np.empty(n_sparse, np.float64)
    tb_base = np.zeros((n_sparse >> SUPER_SHIFT) + 1, np.int64)
    tb_off = np.empty(n_sparse, np.uint16)
    lengths = np.diff(term_ptr)
    dense_before = np.concatenate([[0], np.cumsum(np.where(is_dense, lengths, 0))[:-1]]).astype(np.int64)
    _fill_sparse(
        term_ptr,
        doc_ids,
        impacts,
        block_size,
        is_dense,
        tb_ptr,
        tb_block,
        tb_maxf,
        tb_base,
        tb_off,
        dense_before,
    )
    return {
        "tb_ptr": tb_ptr,
        "tb_block": tb_block,
        "tb_max": tb_maxf,
        "tb_base": tb_base,
        "tb_off": tb_off,
        "dense_before": dense_before,
    }


def _write_blockmax(out: Path, arrays: dict[str, np.ndarray], info: dict[str, Any]) -> dict[str, Any]:
    """Write the arrays (in ``ARRAYS`` order) and meta.json into ``out`` atomically; return the meta."""
    with atomic_directory(out, overwrite=True) as tmp:
        specs = {name: save_array(tmp, name, arrays[name]) for name in ARRAYS}
        meta = {
            "format": BLOCKMAX_FORMAT,
            "format_version": BLOCKMAX_FORMAT_VERSION,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            **info,
            "arrays": specs,
        }
        meta = write_meta(tmp, meta)
    return meta


def _quantize_maxima(
    maxima: tuple[np.ndarray, ...], impact_dtype: np.dtype
) -> tuple[tuple[np.ndarray, ...], float, float]:
    """Block maxima as uint8: exact for uint8 impacts, else ceil(max / ratio) with a float slack."""
    if impact_dtype == np.uint8:
        return tuple(m.astype(np.uint8) for m in maxima), 1.0, 1.0
    top = max((float(m.max()) for m in maxima if m.size), default=1.0)
    ratio = top / 255.0 if top > 0 else 1.0
    return tuple(np.clip(np.ceil(m / ratio), 0, 255).astype(np.uint8) for m in maxima), ratio, COARSE_UB_SLACK


# what BlockMax.load relies on in meta.json (checked by read_meta)
BLOCKMAX_FIELDS = {
    "block_size": int,
    "n_blocks": int,
    "ub_ratio": float,
    "ub_slack": float,
    "n_postings": int,
    "arrays": dict,
}


class BlockMax:
    """A loaded block-max artifact (arrays memory-mapped)."""

    # the ARRAYS, set from the artifact by __init__
    row_of: np.ndarray
    dense_max: np.ndarray
    dense_base: np.ndarray
    dense_off: np.ndarray
    tb_ptr: np.ndarray
    tb_block: np.ndarray
    tb_max: np.ndarray
    tb_base: np.ndarray
    tb_off: np.ndarray
    dense_before: np.ndarray

    def __init__(self, path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]):
        self.path = path
        self.meta = meta
        self.block_size: int = meta["block_size"]
        self.n_blocks: int = meta["n_blocks"]
        self.ub_ratio = np.float32(meta["ub_ratio"])
        self.ub_slack = np.float32(meta["ub_slack"])
        for name, arr in arrays.items():
            setattr(self, name, arr)

    @classmethod
    def load(cls, index_dir: Path, index_meta: dict[str, Any]) -> BlockMax | None:
        """The artifact of ``index_dir``, None if it has none; refuse one built for another index."""
        path = index_dir / BLOCKMAX_DIR
        if not path.exists():
            return None
        meta = read_meta(path, BLOCKMAX_FORMAT, (BLOCKMAX_FORMAT_VERSION,), BLOCKMAX_FIELDS)
        if meta.get("index_uid") != index_meta.get("uid") or meta["n_postings"] != index_meta["n_postings"]:
            raise ArtifactError(
                f"{path} was built for index {meta.get('index_uid')} ({meta['n_postings']} postings), but "
                f"{index_dir} is index {index_meta.get('uid')} ({index_meta['n_postings']} postings): "
                "rebuild it with `lsr index --blockmax-for INDEX` or lsr.index.blockmax.build_blockmax"
            )
        missing = sorted(set(ARRAYS) - set(meta.get("arrays", {})))
        if missing:
            raise ArtifactError(
                f"{path} lacks block-max arrays {missing} (written by an older lsr?): "
                "rebuild it with `lsr index --blockmax-for INDEX`"
            )
        arrays = {name: load_array(path, name, spec) for name, spec in meta["arrays"].items()}
        return cls(path, meta, arrays)

    @property
    def nbytes(self) -> int:
        return int(sum(getattr(self, name).nbytes for name in ARRAYS))


# the arrays of MergedBounds (its ``arrays`` in this order, then the ratio), as stored in a bounds file
MERGED_ARRAYS = (
    "sp_ptr",
    "sp_block",
    "sp_max",
    "sp_start",
    "sp_len",
    "dn_ptr",
    "dn_seg",
    "dn_row",
    "dn_start",
    "dn_off",
    "dn_max",
)
# how MergedBounds.build gets an array to fill: (name, shape, dtype) -> array (in memory, or a mapped file)
Allocate = Callable[[str, tuple[int, ...], Any], np.ndarray]


def allocate_in_memory(name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    return np.empty(shape, dtype)


class MergedBounds:
    """The block maxima of a live index's segments (those small enough: the merged ones of
    ``lsr.index.segments.SegmentedIndex.bound_plan``) merged per term, built by the first block-max
    search of an opened generation into a memory-mapped bounds file (``lsr.index.merged_file``; in
    memory where the directory is read-only), so that a query's bound pass reads one piece per term
    whatever the number of segments (the segments' own directories and runs, read per (term, segment),
    cost about one cache miss each). Global block g is block g - first of the segment whose blocks
    start at ``first`` (segment order). Per term t, segments in order:

        sparse runs [sp_ptr[t], sp_ptr[t + 1]), global blocks ascending:
            sp_block uint16 (all blocks < 65536) or int32, sp_max (block max), sp_start (first
            posting in its segment; uint32, int64 for a segment of 2**32 postings or more),
            sp_len uint8 (posting count - 1; runs hold at most MAX_BLOCK_SIZE postings)
        dense rows [dn_ptr[t], dn_ptr[t + 1]): dn_seg int32 (segment), dn_row int32 (its row in
            the segment's dense_base / dense_off), dn_start int64 (the term's first posting there),
            dn_off int64: its maxima are dn_max[dn_off[d] : dn_off[d] + the segment's n_blocks]

    Maxima are the segments' uint8 maxima with the one ``ratio`` of all segments, or float32
    maxima times their segment's ratio (``ratio`` 1) when the segments' ratios differ: either way
    the kernel's ``w * (max * ratio)`` is bit for bit the segment's own bound. About 8 bytes per
    sparse run (the segments' own runs take 5) plus a copy of the dense rows. The arrays are
    read-only (mapped or not: one numba type for the kernels)."""

    sp_ptr: np.ndarray
    sp_block: np.ndarray
    sp_max: np.ndarray
    sp_start: np.ndarray
    sp_len: np.ndarray
    dn_ptr: np.ndarray
    dn_seg: np.ndarray
    dn_row: np.ndarray
    dn_start: np.ndarray
    dn_off: np.ndarray
    dn_max: np.ndarray

    def __init__(self, arrays: dict[str, np.ndarray], ratio: float, path: Path | None = None):
        """``arrays``: the ``MERGED_ARRAYS``; ``path``: the bounds file they are mapped from (None: in
        memory)."""
        for name in MERGED_ARRAYS:
            setattr(self, name, arrays[name])
        self.ratio = np.float32(ratio)
        self.path = path

    @classmethod
    def build(
        cls,
        blockmaxes: list[BlockMax],
        term_ptrs: list[np.ndarray],
        seg_ids: list[int],
        firsts: np.ndarray,
        total_blocks: int,
        n_terms: int,
        allocate: Allocate = allocate_in_memory,
    ) -> MergedBounds:
        """Merge ``blockmaxes`` / ``term_ptrs`` of the merged segments, ``seg_ids`` their places in the
        generation, ``firsts`` their first global blocks, ``total_blocks`` the generation's blocks
        (the merged segments may be some of the generation's; the others keep their own arrays), into
        arrays from ``allocate``."""
        ratios = {float(bm.ub_ratio) for bm in blockmaxes}
        scaled = len(ratios) > 1
        ratio = ratios.pop() if len(ratios) == 1 else 1.0
        max_dtype = np.float32 if scaled else np.uint8
        common = (blockmaxes, term_ptrs, n_terms, max_dtype, scaled)
        arrays = {
            **_merged_sparse(*common, firsts, total_blocks, allocate),
            **_merged_dense(*common, seg_ids, allocate),
        }
        for array in arrays.values():
            array.flags.writeable = False
        return cls(arrays, ratio)

    @staticmethod
    def estimate_nbytes(bm: BlockMax, total_blocks: int, scaled: bool) -> int:
        """What one segment adds to a generation's merged maxima (``total_blocks`` blocks; ``scaled``:
        float32 maxima, the segments' ratios differ): 8 bytes per sparse run (uint16 block, uint8
        max, uint32 start, uint8 length; 2 more past 65,536 blocks, 3 more scaled) plus a copy of
        each dense row and 24 bytes of directory per row (4 more for a start past 2**32 postings
        are not counted)."""
        max_bytes = 4 if scaled else 1
        run = (2 if total_blocks <= 1 << 16 else 4) + max_bytes + 5
        n_rows = int(np.count_nonzero(np.asarray(bm.row_of) >= 0))
        return run * int(bm.tb_ptr[-1]) + n_rows * (bm.n_blocks * max_bytes + 24)

    @property
    def named(self) -> dict[str, np.ndarray]:
        """The ``MERGED_ARRAYS`` by name."""
        return {name: getattr(self, name) for name in MERGED_ARRAYS}

    @property
    def arrays(self) -> tuple[Any, ...]:
        """The kernels' argument (``lsr.index.kernels.blockmax._merged_bounds``)."""
        return (*self.named.values(), self.ratio)

    @property
    def nbytes(self) -> int:
        return int(sum(a.nbytes for a in self.named.values()))


def _merged_sparse(
    blockmaxes: list[BlockMax],
    term_ptrs: list[np.ndarray],
    n_terms: int,
    max_dtype: type,
    scaled: bool,
    firsts: np.ndarray,
    total_blocks: int,
    allocate: Allocate,
) -> dict[str, np.ndarray]:
    """The merged sparse runs (``sp_*`` of :class:`MergedBounds`)."""
    counts = np.zeros(n_terms, np.int64)
    for bm in blockmaxes:
        counts[: len(bm.tb_ptr) - 1] += np.diff(bm.tb_ptr)
    sp_ptr = allocate("sp_ptr", (n_terms + 1,), np.int64)
    sp_ptr[0] = 0
    np.cumsum(counts, out=sp_ptr[1:])
    n = int(sp_ptr[-1])
    wide = max((int(tp[-1]) for tp in term_ptrs), default=0) >= 1 << 32
    out = {
        "sp_ptr": sp_ptr,
        "sp_block": allocate("sp_block", (n,), np.uint16 if total_blocks <= 1 << 16 else np.int32),
        "sp_max": allocate("sp_max", (n,), max_dtype),
        "sp_start": allocate("sp_start", (n,), np.int64 if wide else np.uint32),
        "sp_len": allocate("sp_len", (n,), np.uint8),
    }
    cursor = sp_ptr[:-1].copy()
    for bm, term_ptr, first in zip(blockmaxes, term_ptrs, firsts, strict=True):
        _merge_sparse(
            term_ptr,
            bm.tb_ptr,
            bm.tb_block,
            bm.tb_max,
            bm.tb_base,
            bm.tb_off,
            bm.dense_before,
            first,
            bm.ub_ratio,
            scaled,
            cursor,
            *(out[name] for name in ("sp_block", "sp_max", "sp_start", "sp_len")),
        )
    return out


def _merged_dense(
    blockmaxes: list[BlockMax],
    term_ptrs: list[np.ndarray],
    n_terms: int,
    max_dtype: type,
    scaled: bool,
    seg_ids: list[int],
    allocate: Allocate,
) -> dict[str, np.ndarray]:
    """The merged dense rows (``dn_*`` of :class:`MergedBounds`)."""
    counts = np.zeros(n_terms, np.int64)
    for bm in blockmaxes:
        counts[: len(bm.row_of)] += bm.row_of >= 0
    dn_ptr = allocate("dn_ptr", (n_terms + 1,), np.int64)
    dn_ptr[0] = 0
    np.cumsum(counts, out=dn_ptr[1:])
    n = int(dn_ptr[-1])
    out = {"dn_ptr": dn_ptr, **{name: allocate(name, (n,), np.int32) for name in ("dn_seg", "dn_row")}}
    out["dn_start"] = allocate("dn_start", (n,), np.int64)
    lengths = np.empty(n, np.int64)
    cursor = dn_ptr[:-1].copy()
    places = []
    for s, bm, term_ptr in zip(seg_ids, blockmaxes, term_ptrs, strict=True):
        terms = np.flatnonzero(bm.row_of >= 0)
        at = cursor[terms]
        cursor[terms] += 1
        out["dn_seg"][at], out["dn_row"][at], out["dn_start"][at] = s, bm.row_of[terms], term_ptr[terms]
        lengths[at] = bm.n_blocks
        places.append(at)
    dn_off = out["dn_off"] = allocate("dn_off", (n,), np.int64)
    if n:
        dn_off[0] = 0
        np.cumsum(lengths[:-1], out=dn_off[1:])
    dn_max = out["dn_max"] = allocate("dn_max", (int(lengths.sum()),), max_dtype)
    for bm, at in zip(blockmaxes, places, strict=True):
        rows = np.asarray(bm.dense_max[bm.row_of[bm.row_of >= 0]])
        values = rows.astype(np.float32) * bm.ub_ratio if scaled else rows
        for off, row in zip(dn_off[at].tolist(), values, strict=True):
            dn_max[off : off + bm.n_blocks] = row
    return out
