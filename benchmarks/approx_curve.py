"""The recall/latency curve of an ``index_bench`` run (issue 18): JSON and PNG, and the targets.

Example::

    python -m benchmarks.approx_curve benchmarks/results/synthetic-200k-approx.json \\
        --out benchmarks/results/synthetic-200k-approx-curve
    python -m benchmarks.approx_curve part1.json part2.json --out curve   # runs of system subsets

Every setting of every system becomes a point (R@10 against float truth, mean/p50/p99 ms on one
thread); each system's line joins its frontier (the settings no other of its settings beats on both
recall and latency), the rest are hollow markers. The summary checks issue 18's
targets on the run: lsr's fastest setting at R@10 >= 0.98 against Seismic's fastest there (over all
its builds), p99 over p50, and lsr's latency at R@10 0.95 against 0.99 (the fastest setting
reaching each).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

LSR = "lsr-bmp"


def points(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """{series: [{system, setting, recall, mean_ms, p50_ms, p99_ms, build_s, bytes}, ...] by recall}:
    one series per system, and ``SYSTEM lists`` for its settings over pruned lists (``lists:N``; their
    build seconds and bytes added to the index's)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for system in report["systems"]:
        for s in system.get("settings", []):
            if s.get("mean_ms") is None:
                continue
            lists = s.get("approx_lists")
            build_s, size = system.get("build_seconds"), system.get("index_bytes")
            if lists and build_s is not None and size is not None:
                build_s, size = build_s + s["approx_seconds"], size + s["approx_bytes"]
            row = {
                "system": system["system"],
                "setting": s["setting"],
                "recall": s["recall_at_k"],
                "mean_ms": s["mean_ms"],
                "p50_ms": s.get("p50_ms"),
                "p99_ms": s["p99_ms"],
                "build_s": build_s,
                "bytes": size,
            }
            out.setdefault(system["system"] + (" lists" if lists else ""), []).append(row)
    return {name: sorted(rows, key=lambda r: r["recall"]) for name, rows in out.items()}


def merged(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """One report of several runs' systems (the first run's collection and machine).

    Raises:
        SystemExit: runs of different collections (their recall numbers do not compare).
    """
    first = reports[0]
    key = (first.get("collection"), first.get("stats", {}).get("n_docs"), first.get("stats", {}).get("nnz"))
    for other in reports[1:]:
        theirs = (
            other.get("collection"),
            other.get("stats", {}).get("n_docs"),
            other.get("stats", {}).get("nnz"),
        )
        if theirs != key:
            raise SystemExit(f"reports of different collections: {key} and {theirs}")
    return {**first, "systems": [system for r in reports for system in r["systems"]]}


def fastest_at(rows: Sequence[dict[str, Any]], recall: float) -> dict[str, Any] | None:
    """The fastest (mean ms) setting with R@k >= ``recall``, None if none reaches it."""
    ok = [r for r in rows if r["recall"] >= recall - 1e-9]
    return min(ok, key=lambda r: r["mean_ms"]) if ok else None


def targets(curves: dict[str, list[dict[str, Any]]], lsr: str = LSR) -> dict[str, Any]:
    """Issue 18's approximate-mode targets on one run (None where a system or recall is missing).

    Seismic's side is its fastest setting over every Seismic series of the run (builds with other
    options, ``seismic@n_postings=N``), with that build's seconds and bytes.
    """
    ours = curves.get(lsr, [])
    seismic = [row for name, rows in curves.items() if name.startswith("seismic") for row in rows]
    at98, s98 = fastest_at(ours, 0.98), fastest_at(seismic, 0.98)
    at95, at99 = fastest_at(ours, 0.95), fastest_at(ours, 0.99)

    def ratio(a: dict[str, Any] | None, b: dict[str, Any] | None, key: str) -> float | None:
        return a[key] / b[key] if a and b and b.get(key) else None

    return {
        "lsr_at_0.98": at98,
        "seismic_at_0.98": s98,
        "latency_vs_seismic_at_0.98": ratio(at98, s98, "mean_ms"),  # target <= 0.5
        "p50_vs_seismic_at_0.98": ratio(at98, s98, "p50_ms"),
        "bytes_vs_seismic": ratio(at98, s98, "bytes"),  # target <= 0.5
        "build_vs_seismic": ratio(at98, s98, "build_s"),  # target <= 0.5
        "p99_over_p50_at_0.98": at98["p99_ms"] / at98["p50_ms"] if at98 and at98.get("p50_ms") else None,
        "speedup_0.95_over_0.99": ratio(at99, at95, "mean_ms"),  # target >= 2
        "p50_speedup_0.95_over_0.99": ratio(at99, at95, "p50_ms"),
    }


def frontier(rows: Sequence[dict[str, Any]], latency: str = "mean_ms") -> list[dict[str, Any]]:
    """The settings no other setting dominates (at least the recall in less time), by recall: the
    fastest way to each recall, which is what a user picks from a grid."""
    out: list[dict[str, Any]] = []
    for r in sorted(rows, key=lambda r: (-r["recall"], r[latency])):
        if not out or r[latency] < out[-1][latency]:
            out.append(r)
    return out[::-1]


def plot(curves: dict[str, list[dict[str, Any]]], title: str, path: Path, latency: str = "mean_ms") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, rows in curves.items():
        if name.startswith(("lsr-exact", "scipy")):
            continue
        front = frontier(rows, latency)
        (line,) = ax.plot([r["recall"] for r in front], [r[latency] for r in front], marker="o", label=name)
        rest = [r for r in rows if all(r is not f for f in front)]
        ax.scatter(
            [r["recall"] for r in rest],
            [r[latency] for r in rest],
            facecolors="none",
            edgecolors=line.get_color(),
        )
    ax.set_xlabel("R@10 against float truth")
    ax.set_ylabel(f"{latency.split('_')[0]} ms per query (one thread)")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.approx_curve", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "reports",
        type=Path,
        nargs="+",
        help="index_bench JSON reports of one collection (runs of system subsets sharing a --workdir)",
    )
    p.add_argument("--out", type=Path, required=True, help="output stem: writes STEM.json and STEM.png")
    p.add_argument(
        "--lsr",
        default=LSR,
        help=f"the lsr series whose curve is checked (default {LSR}; '{LSR} lists': its lists:N settings)",
    )
    p.add_argument(
        "--latency",
        choices=("mean", "p50"),
        default="mean",
        help="the plotted latency (the targets use the mean; p50 for a loaded machine)",
    )
    args = p.parse_args(argv)
    report = merged([json.loads(path.read_text(encoding="utf-8")) for path in args.reports])
    curves = points(report)
    stats = report.get("stats", {})
    machine = report.get("machine", {})
    title = (
        f"{report.get('collection')}: {stats.get('n_docs')} docs, {stats.get('n_queries')} queries; "
        f"load {float(machine.get('load_average', [0.0])[0]):.1f} on {machine.get('cpu_count')} cores"
    )
    result = {
        "source": [str(path) for path in args.reports],
        "title": title,
        "curves": curves,
        "targets": targets(curves, args.lsr),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    plot(curves, title, args.out.with_suffix(".png"), f"{args.latency}_ms")
    for name, rows in curves.items():
        print(name)
        for r in rows:
            line = f"R@10 {r['recall']:.4f}  mean {r['mean_ms']:.3f}  p99 {r['p99_ms']:.3f} ms"
            print(f"  {r['setting']:<22} {line}")
    print(json.dumps(result["targets"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
