"""Experiment (issue 18): one-level vs two-level (superblock) block-max search with a budget.

    python -m benchmarks.superblock_bench --index IDX --collection COLL.npz --sizes 8,16 \\
        --budgets 16,512,1024,2048 --factors 1,4,1000000

Copies of IDX get superblock data of each size (``build_blockmax(..., superblock_size=S)``, hard
links to the postings); every query's latency is the fastest of 5 runs (thread CPU time), R@10
against the collection's float truth. ``factor`` caps the superblocks expanded at
ceil(factor x budget blocks / S) (1e6: no cap, the exact block order of one-level search).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

import lsr.index.search as search_module
from lsr.index import Index
from lsr.index.blockmax import build_blockmax
from lsr.index.sparse import SparseBatch


def best_of(f, n, reps=5):
    runs = []
    for _ in range(reps):
        ts = []
        for q in range(n):
            t = time.thread_time()
            f(q)
            ts.append(time.thread_time() - t)
        runs.append(ts)
    return float(np.min(np.array(runs), axis=0).mean() * 1e3)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--index", type=Path, required=True)
    p.add_argument("--collection", type=Path, required=True, help="npz: qindptr, qterms, qweights, truth")
    p.add_argument("--sizes", default="8,16")
    p.add_argument("--budgets", default="16,512,1024,2048")
    p.add_argument("--factors", default="1,4,1000000")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/lsr-superblock-bench"))
    a = p.parse_args()
    z = np.load(a.collection)
    queries = SparseBatch(z["qindptr"], z["qterms"], z["qweights"])
    truth = [set(t[t >= 0].tolist()) for t in z["truth"]]
    rows = [queries.row(i) for i in range(len(queries))]
    paths = [a.index]
    for size in [int(s) for s in a.sizes.split(",")]:
        out = a.workdir / f"sb{size}"
        shutil.rmtree(out, ignore_errors=True)
        a.workdir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-al", str(a.index), str(out)], check=True)
        build_blockmax(out, 16, 0.25, size)
        paths.append(out)
    for path in paths:
        idx = Index.load(path)
        keys = np.array([int(x) for x in idx.doc_keys])
        factors = [float(f) for f in a.factors.split(",")] if idx.blockmax.superblock_size else [0.0]
        for budget in [int(b) for b in a.budgets.split(",")]:
            for factor in factors:
                search_module.SUPER_EXPAND = factor
                res = [idx.search(*r, k=10, mode="approx", budget=budget) for r in rows]
                rec = np.mean([len(set(keys[r.docs].tolist()) & t) / len(t) for r, t in zip(res, truth)])
                idx.block_counters[:] = 0
                ms = best_of(lambda q: idx.search(*rows[q], k=10, mode="approx", budget=budget), len(rows))
                scored, bounded = idx.block_counters / len(rows) / 5
                print(
                    f"S={idx.blockmax.superblock_size:2d} budget {budget:5d} factor {factor:g}: {ms:.4f} ms "
                    f"R@10 {rec:.4f} blocks scored {scored:.0f} bounded {bounded:.0f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
