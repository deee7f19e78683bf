"""Sharding benchmark: the numbers docs/scale.md's capacity model is fitted on.

    python -m benchmarks.scale_bench --corpus ../shared/data/beir/scifact --docs 1000 \
        --encoders bm25,splade [--ray 127.0.0.1:6391] --out benchmarks/results/scale.json

For each encoder, on the first ``--docs`` documents of the corpus: the single-process encode rate
(docs/s), one index and a 4-shard index built from the same vectors, their bytes per posting, and
per-query latency (top-10, one query at a time after warm-up, queries pre-encoded) of the single
index, the 4 shards searched in this process, and with ``--ray`` the 4 shards on Ray Serve (the
router as ``lsr serve --ray`` runs it), at concurrency 1 and 8 (8 threads submitting). Every sharded
answer is compared with the single index's (ids and scores).
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from lsr.config import load_config
from lsr.data.corpus import load_queries, open_corpus
from lsr.encoders import encoder_overrides
from lsr.index.shards import ShardedIndex
from lsr.pipeline import build_index_from_vectors, encode_corpus
from lsr.searcher import Searcher
from lsr.sharded import build_sharded
from lsr.timing import latency_summary, time_queries

K = 10


def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    try:
        docs = list(itertools.islice(open_corpus(args.corpus), args.docs))
        texts = list(load_queries(args.corpus, "test").values())[: args.queries]
        return {enc: one_encoder(enc, docs, texts, root / enc, args.ray) for enc in args.encoders.split(",")}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def one_encoder(encoder: str, docs: list, texts: list[str], root: Path, ray: str | None) -> dict[str, Any]:
    config = load_config(None, encoder_overrides(encoder))
    start = time.perf_counter()
    encode_corpus(config, docs, root / "vectors")
    encode_s = time.perf_counter() - start
    build_index_from_vectors(config, root / "vectors", root / "one")
    build_sharded(config, root / "vectors", root / "four", 4)
    one = Searcher(root / "one")
    queries = one.encode_texts(texts)
    rows = [queries.row(i) for i in range(len(queries)) if len(queries.row(i)[0])]
    out: dict[str, Any] = {
        "docs": len(docs),
        "encode_docs_per_s": len(docs) / encode_s,
        "n_postings": int(one.index.meta["n_postings"]),
        "bytes_per_posting": _bytes(one.index, root / "one"),
        "bytes_per_posting_4_shards": _bytes(ShardedIndex.open(root / "four"), root / "four"),
        "latency_ms": {"single": _latency(one.index, rows)},
    }
    local = ShardedIndex.open(root / "four")
    out["latency_ms"]["4 shards, in process"] = _latency(local, rows)
    out["identical_top10"] = {"4 shards, in process": _same(one.index, local, rows)}
    if ray:
        from lsr.ray_serve import deploy_sharded, undeploy_sharded

        remote = deploy_sharded(root / "four", ray).index
        out["latency_ms"]["4 shards, Ray Serve"] = _latency(remote, rows)
        out["identical_top10"]["4 shards, Ray Serve"] = _same(one.index, remote, rows)
        out["concurrency_8_ms"] = {
            "single": _concurrent(one.index, rows),
            "4 shards, Ray Serve": _concurrent(remote, rows),
        }
        undeploy_sharded(root / "four")
    return out


def _bytes(index: Any, path: Path) -> dict[str, float]:
    """Bytes per posting: the posting arrays alone, and the whole directory (ids, vocab, block-max and
    docstore included)."""
    n = int(index.meta["n_postings"])
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    docstore = sum(f.stat().st_size for f in path.rglob("docstore*") if f.is_file())
    return {
        "postings": index.postings_nbytes / n,
        "index_without_docstore": (total - docstore) / n,
    }


def _latency(index: Any, rows: list) -> dict[str, float]:
    return latency_summary(time_queries(lambda i: index.search(*rows[i], k=K), len(rows)))


def _concurrent(index: Any, rows: list, threads: int = 8) -> dict[str, float]:
    """Per-query latency with ``threads`` queries in flight, and the throughput."""

    def one(i: int) -> float:
        t0 = time.perf_counter()
        index.search(*rows[i], k=K)
        return (time.perf_counter() - t0) * 1e3

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(min(16, len(rows)))))
        start = time.perf_counter()
        ms = np.array(list(pool.map(one, range(len(rows)))))
        seconds = time.perf_counter() - start
    return {**latency_summary(ms), "qps": len(rows) / seconds, "threads": threads}


def _same(one: Any, other: Any, rows: list) -> str:
    keys_a, keys_b = one.doc_keys, other.doc_keys
    same = 0
    for terms, weights in rows:
        a, b = one.search(terms, weights, k=K), other.search(terms, weights, k=K)
        same += [keys_a[d] for d in a.docs] == [keys_b[d] for d in b.docs] and np.array_equal(
            a.scores, b.scores
        )
    return f"{same}/{len(rows)}"


def print_table(results: dict[str, Any]) -> None:
    print(f"{'encoder':16} {'setup':24} {'p50 ms':>8} {'p99 ms':>8} {'same top-10':>12}")
    for enc, r in results.items():
        for setup, lat in r["latency_ms"].items():
            same = r["identical_top10"].get(setup, "-")
            print(f"{enc:16} {setup:24} {lat['p50']:8.3f} {lat['p99']:8.3f} {same:>12}")
        for setup, lat in r.get("concurrency_8_ms", {}).items():
            name = setup + ", 8 in flight"
            print(f"{enc:16} {name:24} {lat['p50']:8.3f} {lat['p99']:8.3f} {lat['qps']:9.0f} q/s")
        bpp, bpp4 = r["bytes_per_posting"], r["bytes_per_posting_4_shards"]
        print(
            f"{enc:16} encode {r['encode_docs_per_s']:.1f} docs/s; {r['n_postings']} postings; bytes/posting "
            f"{bpp['postings']:.2f} (postings), {bpp['index_without_docstore']:.2f} (index), "
            f"4 shards {bpp4['index_without_docstore']:.2f}"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", required=True, help="a BEIR folder (corpus and test queries)")
    p.add_argument("--docs", type=int, default=1000)
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--encoders", default="bm25,splade")
    p.add_argument("--ray", metavar="ADDRESS", help="also serve the shards on this Ray cluster")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    results = run(args)
    print_table(results)
    args.out.write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=2)
    )


if __name__ == "__main__":
    main()
