"""Evaluation of the dense stage: hybrid re-ranking (sparse top-k + PQ dense + fusion) and dense-only runs.

* ``rerank_stage``: turns first-stage results into the hybrid run and a report section with the fusion
  settings, the dense model, bytes per document, re-rank latency per query (one thread, query
  encoding excluded) and dense query-encoding time (reported separately). Used by
  ``lsr eval --rerank-stage dense`` and the DL re-rank protocol (``lsr eval --rerank RUN``).
* ``evaluate_dense``: the dense-only baseline over the same codes (``lsr eval --system dense-pq``,
  a flat ADC scan; ``dense-float``: a flat scan over the stored float vectors).
* ``tuning_set``: the queries and metric of ``lsr tune-fusion`` (the tuning itself, which writes into
  the index, is lsr.dense.tune).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from lsr import __version__
from lsr.config import Config, to_dict
from lsr.data.trec import Qrels, Run
from lsr.dense.tune import TuningSet
from lsr.eval.datasets import load_eval_dataset
from lsr.eval.metrics import evaluate_run
from lsr.index import SearchResult
from lsr.searcher import Plan, Queries, Searcher
from lsr.timing import latency_summary, time_queries

logger = logging.getLogger(__name__)

STAGES = ("dense", "dense-float")  # dense: PQ codes (ADC); dense-float: the stored float vectors
DENSE_SYSTEMS = ("dense-pq", "dense-float")


def _torch_threads(n: int) -> int:
    """Set torch's intra-op threads (if torch is loaded); return the previous count."""
    torch = sys.modules.get("torch")
    if torch is None:
        return 0
    prev = torch.get_num_threads()
    torch.set_num_threads(n)
    return prev


