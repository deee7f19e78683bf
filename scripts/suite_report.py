#!/usr/bin/env python3
"""Run table, matched-FLOPS regularizer ablation and plot from ``scripts/gpu_collect.py`` output.

    python scripts/suite_report.py reports/training/suites/runs.json --out reports/training/suites

Writes ``runs.md`` (one row per run: backbone, kind, terms, query weights, model.query_idf, loss temperature,
distillation loss, regularizer and its weight,
teachers, steps, GPU minutes, the selected checkpoint's SciFact dev, ood mean and per collection,
SciFact test, doc/query nnz, FLOPS), ``ablation.md`` (the inference-free regularizer arms: plain FLOPS,
IDF-aware FLOPS, DF-FLOPS; the pairs whose FLOPS agree within 10%) and ``ablation.png``. Every number
is the trainer's exact float scoring (queries cut at ``data.query_max_length`` tokens); the ``lsr eval``
numbers of shipped models are in reports/ood.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

SUITES = ("adi", "time", "med", "cacm", "lisa", "npl")
MATCH = 0.10  # FLOPS agree when they differ by at most 10%


def arm(run: dict[str, Any]) -> str:
    """The regularizer arm of an inference-free run: plain, idf (IDF-aware FLOPS) or df (DF-FLOPS)."""
    model, loss = run["config"]["model"], run["config"]["loss"]
    if loss.get("doc_regularizer", "flops") == "df":
        return "df"
    return "idf" if model["query_weights"] == "idf" else "plain"


def backbone(init: str) -> str:
    """The start of a run: MiniLM, splade-tiny, or the shipped uniCOIL u1dbt3 (a MiniLM it trained)."""
    init = init.lower()
    return "u1dbt3" if "u1dbt3" in init else ("MiniLM-L6" if "minilm" in init else "splade-tiny")


def row(name: str, run: dict[str, Any]) -> dict[str, Any]:
    cfg, best, test = run["config"], run["best"], run.get("test") or {}
    model, loss = cfg["model"], cfg["loss"]
    teachers = [t for t, w in cfg["distill"]["weights"].items() if w > 0]
    return {
        "run": name,
        "backbone": backbone(model["init"]),
        "kind": model["kind"],
        # unicoil: wordpieces, or the analyzer's terms of words (with tf saturation k1/b: model.tf_k1, tf_b)
        "terms": model.get("terms", "wordpiece")
        + (f" tf{model['tf_k1']:g}/{model['tf_b']:g}" if model.get("tf_k1") else ""),
        "query": model["query_weights"] if model["kind"] == "inference-free" else "-",
        "q_idf": model.get("query_idf", 0.0),  # model.query_idf: idf^p in the training scores
        "T": loss["temperature"],
        "distill": "kl" if loss.get("kl") else ("mse" if loss.get("margin_mse") else "-"),
        "reg": loss.get("doc_regularizer", "flops"),
        "lambda": loss["flops_doc"],
        "teachers": "+".join(teachers),
        "steps": f"{run['last_train']['step']}/{cfg['train']['steps']}",
        "gpu_min": run["last_train"]["seconds"] / 60,
        "step": best["step"],
        "dev": best["ndcg@10"],
        "ood": best["suite_mean"],
        **{s: best[f"suite/{s}"] for s in SUITES},
        "test": test.get("ndcg@10"),
        "doc_nnz": best["doc_nnz"],
        "query_nnz": best["query_nnz"],
        "flops": best["flops"],
    }


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and v in (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0):
        return f"{v:g}"
    return f"{v:.4f}" if isinstance(v, float) and v < 1 else (f"{v:.1f}" if isinstance(v, float) else str(v))


def runs_table(rows: list[dict[str, Any]]) -> list[str]:
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    return lines


def matched_pairs(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Pairs of runs from different arms whose FLOPS differ by at most ``MATCH`` (relative)."""
    pairs = []
    for i, a in enumerate(rows):
        for b in rows[i + 1 :]:
            if a["arm"] != b["arm"] and abs(a["flops"] - b["flops"]) <= MATCH * min(a["flops"], b["flops"]):
                pairs.append((a, b))
    return pairs


def ablation(rows: list[dict[str, Any]], n_docs: int) -> list[str]:
    arms = [r for r in rows if r.get("arm")]
    lines = [
        "| arm | run | lambda | FLOPS | postings scored / query | SciFact dev | SciFact test | ood mean |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(arms, key=lambda r: (r["arm"], r["flops"])):
        lines.append(
            f"| {r['arm']} | {r['run']} | {r['lambda']} | {r['flops']:.2f} | {r['flops'] * n_docs:,.0f} | "
            f"{r['dev']:.4f} | {fmt(r['test'])} | {r['ood']:.4f} |"
        )
    lines += ["", "Pairs whose FLOPS agree within 10%:", ""]
    lines += ["| run A | run B | FLOPS | SciFact test | ood mean |", "|---|---|---|---|---|"]
    for a, b in matched_pairs(arms):
        lines.append(
            f"| {a['run']} ({a['arm']}) | {b['run']} ({b['arm']}) | {a['flops']:.2f} / {b['flops']:.2f} | "
            f"{fmt(a['test'])} / {fmt(b['test'])} | {a['ood']:.4f} / {b['ood']:.4f} |"
        )
    return lines


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    marks = {"plain": ("o", "plain FLOPS"), "idf": ("s", "IDF-aware FLOPS"), "df": ("^", "DF-FLOPS")}
    for key, (marker, label) in marks.items():
        sel = sorted((r for r in rows if r.get("arm") == key), key=lambda r: r["flops"])
        for ax, metric, title in ((axes[0], "test", "SciFact test"), (axes[1], "ood", "ood mean")):
            ax.plot([r["flops"] for r in sel], [r[metric] for r in sel], marker=marker, label=label)
            ax.set_xlabel("FLOPS (expected multiplications per query-document pair)")
            ax.set_ylabel(f"nDCG@10, {title}")
    axes[0].legend()
    fig.suptitle("Inference-free (splade-tiny), 1000 steps: document regularizers")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs")
    ap.add_argument("--out", required=True)
    ap.add_argument("--docs", type=int, default=5183, help="documents of the FLOPS corpus (SciFact)")
    args = ap.parse_args()
    runs = json.loads(Path(args.runs).read_text())
    rows = [row(n, r) for n, r in runs.items() if r.get("best") and "suite_mean" in r["best"]]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "runs.md").write_text("\n".join(runs_table(rows)) + "\n")
    for r in rows:
        run = runs[r["run"]]
        is_arm = run["config"]["model"]["kind"] == "inference-free" and "splade-tiny" in r["backbone"]
        r["arm"] = arm(run) if is_arm and r["steps"].endswith("/1000") else None
    (out / "ablation.md").write_text("\n".join(ablation(rows, args.docs)) + "\n")
    plot(rows, out / "ablation.png")


if __name__ == "__main__":
    main()
