"""Calibration of the filter cost model (lsr.index.search: BLOCK_COST, POSTINGS_COST, FORWARD_COST):
each way to serve a selective filter timed on the same queries and filters, forced, as ns per unit
(median over the points; and a line's fixed part), where the units of a path are its cost
estimate with its constant set to 1 (``Filtered.costs``: postings of the query's terms times the
block factor for "blocks", postings scanned for "postings", the allowed docs' forward entries,
twice when scattered, for "forward", the filter index's postings of the query's terms for
"subindex"; a rescoring index doubles "blocks", "postings" and "subindex"). The per-unit costs,
as ratios to the "blocks" one times BLOCK_COST, are the constants this machine calls for.

    python -m benchmarks.cost_bench --docs 200000 --queries 50 --out benchmarks/results/cost-200k.json
    python -m benchmarks.cost_bench --forward none ...   # an index without the forward index

Synthetic SPLADE-like collection (benchmarks.synthetic), block size 16, one thread, a rescoring
index by default (``forward = "float32"``, the default of ``lsr index``; it has every path). Filters: random
(``bucket < N``, allowed docs spread over every block) and clustered (a ``day`` range, one run of
docs) allowing 0.1 to 5% of the docs. Per (filter, query, path) the fastest of 5 runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.live_bench import N_BUCKETS, build_filtered
from benchmarks.synthetic import SyntheticConfig, generate
from lsr.index import Index, SearchParams
from lsr.index.search import BLOCK_COST, FILTER_INDEX_BYTES, FORWARD_COST, POSTINGS_COST, Filtered

WIDTHS = (1, 2, 5, 10, 20, 50)  # allowed per 1000 docs
CONSTANTS = {"blocks": BLOCK_COST, "postings": POSTINGS_COST, "forward": FORWARD_COST, "subindex": BLOCK_COST}
SAFE = SearchParams("safe")


def _best_ns(fn: Any, repeats: int = 5) -> float:
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter_ns()
        fn()
        best = min(best, time.perf_counter_ns() - start)
    return float(best)


def _filters() -> list[tuple[str, float, Any]]:
    """(kind, allowed fraction, filter) for the random and clustered filters."""
    out = []
    for width in WIDTHS:
        lo = (N_BUCKETS - width) // 2
        out.append(("random", width / N_BUCKETS, {"range": {"bucket": {"lt": width}}}))
        out.append(("clustered", width / N_BUCKETS, {"range": {"day": {"gte": lo, "lt": lo + width}}}))
    return out


def _serve(index: Index, f: Filtered, full: tuple[np.ndarray, np.ndarray], path: str) -> Any:
    """The query served by ``path``, forced (``f`` carries the filter's own index)."""
    if path == "subindex":
        return index._sub_search(f, full, 10, SAFE)
    return index._search_checked(full, 10, SAFE, f, path)


def measure(index: Index, rows: list[tuple[np.ndarray, np.ndarray]]) -> list[dict[str, Any]]:
    """Per filter and query: each path's units (its estimate over its constant) and time (ns)."""
    points = []
    for kind, fraction, spec in _filters():
        f = index._filtered(spec)
        if f.allowed is None:
            continue
        sub = index._build_subindex(f, FILTER_INDEX_BYTES)
        with_sub = replace(f, sub=sub)
        for terms, weights in rows:
            full = index._check_query(terms, weights)
            costs = with_sub.costs(index.term_ptr, full[0], index.rescore)
            for path in costs:
                fn = partial(_serve, index, with_sub, full, path)
                fn()  # warm
                points.append(
                    {
                        "filter": kind,
                        "fraction": fraction,
                        "allowed": len(f.allowed),
                        "path": path,
                        "units": costs[path] / CONSTANTS[path],
                        "ns": _best_ns(fn),
                    }
                )
    return points


def fit(points: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per path: the median ns per unit over its (filter, query) points, and the fixed part of a least
    squares line ns = fixed + slope x units (the filter index's search costs about the same however
    small); the constant the medians call for, scaled so that "blocks" keeps BLOCK_COST (the model
    compares paths, so only ratios matter, and FILTER_INDEX_MIN_COST is in the same units)."""
    out: dict[str, dict[str, float]] = {}
    for path in CONSTANTS:
        pts = [p for p in points if p["path"] == path and p["units"] > 0]
        if len(pts) < 2:
            continue
        x = np.array([p["units"] for p in pts])
        y = np.array([p["ns"] for p in pts])
        _, fixed = np.polyfit(x, y, 1)
        out[path] = {"per_unit_ns": float(np.median(y / x)), "fixed_ns": float(fixed), "n": len(pts)}
    if "blocks" in out:
        scale = BLOCK_COST / out["blocks"]["per_unit_ns"]
        for path, row in out.items():
            row["calibrated"] = row["per_unit_ns"] * scale
            row["current"] = CONSTANTS[path]
    return out


def table(result: dict[str, Any]) -> str:
    """The fit per path, then per filter and path the median units, time and ns per unit."""
    lines = [
        "| path | ns per unit (median) | fixed (us, line fit) | constant now | calibrated (blocks = "
        "BLOCK_COST) |",
        "|---|---:|---:|---:|---:|",
    ]
    for path, row in result["fit"].items():
        lines.append(
            f"| {path} | {row['per_unit_ns']:.2f} | {row['fixed_ns'] / 1000:.1f} | {row['current']:.2f} | "
            f"{row.get('calibrated', float('nan')):.2f} |"
        )
    lines += [
        "",
        "| filter | allowed | path | units (median) | us (median) | ns per unit |",
        "|---|---:|---|---:|---:|---:|",
    ]
    groups: dict[tuple[str, float, str], list[dict[str, Any]]] = {}
    for p in result["points"]:
        groups.setdefault((p["filter"], p["fraction"], p["path"]), []).append(p)
    for (kind, fraction, path), pts in sorted(groups.items()):
        units = float(np.median([p["units"] for p in pts]))
        ns = float(np.median([p["ns"] for p in pts]))
        lines.append(
            f"| {kind} {fraction:.1%} | {pts[0]['allowed']} | {path} | {units:.0f} | {ns / 1000:.1f} | "
            f"{ns / max(units, 1):.2f} |"
        )
    return "\n".join(lines)


def run(n_docs: int, n_queries: int, forward: str = "float32") -> dict[str, Any]:
    coll = generate(SyntheticConfig(n_docs=n_docs, n_queries=n_queries, chunk_docs=min(50_000, n_docs)))
    root = Path(tempfile.mkdtemp(prefix="cost-bench-"))
    try:
        path = build_filtered(root, coll.docs, coll.doc_ids, coll.vocab, forward)
        index = Index.load(path)
        rows = [coll.queries.row(i) for i in range(len(coll.queries))]
        points = measure(index, rows)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "n_docs": n_docs,
        "n_queries": n_queries,
        "forward": forward,
        "points": points,
        "fit": fit(points),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--forward", default="float32", choices=["float32", "none"])
    parser.add_argument("--out", help="JSON results file")
    args = parser.parse_args()
    result = run(args.docs, args.queries, args.forward)
    print(table(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
