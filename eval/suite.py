"""Systems side by side: evaluate every (system, dataset) pair on the serving code path, keep the runs.

``run_suite`` returns one :class:`PairResult` per pair, with a JSON-ready ``report`` (metrics,
latency, size, sparsity, FLOPS, build and encode time, resolved configs) and the per-query scores
that the significance tests need.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lsr.config import Config, load_config, to_dict
from lsr.errors import ConfigError
from lsr.eval.datasets import DatasetRef
from lsr.eval.metrics import per_query_scores, unknown_queries
from lsr.eval.systems import BuiltIndex, SystemSpec, ensure_index

logger = logging.getLogger(__name__)

DL_RELEVANCE_LEVEL = 2


@dataclass
class PairResult:
    system: str
    dataset: str
    report: dict[str, Any]
    qids: list[str] = field(default_factory=list)
    per_query: dict[str, np.ndarray] = field(default_factory=dict)
    run: dict[str, dict[str, float]] | None = None


def check_pair(system: SystemSpec, dataset: DatasetRef) -> None:
    """Combinations that cannot work, refused before any work."""
    if system.kind == "pyserini" and dataset.kind == "rerank":
        raise ConfigError(
            f"pyserini-bm25 retrieves from a full corpus; it does not apply to {dataset.spec} "
            "(use run:bm25, the shipped pyserini BM25 run)"
        )
    if system.kind == "run" and dataset.kind == "irds":
        raise ConfigError(f"{system.spec} on {dataset.spec}: give run files for BEIR folders or DL protocols")


def system_config(base: tuple[str | None, list[str]], system: SystemSpec, dataset: DatasetRef) -> Config:
    path, overrides = base
    extra = [*system.overrides, f"eval.split={dataset.split}"]
    if dataset.kind == "rerank":
        extra.append(f"eval.relevance_level={DL_RELEVANCE_LEVEL}")
    return load_config(path, [*overrides, *extra])


def _pair_report(
    system: SystemSpec, dataset: DatasetRef, cfg: Config, built: BuiltIndex | None, **values: Any
) -> dict[str, Any]:
    report = {
        "system": system.label,
        "system_spec": system.spec,
        "system_kind": system.kind,
        "dataset": dataset.name,
        "dataset_spec": dataset.spec,
        "dataset_kind": dataset.kind,
        "split": dataset.split,
        "metrics": {},
        "n_queries": 0,
        "unknown_queries": 0,
        "latency_ms": {},
        "qps": None,
        "index_bytes": None,
        "doc_nnz_avg": None,
        "query_nnz_avg": None,
        "flops": None,
        "build_seconds": None,
        "encode_seconds": None,
        "index": None,
        "cached": None,
        "notes": [],
        "config": to_dict(cfg),
    }
    if built is not None:
        report.update(
            index=str(built.path),
            cached=built.cached,
            build_seconds=built.build_seconds,
            encode_seconds=built.encode_seconds,
            cache_key=built.key or None,
            cache_inputs=built.inputs or None,
        )
        if built.note:
            report["notes"].append(built.note)
    report.update(values)
    return report


def evaluate_pair(
    system: SystemSpec,
    dataset: DatasetRef,
    base: tuple[str | None, list[str]],
    cache_dir: Path,
    progress: bool = False,
) -> PairResult:
    """Evaluate one system on one dataset (builds or reuses its index)."""
    check_pair(system, dataset)
    cfg = system_config(base, system, dataset)
    level = cfg.eval.relevance_level
    if system.kind == "run":
        return _evaluate_run_file(system, dataset, cfg)
    if system.kind == "pyserini":
        return _evaluate_pyserini(system, dataset, cfg, cache_dir)
    if dataset.kind == "rerank":
        return _evaluate_rerank(system, dataset, cfg, cache_dir, progress)
    built = ensure_index(system, cfg, dataset.corpus, cache_dir, progress=progress)
    from lsr.eval.harness import evaluate_index

    holder: dict[str, Any] = {}
    spec = dataset.spec if dataset.kind == "irds" else str(dataset.path)
    r = evaluate_index(
        built.path, spec, cfg, progress, rerank="dense" if system.kind == "hybrid" else None, run_out=holder
    )
    lat = r.get("latency_ms") or {}
    report = _pair_report(
        system,
        dataset,
        cfg,
        built,
        metrics=r["metrics"],
        n_queries=r["dataset"]["n_queries"],
        latency_ms={k: lat.get(k) for k in ("p50", "p99", "mean")},
        qps=lat.get("qps_one_thread"),
        run_qps=r["throughput"]["run_qps"],
        index_bytes=r["index_bytes"],
        doc_nnz_avg=r["doc_nnz_avg"],
        query_nnz_avg=r["query_nnz_avg"],
        flops=r["flops"],
        encoder=r["encoder"],
        coverage={k: r["dataset"][k] for k in ("qrels_unknown_docs", "qrels_missing_queries")},
        **({"rerank": r["rerank"]} if "rerank" in r else {}),
    )
    if r.get("rerank"):  # hybrid: sparse search + dense query encoding + re-rank, one query at a time
        extra = [r["rerank"].get("latency_ms") or {}, r["rerank"].get("query_encode_ms") or {}]
        total = {
            k: report["latency_ms"][k] + sum(e.get(k, 0.0) for e in extra)
            for k in ("p50", "p99", "mean")
            if report["latency_ms"].get(k) is not None
        }
        report["latency_ms"] = total
        report["qps"] = 1e3 / total["mean"] if total.get("mean") else None
        report["notes"].append(
            "hybrid latency: sparse search + dense query encoding + dense re-rank, each "
            "percentile summed (an upper bound of the joint percentile)"
        )
    qids, scores = per_query_scores(holder["qrels"], holder["run"], cfg.eval.metrics, level)
    return PairResult(system.label, dataset.name, report, qids, scores, holder["run"])


def _run_path(system: SystemSpec, dataset: DatasetRef) -> Path:
    from lsr.eval.rerank import find_run

    if dataset.kind == "rerank":
        return find_run(dataset.path, system.run, dataset.split)
    path = Path(system.run.replace("{split}", dataset.split))
    if not path.is_file():
        raise FileNotFoundError(f"{system.spec}: no run file {path}")
    return path


def _qrels(dataset: DatasetRef) -> dict[str, dict[str, int]]:
    from lsr.data.corpus import qrels_path
    from lsr.data.trec import read_qrels

    return read_qrels(qrels_path(dataset.path, dataset.split))


def _evaluate_run_file(system: SystemSpec, dataset: DatasetRef, cfg: Config) -> PairResult:
    from lsr.data.trec import read_run

    path = _run_path(system, dataset)
    run, qrels = read_run(path), _qrels(dataset)
    unknown = unknown_queries(qrels, run)
    qids, scores = per_query_scores(qrels, run, cfg.eval.metrics, cfg.eval.relevance_level)
    report = _pair_report(
        system,
        dataset,
        cfg,
        None,
        metrics={m: float(s.mean()) for m, s in scores.items()},
        n_queries=len(qids),
        unknown_queries=unknown,
        run_file=str(path),
        notes=["a run file evaluated as it is: no latency, size or sparsity"],
    )
    return PairResult(system.label, dataset.name, report, qids, scores, run)


def _evaluate_pyserini(system: SystemSpec, dataset: DatasetRef, cfg: Config, cache_dir: Path) -> PairResult:
    from lsr.data.corpus import open_corpus
    from lsr.eval.datasets import load_eval_dataset
    from lsr.eval.pyserini_ref import bm25_search, build_lucene_index
    from lsr.eval.systems import corpus_digest
    from lsr.index.io import directory_bytes

    lucene = cache_dir / f"pyserini-bm25-{corpus_digest(dataset.corpus)[:16]}"
    built = BuiltIndex(lucene, True, None, None)
    if not lucene.is_dir():
        start = time.perf_counter()
        build_lucene_index(open_corpus(dataset.corpus), lucene)
        built = BuiltIndex(lucene, False, round(time.perf_counter() - start, 3), None)
    ds = load_eval_dataset(dataset.spec if dataset.kind == "irds" else dataset.path, dataset.split)
    queries = {q: t for q, t in ds.queries.items() if q in ds.qrels}
    bm = cfg.encoder.bm25
    bm25_search(lucene, dict(list(queries.items())[:4]), k=cfg.eval.k, k1=bm.k1, b=bm.b)  # JVM warm-up
    start = time.perf_counter()
    run = bm25_search(lucene, queries, k=cfg.eval.k, k1=bm.k1, b=bm.b, threads=1)
    seconds = time.perf_counter() - start
    qids, scores = per_query_scores(ds.qrels, run, cfg.eval.metrics, cfg.eval.relevance_level)
    report = _pair_report(
        system,
        dataset,
        cfg,
        built,
        metrics={m: float(s.mean()) for m, s in scores.items()},
        n_queries=len(qids),
        qps=len(queries) / max(seconds, 1e-9),
        latency_ms={"mean": 1e3 * seconds / max(len(queries), 1)},
        index_bytes=directory_bytes(lucene),
        notes=[f"Lucene through pyserini; latency: one batch on one thread / queries (k1={bm.k1}, b={bm.b})"],
    )
    return PairResult(system.label, dataset.name, report, qids, scores, run)


def rerank_candidates(dataset: DatasetRef) -> tuple[dict[str, list[str]], set[str]]:
    """Each judged query's first-stage top ``depth`` for the split, and the union over both DL splits."""
    from lsr.data.trec import read_qrels, read_run
    from lsr.eval.rerank import find_run, splits_of, top_candidates

    union: set[str] = set()
    mine: dict[str, list[str]] = {}
    for split in splits_of(dataset.path):
        qrels = read_qrels(dataset.path / "qrels" / f"{split}.tsv")
        first = read_run(find_run(dataset.path, dataset.run, split))
        cands = {q: d for q, d in top_candidates(first, dataset.depth).items() if q in qrels}
        union.update(d for docs in cands.values() for d in docs)
        if split == dataset.split:
            mine = cands
    return mine, union


