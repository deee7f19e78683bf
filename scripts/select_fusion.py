#!/usr/bin/env python3
"""Choose the hybrid's default fusion weight on the out-of-domain suite and SciFact dev (never test).

    python scripts/select_fusion.py --cache-dir CACHE --scifact-dev DEV_FOLDER --out reports/fusion

For each weight of the grid, ``lsr eval systems --systems hybrid --set search.fusion_weight=W`` on the
six ood collections (test qrels) and on ``DEV_FOLDER`` (SciFact with the dev split that ``lsr
train-prepare`` held out, as ``qrels/dev.tsv``); indexes are built once into ``CACHE``. The selected
weight maximizes the mean of the ood mean and SciFact dev nDCG@10 (as checkpoints are selected in
``lsr train``). Writes ``OUT/fusion.json`` (every weight's numbers) and ``OUT/fusion.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

OOD = ("ood-adi", "ood-time", "ood-med", "ood-cacm", "ood-lisa", "ood-npl")


def ndcg(cache: str, datasets: str, split: str, method: str, weight: float) -> dict[str, float]:
    """nDCG@10 of the hybrid per dataset at one fusion setting (``lsr eval systems``, quiet)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable, "-m", "lsr.cli", "eval", "systems", "--systems", "hybrid", "--datasets", datasets,
            "--split", split, "--k", "100", "--cache-dir", cache, "--report-dir", tmp, "--quiet",
            "--set", f"search.fusion={method}", "--set", f"search.fusion_weight={weight}",
        ]  # fmt: skip
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        pairs = json.loads((Path(tmp) / "report.json").read_text())["pairs"]
    return {p["dataset"]: p["metrics"]["ndcg@10"] for p in pairs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache-dir", required=True)
    ap.add_argument("--scifact-dev", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--method", default="convex-minmax")
    ap.add_argument("--weights", default="0.2,0.3,0.4,0.5,0.6,0.7,0.8")
    args = ap.parse_args()
    rows = []
    for w in (float(x) for x in args.weights.split(",")):
        ood = ndcg(args.cache_dir, ",".join(OOD), "test", args.method, w)
        dev = ndcg(args.cache_dir, args.scifact_dev, "dev", args.method, w)
        ood_mean = sum(ood[d] for d in OOD) / len(OOD)
        dev_ndcg = next(iter(dev.values()))
        rows.append({"weight": w, **ood, "ood_mean": ood_mean, "scifact_dev": dev_ndcg,
                     "select": (ood_mean + dev_ndcg) / 2})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    best = max(rows, key=lambda r: r["select"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"method": args.method, "rows": rows, "best": best}
    (out / "fusion.json").write_text(json.dumps(record, indent=1) + "\n")
    head = ["dense weight", *(d[4:] for d in OOD), "ood mean", "SciFact dev", "select"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [f"{r['weight']:.1f}", *(f"{r[d]:.4f}" for d in OOD)]
        cells += [f"{r['ood_mean']:.4f}", f"{r['scifact_dev']:.4f}", f"{r['select']:.4f}"]
        lines.append("| " + " | ".join(f"**{c}**" if r is best else c for c in cells) + " |")
    (out / "fusion.md").write_text("\n".join(lines) + "\n")
    print(f"selected dense weight {best['weight']} ({args.method})")


if __name__ == "__main__":
    main()
