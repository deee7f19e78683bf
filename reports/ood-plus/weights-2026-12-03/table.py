"""The table of this folder's runs: nDCG@10 per ood collection, their mean, SciFact dev and test, and
select = mean(ood mean, SciFact dev); `(-)` marks a collection below the default BM25 (docs/results.md).

    python reports/ood-plus/weights-2026-12-03/table.py
"""

import json
from pathlib import Path

import numpy as np

OOD = ("ood-adi", "ood-time", "ood-med", "ood-cacm", "ood-lisa", "ood-npl")
BM25 = (0.4938, 0.7467, 0.6957, 0.4935, 0.4756, 0.4280)  # lsr eval of the default bm25, docs/results.md


def ndcg(path: Path) -> dict[str, float]:
    return {p["dataset"]: p["metrics"]["ndcg@10"] for p in json.loads(path.read_text())["pairs"]}


def main() -> None:
    here = Path(__file__).parent
    head = ["system @ model_weight", "adi", "time", "med", "cacm", "lisa", "npl", "ood mean"]
    head += ["SciFact dev", "SciFact test", "select"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for dev_file in sorted(here.glob("*-dev.json")):
        name = dev_file.name.removesuffix("-dev.json")
        main_scores, dev = ndcg(here / f"{name}.json"), next(iter(ndcg(dev_file).values()))
        ood = [main_scores[c] for c in OOD]
        mean = float(np.mean(ood))
        cells = [f"{x:.4f}" + ("" if x >= b else " (-)") for x, b in zip(ood, BM25, strict=True)]
        system, weight = name.rsplit("-", 1)
        row = [f"{system} @ {weight}", *cells, f"{mean:.4f}", f"{dev:.4f}", f"{main_scores['scifact']:.4f}"]
        print("| " + " | ".join(row) + f" | {(mean + dev) / 2:.4f} |")


if __name__ == "__main__":
    main()
