"""``lsr eval``: quality, latency, memory and sparsity of one index on one dataset, together.

Queries go through the same code as ``lsr search`` (the index's own query
encoder, the batch kernel) for the run; latency is then measured query by
query on one thread after a warm-up, so JIT compilation and index loading are
excluded.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from lsr import __version__
from lsr.config import Config, to_dict
from lsr.eval.datasets import EvalDataset, load_eval_dataset
from lsr.eval.hybrid import format_rerank_section, rerank_stage
from lsr.eval.metrics import evaluate_run
from lsr.index import SparseBatch
from lsr.searcher import Plan, Queries, Searcher, warn_empty
from lsr.timing import latency_summary, time_queries

logger = logging.getLogger(__name__)


def check_coverage(dataset: EvalDataset, doc_keys: list[str]) -> dict[str, int]:
    """Count qrels that cannot be matched (unknown doc ids, judged queries without text) and warn."""
    known = set(doc_keys)
    unknown_docs = sum(1 for docs in dataset.qrels.values() for d in docs if d not in known)
    missing_queries = sum(1 for q in dataset.qrels if q not in dataset.queries)
    if unknown_docs:
        logger.warning("%d qrels rows name doc ids that are not in the index", unknown_docs)
    if missing_queries:
        logger.warning("%d judged queries have no query text; they score 0", missing_queries)
    return {"qrels_unknown_docs": unknown_docs, "qrels_missing_queries": missing_queries}


def flops(doc_df: np.ndarray, n_docs: int, queries: SparseBatch, n_terms: int) -> float:
    """Expected multiplications per (query, doc) pair: sum_t p_query(t) * p_doc(t) (Paria et al. 2020)."""
    if n_docs == 0 or len(queries) == 0:
        return 0.0
    q_df = np.bincount(queries.term_ids, minlength=n_terms)
    return float(np.dot(q_df / len(queries), doc_df / n_docs))


def measure_latency(searcher: Searcher, texts: list[str], plan: Plan) -> dict[str, float]:
    """Per-query wall time of encode + search on one thread (lsr.timing), plus encoding alone."""
    summary = latency_summary(
        time_queries(lambda i: searcher.search_batch(Queries(texts=[texts[i]]), plan), len(texts))
    )
    encode_ms = time_queries(lambda i: searcher.encode_texts([texts[i]]), len(texts))
    return {**summary, "encode_mean": float(encode_ms.mean())}


def evaluate_index(
    index_dir: str | Path,
    dataset_spec: str | Path,
    config: Config,
    progress: bool = False,
    rerank: str | None = None,
    *,
    run_out: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate an index on a dataset split; return the report (see ``lsr eval --help``).

    ``rerank="dense"`` (default: ``search.rerank``): the metrics are those of the hybrid run (the sparse
    top ``search.rerank_depth`` re-scored by the dense stage, see lsr.eval.hybrid) and the report gains a
    ``rerank`` section; ``"dense-float"`` re-scores with the stored float vectors instead of PQ codes.

    ``run_out``: a dict that receives the run (``run_out["run"]``) and qrels (``run_out["qrels"]``),
    for per-query analysis and significance tests (``lsr eval --systems``).
    """
    cfg = config.eval
    rerank = rerank or config.search.rerank
    searcher = Searcher(index_dir)
    index = searcher.index
    dataset = load_eval_dataset(dataset_spec, cfg.split)
    coverage = check_coverage(dataset, index.doc_keys)
    qids = [q for q in dataset.queries if q in dataset.qrels]
    if not qids:
        raise ValueError(
            f"{dataset_spec}: the queries ({len(dataset.queries)}) and the {cfg.split} qrels "
            f"({len(dataset.qrels)} judged queries) share no query id: nothing to evaluate"
        )
    plan = Plan.from_config(config.search, k=cfg.k, rerank="none")
    t0 = time.perf_counter()
    queries = searcher.encode(Queries(texts=[dataset.queries[q] for q in qids]), plan)
    t1 = time.perf_counter()
    warn_empty(qids, queries)
    first = searcher.first_stage(queries, plan, progress)
    run = searcher.to_run(qids, first)
    rerank_section = None
    if rerank not in (None, "none"):
        hybrid = dataclasses.replace(plan, rerank=rerank)
        run, rerank_section = rerank_stage(searcher, dataset.qrels, qids, queries, first, config, hybrid)
    t2 = time.perf_counter()
    metrics = evaluate_run(dataset.qrels, run, cfg.metrics, cfg.relevance_level)
    if run_out is not None:
        run_out.update(run=run, qrels=dataset.qrels)
    texts = queries.texts or []
    sample = texts[: cfg.latency_queries] if cfg.latency_queries else texts
    latency = measure_latency(searcher, sample, plan) if sample else {}
    doc_df = np.diff(np.asarray(index.term_ptr))
    encoded = queries.sparse
    assert encoded is not None
    return {
        "lsr_version": __version__,
        "dataset": {
            "name": dataset.name,
            "spec": str(dataset_spec),
            "split": cfg.split,
            "n_queries": len(qids),
            "n_judged": len(dataset.qrels),
            **coverage,
        },
        "index": {
            "path": str(index_dir),
            "n_docs": index.n_docs,
            "n_terms": index.n_terms,
            "n_postings": int(index.meta["n_postings"]),
            "impacts": index.meta["impacts"],
            "reorder": index.meta.get("reorder", {"method": "none"}),
            "blockmax": (
                {
                    k: index.blockmax.meta[k]
                    for k in ("block_size", "n_blocks", "n_dense_terms", "n_sparse_runs")
                }
                | {"bytes": index.blockmax.nbytes}
            )
            if index.blockmax
            else None,
        },
        "search": {"mode": plan.mode, "alpha": plan.alpha, "beta": plan.beta},
        "metrics": metrics,
        "eval_k": cfg.k,
        "latency_ms": latency,
        # the whole run: encode, batch search on all threads, ranked ids into Python dicts
        "throughput": {
            "run_qps": len(qids) / max(t2 - t0, 1e-9),
            "encode_seconds": t1 - t0,
            "search_seconds": t2 - t1,
        },
        "index_bytes": index.nbytes,
        "postings_bytes": index.postings_nbytes,
        "bytes_per_posting": index.postings_nbytes / max(int(index.meta["n_postings"]), 1),
        "doc_nnz_avg": float(index.meta["stats"]["doc_nnz_avg"]),
        "query_nnz_avg": float(encoded.nnz / max(len(encoded), 1)),
        "flops": flops(doc_df, index.n_docs, encoded, index.n_terms),
        "encoder": index.meta["encoder"],
        "config": {"index": index.meta.get("config"), "eval": to_dict(config)},
    } | ({"rerank": rerank_section} if rerank_section else {})


