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
from pathlib import Path
from typing import Any

import numpy as np

from lsr.config import Config, to_dict
from lsr.data.trec import Qrels, Run
from lsr.dense_stage import DenseStage
from lsr.eval.datasets import EvalDataset, load_eval_dataset
from lsr.eval.metrics import evaluate_run, unknown_queries
from lsr.eval.pyserini_ref import bm25_search
from lsr.eval.record import Evaluation, score
from lsr.index import SearchParams, SparseBatch
from lsr.index.io import directory_bytes
from lsr.index.pq import top_k
from lsr.searcher import Searcher, search_params
from lsr.timing import latency_summary, time_queries

logger = logging.getLogger(__name__)

STAGES = ("dense", "dense-float")  # dense: PQ codes (ADC); dense-float: the stored float vectors
DENSE_SYSTEMS = ("dense-pq", "dense-float")
HYBRID_LATENCY_NOTE = (
    "hybrid latency: sparse search + dense query encoding + dense re-rank, each "
    "percentile summed (an upper bound of the joint percentile)"
)


# ---- cost measures -------------------------------------------------------------------------------


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


def index_flops(searcher: Searcher, queries: SparseBatch) -> float:
    index = searcher.index
    return flops(np.diff(np.asarray(index.term_ptr)), index.n_docs, queries, index.n_terms)


def measure_latency(searcher: Searcher, texts: list[str], k: int, params: SearchParams) -> dict[str, float]:
    """Per-query wall time of encode + search on one thread (lsr.timing), plus encoding alone."""
    kwargs = {"mode": params.mode, "alpha": params.alpha, "beta": params.beta}

    def encode_and_search(i: int) -> None:
        q = searcher.encode_texts([texts[i]])
        searcher.index.search(*q.row(0), k=k, **kwargs)

    summary = latency_summary(time_queries(encode_and_search, len(texts)))
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


def sum_latency(first: dict[str, float], *parts: dict[str, float]) -> dict[str, float]:
    """Per-percentile sum of a first stage and the parts after it (an upper bound of the joint one)."""
    return {
        k: first[k] + sum(p.get(k, 0.0) for p in parts)
        for k in ("p50", "p99", "mean")
        if first.get(k) is not None
    }


# ---- the dense re-rank stage (the hybrid) -------------------------------------------------------


def _use_float(dense: DenseStage, stage: str, what: str) -> bool:
    if stage == "dense-float" and dense.codes.vectors is None:
        raise ValueError(
            f"{dense.codes.path} keeps no float vectors: rebuild with --keep-float (dense.keep_float) {what}"
        )
    return stage == "dense-float"


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
    searcher: Searcher,
    qids: list[str],
    texts: list[str],
    sparse_run: Run,
    config: Config,
    stage: str = "dense",
    depth: int | None = None,
) -> tuple[Run, dict[str, Any]]:
    """(hybrid run, report section): the sparse top ``depth`` re-scored by the dense stage and fused.

    The section holds the fusion settings, the dense model, bytes per document, the re-rank latency
    per query (one thread, query encoding excluded) and the dense query-encoding time.
    """
    if stage not in STAGES:
        raise ValueError(f"rerank stage {stage!r} is not one of {list(STAGES)}")
    dense = searcher.require_dense(stage)
    use_float = _use_float(dense, stage, "to evaluate the float hybrid")
    depth = depth or config.search.rerank_depth
    method, weight = dense.resolve_fusion(config.search.fusion, config.search.fusion_weight)
    emb, encode = encode_timed(dense, texts, config.eval.latency_queries)
    hybrid = searcher.rerank_run(qids, texts, sparse_run, depth, method, weight, use_float, emb)
    cands = [searcher.run_head(q, sparse_run.get(q), depth)[0] for q in _sample(qids, config)]
    latency = latency_summary(
        time_queries(
            lambda i: dense.rerank(emb[i], cands[i][0], cands[i][1], method, weight, use_float), len(cands)
        )
    )
    section = {
        "stage": stage,
        "depth": depth,
        "fusion": {"method": method, "weight": weight, "stored": dense.fusion},
        "dense_model": dense.meta["model"].get("name"),
        "dense_model_path": dense.meta["model"].get("path"),
        **dense_model_section(dense, use_float),
        "latency_ms": latency,  # re-rank only: query encoding excluded
        "query_encode_ms": encode["one_thread"],
        "query_encode_batch_seconds": encode["batch_seconds"],
    }
    return hybrid, section


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
    searcher = Searcher(index_dir)
    dataset = load_eval_dataset(dataset_spec, cfg.split)
    coverage = check_coverage(dataset, searcher.index.doc_keys)
    qids = _judged(dataset, dataset_spec)
    texts = [dataset.queries[q] for q in qids]
    t0 = time.perf_counter()
    queries = searcher.encode_texts(texts)
    t1 = time.perf_counter()
    params = search_params(config.search)
    run = searcher.run(
        qids, queries, k=cfg.k, threads=config.search.threads, progress=progress, params=params
    )
    sparse_run, section = run, None
    if rerank not in (None, "none"):
        run, section = dense_rerank(searcher, qids, texts, run, config, rerank)
    t2 = time.perf_counter()
    ev = _scored(label or str(index_dir), dataset.name, dataset.qrels, run, config, cfg.relevance_level)
    ev.n_queries = len(qids)
    sample = _sample(texts, config)
    ev.latency_ms = measure_latency(searcher, sample, cfg.k, params) if sample else {}
    ev.qps = ev.latency_ms.get("qps_one_thread")
    _index_costs(ev, searcher, queries)
    ev.info.update(
        dataset={
            "name": dataset.name,
            "spec": str(dataset_spec),
            "split": cfg.split,
            "n_queries": len(qids),
            "n_judged": len(dataset.qrels),
            **coverage,
        },
        index=index_section(searcher, index_dir),
        search={"mode": params.mode, "alpha": params.alpha, "beta": params.beta},
        eval_k=cfg.k,
        # the whole run: encode, batch search on all threads, ranked ids into Python dicts
        throughput={
            "run_qps": len(qids) / max(t2 - t0, 1e-9),
            "encode_seconds": t1 - t0,
            "search_seconds": t2 - t1,
        },
        postings_bytes=searcher.index.postings_nbytes,
        bytes_per_posting=searcher.index.postings_nbytes / max(int(searcher.index.meta["n_postings"]), 1),
        index_config=searcher.index.meta.get("config"),
    )
    if section is not None:
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


