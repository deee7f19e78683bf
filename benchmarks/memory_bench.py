"""Memory of a memory-mapped index searched warm: anonymous against mapped (issue 18's memory target,
anonymous memory of at most 5% of the index's size).

    python -m benchmarks.memory_bench --n-docs 200000 --segments 8 --out benchmarks/results/memory-200k.json

Builds the synthetic SPLADE-like collection (:mod:`benchmarks.synthetic`) with lsr's default index
settings (block-max data, reordering, the forward index for exact rescoring) as a plain index and, with
``--segments N``, as a live index of N segments (the first as built, the others added by
:class:`lsr.index.writer.IndexWriter`), then measures in a fresh process per index:

1. baseline: the imports, and every step below run once on a small index of the same kind (numba's
   compiled code and caches are the process's, not the index's);
2. ``open_index`` of the index (memory-mapped);
3. warm: every query in each of ``--modes``, twice;
4. keys: the external ids of the documents read (``doc_keys``), as ``lsr serve`` and
   :class:`lsr.searcher.Searcher` do to answer with ids;
5. lookup: 100 documents named by id (``Searcher.internal_ids``), which builds the id -> position
   table (``Searcher.doc_positions``) as the first request that names documents by id does.

At each step ``RssAnon`` and ``RssFile`` of ``/proc/self/status``: the index's anonymous memory is
step 3's ``RssAnon`` less step 1's (the arrays the load reads into memory and any per-query state it
keeps), then step 4's with the ids and step 5's with the id table; its mapped memory the resident file
pages. A live index is measured twice: without its bounds file (the merged block maxima,
``lsr.index.merged_file``: removed first, so the first block-max search builds it) and again (mapped);
its size does not count the bounds file (``bounds_bytes``). Linux only. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.synthetic import SyntheticCollection, SyntheticConfig, generate
from benchmarks.systems import IndexAdapter
from lsr.index.merged_file import BOUNDS_PREFIX

BOUNDS_GLOB = f"{BOUNDS_PREFIX}*"  # a live index's bounds files

MODES = ("exact", "safe", "approx")


def rss() -> dict[str, int]:
    """``RssAnon`` and ``RssFile`` of this process, bytes."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) * 1024
    return out


def build(n_docs: int, out: Path, seed: int = 0, segments: int = 1) -> tuple[Path, Path]:
    """The synthetic collection's index as ``lsr index`` builds by default (``segments`` > 1: a live
    index of that many segments of about equal size); the queries' CSR arrays (both kept from an earlier
    run with the same ``--workdir``)."""
    queries = out.parent / f"{out.name}-queries.npz"
    if (out / "meta.json").is_file() and queries.is_file():
        return out, queries
    coll = generate(SyntheticConfig(n_docs=n_docs, n_queries=200, seed=seed))
    build_segments(coll, out, segments)
    q = coll.queries
    np.savez(queries, indptr=q.indptr, terms=q.term_ids, weights=q.weights)
    return out, queries


def build_segments(coll: SyntheticCollection, out: Path, segments: int) -> None:
    from lsr.index.writer import IndexWriter, MergePolicy

    block_size = IndexAdapter.config_defaults()["block_size"]  # build() takes None for no block-max data
    cuts = np.linspace(0, len(coll.doc_ids), segments + 1).astype(int).tolist()
    ids, docs = coll.doc_ids, coll.docs
    IndexAdapter.build(
        docs.slice(0, cuts[1]), ids[: cuts[1]], coll.vocab, out, "uint8", block_size=block_size
    )
    with IndexWriter(out, MergePolicy(max_segments=segments + 1000, max_deleted=1.0)) as writer:  # no merge
        for a, b in zip(cuts[1:-1], cuts[2:], strict=True):
            writer.add(docs.slice(a, b), ids[a:b], coll.vocab)


def index_bytes(path: Path) -> int:
    """The index's bytes on disk, without the merged block maxima a live index's first block-max search
    writes (``bounds-*``, a cache: ``bounds_bytes``)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) - bounds_bytes(path)


def bounds_bytes(path: Path) -> int:
    return sum(p.stat().st_size for d in path.glob(BOUNDS_GLOB) for p in d.rglob("*") if p.is_file())


def drop_bounds(path: Path) -> None:
    """Remove a live index's bounds files, so that the next first search builds them."""
    for d in path.glob(BOUNDS_GLOB):
        shutil.rmtree(d)


