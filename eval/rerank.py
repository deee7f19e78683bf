"""TREC DL 2019/2020 passage re-ranking: re-score a first-stage run's top candidates with any encoder.

The standard DL protocol without the 8.8M-passage collection: the staged pool
(``../shared/data/msmarco/dl-pool``) holds the text of every passage in the top-100
of five shipped runs, so each query's candidates from one of those runs (BM25 by
default) can be re-scored by an index built over the pool. nDCG@10 uses the graded
judgments; the binary metrics count grade >= 2 as relevant (TREC DL).

A candidate's new score is its sparse dot product with the query, read from the
index (exhaustive search, so nothing is pruned). A candidate that shares no term
with the query scores 0 and stays below every matched one, in its first-stage order.

One command (the pool is encoded and indexed in a temporary directory first):

    lsr eval --rerank bm25 --dataset ../shared/data/msmarco/dl-pool --encoder models/splade-tiny

or ``--index I`` for an index already built over the pool.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from lsr import __version__
from lsr.config import Config, to_dict
from lsr.data.corpus import load_queries
from lsr.data.trec import Qrels, Run, read_qrels, read_run
from lsr.dense.stage import build_dense_stage
from lsr.eval.hybrid import format_rerank_section, rerank_stage
from lsr.eval.metrics import evaluate_run
from lsr.searcher import Plan, Queries, Searcher

logger = logging.getLogger(__name__)

METRICS = ("ndcg@10", "mrr@10", "map@100")
RELEVANCE_LEVEL = 2  # TREC DL passage: grades 2 and 3 are relevant for binary metrics


def find_run(dataset: Path, run: str, split: str) -> Path:
    """``dataset/runs/RUN.SPLIT.trec[.gz]`` for a run name, else ``run`` as a file ({split} filled in)."""
    for suffix in (".trec.gz", ".trec"):
        path = dataset / "runs" / f"{run}.{split}{suffix}"
        if path.is_file():
            return path
    path = Path(run.replace("{split}", split))
    if path.is_file():
        return path
    have = sorted({p.name.split(".")[0] for p in (dataset / "runs").glob("*.trec*")})
    raise FileNotFoundError(
        f"no run {run!r} for split {split!r}: not in {dataset / 'runs'} (runs there: "
        f"{have}) and not a file; a file path may contain {{split}}"
    )


def splits_of(dataset: Path) -> list[str]:
    return sorted(p.stem for p in (dataset / "qrels").glob("*.tsv"))


def top_candidates(run: Run, depth: int) -> dict[str, list[str]]:
    """Each query's first ``depth`` documents by descending score (ties: file order)."""
    return {
        qid: [d for d, _ in sorted(docs.items(), key=lambda kv: -kv[1])[:depth]] for qid, docs in run.items()
    }


def check_candidates_indexed(
    doc_keys: list[str],
    candidates: dict[str, list[str]],
    run_name: str,
    split: str,
    where: str,
    dataset: Path,
) -> None:
    """Refuse a re-rank whose candidate passages are not all in the index (``where`` names it)."""
    missing = {d for docs in candidates.values() for d in docs} - set(doc_keys)
    if missing:
        raise ValueError(
            f"{len(missing)} candidate passages of {run_name} ({split}) are not in {where}, "
            f"e.g. {sorted(missing)[:3]}: index the pool in {dataset}"
        )


def rerank(searcher: Searcher, queries: dict[str, str], candidates: dict[str, list[str]]) -> Run:
    """Re-score each query's candidates by the index's dot product; unmatched ones sink, in order."""
    qids = [q for q in candidates if q in queries]
    batch, plan = candidate_queries(searcher, queries, candidates, qids)
    return searcher.to_run(qids, searcher.search_batch(batch, plan))


def candidate_queries(
    searcher: Searcher, queries: dict[str, str], candidates: dict[str, list[str]], qids: list[str]
) -> tuple[Queries, Plan]:
    """The batch and plan of the candidates first stage (every candidate kept, in score order)."""
    batch = Queries(
        texts=[queries[q] for q in qids], candidates=[searcher.internal_ids(candidates[q]) for q in qids]
    )
    return batch, Plan(k=max([len(c) for c in batch.candidates or []] + [1]), first_stage="candidates")


