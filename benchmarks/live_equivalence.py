"""Live index equivalence at scale: N synthetic documents added as S segments, 10% deleted, merged;
the top-k (ids and scores, exact and safe mode) equals that of a fresh index of the survivors, both
before the merge (segments with tombstones) and after it.

    python -m benchmarks.live_equivalence --docs 1000000 --out benchmarks/results/live_equivalence.json

SPLADE-like synthetic collection (benchmarks.synthetic), uint8 impacts, block size 16; the fresh
index is built from the surviving documents in their live order with the live index's quantization
scale (a live index keeps its first segment's scale), so scores compare bit for bit.
tests/unit/index/test_live_equivalence.py runs the same check on a small collection.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.synthetic import SyntheticConfig, generate
from lsr.index import BuildOptions, Index, SparseBatch, build_index
from lsr.index.segments import SegmentedIndex, open_index
from lsr.index.writer import IndexWriter, MergePolicy

NO_POLICY = MergePolicy(max_segments=10_000, max_deleted=1.0)
BLOCK_SIZE = 16


def check(
    docs: SparseBatch, vocab: list[str], queries: SparseBatch, root: Path, n_segments: int, k: int
) -> dict[str, Any]:
    """Build, delete, compare, merge, compare; returns counts and timings (raises on a mismatch)."""
    n = len(docs)
    ids = [f"d{i}" for i in range(n)]
    path = root / "live"
    cut = np.linspace(0, n, n_segments + 1).astype(int)
    times: dict[str, float] = {}
    start = time.perf_counter()
    build_index(
        lambda: [docs.slice(0, cut[1])],
        len(vocab),
        ids[: cut[1]],
        vocab,
        path,
        BuildOptions(block_size=BLOCK_SIZE),
    )
    with IndexWriter(path, NO_POLICY) as w:
        for s, e in zip(cut[1:-1], cut[2:], strict=True):
            w.add(docs.slice(s, e), ids[s:e], vocab)
        doomed = np.sort(np.random.default_rng(0).choice(n, size=n // 10, replace=False))
        w.delete([ids[i] for i in doomed.tolist()])
    times["live_build_s"] = time.perf_counter() - start
    survivors = np.setdiff1d(np.arange(n), doomed)
    scale = float(Index.load(path).scale)
    start = time.perf_counter()
    fresh_path = root / "fresh"
    fresh_docs = _rows(docs, survivors)
    options = BuildOptions(block_size=BLOCK_SIZE, scale=scale)
    build_index(
        lambda: [fresh_docs], len(vocab), [ids[i] for i in survivors.tolist()], vocab, fresh_path, options
    )
    times["fresh_build_s"] = time.perf_counter() - start
    fresh = Index.load(fresh_path)
    compared = {"segments": _compare(open_index(path), fresh, queries, k)}
    start = time.perf_counter()
    with IndexWriter(path, NO_POLICY) as w:
        w.merge()
    times["merge_s"] = time.perf_counter() - start
    compared["merged"] = _compare(open_index(path), fresh, queries, k)
    return {"n_docs": n, "n_segments": n_segments, "deleted": int(len(doomed)), "k": k, **compared, **times}


def _rows(docs: SparseBatch, rows: np.ndarray) -> SparseBatch:
    """The given rows of ``docs``, in order (vectorized)."""
    lengths = np.diff(docs.indptr)
    keep = np.repeat(np.isin(np.arange(len(docs)), rows), lengths)
    indptr = np.concatenate([[0], np.cumsum(lengths[rows])]).astype(docs.indptr.dtype)
    return SparseBatch(indptr, np.asarray(docs.term_ids)[keep], np.asarray(docs.weights)[keep])


def _compare(live: Index, fresh: Index, queries: SparseBatch, k: int) -> dict[str, int]:
    """Queries whose top-k ids and scores are identical in both indexes, per mode (all, or raise)."""
    keys_live, keys_fresh = live.doc_keys, fresh.doc_keys
    out = {}
    for mode in ("exact", "safe"):
        same = 0
        for i in range(len(queries)):
            a = live.search(*queries.row(i), k, mode=mode)
            b = fresh.search(*queries.row(i), k, mode=mode)
            ids_a = [keys_live[d] for d in a.docs.tolist()]
            ids_b = [keys_fresh[d] for d in b.docs.tolist()]
            if ids_a != ids_b or not np.array_equal(
                np.asarray(a.scores, np.float32), np.asarray(b.scores, np.float32)
            ):
                raise AssertionError(
                    f"query {i}, {mode}: live {ids_a[:5]} {a.scores[:5]} != fresh {ids_b[:5]} {b.scores[:5]}"
                )
            same += 1
        out[mode] = same
    if isinstance(live, SegmentedIndex):
        live.close()
    return out


def run(n_docs: int, n_queries: int, n_segments: int, k: int) -> dict[str, Any]:
    start = time.perf_counter()
    coll = generate(SyntheticConfig(n_docs=n_docs, n_queries=n_queries, chunk_docs=min(50_000, n_docs)))
    generated = time.perf_counter() - start
    root = Path(tempfile.mkdtemp(prefix="live-equiv-"))
    try:
        result = check(coll.docs, coll.vocab, coll.queries, root, n_segments, k)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {**result, "n_queries": n_queries, "generate_s": generated}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--segments", type=int, default=10)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--out", help="JSON results file")
    args = parser.parse_args()
    result = run(args.docs, args.queries, args.segments, args.k)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
