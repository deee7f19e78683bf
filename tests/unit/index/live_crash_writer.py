"""A writer that a crash test kills with SIGKILL: random adds, updates, deletes and merges, forever.

Prints ``BEGIN <op as JSON>`` before each write and ``ACK <generation>`` once it is committed.
Usage: python live_crash_writer.py INDEX SEED
"""

from __future__ import annotations

import json
import sys

import numpy as np

from lsr.index import SparseBatch
from lsr.index.writer import IndexWriter, MergePolicy

N_TERMS = 25
VOCAB = [f"t{i}" for i in range(N_TERMS)]


def _batch(rng: np.random.Generator, n: int) -> SparseBatch:
    rows = []
    for _ in range(n):
        terms = rng.choice(N_TERMS, size=int(rng.integers(1, 6)), replace=False)
        rows.append((terms, rng.uniform(0.1, 3.0, len(terms))))
    return SparseBatch.from_rows(rows)


def _op(w: IndexWriter, rng: np.random.Generator, step: int) -> dict:
    kind = rng.choice(["add", "add", "delete", "merge", "policy"])
    known = sorted(w.positions)
    if kind == "add":
        n = int(rng.integers(1, 20))
        ids = [f"s{step}-{i}" for i in range(n)]
        if known:
            ids[0] = known[int(rng.integers(len(known)))]  # an update
        return {"op": "add", "ids": ids}
    if kind == "delete" and known:
        return {
            "op": "delete",
            "ids": [known[int(i)] for i in rng.choice(len(known), size=min(3, len(known)))],
        }
    return {"op": "merge" if kind == "merge" else "policy"}


def _apply(w: IndexWriter, op: dict, rng: np.random.Generator) -> int:
    if op["op"] == "add":
        return w.add(_batch(rng, len(op["ids"])), op["ids"], VOCAB).generation
    if op["op"] == "delete":
        return w.delete(op["ids"]).generation
    if op["op"] == "merge":
        return w.merge().generation
    w.maybe_merge()
    return w.generation


def main() -> None:
    path, seed = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(seed)
    print("READY", flush=True)
    step = 0
    while True:
        with IndexWriter(path, MergePolicy(max_segments=4, max_deleted=0.4)) as w:
            for _ in range(int(rng.integers(1, 4))):  # a few writes per writer session
                op = _op(w, rng, step)
                print("BEGIN " + json.dumps(op), flush=True)
                print(f"ACK {_apply(w, op, rng)}", flush=True)
                step += 1


if __name__ == "__main__":
    main()
