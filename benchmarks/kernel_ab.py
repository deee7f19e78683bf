"""A search kernel of the working tree against the same kernel at another git revision (issue 18).

    python -m benchmarks.kernel_ab --rev HEAD~1 --rounds 4 --out ab.json \\
        /tmp/dl/systems/lsr-bmp/lsr-index:/tmp/dl/data/queries.jsonl ...
    python -m benchmarks.kernel_ab --kernel blockmax --settings safe,budget:4096 --rev 8480bf9 ... IDX:QUERIES

Each INDEX:QUERIES pair is an index kept by ``index_bench --keep`` and the sparse-vector queries of its
prepared collection (``{"id", "vector": {term: weight}}`` per line). The kernel's module at ``--rev``
(``score``: ``lsr/index/kernels/score.py``, the exhaustive kernel; ``blockmax``: ``blockmax.py``, safe
and approx mode) is loaded beside the working tree's (its imports resolve to the working tree), both
kernels' top 10 are checked equal on every query, then their single-query entry points (``_search_one``
under ``Index.search`` in exact mode and in safe mode up to ``EXHAUSTIVE_DOCS``; ``_bmp_search_one``
under the block-max modes, one row per ``--settings`` entry) are timed in interleaved rounds on the
calling thread: each query the fastest of ``--repeats`` calls in a row, a round the mean over the
queries. Prints a table of the median round per side and their ratio; writes JSON with every round.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from lsr.index.kernels import blockmax, score
from lsr.index.search import Index, search_params

KERNELS = {"score": (score, "index/kernels/score.py"), "blockmax": (blockmax, "index/kernels/blockmax.py")}


def kernel_at(rev: str, path: str) -> Any:
    """The module at ``path`` as it was at git revision ``rev``."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(
        ["git", "show", f"{rev}:{path}"], cwd=root, check=True, capture_output=True, text=True
    ).stdout
    copy = Path(tempfile.mkdtemp(prefix="kernel_ab_")) / "kernel_at_rev.py"
    copy.write_text(source)
    spec = importlib.util.spec_from_file_location("kernel_at_rev", copy)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_queries(index_dir: Path, queries: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Queries as (ascending term ids, weights) of the index's vocabulary; unknown terms dropped."""
    vocab = json.loads((index_dir / "vocab.json").read_text())
    ids = {t: i for i, t in enumerate(vocab)} if isinstance(vocab, list) else vocab
    out = []
    for line in queries.read_text().splitlines():
        items = sorted((ids[t], w) for t, w in json.loads(line)["vector"].items() if t in ids)
        out.append((np.array([t for t, _ in items], np.int32), np.array([w for _, w in items], np.float32)))
    return out


def entry(kind: str, module: Any, index: Index, setting: str) -> tuple[Any, tuple, tuple]:
    """``module``'s single-query entry point for ``setting`` and its arguments before and after the
    query's (terms, weights)."""
    if kind == "score":
        exact = (index.term_ptr, index.doc_ids, index.impacts, index.n_docs)
        return module._search_one, exact, (10, index.scan_ratio, index.live, np.float32(0))
    postings, bmx, ratio, slack, block_size, n_blocks = index._bmp_args()
    budget = 0 if setting == "safe" else int(setting.removeprefix("budget:"))
    params = search_params("safe" if budget == 0 else "approx", 1.0, 1.0, budget)
    ws = module._workspace(n_blocks, block_size, 10)
    head = (postings, bmx, ratio, slack, block_size, ws)
    live = np.zeros(0, np.uint8)
    tail = (10, np.float32(1), params.max_blocks(block_size, n_blocks), np.zeros(2, np.int64), live)
    return module._bmp_search_one, head, (*tail, np.float32(0), live)


def mean_us(call: tuple[Any, tuple, tuple], queries: list, repeats: int) -> float:
    """Mean over the queries of each query's fastest of ``repeats`` calls, in microseconds."""
    search, head, tail = call
    gc.disable()
    try:
        total = 0
        for terms, weights in queries:
            took = []
            for _ in range(repeats):
                start = time.perf_counter_ns()
                search(*head, terms, weights, *tail)
                took.append(time.perf_counter_ns() - start)
            total += min(took)
    finally:
        gc.enable()
    return total / len(queries) / 1000


def compare(
    kind: str, old: Any, index_dir: Path, queries_path: Path, setting: str, rounds: int, repeats: int
) -> dict[str, Any]:
    index = Index.load(index_dir)
    queries = load_queries(index_dir, queries_path)
    calls = {"rev": entry(kind, old, index, setting), "tree": entry(kind, KERNELS[kind][0], index, setting)}
    for terms, weights in queries:
        (a, b) = (search(*head, terms, weights, *tail) for search, head, tail in calls.values())
        if not (np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])):
            raise SystemExit(f"{index_dir} ({setting}): the two kernels disagree on a query's top 10")
    times: dict[str, list[float]] = {"rev": [], "tree": []}
    for _ in range(rounds):
        for side, call in calls.items():
            times[side].append(mean_us(call, queries, repeats))
    postings = [int((index.term_ptr[t + 1] - index.term_ptr[t]).sum()) for t, _ in queries]
    return {
        "index": str(index_dir),
        "setting": setting,
        "n_docs": int(index.n_docs),
        "n_queries": len(queries),
        "postings_per_query": float(np.mean(postings)),
        "rounds_us": times,
        "rev_us": float(np.median(times["rev"])),
        "tree_us": float(np.median(times["tree"])),
    }


def main(argv: list[str] | None = None) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("pairs", nargs="+", help="INDEX_DIR:QUERIES_JSONL")
    parser.add_argument("--kernel", choices=sorted(KERNELS), default="score")
    parser.add_argument("--settings", default="exact", help="blockmax: safe and budget:DOCS, comma-separated")
    parser.add_argument("--rev", default="HEAD", help="git revision of the kernel to compare with")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    settings = ["exact"] if args.kernel == "score" else args.settings.split(",")
    old = kernel_at(args.rev, KERNELS[args.kernel][1])
    rows = []
    for pair in args.pairs:
        index_dir, _, queries = pair.partition(":")
        for setting in settings:
            row = compare(
                args.kernel, old, Path(index_dir), Path(queries), setting, args.rounds, args.repeats
            )
            rows.append(row)
    rev = args.rev + " us"
    head = f"{'index':50s} {'setting':>12s} {'docs':>8s} {'postings/q':>10s}"
    print(f"{head} {rev:>10s} {'tree us':>8s} {'ratio':>6s}")
    for r in rows:
        ratio = r["tree_us"] / r["rev_us"]
        print(
            f"{r['index'][-50:]:50s} {r['setting']:>12s} {r['n_docs']:8d} {r['postings_per_query']:10.0f} "
            f"{r['rev_us']:10.2f} {r['tree_us']:8.2f} {ratio:6.3f}"
        )
    if args.out:
        out = {"kernel": args.kernel, "rev": args.rev, "argv": sys.argv, "rows": rows}
        args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
