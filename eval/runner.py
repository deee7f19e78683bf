"""The one evaluation runner: each way of producing a run, measured the same way into an :class:`Evaluation`.

* :func:`evaluate_sparse`: an index on a dataset through the serving path (the index's own query
  encoder, the batch kernel), optionally followed by the dense re-rank stage (the hybrid);
* :func:`evaluate_dense`: dense-only, a flat scan of the index's dense stage (PQ codes or floats);
* :func:`evaluate_candidates`: the TREC DL re-rank protocol, re-scoring given candidates (and
  optionally fusing them with the dense stage);
* :func:`evaluate_run_file` and :func:`evaluate_pyserini`: a TREC run as it is, and the Lucene reference.

Quality is always :func:`lsr.eval.record.score` (per query, trec_eval's tie order); latency is per
query on one thread after a warm-up (lsr.timing), so JIT compilation and index loading are excluded.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from lsr.config import Config, to_dict
from lsr.data.trec import Qrels, Run
from lsr.dense.stage import DenseStage
from lsr.eval.datasets import EvalDataset, load_eval_dataset
from lsr.eval.metrics import evaluate_run, unknown_queries
from lsr.eval.pyserini_ref import bm25_search
from lsr.eval.record import Evaluation, score
from lsr.index import SearchResult, SparseBatch
from lsr.index.io import directory_bytes
from lsr.searcher import Plan, Queries, Searcher, warn_empty
from lsr.timing import latency_summary, time_queries

logger = logging.getLogger(__name__)

DENSE_SYSTEMS = {"dense-pq": "dense", "dense-float": "dense-float"}  # system -> Plan.first_stage
HYBRID_LATENCY_NOTE = (
    "hybrid latency: sparse search + dense query encoding + dense re-rank, each "
    "percentile summed (an upper bound of the joint percentile)"
)


# ---- cost measures -------------------------------------------------------------------------------


def check_coverage(dataset: EvalDataset, doc_keys: Sequence[str]) -> dict[str, int]:
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


def index_flops(searcher: Searcher, queries: SparseBatch) -> float:
    index = searcher.index
    return flops(np.diff(np.asarray(index.term_ptr)), index.n_docs, queries, index.n_terms)


def measure_latency(searcher: Searcher, texts: list[str], plan: Plan) -> dict[str, float]:
    """Per-query wall time of encode + search on one thread (lsr.timing), plus encoding alone."""
    summary = latency_summary(
        time_queries(lambda i: searcher.search_batch(Queries(texts=[texts[i]]), plan), len(texts))
    )
    encode_ms = time_queries(lambda i: searcher.encode_texts([texts[i]]), len(texts))
    return {**summary, "encode_mean": float(encode_ms.mean())}


def _sample(items: list, config: Config) -> list:
    n = config.eval.latency_queries
    return items[:n] if n else items


def _torch_threads(n: int) -> int:
    """Set torch's intra-op threads (if torch is loaded); return the previous count."""
    torch = sys.modules.get("torch")
    if torch is None:
        return 0
    prev = torch.get_num_threads()
    torch.set_num_threads(n)
    return prev