def dense_scan(dense: DenseStage, query: np.ndarray, use_float: bool) -> np.ndarray:
    if use_float:
        return np.asarray(dense.codes.vectors @ query, dtype=np.float32)
    return dense.codes.scan(query)


def dense_run(
    dense: DenseStage, qids: list[str], emb: np.ndarray, keys: list[str], k: int, use_float: bool
) -> Run:
    run: Run = {}
    for i, qid in enumerate(qids):
        docs, s = top_k(dense_scan(dense, emb[i], use_float), k)
        run[qid] = {keys[d]: float(v) for d, v in zip(docs.tolist(), s.tolist(), strict=True)}
    return run


def evaluate_dense(
    index_dir: str | Path, dataset_spec: str | Path, config: Config, system: str = "dense-pq"
) -> Evaluation:
    """Dense-only retrieval over the index's dense stage: a flat scan (PQ codes with ADC, or float)."""
    if system not in DENSE_SYSTEMS:
        raise ValueError(f"system {system!r} is not one of {['sparse', *DENSE_SYSTEMS]}")
    cfg = config.eval
    searcher = Searcher(index_dir)
    dense = searcher.require_dense()
    use_float = _use_float(dense, "dense-float" if system == "dense-float" else "dense", "")
    dataset = load_eval_dataset(dataset_spec, cfg.split)
    qids = [q for q in dataset.queries if q in dataset.qrels]
    texts = [dataset.queries[q] for q in qids]
    emb, encode = encode_timed(dense, texts, cfg.latency_queries)
    start = time.perf_counter()
    run = dense_run(dense, qids, emb, searcher.index.doc_keys, cfg.k, use_float)
    seconds = time.perf_counter() - start
    sample = len(_sample(qids, config))
    ev = _scored(system, dataset.name, dataset.qrels, run, config, cfg.relevance_level)
    ev.n_queries = len(qids)
    # flat scan + top-k, query encoding excluded
    ev.latency_ms = latency_summary(
        time_queries(lambda i: top_k(dense_scan(dense, emb[i], use_float), cfg.k), sample)
    )
    ev.qps = ev.latency_ms.get("qps_one_thread")
    ev.index_bytes = dense.nbytes
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


def rerank_candidates(searcher: Searcher, queries: dict[str, str], candidates: dict[str, list[str]]) -> Run:
    """Re-score each query's candidates by the index's dot product; unmatched ones sink, in order."""
    qids = [q for q in candidates if q in queries]
    encoded = searcher.encode_texts([queries[q] for q in qids])
    index, keys = searcher.index, searcher.index.doc_keys
    run: Run = {}
    for i, qid in enumerate(qids):
        result = index.search(*encoded.row(i), k=max(index.n_docs, 1))
        pairs = zip(result.docs.tolist(), result.scores.tolist(), strict=True)
        scores = {keys[d]: float(s) for d, s in pairs}
        cands = candidates[qid]
        # unmatched candidates get tiny negative scores that keep their first-stage order
        run[qid] = {doc: scores.get(doc, -(rank + 1) / (len(cands) + 1)) for rank, doc in enumerate(cands)}
    return run


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
    start = time.perf_counter()
    run = rerank_candidates(searcher, queries, candidates)
    seconds = time.perf_counter() - start
    sparse_run, section = run, None
    qlist = list(run)
    texts = [queries[q] for q in qlist]
    if stage not in (None, "none"):
        run, section = dense_rerank(searcher, qlist, texts, run, config, stage, depth)
    ev = _scored(label, dataset, qrels, run, config, level)
    ev.n_queries = len(run)
    first_top = {q: {d: float(depth - r) for r, d in enumerate(docs)} for q, docs in candidates.items()}
    ev.info.update(
        first_stage_metrics=evaluate_run(qrels, first_top, config.eval.metrics, level),
        rerank_seconds=seconds,
        run_qps=len(qlist) / max(seconds, 1e-9),
    )
    if timed:
        ms = time_queries(
            lambda i: rerank_candidates(searcher, {qlist[i]: texts[i]}, {qlist[i]: candidates[qlist[i]]}),
            len(qlist),
        )
        ev.latency_ms = latency_summary(ms)
        ev.qps = ev.latency_ms.get("qps_one_thread")
        _index_costs(ev, searcher, searcher.encode_texts(texts))
        ev.notes.append("latency: encode one query and score the candidate index (exhaustive), one thread")
    if section is not None:
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
