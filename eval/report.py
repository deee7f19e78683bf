"""The side-by-side report of ``lsr eval --systems``: a terminal table, report.json, report.md, plots.

``report.md`` marks each quality cell with the letters of the systems it beats (paired t-test,
corrected; see :mod:`lsr.eval.significance`). The plots put one point per system, one panel per
dataset: quality (nDCG@10) against per-query latency (p50, log scale) and against FLOPS.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lsr import __version__
from lsr.eval.record import Evaluation
from lsr.eval.significance import compare_systems
from lsr.index.io import write_json

QUALITY = (
    ("ndcg@10", "nDCG@10"),
    ("recall@100", "R@100"),
    ("recall@1000", "R@1000"),
    ("mrr@10", "MRR@10"),
    ("map", "MAP"),
)
PRIMARY = "ndcg@10"


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, spec)


def _by_dataset(pairs: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for p in pairs:
        out.setdefault(p["dataset"], []).append(p)
    return out


def _metric_keys(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    have = {m for r in rows for m in r["metrics"]}
    keys = [(m, t) for m, t in QUALITY if m in have]
    return keys + [(m, m) for m in sorted(have) if m not in dict(QUALITY)]


def _cost_cells(r: dict[str, Any]) -> list[str]:
    lat = r.get("latency_ms") or {}
    size = r.get("index_bytes")
    return [
        _fmt(lat.get("p50"), ".2f"),
        _fmt(lat.get("p99"), ".2f"),
        _fmt(r.get("qps"), ".0f"),
        _fmt(size / 2**20 if size else None, ".1f"),
        _fmt(r.get("doc_nnz_avg"), ".1f"),
        _fmt(r.get("query_nnz_avg"), ".1f"),
        _fmt(r.get("flops"), ".3g"),
        _fmt(r.get("build_seconds"), ".1f"),
    ]


COST_HEADERS = ["p50 ms", "p99 ms", "q/s", "MiB", "doc nnz", "q nnz", "FLOPS", "build s"]


def format_table(report: dict[str, Any]) -> str:
    """The terminal table: one block per dataset; ``*`` marks a cell that beats another system."""
    blocks = []
    for dataset, rows in _by_dataset(report["pairs"]).items():
        sig = report["significance"].get(dataset, {})
        keys = _metric_keys(rows)
        header = ["system", *[t for _, t in keys], *COST_HEADERS]
        table = [header]
        for r in rows:
            letter = sig.get("letters", {}).get(r["system"], "")
            cells = [f"({letter}) {r['system']}" if letter else r["system"]]
            for m, _ in keys:
                beats = sig.get("metrics", {}).get(m, {}).get("beats", {}).get(r["system"], [])
                mark = "".join(sig["letters"][b] for b in beats) if beats else ""
                cells.append(_fmt(r["metrics"].get(m), ".4f") + (f" >{mark}" if mark else ""))
            table.append(cells + _cost_cells(r))
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        lines = [f"{dataset} ({rows[0]['n_queries']} queries)"]
        for i, row in enumerate(table):
            lines.append(
                "  ".join(
                    c.ljust(w) if j == 0 else c.rjust(w)
                    for j, (c, w) in enumerate(zip(row, widths, strict=True))
                )
            )
            if i == 0:
                lines.append("-" * len(lines[-1]))
        blocks.append("\n".join(lines))
    corr = report.get("significance_settings", {})
    foot = (
        f"'>ab': better than systems a and b, paired t-test, {corr.get('correction', 'holm')} correction, "
        f"p < {corr.get('level', 0.05)}"
    )
    return "\n\n".join(blocks) + "\n" + foot


def to_markdown(report: dict[str, Any], plots: Sequence[str] = ()) -> str:
    """report.md: one table per dataset, superscript letters for the systems a cell beats."""
    settings = report.get("significance_settings", {})
    out = [
        "# lsr eval report",
        "",
        f"lsr {report['lsr_version']}; {report.get('created', '')}; systems: "
        f"{', '.join(report['systems'])}; datasets: {', '.join(report['datasets'])}.",
        "",
        f"Superscript letters: the systems a cell is better than (two-sided paired t-test, "
        f"{settings.get('correction', 'holm')} correction over all pairs per dataset and metric, "
        f"p < {settings.get('level', 0.05)}). Latency: one query at a time on one thread, query encoding "
        "included; q/s is its inverse. FLOPS: expected multiplications per (query, document) pair.",
        "",
    ]
    for dataset, rows in _by_dataset(report["pairs"]).items():
        sig = report["significance"].get(dataset, {})
        keys = _metric_keys(rows)
        out += [
            f"## {dataset}",
            "",
            f"{rows[0]['n_queries']} queries."
            + (f" Protocol: {rows[0]['protocol']}." if rows[0].get("protocol") else ""),
            "",
        ]
        out.append("| system | " + " | ".join(t for _, t in keys) + " | " + " | ".join(COST_HEADERS) + " |")
        out.append("|---" * (1 + len(keys) + len(COST_HEADERS)) + "|")
        for r in rows:
            letter = sig.get("letters", {}).get(r["system"], "")
            cells = [f"({letter}) {r['system']}" if letter else r["system"]]
            for m, _ in keys:
                beats = sig.get("metrics", {}).get(m, {}).get("beats", {}).get(r["system"], [])
                mark = "".join(sig["letters"][b] for b in beats)
                cells.append(_fmt(r["metrics"].get(m), ".4f") + (f"<sup>{mark}</sup>" if mark else ""))
            out.append("| " + " | ".join(cells + _cost_cells(r)) + " |")
        notes = sorted({n for r in rows for n in r.get("notes", [])})
        if notes:
            out += [""] + [f"* {n}" for n in notes]
        out.append("")
    for p in plots:
        out += [f"![{Path(p).stem}]({Path(p).name})", ""]
    out += ["Full per-pair data, resolved configs and p-values: `report.json`.", ""]
    return "\n".join(out)


def plot(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """quality_latency.png and quality_flops.png: nDCG@10 against p50 latency / FLOPS, a panel per dataset."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = _by_dataset(report["pairs"])
    systems = report["systems"]
    markers = "osD^v<>pX*h"
    written = []
    for name, xkey, xlabel in (
        ("quality_latency", "latency", "latency p50 per query (ms, log)"),
        ("quality_flops", "flops", "FLOPS per (query, doc) pair (log)"),
    ):
        fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.6), squeeze=False)
        for ax, (dataset, rows) in zip(axes[0], datasets.items(), strict=True):
            for r in rows:
                x = (r.get("latency_ms") or {}).get("p50") if xkey == "latency" else r.get("flops")
                y = r["metrics"].get(PRIMARY)
                if x is None or y is None or x <= 0:
                    continue
                i = systems.index(r["system"]) if r["system"] in systems else 0
                ax.scatter([x], [y], marker=markers[i % len(markers)], s=60, label=r["system"], color=f"C{i}")
                ax.annotate(r["system"], (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
            ax.set_xscale("log")
            ax.set_title(dataset, fontsize=10)
            ax.set_xlabel(xlabel, fontsize=8)
            ax.set_ylabel("nDCG@10", fontsize=8)
            ax.grid(alpha=0.3)
        handles, labels = [], []
        for ax in axes[0]:
            for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
        if handles:
            fig.legend(
                handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=8, frameon=False
            )
        fig.tight_layout(rect=(0, 0.1, 1, 1))
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(path)
    return written


def build_report(
    results: Sequence[Evaluation],
    systems: Sequence[str],
    datasets: Sequence[str],
    level: float = 0.05,
    correction: str = "holm",
) -> dict[str, Any]:
    """The report object: pairs, significance per dataset, settings."""
    significance = {}
    for dataset in dict.fromkeys(r.dataset for r in results):
        scored = {r.system: (r.qids, r.per_query) for r in results if r.dataset == dataset and r.per_query}
        metrics = sorted({m for _, pq in scored.values() for m in pq})
        if len({tuple(q) for q, _ in scored.values()}) > 1:
            significance[dataset] = {"error": "systems scored on different queries"}
            continue
        significance[dataset] = compare_systems(scored, metrics, level, correction)
    return {
        "lsr_version": __version__,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "systems": list(systems),
        "datasets": list(datasets),
        "pairs": [r.to_dict() for r in results],
        "significance": significance,
        "significance_settings": {
            "test": "paired Student t (ranx), two-sided",
            "correction": correction,
            "level": level,
        },
    }


def write_report(report: dict[str, Any], out_dir: str | Path, plots: bool = True) -> list[Path]:
    """report.json, report.md and the PNG plots into ``out_dir``; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "report.json"]
    write_json(written[0], report)
    pngs = plot(report, out_dir) if plots else []
    md = out_dir / "report.md"
    md.write_text(to_markdown(report, [p.name for p in pngs]), encoding="utf-8")
    return [*written, md, *pngs]
