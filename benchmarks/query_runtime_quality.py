"""Ranking agreement of the query runtimes with torch float32: per runtime, the queries of a BEIR
folder's split encoded by the index's own query encoder on that runtime (``LSR_QUERY_RUNTIME``), each
query's top 10 in exact mode (with the index's query IDF), and the count of queries whose top 10
(ids and order) differs from torch float32's, with nDCG@10 and its change.

    python -m benchmarks.query_runtime_quality --index DIR --dataset ../shared/data/beir/scifact \
        --runtimes torch,onnx,lean-bf16,onnx-int8 --out benchmarks/results/runtime-quality.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np


def ranked(index: str, qids: list[str], texts: list[str], runtime: str) -> tuple[list[list[int]], dict]:
    """Each text's top 10 internal ids on ``index``, encoded on ``runtime``, and the run."""
    from lsr.searcher import Plan, Queries, Searcher

    os.environ["LSR_QUERY_RUNTIME"] = runtime
    searcher = Searcher(index)
    batch = searcher.encode_texts(texts)
    results = searcher.search_batch(Queries(sparse=batch), Plan(k=10, mode="exact", threads=1))
    return [r.docs.tolist() for r in results], searcher.to_run(qids, results)


def ndcg10(run: dict[str, dict[str, float]], qrels: dict[str, dict[str, int]]) -> float:
    from lsr.eval.metrics import per_query_scores

    return float(np.mean(per_query_scores(qrels, run, ["ndcg@10"])[1]["ndcg@10"]))


def compare(index: str, dataset: Path, split: str, runtimes: list[str]) -> list[dict[str, Any]]:
    from lsr.data.corpus import load_queries, qrels_path
    from lsr.data.trec import read_qrels

    queries = load_queries(dataset, split)
    qrels = read_qrels(qrels_path(dataset, split))
    qids, texts = list(queries), list(queries.values())
    ref, ref_run = ranked(index, qids, texts, "torch")
    base = ndcg10(ref_run, qrels)
    rows = []
    for runtime in runtimes:
        tops, run = (ref, ref_run) if runtime == "torch" else ranked(index, qids, texts, runtime)
        score = ndcg10(run, qrels)
        rows.append(
            {
                "runtime": runtime,
                "queries": len(qids),
                "top10_differs": sum(a != b for a, b in zip(tops, ref, strict=True)),
                "top10_set_differs": sum(set(a) != set(b) for a, b in zip(tops, ref, strict=True)),
                "ndcg@10": score,
                "ndcg@10_change": score - base,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.query_runtime_quality", description=__doc__.split("\n")[0]
    )
    p.add_argument("--index", required=True)
    p.add_argument("--dataset", type=Path, required=True, help="a BEIR folder")
    p.add_argument("--split", default="test")
    p.add_argument("--runtimes", default="torch,onnx,lean-bf16,onnx-int8")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    rows = compare(args.index, args.dataset, args.split, args.runtimes.split(","))
    if args.out:
        report = {"index": args.index, "dataset": str(args.dataset), "split": args.split, "rows": rows}
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
