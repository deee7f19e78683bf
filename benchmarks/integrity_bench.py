"""What the integrity checks cost: ``Index.load`` split into its parts, and ``lsr verify``.

    python -m benchmarks.integrity_bench [--scifact INDEX] [--synthetic-docs 100000]

Rows: the SciFact BM25 index (built with ``lsr index --encoder bm25`` if ``--scifact`` does not exist)
and a synthetic learned-sparse-like collection (benchmarks.synthetic, uint8, block-max). Columns
(median of ``--repeat`` warm runs, ms): the whole open; of it, the meta read with its self-checksum
and the file-size checks, the postings invariants (one pass), the block-max invariants (one pass
over the runs); and ``lsr verify`` (reads every byte: CRC-32 + the open). Writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lsr.index import BuildOptions, Index, build_index
from lsr.index.builder import INDEX_FORMAT, INDEX_FORMAT_VERSION
from lsr.index.integrity import check_blockmax, check_postings
from lsr.index.io import read_meta
from lsr.verify import verify


def median_ms(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm: numba's cache, the page cache
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return round(1e3 * float(np.median(times)), 2)


def measure(path: Path, repeat: int) -> dict[str, Any]:
    index = Index.load(path)
    bm = index.blockmax
    assert bm is not None
    return {
        "index": str(path),
        "n_docs": index.n_docs,
        "n_postings": int(len(index.doc_ids)),
        "mb": round(index.nbytes / 1e6, 1),
        "open_ms": median_ms(lambda: Index.load(path), repeat),
        "open_unchecked_ms": median_ms(lambda: _load_unchecked(path), repeat),
        "meta_and_sizes_ms": median_ms(
            lambda: read_meta(path, INDEX_FORMAT, (INDEX_FORMAT_VERSION,)), repeat
        ),
        "postings_check_ms": median_ms(
            lambda: check_postings(
                path,
                index.meta,
                {"term_ptr": index.term_ptr, "doc_ids": index.doc_ids, "impacts": index.impacts},
            ),
            repeat,
        ),
        "blockmax_check_ms": median_ms(
            lambda: check_blockmax(bm, index.term_ptr, index.doc_ids, index.n_docs), repeat
        ),
        "verify_ms": median_ms(lambda: verify(path), max(1, repeat // 5)),
    }


def _load_unchecked(path: Path) -> Index:
    """``Index.load`` without the invariant passes: the open as it was before them (the peer)."""
    from lsr.index import search

    saved = search.check_postings, search.check_blockmax
    search.check_postings = search.check_blockmax = lambda *args: None  # type: ignore[assignment]
    try:
        return Index.load(path)
    finally:
        search.check_postings, search.check_blockmax = saved


def build_scifact(out: Path) -> Path:
    from lsr.cli import main

    if not out.exists():
        assert (
            main(
                [
                    "index",
                    "--corpus",
                    "../shared/data/beir/scifact",
                    "--encoder",
                    "bm25",
                    "--out",
                    str(out),
                    "--quiet",
                ]
            )
            == 0
        )
    return out


def build_synthetic(out: Path, n_docs: int) -> Path:
    from benchmarks.synthetic import SyntheticConfig, generate

    if out.exists():
        return out
    coll = generate(SyntheticConfig(n_docs=n_docs, n_queries=10))
    build_index(
        lambda: [c.batch for c in coll.chunks],
        coll.config.n_terms,
        [f"d{i}" for i in range(n_docs)],
        [f"t{t}" for t in range(coll.config.n_terms)],
        out,
        BuildOptions(impact_dtype="uint8"),
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scifact", default="/tmp/lsr-bench/scifact-bm25")
    parser.add_argument("--synthetic", default="/tmp/lsr-bench/synthetic-uint8")
    parser.add_argument("--synthetic-docs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--out", default="benchmarks/results/integrity.json")
    args = parser.parse_args()
    rows = [
        {"name": "scifact-bm25", **measure(build_scifact(Path(args.scifact)), args.repeat)},
        {
            "name": f"synthetic-{args.synthetic_docs}",
            **measure(build_synthetic(Path(args.synthetic), args.synthetic_docs), args.repeat),
        },
    ]
    cols = ["name", "n_docs", "n_postings", "mb", "open_unchecked_ms", "open_ms", "meta_and_sizes_ms"]
    cols += ["postings_check_ms"]
    cols += ["blockmax_check_ms", "verify_ms"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in cols) + " |")
    load = os.getloadavg()[0]
    print(f"load average {load:.1f} on {os.cpu_count()} cores (the numbers scale with it)")
    for row in rows:
        row["load_average"] = round(load, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
