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
    runs = load_runs(args.runs, Path(args.configs))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "runs.json").write_text(json.dumps(runs, indent=1) + "\n")
    rows = [describe(r) for r in runs]
    lines = table(rows)
    (out / "runs.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(rows, out / "ndcg_vs_flops.png")
    print(f"-> {out}/runs.json, runs.md, ndcg_vs_flops.png")


def load_runs(paths: list[str], configs: Path) -> list[dict]:
    """The successful runs that have test numbers, each with its resolved config under ``"config"``."""
    runs = []
    for path in paths:
        for r in json.loads(Path(path).read_text()):
            if r.get("ok") and r.get("test"):
                r["config"] = json.loads((configs / r["name"] / "config.json").read_text())
                runs.append(r)
    return runs


def table(rows: list[dict]) -> list[str]:
    """The Markdown table of ``runs.md``, one line per run."""
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
    return lines


FAMILIES = (  # (marker, color, legend label), in the order the legend lists them
    ("^", "tab:blue", "inference-free, IDF-aware FLOPS"),
    ("o", "tab:orange", "inference-free, plain FLOPS"),
    ("x", "tab:purple", "inference-free, single teacher"),
    ("v", "tab:gray", "inference-free, no labels"),
    ("s", "tab:green", "SPLADE (siamese)"),
)


def family(row: dict) -> tuple[str, str]:
    """(marker, color) of a run's family in the plot."""
    if row["kind"] == "splade":
        return ("s", "tab:green")
    if row["labels"] == "no":
        return ("v", "tab:gray")
    if row["teachers"] != "ensemble":
        return ("x", "tab:purple")
    if row["query_table"] == "binary":
        return ("o", "tab:orange")
    return ("^", "tab:blue")


def plot(rows: list[dict], path: Path) -> None:
    """Test nDCG@10 against test FLOPS, one marker per run family (matplotlib only here: the table
    is written without it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        marker, color = family(r)
        ax.scatter(r["flops"], r["test"], marker=marker, color=color)
        ax.annotate(r["name"], (r["flops"], r["test"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    legend = [Line2D([], [], marker=m, color=c, linestyle="", label=lab) for m, c, lab in FAMILIES]
    ax.legend(handles=legend, fontsize=7, loc="lower right")
    ax.set_xlabel("FLOPS (expected multiplications per query-document pair, SciFact test)")
    ax.set_ylabel("nDCG@10 (SciFact test)")
    ax.set_title("lsr train: splade-tiny backbone, SciFact train + pseudo-queries")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
