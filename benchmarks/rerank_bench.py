"""The dense re-rank benchmark (issue 7): per-query cost of re-scoring the sparse top-k on one core.

    python -m benchmarks.rerank_bench --index /tmp/sf-bm25 --dataset ../shared/data/beir/scifact

The index needs a dense stage built with ``--keep-float`` (the float baseline reads its
vectors). The process is pinned to one CPU core. For each test query (after warm-up):

* ``sparse search`` (context): the index's top ``--depth`` (exact mode, query already encoded);
* ``PQ re-rank``: lookup table [M, ksub] + ADC over the candidates' codes + fusion + sort;
* ``float re-rank``: gather the candidates' float32 vectors (memory-mapped) + dot + fusion + sort;
* ``PQ lookup table`` and ``PQ ADC`` alone (the two parts of the PQ re-rank);
* ``dense query encoding``: the bi-encoder on one query, one thread (reported separately: the
  re-rank target excludes it).

Prints a table (p50/p99/mean ms, bytes per document, ratio to the float re-rank) and writes JSON
with every number, the machine and its load average to ``benchmarks/results/`` by default.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from lsr.dense.stage import DenseStage
from lsr.eval.datasets import load_eval_dataset
from lsr.index import SearchResult
from lsr.index.pq import adc_scores, build_lut
from lsr.searcher import Plan, Queries, Searcher
from lsr.timing import latency_summary, time_queries

RESULTS = Path(__file__).parent / "results"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--index", required=True, help="index directory with a dense stage (built with --keep-float)"
    )
    p.add_argument("--dataset", required=True, help="BEIR folder with queries and qrels/<split>.tsv")
    p.add_argument("--split", default="test")
    p.add_argument("--depth", type=int, default=100, help="candidates re-scored per query (100)")
    p.add_argument("--queries", type=int, default=0, help="first N queries only (0: all)")
    p.add_argument("--cpu", type=int, default=-1, help="core to pin to (-1: the first allowed one)")
    p.add_argument("--out", help="JSON output (default: benchmarks/results/rerank-DATASET-INDEX.json)")
    return p


def pin_one_core(cpu: int) -> int:
    allowed = sorted(os.sched_getaffinity(0))
    core = allowed[0] if cpu < 0 else cpu
    os.sched_setaffinity(0, {core})
    return core


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    core = pin_one_core(args.cpu)
    import torch  # after pinning the core, so torch's thread pool starts on it

    torch.set_num_threads(1)

    searcher = Searcher(args.index)
    dense = searcher.require_dense()
    if dense.codes.vectors is None:
        raise SystemExit(f"{args.index}/dense keeps no float vectors: rebuild with --keep-float")
    texts = _query_texts(args.dataset, args.split, args.queries)
    method, weight = dense.resolve_fusion()
    plan = Plan(k=args.depth, rerank="dense", depth=args.depth, fusion=method, fusion_weight=weight)
    queries = searcher.encode(Queries(texts=texts), plan)
    results = searcher.first_stage(queries, dataclasses.replace(plan, rerank="none"))
    cands = [np.ascontiguousarray(r.docs, dtype=np.int64) for r in results]
    rows = _time_rows(searcher, dense, queries, results, cands, plan, texts)
    report = _report(args, core, len(texts), cands, {"method": method, "weight": weight}, dense.meta, rows)
    print_table(report)
    name = f"rerank-{Path(args.dataset).name}-{Path(args.index).name}.json"
    out = Path(args.out) if args.out else RESULTS / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"-> {out}")
    return 0


def _query_texts(dataset: str, split: str, limit: int) -> list[str]:
    """The texts of the split's queries that have qrels, the first ``limit`` of them (0: all)."""
    ds = load_eval_dataset(dataset, split)
    qids = [q for q in ds.queries if q in ds.qrels]
    qids = qids[:limit] if limit else qids
    return [ds.queries[q] for q in qids]


def _time_rows(
    searcher: Searcher,
    dense: DenseStage,
    queries: Queries,
    results: list[SearchResult],
    cands: list[np.ndarray],
    plan: Plan,
    texts: list[str],
) -> dict[str, dict[str, Any]]:
    """Per-query latency of each step, one query at a time, with its ratio to the float re-rank."""
    sparse_plan = dataclasses.replace(plan, rerank="none")
    float_plan = dataclasses.replace(plan, rerank="dense-float")
    codes, books = dense.codes.codes, dense.codes.codebooks
    emb = queries.dense
    if emb is None:
        raise ValueError("the queries carry no dense embeddings: encode them with a re-rank plan first")
    luts = [dense.codes.lut(e) for e in emb]
    n = len(texts)
    rows: dict[str, dict[str, Any]] = {}

    def timed(name: str, fn, bytes_per_doc: float | None = None) -> None:
        rows[name] = {**latency_summary(time_queries(fn, n, warmup=5)), "bytes_per_doc": bytes_per_doc}

    one = [queries.slice(i, i + 1) for i in range(n)]
    heads = [[r] for r in results]
    timed("sparse search (context)", lambda i: searcher.first_stage(one[i], sparse_plan))
    timed("PQ re-rank", lambda i: searcher.rerank(one[i], heads[i], plan), dense.codes.bytes_per_doc)
    timed("float re-rank", lambda i: searcher.rerank(one[i], heads[i], float_plan), 4.0 * dense.codes.dim)
    rotated = dense.codes.rotate(emb)
    timed("PQ lookup table", lambda i: build_lut(rotated[i], books))
    timed("PQ ADC", lambda i: adc_scores(luts[i], codes, cands[i]))
    timed("dense query encoding", lambda i: searcher.encode_dense([texts[i]]))
    base = rows["float re-rank"]["mean"]
    for r in rows.values():
        r["ratio_to_float_rerank"] = r["mean"] / base if base else None
    return rows


def _report(
    args: argparse.Namespace,
    core: int,
    n: int,
    cands: list[np.ndarray],
    fusion: dict[str, Any],
    dense_meta: dict[str, Any],
    rows: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """The JSON report: settings, the dense stage, the timing rows and the machine."""
    return {
        "benchmark": "rerank_bench",
        "index": str(args.index),
        "dataset": str(args.dataset),
        "split": args.split,
        "n_queries": n,
        "depth": args.depth,
        "candidates_mean": float(np.mean([len(c) for c in cands])) if cands else 0.0,
        "fusion": fusion,
        "dense": {k: dense_meta[k] for k in ("dim", "m", "nbits", "opq", "n_docs")}
        | {"model": dense_meta["model"].get("name")},
        "rows": rows,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "pinned_core": core,
            "loadavg": os.getloadavg(),
            "python": platform.python_version(),
        },
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def print_table(report: dict[str, Any]) -> None:
    """The per-query timing rows of a report, one line each."""
    header = (
        f"{'per query, 1 core':<26}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'bytes/doc':>11}{'x float':>9}"
    )
    dense = report["dense"]
    print(
        f"{report['n_queries']} queries of {report['dataset']} ({report['split']}), top {report['depth']} of "
        f"{report['index']}; dense M = {dense['m']}, dim {dense['dim']}"
    )
    print(header)
    print("-" * len(header))
    for name, r in report["rows"].items():
        b = f"{r['bytes_per_doc']:.0f}" if r["bytes_per_doc"] else "-"
        print(
            f"{name:<26}{r['p50']:>9.4f}{r['p99']:>9.4f}{r['mean']:>9.4f}{b:>11}"
            f"{r['ratio_to_float_rerank']:>9.2f}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
