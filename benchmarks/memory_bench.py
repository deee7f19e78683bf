"""Memory of a memory-mapped index searched warm: anonymous against mapped (issue 18's memory target,
anonymous memory of at most 5% of the index's size).

    python -m benchmarks.memory_bench --n-docs 200000 --out benchmarks/results/memory-200k.json

Builds the synthetic SPLADE-like collection (:mod:`benchmarks.synthetic`) with lsr's default index
settings (block-max data, reordering, the forward index for exact rescoring), unless ``--index DIR``
names a built one, then measures in a fresh process per index:

1. baseline: the imports and every kernel of the measured modes compiled and run once on a small index
   of the same kind (numba's compiled code and caches are the process's, not the index's);
2. ``Index.load`` of the index (memory-mapped);
3. warm: every query in each of ``--modes``, twice;
4. keys: the external ids of the documents read (``Index.doc_keys``, a list of strings), as
   ``lsr serve`` and :class:`lsr.searcher.Searcher` do to answer with ids.

At each step ``RssAnon`` and ``RssFile`` of ``/proc/self/status``: the index's anonymous memory is
step 3's ``RssAnon`` less step 1's (the arrays the load reads into memory and any per-query state it
keeps), then step 4's with the ids; its mapped memory the resident file pages. Linux only. Prints a
table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.synthetic import SyntheticConfig, generate
from benchmarks.systems import IndexAdapter

MODES = ("exact", "safe", "approx")


def rss() -> dict[str, int]:
    """``RssAnon`` and ``RssFile`` of this process, bytes."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) * 1024
    return out


def build(n_docs: int, out: Path, seed: int = 0) -> tuple[Path, Path]:
    """The synthetic collection's index as ``lsr index`` builds by default; the queries' CSR arrays
    (both kept from an earlier run with the same ``--workdir``)."""
    queries = out.parent / f"{out.name}-queries.npz"
    if (out / "meta.json").is_file() and queries.is_file():
        return out, queries
    coll = generate(SyntheticConfig(n_docs=n_docs, n_queries=200, seed=seed))
    block_size = IndexAdapter.config_defaults()["block_size"]  # build() takes None for no block-max data
    IndexAdapter.build(coll.docs, coll.doc_ids, coll.vocab, out, "uint8", block_size=block_size)
    q = coll.queries
    np.savez(queries, indptr=q.indptr, terms=q.term_ids, weights=q.weights)
    return out, queries


def index_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def child(index: Path, queries: Path, small: Path, modes: list[str]) -> dict[str, Any]:
    """Steps 1-3 in this process (see the module docstring)."""
    from lsr.index.search import Index

    q = np.load(queries)
    rows = [
        (q["terms"][a:b], q["weights"][a:b]) for a, b in zip(q["indptr"][:-1], q["indptr"][1:], strict=True)
    ]

    def run(ix: Index, repeat: int) -> None:
        for _ in range(repeat):
            for mode in modes:
                for terms, weights in rows:
                    ix.search(terms, weights, k=10, mode=mode)

    warm = Index.load(small)
    run(warm, 1)
    del warm
    steps = {"baseline": rss()}
    ix = Index.load(index)
    steps["loaded"] = rss()
    run(ix, 2)
    steps["warm"] = rss()
    keys = ix.doc_keys
    steps["keys"] = rss()
    assert len(keys) == ix.n_docs
    return {"steps": steps, "n_queries": len(rows), "n_docs": ix.n_docs}


def measure(index: Path, queries: Path, small: Path, modes: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.memory_bench", "--child", str(index), str(queries), str(small)]
    done = subprocess.run([*cmd, ",".join(modes)], check=True, capture_output=True, text=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    size = index_bytes(index)
    steps = result["steps"]
    anon = steps["warm"]["RssAnon"] - steps["baseline"]["RssAnon"]
    return {
        "index": str(index),
        "n_docs": result["n_docs"],
        "index_bytes": size,
        "anon_bytes": anon,
        "anon_share": round(anon / size, 4),
        "anon_at_load_bytes": steps["loaded"]["RssAnon"] - steps["baseline"]["RssAnon"],
        "anon_with_ids_bytes": steps["keys"]["RssAnon"] - steps["baseline"]["RssAnon"],
        "mapped_resident_bytes": steps["warm"]["RssFile"] - steps["baseline"]["RssFile"],
        "modes": modes,
        "steps": steps,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        index, queries, small = (Path(a) for a in argv[1:4])
        print(json.dumps(child(index, queries, small, argv[4].split(","))))
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-docs", type=int, default=200_000, help="synthetic documents (default 200,000)")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--workdir", type=Path, default=None, help="where the indexes are built (a temp dir)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    modes = args.modes.split(",")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="memory-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    small, _ = build(2_000, work / "small", seed=1)
    index, queries = build(args.n_docs, work / f"synthetic-{args.n_docs}")
    row = measure(index, queries, small, modes)
    mib = 2**20
    with_ids = row["anon_with_ids_bytes"]
    print(
        "| index | docs | index MB | anonymous MB (warm) | / index | with the ids MB | / index "
        "| at load MB | mapped resident MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    size = row["index_bytes"]
    cells = [
        index.name,
        f"{row['n_docs']:,}",
        f"{size / mib:.1f}",
        f"{row['anon_bytes'] / mib:.1f}",
        f"{100 * row['anon_share']:.1f}%",
        f"{with_ids / mib:.1f}",
        f"{100 * with_ids / size:.1f}%",
        f"{row['anon_at_load_bytes'] / mib:.1f}",
        f"{row['mapped_resident_bytes'] / mib:.1f}",
    ]
    print("| " + " | ".join(cells) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"args": {"n_docs": args.n_docs, "modes": modes}, "rows": [row]}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
