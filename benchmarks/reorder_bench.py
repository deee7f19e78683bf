"""Document reordering: what each ordering costs at build time and saves at search time (issue 18).

    python -m benchmarks.reorder_bench --docs 200000 --queries 200 \\
        --orders none,bp:1,bp:2,bp:8 --out benchmarks/results/reorder-200k.json

Synthetic SPLADE-like collection (benchmarks.synthetic, seed 0), uint8 impacts, block size 16, the
float32 forward index (lsr's default). Per ordering: the ordering's seconds (``bp:N``: graph bisection
with N swap rounds per level, ``lsr.index.reorder.bp_order``) and the whole build's; per query in safe
mode the blocks scored and the blocks with a bound > 0 (deterministic: the pruning an ordering buys),
and the latency on one thread: per query the fastest of ``--repeats`` runs (the machine is shared),
then mean, p50 and p99; R@10 against exhaustive float scoring (safe mode: 1.0 by construction).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.groundtruth import exact_topk, recall_at_k
from benchmarks.synthetic import SyntheticConfig, generate
from lsr.index import BuildOptions, Index, build_index
from lsr.index.io import write_json


def _order_options(spec: str) -> BuildOptions:
    """``none`` or ``bp:N``."""
    if spec == "none":
        return BuildOptions(forward="float32")
    method, _, rounds = spec.partition(":")
    if method != "bp" or not rounds.isdigit() or int(rounds) < 1:
        raise SystemExit(f"an ordering is none or bp:N (N >= 1 swap rounds), got {spec!r}")
    return BuildOptions(forward="float32", reorder="bp", bp_iterations=int(rounds))


def _latency(index: Index, rows: list[Any], repeats: int) -> tuple[np.ndarray, list[list[int]]]:
    """Per query the fastest of ``repeats`` safe searches (ms), and the results (internal ids)."""
    for terms, weights in rows[:50]:
        index.search(terms, weights, k=10, mode="safe")
    best = np.full(len(rows), np.inf)
    found: list[list[int]] = []
    for _ in range(repeats):
        found = []
        for i, (terms, weights) in enumerate(rows):
            start = time.perf_counter()
            res = index.search(terms, weights, k=10, mode="safe")
            best[i] = min(best[i], time.perf_counter() - start)
            found.append(res.docs.tolist())
    return best * 1e3, found


def run_order(spec: str, coll: Any, truth: list[np.ndarray], workdir: Path, repeats: int) -> dict[str, Any]:
    out = workdir / spec.replace(":", "-")
    start = time.perf_counter()
    meta = build_index(
        lambda: coll.batches, coll.n_terms, coll.doc_ids, coll.vocab, out, options=_order_options(spec)
    )
    build_s = time.perf_counter() - start
    index = Index.load(out)
    index.exhaustive_docs = 0  # block-max safe mode at any size: the order acts on it
    rows = [coll.queries.row(i) for i in range(len(coll.queries))]
    index.block_counters[:] = 0
    for terms, weights in rows:
        index.search(terms, weights, k=10, mode="safe")
    scored, positive = (index.block_counters / len(rows)).tolist()
    ms, found = _latency(index, rows, repeats)
    position = {key: i for i, key in enumerate(coll.doc_ids)}
    keys = index.doc_keys
    found_pos = [[position[keys[d]] for d in docs] for docs in found]
    shutil.rmtree(out, ignore_errors=True)
    return {
        "order": spec,
        "order_seconds": meta["reorder"].get("seconds", 0.0),
        "build_seconds": build_s,
        "blocks_scored": scored,
        "blocks_positive": positive,
        "mean_ms": float(ms.mean()),
        "p50_ms": float(np.median(ms)),
        "p99_ms": float(np.percentile(ms, 99)),
        "recall_at_10": recall_at_k(truth, found_pos, 10),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.reorder_bench", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--docs", type=int, default=200_000)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--orders", default="none,bp:1,bp:2,bp:8", help="comma-separated: none | bp:N")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per query (the fastest counts)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    coll = generate(SyntheticConfig(n_docs=args.docs, n_queries=args.queries, seed=0))
    truth = exact_topk(coll.docs, coll.queries, coll.n_terms, 10)
    workdir = Path(tempfile.mkdtemp(prefix="lsr-reorder-bench-"))
    try:
        rows = [run_order(spec, coll, truth, workdir, args.repeats) for spec in args.orders.split(",")]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"synthetic {args.docs} docs, {args.queries} queries, block 16, safe mode, one thread")
    head = ("order s", "build s", "blocks", "of", "mean ms", "p50", "p99")
    print(f"{'order':<6} " + " ".join(f"{h:>8}" for h in head))
    for r in rows:
        cells = (r["order_seconds"], r["build_seconds"], r["blocks_scored"], r["blocks_positive"])
        times = (r["mean_ms"], r["p50_ms"], r["p99_ms"])
        print(
            f"{r['order']:<6} "
            + " ".join(f"{c:>8.1f}" for c in cells)
            + " "
            + " ".join(f"{t:>8.3f}" for t in times)
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.out, {"docs": args.docs, "queries": args.queries, "results": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
