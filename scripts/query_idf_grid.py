#!/usr/bin/env python3
"""The encoder.query_idf grid (reports/query-idf): nDCG@10 of an index's text queries weighted by
idf^p of the indexed collection, for several p, without re-encoding a document.

    # runs (top 100, exact) for each power: OUT/DATASET/p{P}.trec
    python scripts/query_idf_grid.py runs --index IDX --queries BEIR_FOLDER --split test \\
        --powers 0,0.25,0.5,0.75,1 --out OUT/DATASET
    # score the runs: a table (stdout) and JSON; select = mean(ood mean, SciFact dev), the issue's rule
    python scripts/query_idf_grid.py score --runs OUT --qrels DATASET=QRELS_TSV ... --json OUT.json

``runs`` needs only lsr (the GPU machine has no pytrec_eval); ``score`` uses lsr.eval.metrics.
``DATASET`` names starting with ``scifact`` are not in the ood mean; ``scifact-dev`` is the selection half.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from lsr.data.corpus import load_queries
from lsr.data.trec import read_qrels, read_run, write_run
from lsr.encoders import query_idf
from lsr.eval.metrics import per_query_scores
from lsr.eval.significance import correct, paired_p_value
from lsr.searcher import Plan, Queries, Searcher


def write_runs(index: str, queries: str, split: str, powers: list[float], out: Path) -> None:
    searcher = Searcher(index)
    texts = load_queries(queries, split)
    qids = sorted(texts)
    raw = searcher.query_encoder.encode([texts[q] for q in qids])  # without the index's own power
    doc_freq, n_docs = searcher.index.doc_freq(), searcher.index.n_docs
    out.mkdir(parents=True, exist_ok=True)
    for p in powers:
        table = query_idf.idf_table(doc_freq, n_docs, p)
        results = searcher.first_stage(Queries(sparse=query_idf.reweight(raw, table)), Plan(k=100))
        write_run(searcher.to_run(qids, results), out / f"p{p:g}.trec", tag=f"query-idf-{p:g}")


def score(runs: Path, qrels: dict[str, str]) -> dict[str, dict[str, float]]:
    """{power: {dataset: nDCG@10, ..., ood_mean, select}}; ``DATASET:p`` holds the Holm-corrected
    paired t-test p-value against power 0 on that dataset."""
    table: dict[str, dict[str, float]] = {}
    for name, path in qrels.items():
        judged = read_qrels(path)
        per_query = {}
        for run_file in sorted((runs / name).glob("p*.trec")):
            _, scores = per_query_scores(judged, read_run(run_file), ["ndcg@10"])
            per_query[run_file.stem[1:]] = scores["ndcg@10"]
            table.setdefault(run_file.stem[1:], {})[name] = float(scores["ndcg@10"].mean())
        base = next((v for k, v in per_query.items() if float(k) == 0), None)
        others = [k for k in per_query if float(k) != 0]
        if base is not None and others:
            corrected = correct([paired_p_value(per_query[k], base) for k in others])
            for k, p_value in zip(others, corrected, strict=True):
                table[k][f"{name}:p"] = p_value
    for row in table.values():
        ood = [v for k, v in row.items() if ":" not in k and not k.startswith("scifact")]
        row["ood_mean"] = float(np.mean(ood)) if ood else float("nan")
        row["select"] = (row["ood_mean"] + row.get("scifact-dev", float("nan"))) / 2
    return dict(sorted(table.items(), key=lambda kv: float(kv[0])))


def markdown(table: dict[str, dict[str, float]]) -> str:
    """The grid; ``*``: different from power 0 on that dataset (paired t-test, Holm, p < 0.05)."""
    cols = [c for c in next(iter(table.values())) if ":" not in c]
    lines = ["| p | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    key = "select" if all(np.isfinite(row["select"]) for row in table.values()) else "ood_mean"
    best = max(table, key=lambda p: table[p][key])
    for p, row in table.items():
        mark = " **selected**" if p == best else ""
        cells = [f"{row[c]:.4f}" + ("*" if row.get(f"{c}:p", 1.0) < 0.05 else "") for c in cols]
        lines.append(f"| {p}{mark} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("runs")
    r.add_argument("--index", required=True)
    r.add_argument("--queries", required=True)
    r.add_argument("--split", default="test")
    r.add_argument("--powers", default="0,0.25,0.5,0.75,1")
    r.add_argument("--out", required=True, type=Path)
    s = sub.add_parser("score")
    s.add_argument("--runs", required=True, type=Path)
    s.add_argument("--qrels", nargs="+", required=True, help="DATASET=QRELS_TSV")
    s.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "runs":
        write_runs(args.index, args.queries, args.split, [float(p) for p in args.powers.split(",")], args.out)
        return 0
    table = score(args.runs, dict(spec.split("=", 1) for spec in args.qrels))
    print(markdown(table))
    if args.json:
        args.json.write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
