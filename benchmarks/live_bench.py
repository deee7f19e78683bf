"""Live index benchmark: ingest rate of pre-encoded adds, and search latency over 1, 10 and 50 segments
against one merged segment, and with 10% of the documents deleted before and after a merge.

    python -m benchmarks.live_bench --docs 100000 --out benchmarks/results/live.json

Synthetic SPLADE-like collection (benchmarks.synthetic), uint8 impacts, block size 16, one thread.
A live index of S segments is the first 1/S of the documents as a plain index plus S - 1 adds of
equal size. Latency: mean and p50/p99 per query, exact and safe, top-10, after one warm-up pass.
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
from lsr.index import BuildOptions, Index, SearchParams, SparseBatch, build_index
from lsr.index.docstore import DocStoreWriter
from lsr.index.segments import open_index
from lsr.index.writer import IndexWriter, MergePolicy

NO_POLICY = MergePolicy(max_segments=10_000, max_deleted=1.0)


def _slice(batch: SparseBatch, start: int, end: int) -> SparseBatch:
    return batch.slice(start, end)


def build_live(
    root: Path, docs: SparseBatch, ids: list[str], vocab: list[str], n_segments: int
) -> tuple[Path, float]:
    """A live index of ``n_segments`` equal segments; returns it and the add rate (docs/s)."""
    path = root / f"live-{n_segments}"
    cut = np.linspace(0, len(docs), n_segments + 1).astype(int)
    first = _slice(docs, 0, cut[1])
    build_index(lambda: [first], len(vocab), ids[: cut[1]], vocab, path, BuildOptions(block_size=16))
    start = time.perf_counter()
    with IndexWriter(path, NO_POLICY) as w:
        for s, e in zip(cut[1:-1], cut[2:], strict=True):
            w.add(_slice(docs, s, e), ids[s:e], vocab)
    added = len(docs) - cut[1]
    return path, added / max(time.perf_counter() - start, 1e-9)


def latency(path: Path, queries: SparseBatch, mode: str) -> dict[str, float]:
    index = open_index(path)
    rows = [queries.row(i) for i in range(len(queries))]
    return _timed(lambda terms, weights: index.search(terms, weights, 10, mode=mode), rows)


SELECTIVITIES = (0.5, 0.1, 0.01, 0.001)
N_BUCKETS = 1000


def build_filtered(
    root: Path, docs: SparseBatch, ids: list[str], vocab: list[str]
) -> tuple[Path, np.ndarray]:
    """One plain index whose docs carry an int field ``bucket`` drawn uniformly from [0, 1000), so
    ``bucket < 10`` allows 1% of the documents, spread over the whole collection."""
    bucket = np.random.default_rng(1).integers(0, N_BUCKETS, size=len(docs))
    store = root / "store"
    store.mkdir()
    writer = DocStoreWriter(store)
    for key, b in zip(ids, bucket.tolist(), strict=True):
        writer.add(key, "", "", {"bucket": b})
    writer.close()
    path = root / "filtered"
    options = BuildOptions(block_size=16, fields={"bucket": "int"})
    build_index(
        lambda: [docs], len(vocab), ids, vocab, path, options, extra_files=DocStoreWriter.files(store)
    )
    return path, bucket


def filters(path: Path, bucket: np.ndarray, queries: SparseBatch) -> list[dict[str, Any]]:
    """Safe search with ``bucket < N`` filters: latency, and recall against filtered exhaustive search
    (the exact kernel over the allowed docs' mask, not the allowed-docs path)."""
    index = Index.load(path)
    rows = [queries.row(i) for i in range(len(queries))]
    out = [{"selectivity": 1.0, "safe": _timed(lambda t, w: index.search(t, w, 10, mode="safe"), rows)}]
    for frac in SELECTIVITIES:
        spec = {"range": {"bucket": {"lt": int(frac * N_BUCKETS)}}}
        mask = np.ascontiguousarray(bucket < frac * N_BUCKETS, dtype=np.uint8)
        hits = total = 0
        for terms, weights in rows:
            got = index.search(terms, weights, 10, mode="safe", filter=spec)
            t, w = index._check_query(terms, weights)
            ref, _ = index.search_raw(t, w, 10, SearchParams("exact"), live=mask)
            hits += len(set(got.docs.tolist()) & set(ref.tolist()))
            total += len(ref)
        row = {"selectivity": frac, "allowed": int(mask.sum()), "recall": hits / max(total, 1)}
        row["safe"] = _timed(lambda t, w, spec=spec: index.search(t, w, 10, mode="safe", filter=spec), rows)
        out.append(row)
    return out


def _timed(search: Any, rows: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    for terms, weights in rows:  # warm-up
        search(terms, weights)
    ms = []
    for terms, weights in rows:
        start = time.perf_counter()
        search(terms, weights)
        ms.append((time.perf_counter() - start) * 1000)
    return {
        "mean_ms": float(np.mean(ms)),
        "p50_ms": float(np.median(ms)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


def run(n_docs: int, n_queries: int, segments: list[int], only: str | None = None) -> dict[str, Any]:
    coll = generate(SyntheticConfig(n_docs=n_docs, n_queries=n_queries, chunk_docs=min(50_000, n_docs)))
    docs, vocab, ids = coll.docs, coll.vocab, coll.doc_ids
    root = Path(tempfile.mkdtemp(prefix="live-bench-"))
    out: dict[str, Any] = {"n_docs": n_docs, "n_queries": n_queries}
    try:
        if only in (None, "segments"):
            out["rows"] = []
            for n in segments:
                path, rate = build_live(root, docs, ids, vocab, n)
                row: dict[str, Any] = {"segments": n, "add_docs_per_s": rate if n > 1 else None}
                row.update({mode: latency(path, coll.queries, mode) for mode in ("exact", "safe")})
                out["rows"].append(row)
            out["deleted"] = _delete_heavy(root / f"live-{segments[-1]}", ids, coll.queries)
        if only in (None, "filters"):
            out["filters"] = filters(*build_filtered(root, docs, ids, vocab), coll.queries)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return out


def _delete_heavy(path: Path, ids: list[str], queries: SparseBatch) -> dict[str, Any]:
    """10% of the docs deleted: latency before and after a full merge."""
    rng = np.random.default_rng(0)
    doomed = [ids[i] for i in rng.choice(len(ids), size=len(ids) // 10, replace=False)]
    with IndexWriter(path, NO_POLICY) as w:
        w.delete(doomed)
        before = {mode: latency(path, queries, mode) for mode in ("exact", "safe")}
        start = time.perf_counter()
        w.merge()
        merge_s = time.perf_counter() - start
    after = {mode: latency(path, queries, mode) for mode in ("exact", "safe")}
    return {"deleted": len(doomed), "before_merge": before, "after_merge": after, "merge_s": merge_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--segments", default="1,10,50")
    parser.add_argument("--only", choices=["segments", "filters"], help="run one part")
    parser.add_argument("--out", help="JSON results file")
    args = parser.parse_args()
    import numba

    numba.set_num_threads(1)
    result = run(args.docs, args.queries, [int(s) for s in args.segments.split(",")], args.only)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
