"""Would superblocks pay for approx's budget? How well superblock bounds rank documents (issue 18).

    python -m benchmarks.superblock_coverage --docs 200000 --queries 200 --sizes 4,8,16 \\
        --out benchmarks/results/superblock-coverage-200k.json

Synthetic SPLADE-like collection (benchmarks.synthetic, seed 0), lsr's default index (uint8 impacts,
blocks of 16 docs, graph bisection with 2 rounds from 50,000 docs). Approx mode with a budget of D
documents scores the D/16 blocks with the best upper bounds; a two-level search ("Dynamic superblock
pruning", Carlson et al., SIGIR 2025) bounds superblocks of S blocks first and bounds blocks only
inside the superblocks it expands. For each D this prints the share of the exact float top-10 that
lies in the D documents chosen by

* ``blocks``: the best D/16 blocks by block bound (today's budget),
* ``sb-max``: the best D/(16 S) superblocks by superblock bound (the sum over query terms of weight x
  the term's largest impact in the superblock),
* ``sb-avg``: the same by the mean of the superblock's block bounds (the paper's second bound),
* ``sb-best``: the same by the best block bound inside (an oracle: what expanding superblocks in
  block-bound order could at best achieve),

and ``expand``: the share of superblocks whose bound reaches the D/16-th best block bound, which a
search scoring the same blocks as today's (the exact block order) must expand. No timing: the share
of the top-10 a ranking reaches with D documents is what its recall can be at that cost.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.groundtruth import exact_topk
from benchmarks.synthetic import SyntheticConfig, generate
from lsr.index import BuildOptions, Index, build_index
from lsr.index.io import write_json

BUDGETS = (256, 512, 1024, 2048, 4096, 8192)
RANKINGS = ("blocks", "sb-max", "sb-avg", "sb-best", "expand")


def block_maxima(index: Index, term: int) -> np.ndarray:
    """float64[n_blocks]: the term's largest impact per block (0 where absent), from the block-max data."""
    bm = index.blockmax
    assert bm is not None
    row = int(bm.row_of[term])
    if row >= 0:
        return np.asarray(bm.dense_max[row], np.float64) * float(bm.ub_ratio)
    lo, hi = int(bm.tb_ptr[term]), int(bm.tb_ptr[term + 1])
    out = np.zeros(bm.n_blocks)
    out[np.asarray(bm.tb_block[lo:hi], np.int64)] = np.asarray(bm.tb_max[lo:hi], np.float64) * float(
        bm.ub_ratio
    )
    return out


def coverage_of_query(
    index: Index, terms: np.ndarray, weights: np.ndarray, top_blocks: np.ndarray, size: int
) -> dict[str, np.ndarray]:
    """Per ranking, per budget: the share of ``top_blocks`` (the blocks of the exact top-10) reached."""
    bm = index.blockmax
    assert bm is not None
    per_term = np.stack([block_maxima(index, int(t)) for t in terms])
    bounds = np.asarray(weights, np.float64) @ per_term
    n_super = -(-bm.n_blocks // size)
    pad = n_super * size - bm.n_blocks
    grouped = np.pad(per_term, ((0, 0), (0, pad))).reshape(len(terms), n_super, size)
    block_groups = np.pad(bounds, (0, pad)).reshape(n_super, size)
    keys = {
        "sb-max": np.asarray(weights, np.float64) @ grouped.max(axis=2),
        "sb-avg": block_groups.mean(axis=1),
        "sb-best": block_groups.max(axis=1),
    }
    block_order = np.argsort(-bounds, kind="stable")
    orders = {name: np.argsort(-key, kind="stable") for name, key in keys.items()}
    out = {name: np.zeros(len(BUDGETS)) for name in RANKINGS}
    for j, docs in enumerate(BUDGETS):
        n_blocks = min(docs // bm.block_size, bm.n_blocks)
        out["blocks"][j] = np.isin(top_blocks, block_order[:n_blocks]).mean()
        for name, order in orders.items():
            out[name][j] = np.isin(top_blocks // size, order[: max(1, n_blocks // size)]).mean()
        last = bounds[block_order[n_blocks - 1]]
        out["expand"][j] = float((keys["sb-max"] >= last).mean())
    return out


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    coll = generate(SyntheticConfig(n_docs=args.docs, n_queries=args.queries, seed=0))
    truth = exact_topk(coll.docs, coll.queries, coll.n_terms, 10)
    out = workdir / "index"
    options = BuildOptions(reorder="auto")  # lsr index's default ordering, blocks of 16
    build_index(lambda: coll.batches, coll.n_terms, coll.doc_ids, coll.vocab, out, options=options)
    index = Index.load(out)
    assert index.blockmax is not None
    block_size = index.blockmax.block_size
    internal = {key: i for i, key in enumerate(index.doc_keys)}
    results = {}
    for size in args.sizes:
        total = {name: np.zeros(len(BUDGETS)) for name in RANKINGS}
        counted = [i for i in range(len(coll.queries)) if len(truth[i])]  # queries matching something
        for i in counted:
            terms, weights = coll.queries.row(i)
            top = np.array([internal[coll.doc_ids[d]] for d in truth[i]], np.int64) // block_size
            for name, values in coverage_of_query(index, terms, weights, top, size).items():
                total[name] += values
        results[str(size)] = {name: (v / max(len(counted), 1)).round(4).tolist() for name, v in total.items()}
    return {"docs": args.docs, "queries": args.queries, "budgets": list(BUDGETS), "sizes": results}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.superblock_coverage", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--docs", type=int, default=200_000)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--sizes", default="4,8,16", help="blocks per superblock, comma-separated")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="lsr-superblock-coverage-"))
    try:
        report = run(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"synthetic {args.docs} docs, {args.queries} queries, blocks of 16: share of the exact top-10 reached"
    )
    print(f"{'S':>3} {'ranking':<8} " + " ".join(f"{d:>7}" for d in BUDGETS) + "  (documents scored)")
    for size, rows in report["sizes"].items():
        for name, values in rows.items():
            print(f"{size:>3} {name:<8} " + " ".join(f"{v:>7.4f}" for v in values))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
