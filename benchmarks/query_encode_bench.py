"""Query encoding on the CPU, per runtime (lsr.encoders.onnx_query): torch float32, lean (a fused
float32 forward with a screened SPLADE projection, lsr.encoders.lean_query), lean-bf16 (the same with
bfloat16 products), ONNX Runtime float32 and int8, for the shipped SPLADE and uniCOIL models, on
SciFact's test queries.

    python -m benchmarks.query_encode_bench --index splade=DIR --out benchmarks/results/query-encode.json

Per model and runtime (``--runtimes``, torch first): latency of one query at a time on one thread
(mean, p50, p99 ms, and the mean CPU time of the process, which a loaded machine's other processes
do not inflate; the runtimes take turns query by query, so a loaded machine weighs on them alike),
the time a query in batches of ``--batch`` (one thread; what ``lsr serve`` does with concurrent requests),
queries/s with 2 threads each encoding one query at a time (as a server at concurrency 2 does), and
the agreement with torch float32 (largest absolute weight difference, share of queries with the same
term set). ``--index MODEL=DIR``: an index of that model's documents, whose own query encoder runs (its
meta and vocabulary; required for a uniCOIL of word terms); adds the row ``lean-index`` (the
lean runtime told the index's terms, as ``lsr search`` and ``lsr serve`` do) and, for every row, the
share of queries whose top 10 there (exact mode, the index's query IDF) equals torch float32's.
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("LSR_SHARED_DATA", REPO.parent / "shared" / "data"))
RUNTIMES = ("torch", "lean", "lean-index", "lean-bf16", "onnx", "onnx-int8", "onnx-int8-smooth")

logger = logging.getLogger("benchmarks.query_encode_bench")


def read_queries(data: Path, n: int) -> list[str]:
    with gzip.open(data / "beir" / "scifact" / "queries.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f][:n]


def load_encoder(model: str, runtime: str, searcher: Any = None) -> Any:
    """The model's query encoder on ``runtime``, on one thread (``lean-index``: lean, told
    ``searcher``'s terms): the index's own (its meta and vocabulary) with ``searcher``, else one over the
    model's vocabulary, which a uniCOIL of word terms lacks (its vocabulary is its corpus's)."""
    from lsr.config import load_config
    from lsr.encoders import encoder_overrides, load_query_encoder, make_encoder

    os.environ["LSR_QUERY_RUNTIME"] = "lean" if runtime == "lean-index" else runtime
    if searcher is not None:
        meta = searcher.index.meta["encoder"]
        meta = {**meta, "transformer": {**meta.get("transformer", {}), "threads": 1}}
        encoder: Any = load_query_encoder(meta, searcher.index.term_index)
    else:
        cfg = load_config(None, [*encoder_overrides(model), "encoder.transformer.threads=1"])
        corpus_side = make_encoder(cfg.encoder)
        if getattr(corpus_side, "words", None) is not None:
            raise SystemExit(
                f"{model} writes word terms, whose vocabulary is a corpus's: pass --index {model}=DIR"
            )
        meta = {**corpus_side.describe(), "name": model}
        encoder = load_query_encoder(meta, {t: i for i, t in enumerate(corpus_side.vocab)})
    if runtime == "lean-index":
        encoder.restrict_terms(np.flatnonzero(searcher.index.doc_freq() > 0))
    return encoder


def top10(searcher: Any, rows: list[dict[int, float]]) -> list[list[int]]:
    """Each query's top 10 internal ids on ``searcher``'s index (exact, with its query IDF)."""
    from lsr.encoders import query_idf
    from lsr.index import SparseBatch
    from lsr.searcher import Plan, Queries

    batch = SparseBatch.from_rows((list(r), list(r.values())) for r in rows)
    table = searcher.query_idf_table
    batch = batch if table is None else query_idf.reweight(batch, table)
    results = searcher.search_batch(Queries(sparse=batch), Plan(k=10, mode="exact", threads=1))
    return [r.docs.tolist() for r in results]


def time_batches(encoder: Any, queries: list[str], size: int) -> float:
    """ms a query, encoding ``size`` queries at a time on one thread."""
    start = time.perf_counter()
    for i in range(0, len(queries), size):
        encoder.encode(queries[i : i + size])
    return (time.perf_counter() - start) * 1000 / len(queries)


def time_one_thread(
    encoders: dict[str, Any], queries: list[str]
) -> dict[str, tuple[list[float], list[float], list[dict[int, float]]]]:
    """Per runtime, ms of each query encoded alone (wall clock, and this process's CPU time: the
    encoders run on one thread, so that is the work done, without the time other processes of a
    loaded machine took the core) and its vector; the runtimes take turns query by query, so that
    they share the machine's load."""
    out: dict[str, tuple[list[float], list[float], list[dict[int, float]]]] = {
        r: ([], [], []) for r in encoders
    }
    for q in queries:
        for runtime, encoder in encoders.items():
            cpu, start = time.process_time(), time.perf_counter()
            batch = encoder.encode([q])
            out[runtime][0].append((time.perf_counter() - start) * 1000)
            out[runtime][1].append((time.process_time() - cpu) * 1000)
            terms, weights = batch.row(0)
            out[runtime][2].append(dict(zip(terms.tolist(), weights.tolist(), strict=True)))
    return out


def qps_threads(encoder: Any, queries: list[str], threads: int) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda q: encoder.encode([q]), queries))
    return len(queries) / (time.perf_counter() - start)