def _evaluate_rerank(
    system: SystemSpec, dataset: DatasetRef, cfg: Config, cache_dir: Path, progress: bool
) -> PairResult:
    from lsr.data.corpus import load_queries
    from lsr.eval.rerank import check_candidates_indexed, rerank, rerank_eval
    from lsr.searcher import Searcher
    from lsr.timing import latency_summary, time_queries

    candidates, union = rerank_candidates(dataset)
    built = ensure_index(system, cfg, dataset.corpus, cache_dir, doc_ids=union, progress=progress)
    protocol = (
        f"re-rank the top {dataset.depth} of {dataset.run!r} ({dataset.split}); graded nDCG, binary "
        f"metrics at grade >= {DL_RELEVANCE_LEVEL}"
    )
    if system.kind == "hybrid":
        r = rerank_eval(
            dataset.path,
            cfg,
            built.path,
            dataset.run,
            [dataset.split],
            dataset.depth,
            progress,
            rerank="dense",
        )
        split = r["splits"][dataset.split]
        report = _pair_report(
            system,
            dataset,
            cfg,
            built,
            metrics=split["metrics"],
            n_queries=split["n_queries"],
            protocol=protocol,
            notes=[
                *([built.note] if built.note else []),
                "hybrid re-rank through rerank_eval: its metrics only, no per-query "
                "scores (no significance markers)",
            ],
        )
        return PairResult(system.label, dataset.name, report)
    searcher = Searcher(built.path)
    index = searcher.index
    queries = load_queries(dataset.path, dataset.split)
    qrels = _qrels(dataset)
    check_candidates_indexed(
        index.doc_keys, candidates, dataset.run, dataset.split, str(built.path), dataset.path
    )
    start = time.perf_counter()
    run = rerank(searcher, queries, candidates)
    seconds = time.perf_counter() - start
    qlist = [q for q in candidates if q in queries]
    ms = time_queries(
        lambda i: rerank(searcher, {qlist[i]: queries[qlist[i]]}, {qlist[i]: candidates[qlist[i]]}),
        len(qlist),
    )
    lat = latency_summary(ms)
    encoded = searcher.encode_texts([queries[q] for q in qlist])
    from lsr.eval.harness import flops

    doc_df = np.diff(np.asarray(index.term_ptr))
    qids, scores = per_query_scores(qrels, run, cfg.eval.metrics, DL_RELEVANCE_LEVEL)
    report = _pair_report(
        system,
        dataset,
        cfg,
        built,
        metrics={m: float(s.mean()) for m, s in scores.items()},
        n_queries=len(qids),
        protocol=protocol,
        latency_ms={k: lat.get(k) for k in ("p50", "p99", "mean")},
        qps=lat.get("qps_one_thread"),
        run_qps=len(qlist) / max(seconds, 1e-9),
        index_bytes=index.nbytes,
        doc_nnz_avg=float(index.meta["stats"]["doc_nnz_avg"]),
        query_nnz_avg=float(encoded.nnz / max(len(encoded), 1)),
        flops=flops(doc_df, index.n_docs, encoded, index.n_terms),
        encoder=index.meta["encoder"],
    )
    report["notes"].append("latency: encode one query and score the candidate index (exhaustive), one thread")
    return PairResult(system.label, dataset.name, report, qids, scores, run)


def run_suite(
    systems: list[SystemSpec],
    datasets: list[DatasetRef],
    base: tuple[str | None, list[str]],
    cache_dir: Path,
    progress: bool = False,
) -> list[PairResult]:
    """Every system on every dataset, in order; pairs are checked before any work."""
    for d in datasets:
        for s in systems:
            check_pair(s, d)
    results = []
    for d in datasets:
        for s in systems:
            start = time.perf_counter()
            logger.info("evaluating %s on %s", s.label, d.name)
            res = evaluate_pair(s, d, base, cache_dir, progress)
            res.report["eval_seconds"] = round(time.perf_counter() - start, 3)
            results.append(res)
    return results