def encode_timed(searcher: Searcher, texts: list[str], sample: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """Query embeddings (one batch, all cores) and the per-query encoding time on one thread."""
    start = time.perf_counter()
    emb = searcher.encode_dense(texts)
    batch_seconds = time.perf_counter() - start
    timed = texts[:sample] if sample else texts
    prev = _torch_threads(1)
    try:
        ms = time_queries(lambda i: searcher.encode_dense([timed[i]]), len(timed)) if timed else np.zeros(0)
    finally:
        if prev:
            _torch_threads(prev)
    return emb, {"one_thread": latency_summary(ms), "batch_seconds": batch_seconds}


def rerank_latency(
    searcher: Searcher, queries: Queries, first: list[SearchResult], plan: Plan, n: int
) -> dict[str, float]:
    """Per-query ms of re-scoring + fusing the top ``plan.depth`` (lookup table, ADC, fusion, sort),
    one thread, for the first ``n`` queries."""
    heads = [SearchResult(r.docs[: plan.depth], r.scores[: plan.depth]) for r in first[:n]]
    return latency_summary(
        time_queries(lambda i: searcher.rerank(queries.slice(i, i + 1), heads[i : i + 1], plan), n)
    )


def rerank_stage(
    searcher: Searcher,
    qrels: Qrels | None,
    qids: list[str],
    queries: Queries,
    first: list[SearchResult],
    config: Config,
    plan: Plan,
    relevance_level: int | None = None,
    metrics: tuple[str, ...] | None = None,
) -> tuple[Run, dict[str, Any]]:
    """(hybrid run, report section): ``first`` (first-stage results of ``queries``, texts given) re-ranked
    by ``plan`` (``plan.rerank``: dense or dense-float; ``plan.k``: the run's depth)."""
    if plan.rerank not in STAGES:
        raise ValueError(f"rerank stage {plan.rerank!r} is not one of {list(STAGES)}")
    dense = searcher.require_dense(plan.rerank)
    use_float = plan.rerank == "dense-float"
    method, weight = dense.resolve_fusion(plan.fusion, plan.fusion_weight)
    plan = dataclasses.replace(plan, fusion=method, fusion_weight=weight)
    sample = config.eval.latency_queries
    emb, encode = encode_timed(searcher, queries.texts or [], sample)
    queries = dataclasses.replace(queries, dense=emb)
    hybrid = searcher.to_run(qids, searcher.rerank(queries, first, plan))
    latency = rerank_latency(searcher, queries, first, plan, min(sample, len(qids)) if sample else len(qids))
    meta = dense.meta
    section: dict[str, Any] = {
        "stage": plan.rerank,
        "depth": plan.depth,
        "fusion": {"method": method, "weight": weight, "stored": dense.fusion},
        "dense_model": meta["model"].get("name"),
        "dense_model_path": meta["model"].get("path"),
        "dim": meta["dim"],
        "m": meta["m"],
        "nbits": meta["nbits"],
        "opq": meta["opq"],
        "bytes_per_doc": 4 * meta["dim"] if use_float else dense.codes.bytes_per_doc,
        "dense_bytes": dense.nbytes,
        "latency_ms": latency,  # re-rank only: query encoding excluded
        "query_encode_ms": encode["one_thread"],
        "query_encode_batch_seconds": encode["batch_seconds"],
    }
    if qrels is not None:
        level = relevance_level if relevance_level is not None else config.eval.relevance_level
        names = metrics or config.eval.metrics
        section["sparse_metrics"] = evaluate_run(qrels, searcher.to_run(qids, first), names, level)
    return hybrid, section


def evaluate_dense(
    index_dir: str | Path,
    dataset_spec: str | Path,
    config: Config,
    system: str = "dense-pq",
    progress: bool = False,
) -> dict[str, Any]:
    """Dense-only retrieval over the index's dense stage: a flat scan (PQ codes with ADC, or float)."""
    if system not in DENSE_SYSTEMS:
        raise ValueError(f"system {system!r} is not one of {['sparse', *DENSE_SYSTEMS]}")
    cfg = config.eval
    searcher = Searcher(index_dir)
    use_float = system == "dense-float"
    plan = Plan(k=cfg.k, first_stage="dense-float" if use_float else "dense")
    dense = searcher.require_dense(plan.first_stage)
    dataset = load_eval_dataset(dataset_spec, cfg.split)
    qids = [q for q in dataset.queries if q in dataset.qrels]
    texts = [dataset.queries[q] for q in qids]
    emb, encode = encode_timed(searcher, texts, cfg.latency_queries)
    queries = Queries(texts=texts, dense=emb)
    start = time.perf_counter()
    run = searcher.to_run(qids, searcher.search_batch(queries, plan))
    seconds = time.perf_counter() - start
    sample = len(qids[: cfg.latency_queries]) if cfg.latency_queries else len(qids)
    latency = latency_summary(
        time_queries(lambda i: searcher.first_stage(queries.slice(i, i + 1), plan), sample)
    )
    meta = dense.meta
    return {
        "lsr_version": __version__,
        "system": system,
        "dataset": {
            "name": dataset.name,
            "spec": str(dataset_spec),
            "split": cfg.split,
            "n_queries": len(qids),
        },
        "index": {"path": str(index_dir), "n_docs": dense.codes.n_docs},
        "metrics": evaluate_run(dataset.qrels, run, cfg.metrics, cfg.relevance_level),
        "eval_k": cfg.k,
        "latency_ms": latency,  # flat scan + top-k, query encoding excluded
        "query_encode_ms": encode["one_thread"],
        "run_seconds": seconds,
        "dense": {
            "model": meta["model"].get("name"),
            "dim": meta["dim"],
            "m": meta["m"],
            "nbits": meta["nbits"],
            "opq": meta["opq"],
            "bytes_per_doc": 4 * meta["dim"] if use_float else dense.codes.bytes_per_doc,
            "dense_bytes": dense.nbytes,
        },
        "config": {"eval": to_dict(config)},
    }


def format_dense_report(report: dict[str, Any]) -> str:
    rows = [(name, f"{value:.4f}") for name, value in report["metrics"].items()]
    lat, enc = report["latency_ms"], report["query_encode_ms"]
    if lat:
        rows += [
            ("scan latency p50 (ms)", f"{lat['p50']:.2f}"),
            ("scan latency p99 (ms)", f"{lat['p99']:.2f}"),
        ]
    if enc:
        rows += [("query encode p50 (ms)", f"{enc['p50']:.2f}")]
    rows += [("bytes/doc", f"{report['dense']['bytes_per_doc']:.0f}")]
    ds = report["dataset"]
    title = (
        f"{ds['name']} ({ds['split']}, {ds['n_queries']} queries), {report['system']} on "
        f"{report['index']['path']}"
    )
    width = max(len(r[0]) for r in rows)
    return "\n".join([title, "-" * len(title)] + [f"{n:<{width}}  {v:>10}" for n, v in rows])


def format_rerank_section(section: dict[str, Any]) -> str:
    """Lines for the terminal report of ``lsr eval --rerank-stage``."""
    f, lat, enc = section["fusion"], section["latency_ms"], section["query_encode_ms"]
    lines = [
        f"re-rank: {section['stage']} ({section['dense_model']}, M = {section['m']}, "
        f"{section['bytes_per_doc']:.0f} bytes/doc), top {section['depth']}, {f['method']} "
        f"weight {f['weight']:.2f}"
    ]
    if "sparse_metrics" in section:
        sparse = section["sparse_metrics"]
        lines.append("sparse alone: " + ", ".join(f"{k} {v:.4f}" for k, v in sparse.items()))
    if lat:
        lines.append(
            f"re-rank latency p50 {lat['p50']:.3f} ms, p99 {lat['p99']:.3f} ms (1 thread, encoding excluded)"
        )
    if enc:
        lines.append(f"dense query encoding p50 {enc['p50']:.2f} ms, p99 {enc['p99']:.2f} ms (1 thread)")
    return "\n".join(lines)


def tuning_set(dataset_spec: str | Path, split: str, config: Config, metric: str = "ndcg@10") -> TuningSet:
    """The judged queries of ``split`` and ``metric`` of a run on them (``lsr tune-fusion``)."""
    if split == "test":
        logger.warning("tuning the fusion weight on the test split: the test numbers are then optimistic")
    dataset = load_eval_dataset(dataset_spec, split)
    qids = [q for q in dataset.queries if q in dataset.qrels]
    level = config.eval.relevance_level
    return TuningSet(
        qids,
        [dataset.queries[q] for q in qids],
        metric,
        lambda run: evaluate_run(dataset.qrels, run, (metric,), level)[metric],
        {"dataset": str(dataset_spec), "split": split},
    )
