"""The exhaustive kernel of the working tree against the same kernel at another git revision (issue 18).

    python -m benchmarks.kernel_ab --rev HEAD~1 --rounds 4 --out ab.json \\
        /tmp/dl/systems/lsr-bmp/lsr-index:/tmp/dl/data/queries.jsonl ...

Each INDEX:QUERIES pair is an index kept by ``index_bench --keep`` and the sparse-vector queries of its
prepared collection (``{"id", "vector": {term: weight}}`` per line). ``lsr/index/kernels/score.py`` at
``--rev`` is loaded beside the working tree's (its imports resolve to the working tree), both kernels'
top 10 are checked equal on every query, then their single-query entry points (``_search_one``, the
function under ``Index.search`` in exact mode and in safe mode up to ``EXHAUSTIVE_DOCS``) are timed in
interleaved rounds on the calling thread: each query the fastest of ``--repeats`` calls in a row, a
round the mean over the queries. Prints a table of the median round per side and their ratio; writes
JSON with every round.
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

from lsr.index.kernels import score as current
from lsr.index.search import Index

KERNEL = "index/kernels/score.py"


def kernel_at(rev: str) -> Any:
    """The module ``KERNEL`` as it was at git revision ``rev``."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(
        ["git", "show", f"{rev}:{KERNEL}"], cwd=root, check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="kernel_ab_")) / "score_at_rev.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("score_at_rev", path)
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


def mean_us(search: Any, args: tuple, queries: list, repeats: int) -> float:
    """Mean over the queries of each query's fastest of ``repeats`` calls, in microseconds."""
    gc.disable()
    try:
        total = 0
        for terms, weights in queries:
            took = []
            for _ in range(repeats):
                start = time.perf_counter_ns()
                search(*args[:4], terms, weights, *args[4:])
                took.append(time.perf_counter_ns() - start)
            total += min(took)
    finally:
        gc.enable()
    return total / len(queries) / 1000


def compare(old: Any, index_dir: Path, queries_path: Path, rounds: int, repeats: int) -> dict[str, Any]:
    index = Index.load(index_dir)
    queries = load_queries(index_dir, queries_path)
    head = (index.term_ptr, index.doc_ids, index.impacts, index.n_docs)
    args = (*head, 10, index.scan_ratio, index.live, np.float32(0))
    for terms, weights in queries:
        a = old._search_one(*head, terms, weights, *args[4:])
        b = current._search_one(*head, terms, weights, *args[4:])
        if not (np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])):
            raise SystemExit(f"{index_dir}: the two kernels disagree on a query's top 10")
    times: dict[str, list[float]] = {"rev": [], "tree": []}
    for _ in range(rounds):
        times["rev"].append(mean_us(old._search_one, args, queries, repeats))
        times["tree"].append(mean_us(current._search_one, args, queries, repeats))
    postings = [int((index.term_ptr[t + 1] - index.term_ptr[t]).sum()) for t, _ in queries]
    return {
        "index": str(index_dir),
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
    parser.add_argument("--rev", default="HEAD", help="git revision of the kernel to compare with")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    old = kernel_at(args.rev)
    rows = []
    for pair in args.pairs:
        index_dir, _, queries = pair.partition(":")
        rows.append(compare(old, Path(index_dir), Path(queries), args.rounds, args.repeats))
    rev = args.rev + " us"
    print(f"{'index':60s} {'docs':>8s} {'postings/q':>10s} {rev:>10s} {'tree us':>8s} {'ratio':>6s}")
    for r in rows:
        ratio = r["tree_us"] / r["rev_us"]
        print(
            f"{r['index'][-60:]:60s} {r['n_docs']:8d} {r['postings_per_query']:10.0f} "
            f"{r['rev_us']:10.2f} {r['tree_us']:8.2f} {ratio:6.3f}"
        )
    if args.out:
        args.out.write_text(json.dumps({"rev": args.rev, "argv": sys.argv, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
