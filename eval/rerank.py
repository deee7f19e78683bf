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

    lsr eval rerank --run bm25 --dataset ../shared/data/msmarco/dl-pool --encoder models/splade-tiny

or ``--index I`` for an index already built over the pool. The candidates are scored by
:func:`lsr.eval.runner.evaluate_candidates`, as the ``dl19-rerank`` / ``dl20-rerank`` datasets of
``lsr eval systems`` are.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from lsr import __version__
from lsr.config import Config, to_dict
from lsr.data.corpus import load_queries
from lsr.data.trec import Qrels, Run, read_qrels, read_run
from lsr.eval.runner import evaluate_candidates
from lsr.eval.systems import SystemSpec, ensure_index
from lsr.eval.views import format_rerank_section
from lsr.searcher import Searcher

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
    doc_keys: Sequence[str],
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


def split_candidates(
    dataset: Path, run_name: str, split: str, depth: int, qrels: Qrels
) -> dict[str, list[str]]:
    """Each judged query's top ``depth`` of the first-stage run ``run_name`` on ``split``."""
    first = read_run(find_run(dataset, run_name, split))
    return {q: d for q, d in top_candidates(first, depth).items() if q in qrels}


def protocol_config(config: Config) -> Config:
    """The DL protocol's metrics (graded nDCG@10, MRR@10, MAP@100) and relevance level (grade >= 2)."""
    return replace(config, eval=replace(config.eval, metrics=METRICS, relevance_level=RELEVANCE_LEVEL))


def evaluate_split(
    searcher: Searcher,
    dataset: Path,
    split: str,
    run_name: str,
    depth: int,
    stage: str | None,
    config: Config,
) -> dict[str, Any]:
    qrels = read_qrels(dataset / "qrels" / f"{split}.tsv")
    candidates = split_candidates(dataset, run_name, split, depth, qrels)
    check_candidates_indexed(searcher.index.doc_keys, candidates, run_name, split, "the index", dataset)
    ev = evaluate_candidates(
        searcher,
        load_queries(dataset, split),
        qrels,
        candidates,
        protocol_config(config),
        label=run_name,
        dataset=split,
        stage=stage,
        depth=depth,
        timed=False,
    )
    return {
        "n_queries": ev.n_queries,
        "metrics": ev.metrics,
        "first_stage_metrics": ev.info["first_stage_metrics"],
        "rerank_seconds": ev.info["rerank_seconds"],
        **({"rerank": ev.info["rerank"]} if "rerank" in ev.info else {}),
    }


def temporary_index(config: Config, dataset: Path, stage: str | None, tmp: Path, progress: bool) -> Path:
    """Index the pool's corpus with ``config`` (plus the dense stage for a hybrid stage) under ``tmp``."""
    hybrid = stage not in (None, "none")
    if stage == "dense-float":
        config = replace(config, dense=replace(config.dense, keep_float=True))
    name = config.encoder.name
    system = SystemSpec(name, "hybrid" if hybrid else "encoder", name)
    logger.info("indexing %s with encoder %s into %s", dataset, name, tmp)
    return ensure_index(system, config, dataset, tmp, progress=progress).path


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
    """The re-rank protocol on every split; indexes the pool with ``config`` (temporarily) if no index.

    ``rerank="dense"`` (default ``search.rerank``): each split's metrics are those of the hybrid, the
    re-ranked sparse scores fused with the dense stage's (PQ) scores of the same candidates; the index
    needs a dense stage (a temporary index gets one, built with ``config.dense``), and each split gains
    a ``rerank`` section (sparse-alone metrics, fusion, latency; see lsr.eval.runner.dense_rerank).

    Returns:
        a report: per split ``n_queries``, ``metrics`` and ``first_stage_metrics``, plus the encoder.
    """
    dataset = Path(dataset)
    splits = splits or splits_of(dataset)
    if not splits:
        raise FileNotFoundError(f"{dataset}/qrels holds no <split>.tsv")
    rerank = rerank or config.search.rerank
    tmp: Path | None = None  # the temporary index's folder, removed at the end
    try:
        if index_dir is None:
            tmp = Path(tempfile.mkdtemp(prefix="lsr-rerank-"))
            path = temporary_index(config, dataset, rerank, tmp, progress)
        else:
            path = Path(index_dir)
        searcher = Searcher(path)
        results = {s: evaluate_split(searcher, dataset, s, run, depth, rerank, config) for s in splits}
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
