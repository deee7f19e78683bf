#!/usr/bin/env python3
"""Table and plot of training runs from the ``runs.json`` files that ``scripts/gpu_train.py`` writes.

    python scripts/training_report.py RUNS.json [RUNS.json ...] --configs UNPACKED --out reports/training

Writes ``runs.json`` (every run's summary, merged), ``runs.md`` (one row per run: backbone, kind,
query table, losses, teachers, steps, GPU minutes, dev and test nDCG@10, doc/query nnz, FLOPS) and
``ndcg_vs_flops.png`` (test nDCG@10 against test FLOPS, one marker per run family). The test numbers
are the script's exact float dot products over the whole corpus, taken after training; dev selects.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def describe(run: dict) -> dict:
    """One table row from a run summary and its resolved config (``run["config"]``)."""
    cfg = run["config"]
    used = [t for t, w in cfg["distill"]["weights"].items() if w > 0]
    kind = cfg["model"]["kind"]
    return {
        "name": run["name"],
        "kind": kind,
        "query_table": cfg["model"]["query_weights"] if kind == "inference-free" else "-",
        "nll": cfg["loss"]["nll"],
        "lr": cfg["optim"]["lr"],
        "flops_doc": cfg["loss"]["flops_doc"],
        "labels": "no" if "qrels" not in (cfg["data"].get("sources") or ["qrels"]) else "yes",
        "teachers": "+".join(used) if len(used) < 3 else "ensemble",
        "steps": run["steps"],
        "gpu_min": run.get("gpu_minutes", run["seconds"] / 60),
        "dev": run["best"]["ndcg@10"],
        "step": run["best"]["step"],
        "test": run["test"]["ndcg@10"],
        "doc_nnz": run["test"]["doc_nnz"],
        "query_nnz": run["test"]["query_nnz"],
        "flops": run["test"]["flops"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument(
        "--configs",
        required=True,
        help="folder with NAME/config.json of every run (the unpacked NAME.tar.gz files)",
    )
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    runs = []
    for path in args.runs:
        for r in json.loads(Path(path).read_text()):
            if r.get("ok") and r.get("test"):
                r["config"] = json.loads((Path(args.configs) / r["name"] / "config.json").read_text())
                runs.append(r)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "runs.json").write_text(json.dumps(runs, indent=1) + "\n")
    rows = [describe(r) for r in runs]
    head = (
        "| run | kind | query table | labels | teachers | nll | lr | FLOPS λ (docs) | steps | GPU min | "
        "best step | dev nDCG@10 | test nDCG@10 | doc nnz | query nnz | FLOPS |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['kind']} | {r['query_table']} | {r['labels']} | {r['teachers']} | "
            f"{r['nll']} | {r['lr']} | {r['flops_doc']} | {r['steps']} | {r['gpu_min']:.1f} | "
            f"{r['step']} | {r['dev']:.4f} | {r['test']:.4f} | {r['doc_nnz']:.0f} | "
            f"{r['query_nnz']:.1f} | {r['flops']:.2f} |"
        )
    (out / "runs.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        if r["kind"] == "splade":
            style = ("s", "tab:green")
        elif r["labels"] == "no":
            style = ("v", "tab:gray")
        elif r["teachers"] != "ensemble":
            style = ("x", "tab:purple")
        elif r["query_table"] == "binary":
            style = ("o", "tab:orange")
        else:
            style = ("^", "tab:blue")
        ax.scatter(r["flops"], r["test"], marker=style[0], color=style[1])
        ax.annotate(r["name"], (r["flops"], r["test"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    from matplotlib.lines import Line2D

    kinds = (
        ("^", "tab:blue", "inference-free, IDF-aware FLOPS"),
        ("o", "tab:orange", "inference-free, plain FLOPS"),
        ("x", "tab:purple", "inference-free, single teacher"),
        ("v", "tab:gray", "inference-free, no labels"),
        ("s", "tab:green", "SPLADE (siamese)"),
    )
    legend = [Line2D([], [], marker=m, color=c, linestyle="", label=lab) for m, c, lab in kinds]
    ax.legend(handles=legend, fontsize=7, loc="lower right")
    ax.set_xlabel("FLOPS (expected multiplications per query-document pair, SciFact test)")
    ax.set_ylabel("nDCG@10 (SciFact test)")
    ax.set_title("lsr train: splade-tiny backbone, SciFact train + pseudo-queries")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "ndcg_vs_flops.png", dpi=110)
    print(f"-> {out}/runs.json, runs.md, ndcg_vs_flops.png")


if __name__ == "__main__":
    main()