def format_report(report: dict[str, Any]) -> str:
    """A small terminal table."""
    rows = [(name, f"{value:.4f}") for name, value in report["metrics"].items()]
    lat = report["latency_ms"]
    if lat:
        rows += [
            ("latency p50 (ms)", f"{lat['p50']:.2f}"),
            ("latency p99 (ms)", f"{lat['p99']:.2f}"),
            ("queries/s (1 thread)", f"{lat['qps_one_thread']:.0f}"),
        ]
    rows += [
        (f"queries/s (full run, k={report['eval_k']})", f"{report['throughput']['run_qps']:.0f}"),
        ("index size (MiB)", f"{report['index_bytes'] / 2**20:.1f}"),
        ("bytes/posting", f"{report['bytes_per_posting']:.2f}"),
        ("doc nnz (avg)", f"{report['doc_nnz_avg']:.1f}"),
        ("query nnz (avg)", f"{report['query_nnz_avg']:.1f}"),
        ("FLOPS", f"{report['flops']:.3f}"),
    ]
    ds = report["dataset"]
    title = f"{ds['name']} ({ds['split']}, {ds['n_queries']} queries) on {report['index']['path']}"
    width = max(len(r[0]) for r in rows)
    lines = [title, "-" * len(title)] + [f"{name:<{width}}  {value:>10}" for name, value in rows]
    if report.get("rerank"):
        lines.append(format_rerank_section(report["rerank"]))
    return "\n".join(lines)