def encode_timed(searcher: Searcher, texts: list[str], sample: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """Dense query embeddings (one batch, all cores) and the per-query encoding time on one thread."""
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


def sum_latency(first: dict[str, float], *parts: dict[str, float]) -> dict[str, float]:
    """Per-percentile sum of a first stage and the parts after it (an upper bound of the joint one)."""
    return {
        k: first[k] + sum(p.get(k, 0.0) for p in parts)
        for k in ("p50", "p99", "mean")
        if first.get(k) is not None
    }


# ---- the dense re-rank stage (the hybrid) -------------------------------------------------------


def dense_model_section(dense: DenseStage, use_float: bool) -> dict[str, Any]:
    meta = dense.meta
    return {
        "dim": meta["dim"],
        "m": meta["m"],
        "nbits": meta["nbits"],
        "opq": meta["opq"],
        "bytes_per_doc": 4 * meta["dim"] if use_float else dense.codes.bytes_per_doc,
        "dense_bytes": dense.nbytes,
    }


def dense_rerank(
    searcher: Searcher, queries: Queries, first: list[SearchResult], plan: Plan, config: Config
) -> tuple[list[SearchResult], dict[str, Any]]:
    """(hybrid results, report section): the first stage's top ``plan.depth`` re-scored by the dense
    stage and fused (``Searcher.rerank``). The section holds the fusion settings, the dense model, bytes
    per document, the re-rank latency per query (one thread, query encoding excluded) and the dense
    query-encoding time."""
    dense = searcher.require_dense(plan.rerank)
    use_float = plan.rerank == "dense-float"
    method, weight = dense.resolve_fusion(plan.fusion, plan.fusion_weight)
    emb, encode = encode_timed(searcher, _need_texts(queries), config.eval.latency_queries)
    queries = Queries(queries.texts, queries.sparse, emb, queries.candidates)
    results = searcher.rerank(queries, first, plan)
    n = len(_sample(list(range(len(first))), config))
    latency = latency_summary(
        time_queries(lambda i: searcher.rerank(queries.slice(i, i + 1), first[i : i + 1], plan), n)
    )
    section = {
        "stage": plan.rerank,
        "depth": plan.depth,
        "fusion": {"method": method, "weight": weight, "stored": dense.fusion},
        "dense_model": dense.meta["model"].get("name"),
        "dense_model_path": dense.meta["model"].get("path"),
        **dense_model_section(dense, use_float),
        "latency_ms": latency,  # re-rank only: query encoding excluded
        "query_encode_ms": encode["one_thread"],
        "query_encode_batch_seconds": encode["batch_seconds"],
    }
    return results, section


def _need_texts(queries: Queries) -> list[str]:
    if queries.texts is None:
        raise ValueError("the dense re-rank needs the query texts")
    return queries.texts


def _with_hybrid(ev: Evaluation, section: dict[str, Any], sparse_metrics: dict[str, float]) -> None:
    """Record the re-rank section; the latency becomes sparse + dense encoding + re-rank."""
    section["sparse_metrics"] = sparse_metrics
    ev.info["rerank"] = section
    if ev.latency_ms:
        ev.info["sparse_latency_ms"] = ev.latency_ms
        ev.latency_ms = sum_latency(ev.latency_ms, section["latency_ms"], section["query_encode_ms"])
        ev.qps = 1e3 / ev.latency_ms["mean"] if ev.latency_ms.get("mean") else None
        ev.notes.append(HYBRID_LATENCY_NOTE)


# ---- one index on one dataset --------------------------------------------------------------------


def _judged(dataset: EvalDataset, spec: str | Path) -> list[str]:
    qids = [q for q in dataset.queries if q in dataset.qrels]
    if not qids:
        raise ValueError(
            f"{spec}: the queries ({len(dataset.queries)}) and the {dataset.split} qrels "
            f"({len(dataset.qrels)} judged queries) share no query id: nothing to evaluate"
        )
    return qids


def index_section(searcher: Searcher, index_dir: str | Path) -> dict[str, Any]:
    index = searcher.index
    blockmax = None
    if index.blockmax:
        keys = ("block_size", "n_blocks", "n_dense_terms", "n_sparse_runs")
        blockmax = {k: index.blockmax.meta[k] for k in keys} | {"bytes": index.blockmax.nbytes}
    return {
        "path": str(index_dir),
        "n_docs": index.n_docs,
        "n_terms": index.n_terms,
        "n_postings": int(index.meta["n_postings"]),
        "impacts": index.meta["impacts"],
        "reorder": index.meta.get("reorder", {"method": "none"}),
        "blockmax": blockmax,
    }


def _index_info(searcher: Searcher, index_dir: str | Path, plan: Plan, k: int) -> dict[str, Any]:
    index = searcher.index
    return {
        "index": index_section(searcher, index_dir),
        "search": {"mode": plan.mode, "alpha": plan.alpha, "beta": plan.beta, "budget": plan.budget},
        "eval_k": k,
        "postings_bytes": index.postings_nbytes,
        "bytes_per_posting": index.postings_nbytes / max(int(index.meta["n_postings"]), 1),
        "index_config": index.meta.get("config"),
    }


def evaluate_sparse(
    index_dir: str | Path,
    dataset_spec: str | Path,
    config: Config,
    rerank: str | None = None,
    progress: bool = False,
    label: str = "",
) -> Evaluation:
    """An index on a dataset split, through the serving path; ``rerank`` (default ``search.rerank``):
    ``"dense"`` / ``"dense-float"`` evaluates the hybrid (the sparse top ``search.rerank_depth``
    re-scored by the dense stage, PQ codes or float vectors, and fused)."""
    cfg = config.eval
    rerank = rerank or config.search.rerank
    plan = Plan.from_config(config.search, k=cfg.k, rerank=rerank)
    searcher = Searcher(index_dir)
    searcher.check(plan)
    dataset = load_eval_dataset(dataset_spec, cfg.split)
    coverage = check_coverage(dataset, searcher.index.doc_keys)
    qids = _judged(dataset, dataset_spec)
    texts = [dataset.queries[q] for q in qids]
    t0 = time.perf_counter()
    sparse = searcher.encode_texts(texts)
    queries = Queries(texts=texts, sparse=sparse)
    t1 = time.perf_counter()
    warn_empty(qids, Queries(sparse=sparse))
    first = searcher.first_stage(queries, plan, progress)
    results, section = first, None
    if plan.rerank != "none":
        results, section = dense_rerank(searcher, queries, first, plan, config)
    run = searcher.to_run(qids, results)
    t2 = time.perf_counter()
    ev = _scored(label or str(index_dir), dataset.name, dataset.qrels, run, config, cfg.relevance_level)
    ev.n_queries = len(qids)
    sample = _sample(texts, config)
    sparse_only = replace(plan, rerank="none")
    ev.latency_ms = measure_latency(searcher, sample, sparse_only) if sample else {}
    ev.qps = ev.latency_ms.get("qps_one_thread")
    _index_costs(ev, searcher, sparse)
    ev.info.update(
        dataset={
            "name": dataset.name,
            "spec": str(dataset_spec),
            "split": cfg.split,
            "n_queries": len(qids),
            "n_judged": len(dataset.qrels),
            **coverage,
        },
        # the whole run: encode, batch search on all threads, ranked ids into Python dicts
        throughput={
            "run_qps": len(qids) / max(t2 - t0, 1e-9),
            "encode_seconds": t1 - t0,
            "search_seconds": t2 - t1,
        },
        **_index_info(searcher, index_dir, plan, cfg.k),
    )
    if section is not None:
        sparse_run = searcher.to_run(qids, first)
        _with_hybrid(ev, section, evaluate_run(dataset.qrels, sparse_run, cfg.metrics, cfg.relevance_level))
    return ev


def _scored(system: str, dataset: str, qrels: Qrels, run: Run, config: Config, level: int) -> Evaluation:
    qids, per_query, metrics = score(qrels, run, config.eval.metrics, level)
    return Evaluation(system, dataset, metrics, qids, per_query, len(qids), config=to_dict(config), run=run)


def _index_costs(ev: Evaluation, searcher: Searcher, queries: SparseBatch) -> None:
    index = searcher.index
    ev.index_bytes = index.nbytes
    ev.doc_nnz_avg = float(index.meta["stats"]["doc_nnz_avg"])
    ev.query_nnz_avg = float(queries.nnz / max(len(queries), 1))
    ev.flops = index_flops(searcher, queries)
    ev.info["encoder"] = index.meta["encoder"]


# ---- dense-only ----------------------------------------------------------------------------------


def evaluate_dense(
    index_dir: str | Path, dataset_spec: str | Path, config: Config, system: str = "dense-pq"
) -> Evaluation:
    """Dense-only retrieval over the index's dense stage: a flat scan (PQ codes with ADC, or float)."""
    if system not in DENSE_SYSTEMS:
        raise ValueError(f"system {system!r} is not one of {['sparse', *DENSE_SYSTEMS]}")
    cfg = config.eval
    plan = Plan(k=cfg.k, first_stage=DENSE_SYSTEMS[system])
    searcher = Searcher(index_dir)
    searcher.check(plan)
    dense = searcher.require_dense(plan.first_stage)
    dataset = load_eval_dataset(dataset_spec, cfg.split)
    qids = _judged(dataset, dataset_spec)
    texts = [dataset.queries[q] for q in qids]
    emb, encode = encode_timed(searcher, texts, cfg.latency_queries)
    queries = Queries(texts=texts, dense=emb)
    start = time.perf_counter()
    run = searcher.to_run(qids, searcher.first_stage(queries, plan))
    seconds = time.perf_counter() - start
    ev = _scored(system, dataset.name, dataset.qrels, run, config, cfg.relevance_level)
    ev.n_queries = len(qids)
    # flat scan + top-k, query encoding excluded
    n = len(_sample(qids, config))
    ev.latency_ms = latency_summary(
        time_queries(lambda i: searcher.first_stage(queries.slice(i, i + 1), plan), n)
    )
    ev.qps = ev.latency_ms.get("qps_one_thread")
    ev.index_bytes = dense.nbytes
    use_float = plan.first_stage == "dense-float"
    ev.info.update(
        dataset={"name": dataset.name, "spec": str(dataset_spec), "split": cfg.split, "n_queries": len(qids)},
        index={"path": str(index_dir), "n_docs": dense.codes.n_docs},
        eval_k=cfg.k,
        query_encode_ms=encode["one_thread"],
        run_seconds=seconds,
        dense={"model": dense.meta["model"].get("name"), **dense_model_section(dense, use_float)},
    )
    return ev


# ---- given candidates (the TREC DL re-rank protocol) ---------------------------------------------


def candidates_plan(config: Config, depth: int, stage: str | None = None) -> Plan:
    """Score given candidates with the index (exhaustive, exact), then the dense stage if ``stage``."""
    return Plan(
        k=depth,
        first_stage="candidates",
        rerank=stage or "none",
        depth=depth,
        fusion=config.search.fusion,
        fusion_weight=config.search.fusion_weight,
    )


def rerank_candidates(
    searcher: Searcher, queries: dict[str, str], candidates: dict[str, list[str]], plan: Plan | None = None
) -> Run:
    """Each query's candidates (external ids, first-stage order) by the index's dot product; those that
    share no term with the query sink below, in their order."""
    plan = plan or Plan(k=max((len(c) for c in candidates.values()), default=1), first_stage="candidates")
    qids, batch = candidate_batch(searcher, queries, candidates)
    return searcher.to_run(qids, searcher.search_batch(batch, plan))


def candidate_batch(
    searcher: Searcher, queries: dict[str, str], candidates: dict[str, list[str]]
) -> tuple[list[str], Queries]:
    """(query ids with a text, their texts and candidates as internal ids), for the "candidates" stage.

    Raises:
        LsrError: a candidate that is not in the index.
    """
    qids = [q for q in candidates if q in queries]
    batch = Queries(
        texts=[queries[q] for q in qids], candidates=[searcher.internal_ids(candidates[q]) for q in qids]
    )
    return qids, batch


def evaluate_candidates(
    searcher: Searcher,
    queries: dict[str, str],
    qrels: Qrels,
    candidates: dict[str, list[str]],
    config: Config,
    *,
    label: str = "",
    dataset: str = "",
    stage: str | None = None,
    depth: int = 100,
    timed: bool = True,
) -> Evaluation:
    """Re-rank each query's first-stage candidates with the index (then the dense stage if ``stage``);
    ``config.eval`` gives the metrics and relevance level; ``timed``: per-query latency and FLOPS."""
    level = config.eval.relevance_level
    plan = candidates_plan(config, depth, stage)
    sparse_plan = replace(plan, rerank="none")
    qlist, given = candidate_batch(searcher, queries, candidates)
    texts = given.texts or []
    start = time.perf_counter()
    batch = searcher.encode(given, sparse_plan)
    first = searcher.first_stage(batch, sparse_plan)
    seconds = time.perf_counter() - start
    results, section = first, None
    if stage not in (None, "none"):
        results, section = dense_rerank(searcher, batch, first, plan, config)
    run = searcher.to_run(qlist, results)
    ev = _scored(label, dataset, qrels, run, config, level)
    ev.n_queries = len(run)
    first_top = {q: {d: float(depth - r) for r, d in enumerate(docs)} for q, docs in candidates.items()}
    ev.info.update(
        first_stage_metrics=evaluate_run(qrels, first_top, config.eval.metrics, level),
        rerank_seconds=seconds,
        run_qps=len(qlist) / max(seconds, 1e-9),
    )
    if timed:
        one = [Queries(texts=[t], candidates=[c]) for t, c in zip(texts, batch.candidates or [], strict=True)]
        ev.latency_ms = latency_summary(
            time_queries(lambda i: searcher.search_batch(one[i], sparse_plan), len(one))
        )
        ev.qps = ev.latency_ms.get("qps_one_thread")
        if batch.sparse is None:  # cannot happen: the "candidates" first stage above scored the sparse form
            raise ValueError("the candidate queries carry no sparse form after Searcher.encode")
        _index_costs(ev, searcher, batch.sparse)
        ev.notes.append("latency: encode one query and score the candidate index (exhaustive), one thread")
    if section is not None:
        sparse_run = searcher.to_run(qlist, first)
        _with_hybrid(ev, section, evaluate_run(qrels, sparse_run, config.eval.metrics, level))
    return ev


# ---- runs from elsewhere -------------------------------------------------------------------------


def evaluate_run_file(label: str, dataset: str, run: Run, qrels: Qrels, config: Config) -> Evaluation:
    """A TREC run evaluated as it is: quality only."""
    unknown = unknown_queries(qrels, run)
    ev = _scored(label, dataset, qrels, run, config, config.eval.relevance_level)
    ev.unknown_queries = unknown
    ev.notes.append("a run file evaluated as it is: no latency, size or sparsity")
    return ev


def evaluate_pyserini(
    label: str, lucene: Path, dataset_spec: str | Path, split: str, config: Config
) -> Evaluation:
    """Lucene BM25 through pyserini (a JVM warm-up first; latency: one batch on one thread / queries)."""
    ds = load_eval_dataset(dataset_spec, split)
    queries = {q: t for q, t in ds.queries.items() if q in ds.qrels}
    bm = config.encoder.bm25
    bm25_search(lucene, dict(list(queries.items())[:4]), k=config.eval.k, k1=bm.k1, b=bm.b)  # JVM warm-up
    start = time.perf_counter()
    run = bm25_search(lucene, queries, k=config.eval.k, k1=bm.k1, b=bm.b, threads=1)
    seconds = time.perf_counter() - start
    ev = _scored(label, ds.name, ds.qrels, run, config, config.eval.relevance_level)
    ev.qps = len(queries) / max(seconds, 1e-9)
    ev.latency_ms = {"mean": 1e3 * seconds / max(len(queries), 1)}
    ev.index_bytes = directory_bytes(lucene)
    ev.notes.append(
        f"Lucene through pyserini; latency: one batch on one thread / queries (k1={bm.k1}, b={bm.b})"
    )
    return ev
