"""Evaluation of the dense stage: hybrid re-ranking (sparse top-k + PQ dense + fusion) and dense-only runs.

* ``rerank_stage``: turns a sparse run into the hybrid run and a report section with the fusion
  settings, the dense model, bytes per document, re-rank latency per query (one thread, query
  encoding excluded) and dense query-encoding time (reported separately). Used by
  ``lsr eval --rerank-stage dense`` and the DL re-rank protocol (``lsr eval --rerank RUN``).
* ``evaluate_dense``: the dense-only baseline over the same codes (``lsr eval --system dense-pq``,
  a flat ADC scan; ``dense-float``: a flat scan over the stored float vectors).
* ``tune_fusion``: grid search of the convex weight on a dev/train split (``lsr tune-fusion``);
  the best weight per method goes into the dense meta.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from lsr import __version__
from lsr.config import Config, to_dict
from lsr.data.trec import Qrels, Run
from lsr.dense.stage import DenseStage, store_fusion
from lsr.eval.datasets import load_eval_dataset
from lsr.eval.metrics import evaluate_run
from lsr.dense.fusion import FUSION_METHODS
from lsr.index.pq import top_k
from lsr.searcher import Searcher, search_params
from lsr.timing import latency_summary, time_queries

logger = logging.getLogger(__name__)

STAGES = ("dense", "dense-float")  # dense: PQ codes (ADC); dense-float: the stored float vectors
DENSE_SYSTEMS = ("dense-pq", "dense-float")
WEIGHT_GRID = tuple(round(w, 2) for w in np.arange(0.0, 1.0001, 0.05))


def _torch_threads(n: int) -> int:
    """Set torch's intra-op threads (if torch is loaded); return the previous count."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return 0
    prev = torch.get_num_threads()
    torch.set_num_threads(n)
    return prev