def agreement(rows: list[dict[int, float]], ref: list[dict[int, float]]) -> dict[str, float]:
    diff, same = 0.0, 0
    for a, b in zip(rows, ref, strict=True):
        keys = set(a) | set(b)
        diff = max([diff, *(abs(a.get(t, 0.0) - b.get(t, 0.0)) for t in keys)])
        same += set(a) == set(b)
    return {"max_abs_weight_diff": diff, "same_terms": same / max(len(ref), 1)}


def agreement_on(
    rows: list[dict[int, float]], ref: list[dict[int, float]], searcher: Any
) -> dict[str, float]:
    """:func:`agreement` against the reference's terms that have postings in ``searcher``'s index."""
    has = searcher.index.doc_freq() > 0
    return agreement(rows, [{t: w for t, w in r.items() if has[t]} for r in ref])


def bench_model(
    model: str, queries: list[str], warmup: int, batch: int, index: str | None, runtimes: list[str]
) -> list[dict[str, Any]]:
    from lsr.searcher import Searcher

    out: list[dict[str, Any]] = []
    ref = ref_top = None
    searcher = Searcher(index) if index else None
    encoders, load_s = {}, {}
    for runtime in runtimes:
        if runtime == "lean-index" and searcher is None:
            continue
        start = time.perf_counter()
        encoders[runtime] = encoder = load_encoder(model, runtime, searcher)
        load_s[runtime] = time.perf_counter() - start
        encoder.encode(queries[:warmup])
        for q in queries[:warmup]:
            encoder.encode([q])
    timed = time_one_thread(encoders, queries)
    for runtime, encoder in encoders.items():
        ms, cpu_ms, rows = timed[runtime]
        ref = rows if runtime == "torch" else ref
        assert ref is not None
        row: dict[str, Any] = {
            "model": model,
            "runtime": runtime,
            "load_seconds": load_s[runtime],
            "mean_ms": float(np.mean(ms)),
            "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)),
            "mean_cpu_ms": float(np.mean(cpu_ms)),
            "batch": batch,
            "batched_ms_per_query": time_batches(encoder, queries, batch),
            "qps_2_threads": qps_threads(encoder, queries, 2),
            "query_nnz_avg": float(np.mean([len(r) for r in rows])),
            **(agreement(rows, ref) if runtime != "lean-index" else agreement_on(rows, ref, searcher)),
        }
        if searcher is not None:
            top = top10(searcher, rows)
            ref_top = top if runtime == "torch" else ref_top
            assert ref_top is not None
            row["same_top10"] = sum(a == b for a, b in zip(top, ref_top, strict=True)) / len(top)
        out.append(row)
        logger.info("%s", out[-1])
    base, base_cpu = float(out[0]["mean_ms"]), float(out[0]["mean_cpu_ms"])
    for r in out:
        r["speedup_vs_torch"] = base / float(r["mean_ms"])
        r["cpu_speedup_vs_torch"] = base_cpu / float(r["mean_cpu_ms"])
    return out


def table(rows: list[dict[str, Any]]) -> str:
    head = f"{'model':<9}{'runtime':<12}{'mean ms':>9}{'p50':>8}{'p99':>8}{'x torch':>9}"
    head += f"{'cpu ms':>8}{'x cpu':>7}{'batched':>9}"
    head += f"{'qps@2':>8}{'nnz':>7}{'max |dw|':>10}{'same terms':>12}{'same top10':>12}"
    lines = [head, "-" * len(head)]
    for r in rows:
        top = f"{r['same_top10']:>12.3f}" if "same_top10" in r else f"{'':>12}"
        lines.append(
            f"{r['model']:<9}{r['runtime']:<12}{r['mean_ms']:>9.2f}{r['p50_ms']:>8.2f}{r['p99_ms']:>8.2f}"
            f"{r['speedup_vs_torch']:>9.2f}{r['mean_cpu_ms']:>8.2f}{r['cpu_speedup_vs_torch']:>7.2f}"
            f"{r['batched_ms_per_query']:>9.2f}{r['qps_2_threads']:>8.0f}"
            f"{r['query_nnz_avg']:>7.1f}{r['max_abs_weight_diff']:>10.2e}{r['same_terms']:>12.3f}{top}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.query_encode_bench", description=__doc__.split("\n")[0]
    )
    p.add_argument("--models", default="splade,unicoil")
    p.add_argument("--runtimes", default=",".join(RUNTIMES), help="the rows, torch first (the reference)")
    p.add_argument("--n-queries", type=int, default=300)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--batch", type=int, default=8, help="queries a batch in the batched column (8)")
    p.add_argument(
        "--index", action="append", default=[], metavar="MODEL=DIR", help="an index of MODEL's documents"
    )
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    os.environ.setdefault("LSR_CACHE_DIR", tempfile.mkdtemp(prefix="lsr-onnx-cache-"))
    queries = read_queries(args.data, args.n_queries)
    runtimes = args.runtimes.split(",")
    if runtimes[0] != "torch" or not set(runtimes) <= set(RUNTIMES):
        p.error(f"--runtimes: torch first, then any of {list(RUNTIMES)}, not {args.runtimes!r}")
    indexes = dict(spec.split("=", 1) for spec in args.index)
    rows = [
        r
        for m in args.models.split(",")
        for r in bench_model(m, queries, args.warmup, args.batch, indexes.get(m), runtimes)
    ]
    print(table(rows))
    if args.out:
        report = {
            "rows": rows,
            "n_queries": len(queries),
            "indexes": indexes,
            "machine": {
                "platform": platform.platform(),
                "cpu_count": os.cpu_count(),
                "load": os.getloadavg(),
            },
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
