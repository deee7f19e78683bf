"""What the service's tie order (``lsr.service.app.trec_pages``: pages in run-file order, tie groups at the
page end fetched whole) costs beside the plain page cut (the index's own tie order), in process, one
SciFact test query at a time, for float32 and uint8 impacts and several over-fetch factors.

    python -m benchmarks.tie_order_bench --out benchmarks/results/tie_order.json

Rows: ``plain`` (``Searcher.search_batch`` with the paged plan: the service before) and
``trec x=F`` (``trec_pages`` with ``TIE_OVERFETCH = F``); ``straddle``: queries whose tie group at the
page end went past the first fetch (a second search). Best of ``--rounds`` interleaved rounds.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from lsr.cli import main as lsr_main
from lsr.data.corpus import load_queries
from lsr.searcher import Plan, Queries, Searcher
from lsr.service import app

SCIFACT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "beir" / "scifact"
FACTORS = (0.0, 0.5, 1.0)


def _build(dtype: str, root: Path) -> Path:
    out = root / dtype
    args = ["index", "--corpus", str(SCIFACT), "--encoder", "bm25", "--out", str(out), "--quiet"]
    assert lsr_main([*args, "--set", f"index.impact_dtype={dtype}"]) == 0
    return out


def _time(fn: Any, parts: list[Queries]) -> float:
    t0 = time.perf_counter()
    for part in parts:
        fn(part)
    return (time.perf_counter() - t0) / len(parts) * 1e3


def _rows(searcher: Searcher, parts: list[Queries], k: int, rounds: int) -> dict[str, float]:
    plan = Plan(k=k, threads=1)
    variants: dict[str, Any] = {"plain": lambda p: searcher.search_batch(Queries.concat([p]), plan)}
    for factor in FACTORS:

        def trec(p: Queries, factor: float = factor) -> Any:
            app.TIE_OVERFETCH = factor
            return app.trec_pages(searcher, [p], plan)

        variants[f"trec x={factor:g}"] = trec
    best = {name: float("inf") for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            best[name] = min(best[name], _time(fn, parts))
    return best


def _straddles(searcher: Searcher, parts: list[Queries], k: int) -> int:
    """Queries whose top k ends inside a tie group that goes past rank k + 1."""
    n = 0
    for part in parts:
        r = searcher.search_batch(part, Plan(k=k + 1, threads=1))[0]
        n += int(len(r.docs) == k + 1 and r.scores[k - 1] == r.scores[k])
    return n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    texts = list(load_queries(SCIFACT).values())[: args.queries]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("float32", "uint8"):
            searcher = Searcher(_build(dtype, Path(tmp)))
            parts = [searcher.encode(Queries(texts=[t]), Plan()) for t in texts]
            for k in (10, 100):
                row: dict[str, Any] = {"impacts": dtype, "k": k, "straddle": _straddles(searcher, parts, k)}
                row["ms_per_query"] = _rows(searcher, parts, k, args.rounds)
                results.append(row)
    app.TIE_OVERFETCH = 0.5
    names = list(results[0]["ms_per_query"])
    print(f"{'impacts':8} {'k':>4} {'straddle':>9} " + " ".join(f"{n:>12}" for n in names) + "  (ms/query)")
    for r in results:
        ms = r["ms_per_query"]
        cells = " ".join(f"{ms[n]:7.3f} {ms[n] / ms['plain']:3.1f}x" for n in names)
        print(f"{r['impacts']:8} {r['k']:>4} {r['straddle']:>5}/{len(texts)} {cells}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"queries": len(texts), "rows": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