def encode_timed(dense: DenseStage, texts: list[str], sample: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """Query embeddings (one batch, all cores) and the per-query encoding time on one thread."""
    start = time.perf_counter()
    emb = dense.encode_queries(texts)
    batch_seconds = time.perf_counter() - start
    timed = texts[:sample] if sample else texts
    prev = _torch_threads(1)
    try:
        ms = time_queries(lambda i: dense.encode_queries([timed[i]]), len(timed)) if timed else np.zeros(0)
    finally:
        if prev:
            _torch_threads(prev)
    return emb, {"one_thread": latency_summary(ms), "batch_seconds": batch_seconds}


def _candidates(searcher: Searcher, run: Run, qids: list[str], depth: int) -> list[tuple[np.ndarray, ...]]:
    return [searcher.run_head(qid, run.get(qid), depth)[0] for qid in qids]


def rerank_latency(
    dense: DenseStage,
    emb: np.ndarray,
    cands: list[tuple[np.ndarray, ...]],
    method: str,
    weight: float,
    use_float: bool,
) -> dict[str, float]:
    """Per-query ms of re-scoring + fusing the candidates (lookup table, ADC, fusion, sort), one thread."""
    return latency_summary(
        time_queries(
            lambda i: dense.rerank(emb[i], cands[i][0], cands[i][1], method, weight, use_float), len(cands)
        )
    )


def rerank_stage(
    searcher: Searcher,
    qrels: Qrels | None,
    qids: list[str],
    texts: list[str],
    sparse_run: Run,
    config: Config,
    stage: str = "dense",
    depth: int | None = None,
    relevance_level: int | None = None,
    metrics: tuple[str, ...] | None = None,
) -> tuple[Run, dict[str, Any]]:
    """(hybrid run, report section) for a sparse run of the index behind ``searcher``."""
    if stage not in STAGES:
        raise ValueError(f"rerank stage {stage!r} is not one of {list(STAGES)}")
    dense = searcher.require_dense(stage)
    use_float = stage == "dense-float"
    if use_float and dense.codes.vectors is None:
        raise ValueError(
            f"{dense.codes.path} keeps no float vectors: rebuild with --keep-float "
            "(dense.keep_float) to evaluate the float hybrid"
        )
    depth = depth or config.search.rerank_depth
    method, weight = dense.resolve_fusion(config.search.fusion, config.search.fusion_weight)
    sample = config.eval.latency_queries
    emb, encode = encode_timed(dense, texts, sample)
    hybrid = searcher.rerank_run(qids, texts, sparse_run, depth, method, weight, use_float, emb)
    cands = _candidates(searcher, sparse_run, qids[:sample] if sample else qids, depth)
    latency = rerank_latency(dense, emb, cands, method, weight, use_float)
    meta = dense.meta
    section: dict[str, Any] = {
        "stage": stage,
        "depth": depth,
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
        section["sparse_metrics"] = evaluate_run(qrels, sparse_run, names, level)
    return hybrid, section


def dense_run(
    dense: DenseStage, qids: list[str], emb: np.ndarray, keys: list[str], k: int, use_float: bool
) -> Run:
    run: Run = {}
    for i, qid in enumerate(qids):
        scores = dense_scan(dense, emb[i], use_float)
        docs, s = top_k(scores, k)
        run[qid] = {keys[d]: float(v) for d, v in zip(docs.tolist(), s.tolist(), strict=True)}
    return run


def dense_scan(dense: DenseStage, query: np.ndarray, use_float: bool) -> np.ndarray:
    if use_float:
        return np.asarray(dense.codes.vectors @ query, dtype=np.float32)
    return dense.codes.scan(query)


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
    dense = searcher.require_dense()
    use_float = system == "dense-float"
    if use_float and dense.codes.vectors is None:
        raise ValueError(f"{dense.codes.path} keeps no float vectors: rebuild with --keep-float")
    dataset = load_eval_dataset(dataset_spec, cfg.split)
    qids = [q for q in dataset.queries if q in dataset.qrels]
    texts = [dataset.queries[q] for q in qids]
    emb, encode = encode_timed(dense, texts, cfg.latency_queries)
    keys = searcher.index.doc_keys
    start = time.perf_counter()
    run = dense_run(dense, qids, emb, keys, cfg.k, use_float)
    seconds = time.perf_counter() - start
    sample = len(qids[: cfg.latency_queries]) if cfg.latency_queries else len(qids)
    latency = latency_summary(
        time_queries(lambda i: top_k(dense_scan(dense, emb[i], use_float), cfg.k), sample)
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


def tune_fusion(
    index_dir: str | Path,
    dataset_spec: str | Path,
    config: Config,
    split: str = "train",
    methods: tuple[str, ...] = ("convex-minmax", "convex-zscore"),
    metric: str = "ndcg@10",
    depth: int | None = None,
    grid: tuple[float, ...] = WEIGHT_GRID,
    store: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """Grid-search the dense weight of each fusion method on ``split``; store the best in the dense meta.

    The sparse run is the index's own (search.mode etc. from ``config``), its top ``depth``
    (search.rerank_depth) re-scored with the PQ codes, exactly as ``lsr search --rerank dense``.
    """
    for m in methods:
        if m not in FUSION_METHODS:
            raise ValueError(f"fusion method {m!r} is not one of {list(FUSION_METHODS)}")
    if split == "test":
        logger.warning("tuning the fusion weight on the test split: the test numbers are then optimistic")
    searcher = Searcher(index_dir)
    dense = searcher.require_dense()
    dataset = load_eval_dataset(dataset_spec, split)
    qids = [q for q in dataset.queries if q in dataset.qrels]
    texts = [dataset.queries[q] for q in qids]
    depth = depth or config.search.rerank_depth
    sparse = searcher.run(
        qids,
        searcher.encode_texts(texts),
        k=depth,
        threads=config.search.threads,
        params=search_params(config.search),
    )
    emb = dense.encode_queries(texts)
    level = config.eval.relevance_level
    table: dict[str, dict[str, float]] = {}
    for method in methods:
        table[method] = {}
        for w in grid:
            run = searcher.rerank_run(qids, texts, sparse, depth, method, float(w), query_emb=emb)
            table[method][f"{w:.2f}"] = evaluate_run(dataset.qrels, run, (metric,), level)[metric]
    best = {m: max(table[m].items(), key=lambda kv: (kv[1], -abs(float(kv[0]) - 0.5))) for m in methods}
    method = max(methods, key=lambda m: best[m][1])
    weights = {m: float(best[m][0]) for m in methods}
    tuned_on = {
        "dataset": str(dataset_spec),
        "split": split,
        "n_queries": len(qids),
        "metric": metric,
        "depth": depth,
        "value": best[method][1],
    }
    if store:
        store_fusion(index_dir, method, weights[method], weights, tuned_on)
    return {
        "method": method,
        "weight": weights[method],
        "weights": weights,
        "tuned_on": tuned_on,
        "sparse": evaluate_run(dataset.qrels, sparse, (metric,), level)[metric],
        "grid": table,
        "stored": store,
    }