def evaluate_split(
    searcher: Searcher,
    dataset: Path,
    split: str,
    run_name: str,
    depth: int,
    stage: str | None = None,
    config: Config | None = None,
) -> dict[str, Any]:
    qrels: Qrels = read_qrels(dataset / "qrels" / f"{split}.tsv")
    queries = load_queries(dataset, split)
    first = read_run(find_run(dataset, run_name, split))
    candidates = {q: docs for q, docs in top_candidates(first, depth).items() if q in qrels}
    check_candidates_indexed(searcher.index.doc_keys, candidates, run_name, split, "the index", dataset)
    qids = [q for q in candidates if q in queries]
    batch, plan = candidate_queries(searcher, queries, candidates, qids)
    start = time.perf_counter()
    batch = searcher.encode(batch, plan)
    first = searcher.first_stage(batch, plan)
    reranked = searcher.to_run(qids, first)
    seconds = time.perf_counter() - start
    first_top = {q: {d: float(depth - r) for r, d in enumerate(docs)} for q, docs in candidates.items()}
    hybrid: dict[str, Any] = {}
    if stage not in (None, "none"):  # fuse the re-ranked sparse scores with the dense stage's
        config = config or Config()
        plan = Plan.from_config(config.search, k=depth, first_stage="candidates", rerank=stage, depth=depth)
        reranked, section = rerank_stage(
            searcher, qrels, qids, batch, first, config, plan, RELEVANCE_LEVEL, METRICS
        )
        hybrid = {"rerank": section}
    return {
        "n_queries": len(reranked),
        "metrics": evaluate_run(qrels, reranked, METRICS, RELEVANCE_LEVEL),
        "first_stage_metrics": evaluate_run(qrels, first_top, METRICS, RELEVANCE_LEVEL),
        "rerank_seconds": seconds,
        **hybrid,
    }


def rerank_eval(
    dataset: str | Path,
    config: Config,
    index_dir: str | Path | None = None,
    run: str = "bm25",
    splits: list[str] | None = None,
    depth: int = 100,
    progress: bool = False,
    rerank: str | None = None,
) -> dict[str, Any]:
    """The re-rank protocol on every split; builds a temporary index with ``config.encoder`` if no index.

    ``rerank="dense"`` (default ``search.rerank``): each split's metrics are those of the hybrid, the
    re-ranked sparse scores fused with the dense stage's (PQ) scores of the same candidates; the index
    needs a dense stage (a temporary index gets one, built with ``config.dense``), and each split gains
    a ``rerank`` section (sparse-alone metrics, fusion, latency; see lsr.eval.hybrid).

    Returns:
        a report: per split ``n_queries``, ``metrics`` and ``first_stage_metrics``, plus the encoder.
    """
    dataset = Path(dataset)
    splits = splits or splits_of(dataset)
    if not splits:
        raise FileNotFoundError(f"{dataset}/qrels holds no <split>.tsv")
    tmp = None
    if index_dir is None:
        from lsr.pipeline import index_corpus

        tmp = Path(tempfile.mkdtemp(prefix="lsr-rerank-"))
        index_dir = tmp / "index"
        logger.info("indexing %s with encoder %s into %s", dataset, config.encoder.name, index_dir)
        index_corpus(config, dataset, index_dir, progress=progress)
    rerank = rerank or config.search.rerank
    try:
        if tmp is not None and rerank not in (None, "none"):
            d = config.dense
            build_dense_stage(
                index_dir,
                dataset,
                d.model or None,
                d.pq_m,
                d.opq,
                d.keep_float or rerank == "dense-float",
                progress,
                batch_size=d.batch_size,
                max_length=d.max_length,
            )
        searcher = Searcher(index_dir)
        results = {
            split: evaluate_split(searcher, dataset, split, run, depth, rerank, config) for split in splits
        }
        meta = searcher.index.meta
        return {
            "lsr_version": __version__,
            "protocol": f"re-rank the top {depth} of {run!r}; graded nDCG, binary metrics at grade >= "
            f"{RELEVANCE_LEVEL}",
            "dataset": str(dataset),
            "run": run,
            "depth": depth,
            "splits": results,
            "index": {"path": None if tmp else str(index_dir), "n_docs": searcher.index.n_docs},
            "doc_nnz_avg": float(meta["stats"]["doc_nnz_avg"]),
            "encoder": meta["encoder"],
            "config": to_dict(config),
        }
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def format_rerank_report(report: dict[str, Any]) -> str:
    enc = report["encoder"]
    title = f"re-rank of {report['run']} top-{report['depth']} with {enc.get('name')}" + (
        f" ({enc['model']})" if enc.get("model") else ""
    )
    header = (
        f"{'split':<8}{'queries':>8}  {'first-stage nDCG@10':>20}  {'nDCG@10':>8}  {'MRR@10':>8}  "
        f"{'MAP@100':>8}"
    )
    lines = [title, "-" * len(header), header]
    for split, r in report["splits"].items():
        m = r["metrics"]
        lines.append(
            f"{split:<8}{r['n_queries']:>8}  {r['first_stage_metrics']['ndcg@10']:>20.4f}  "
            f"{m['ndcg@10']:>8.4f}  {m['mrr@10']:>8.4f}  {m['map@100']:>8.4f}"
        )
        if r.get("rerank"):
            lines.append("  " + format_rerank_section(r["rerank"]).replace("\n", "\n  "))
    return "\n".join(lines)