def child(index: Path, queries: Path, small: Path, modes: list[str]) -> dict[str, Any]:
    """Steps 1-5 in this process (see the module docstring)."""
    from lsr.index.search import Index
    from lsr.searcher import Searcher

    q = np.load(queries)
    rows = [
        (q["terms"][a:b], q["weights"][a:b]) for a, b in zip(q["indptr"][:-1], q["indptr"][1:], strict=True)
    ]

    def run(ix: Index, repeat: int) -> None:
        for _ in range(repeat):
            for mode in modes:
                for terms, weights in rows:
                    ix.search(terms, weights, k=10, mode=mode)

    def lookup(searcher: Searcher, keys: Any) -> None:
        positions = list(range(0, len(keys), max(len(keys) // 100, 1)))
        assert searcher.internal_ids([keys[d] for d in positions]).tolist() == positions

    warm = Searcher(small)
    run(warm.index, 1)
    lookup(warm, warm.index.doc_keys)
    del warm
    steps = {"baseline": rss()}
    searcher = Searcher(index)
    ix = searcher.index
    steps["loaded"] = rss()
    run(ix, 2)
    steps["warm"] = rss()
    keys = ix.doc_keys
    steps["keys"] = rss()
    assert len(keys) == ix.n_docs
    lookup(searcher, keys)
    steps["lookup"] = rss()
    return {"steps": steps, "n_queries": len(rows), "n_docs": ix.n_docs, "type": type(ix).__name__}


def measure(index: Path, queries: Path, small: Path, modes: list[str], label: str = "") -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.memory_bench", "--child", str(index), str(queries), str(small)]
    done = subprocess.run([*cmd, ",".join(modes)], check=True, capture_output=True, text=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    size = index_bytes(index)
    steps = result["steps"]
    anon = steps["warm"]["RssAnon"] - steps["baseline"]["RssAnon"]
    return {
        "index": str(index),
        "label": label,
        "n_docs": result["n_docs"],
        "index_bytes": size,
        "bounds_bytes": bounds_bytes(index),
        "anon_bytes": anon,
        "anon_share": round(anon / size, 4),
        "anon_at_load_bytes": steps["loaded"]["RssAnon"] - steps["baseline"]["RssAnon"],
        "anon_with_ids_bytes": steps["keys"]["RssAnon"] - steps["baseline"]["RssAnon"],
        "anon_with_lookup_bytes": steps["lookup"]["RssAnon"] - steps["baseline"]["RssAnon"],
        "type": result["type"],
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
    p.add_argument("--segments", type=int, default=0, help="also a live index of this many segments")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    modes = args.modes.split(",")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="memory-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for segments in [1, args.segments] if args.segments > 1 else [1]:
        tail = f"-{segments}seg" if segments > 1 else ""
        small, _ = build(2_000, work / f"small{tail}", seed=1, segments=segments)
        index, queries = build(args.n_docs, work / f"synthetic-{args.n_docs}{tail}", segments=segments)
        if segments == 1:
            rows.append(measure(index, queries, small, modes))
            continue
        drop_bounds(index)
        drop_bounds(small)
        rows.append(measure(index, queries, small, modes, "first open: builds the bounds file"))
        rows.append(measure(index, queries, small, modes, "reopened: maps it"))
    print_table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"args": {"n_docs": args.n_docs, "modes": modes, "segments": args.segments}, "rows": rows}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results -> {args.out}")
    return 0


def print_table(rows: list[dict[str, Any]]) -> None:
    mib = 2**20
    print(
        "| index | docs | index MB | anonymous MB (warm) | with the ids | with the id table "
        "| at load MB | mapped resident MB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        size = row["index_bytes"]

        def share(n: int, size: int = size) -> str:
            return f"{n / mib:.1f} ({100 * n / size:.1f}%)"

        cells = [
            f"{Path(row['index']).name} ({row['type']}{', ' + row['label'] if row.get('label') else ''})",
            f"{row['n_docs']:,}",
            f"{size / mib:.1f}",
            share(row["anon_bytes"]),
            share(row["anon_with_ids_bytes"]),
            share(row["anon_with_lookup_bytes"]),
            f"{row['anon_at_load_bytes'] / mib:.1f}",
            f"{row['mapped_resident_bytes'] / mib:.1f}",
        ]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
