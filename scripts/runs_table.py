#!/usr/bin/env python3
"""Score run folders of scripts/suite_runs.sh side by side: nDCG@10 per collection, the ood mean, SciFact
dev and test, and ``select`` (the mean of the ood mean and SciFact dev, the rule checkpoints and models are
chosen by); a cell is marked ``+`` / ``-`` when it is significantly above / below the first system (paired
t-test over the collection's queries, Holm correction over the other systems, p < 0.05).

    python scripts/runs_table.py --qrels-root ../shared/data --dev-qrels DEV.tsv \\
        bm25=RUNS_BM25 unicoil=RUNS_MODEL --json OUT.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from lsr.data.trec import read_qrels, read_run
from lsr.eval.metrics import per_query_scores
from lsr.eval.significance import correct, paired_p_value

OOD = ("adi", "time", "med", "cacm", "lisa", "npl")


def qrels_paths(root: Path, dev: Path) -> dict[str, Path]:
    paths = {c: root / "ood" / c / "qrels" / "test.tsv" for c in OOD}
    paths["scifact-test"] = root / "beir" / "scifact" / "qrels" / "test.tsv"
    paths["scifact-dev"] = dev
    return paths


def score(systems: dict[str, Path], qrels: dict[str, Path]) -> dict[str, dict[str, float]]:
    """{system: {collection: nDCG@10, collection:sig: +1/-1/0, ood_mean, select}}."""
    table: dict[str, dict[str, float]] = {name: {} for name in systems}
    for coll, path in qrels.items():
        judged = read_qrels(path)
        per = {}
        for name, folder in systems.items():
            _, scores = per_query_scores(judged, read_run(folder / f"{coll}.trec"), ["ndcg@10"])
            per[name] = scores["ndcg@10"]
            table[name][coll] = float(per[name].mean())
        base, *others = systems
        p_values = correct([paired_p_value(per[o], per[base]) for o in others]) if others else []
        for other, p in zip(others, p_values, strict=True):
            table[other][f"{coll}:sig"] = float(np.sign(table[other][coll] - table[base][coll])) * (p < 0.05)
    for row in table.values():
        row["ood_mean"] = float(np.mean([row[c] for c in OOD]))
        row["select"] = (row["ood_mean"] + row["scifact-dev"]) / 2
    return table


def markdown(table: dict[str, dict[str, float]]) -> str:
    cols = [*OOD, "ood_mean", "scifact-dev", "scifact-test", "select"]
    lines = ["| system | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, row in table.items():
        mark = {1.0: "+", -1.0: "-"}
        cells = [f"{row[c]:.4f}{mark.get(row.get(f'{c}:sig', 0.0), '')}" for c in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("systems", nargs="+", help="NAME=RUN_FOLDER; the first is the baseline")
    ap.add_argument("--qrels-root", type=Path, default=Path("../shared/data"))
    ap.add_argument("--dev-qrels", type=Path, required=True, help="SciFact dev qrels (lsr train-prepare's)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    systems = {name: Path(folder) for name, folder in (s.split("=", 1) for s in args.systems)}
    table = score(systems, qrels_paths(args.qrels_root, args.dev_qrels))
    print(markdown(table))
    if args.json:
        args.json.write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
