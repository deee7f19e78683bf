#!/usr/bin/env python3
"""Score the runs of ``scripts/gpu_plus.sh`` (bm25+MODEL at several weights) and BM25 alone.

    python scripts/plus_report.py --runs DIR --bm25-runs DIR --scifact-dev DEV_FOLDER --out reports/ood-plus

DIR holds ``plus-MODEL-wW-DATASET.trec`` (the runs-MODEL.tgz folders unpacked into one), and
``--bm25-runs`` ``bm25-DATASET.trec`` (``lsr search`` over ``--encoder bm25`` indexes, top 100, exact).
nDCG@10 by pytrec_eval on the ood collections' test qrels, SciFact test and SciFact dev. ``select`` =
mean(ood mean, SciFact dev), the rule checkpoints and fusion weights are chosen by; SciFact test is
reported, never selected on. Writes OUT/plus.json and OUT/plus.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytrec_eval

from lsr.data.trec import read_qrels, read_run
from lsr.eval.datasets import shared_data

OOD = ("adi", "time", "med", "cacm", "lisa", "npl")
COLUMNS = ("scifact-dev", "scifact-test", *OOD)


def qrels_files(scifact_dev: Path) -> dict[str, Path]:
    data = shared_data()
    files = {"scifact-dev": scifact_dev / "qrels" / "dev.tsv",
             "scifact-test": data / "beir" / "scifact" / "qrels" / "test.tsv"}  # fmt: skip
    files.update({d: data / "ood" / d / "qrels" / "test.tsv" for d in OOD})
    return files


def ndcg10(qrels: dict, run: dict) -> float:
    """Mean nDCG@10 over the judged queries (a judged query with no run line counts 0)."""
    scored = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(
        {q: run[q] for q in run if q in qrels}
    )
    return sum(r["ndcg_cut_10"] for r in scored.values()) / len(qrels)


def row(label: str, runs: dict[str, Path], qrels: dict[str, dict]) -> dict:
    out: dict = {"system": label}
    for name in COLUMNS:
        out[name] = round(ndcg10(qrels[name], read_run(runs[name])), 4)
    out["ood_mean"] = round(sum(out[d] for d in OOD) / len(OOD), 4)
    out["select"] = round((out["ood_mean"] + out["scifact-dev"]) / 2, 4)
    return out


def markdown(rows: list[dict]) -> str:
    head = ["system", "SciFact dev", "SciFact test", *OOD, "ood mean", "select"]
    keys = ["system", *COLUMNS, "ood_mean", "select"]
    bm25 = rows[0]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["system"]]
        for k in keys[1:]:
            mark = "" if r is bm25 or k in ("select", "scifact-dev") else (" +" if r[k] >= bm25[k] else " -")
            cells.append(f"{r[k]:.4f}{mark}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n(+ / -: at least / below BM25 in that column)\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, required=True)
    ap.add_argument("--bm25-runs", type=Path, required=True)
    ap.add_argument("--scifact-dev", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    qrels = {k: read_qrels(p) for k, p in qrels_files(args.scifact_dev).items()}
    rows = [row("bm25", {d: args.bm25_runs / f"bm25-{d}.trec" for d in COLUMNS}, qrels)]
    names = (p.name.split("-w") for p in args.runs.glob("plus-*-w*-*.trec"))
    for model_part, weight in sorted({(n[0], n[1].split("-")[0]) for n in names}):
        runs = {d: args.runs / f"{model_part}-w{weight}-{d}.trec" for d in COLUMNS}
        rows.append(row(f"bm25+{model_part[5:]} w={weight}", runs, qrels))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "plus.json").write_text(json.dumps(rows, indent=1) + "\n")
    (args.out / "plus.md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
