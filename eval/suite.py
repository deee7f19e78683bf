"""Systems side by side: every (system, dataset) pair evaluated by the runner, on the serving code path.

``run_suite`` returns one :class:`~lsr.eval.record.Evaluation` per pair (metrics and per-query scores
for the significance tests, latency, size, sparsity, FLOPS, build and encode time, resolved configs);
its ``info`` holds what the pair's entry of ``report.json`` adds (specs, cache, protocol, sections).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsr.config import Config, load_config
from lsr.data.corpus import load_queries, open_corpus, qrels_path
from lsr.data.trec import Qrels, read_qrels, read_run
from lsr.errors import ConfigError
from lsr.eval.datasets import DatasetRef
from lsr.eval.pyserini_ref import build_lucene_index
from lsr.eval.record import Evaluation
from lsr.eval.rerank import check_candidates_indexed, find_run, split_candidates, splits_of
from lsr.eval.runner import (
    evaluate_candidates,
    evaluate_dense,
    evaluate_pyserini,
    evaluate_run_file,
    evaluate_sparse,
)
from lsr.eval.systems import BuiltIndex, SystemSpec, corpus_digest, ensure_index
from lsr.searcher import Searcher

logger = logging.getLogger(__name__)

DL_RELEVANCE_LEVEL = 2


@dataclass(frozen=True)
class ConfigBase:
    """What every system's config starts from: ``--config`` and the overrides of ``--set`` and the flags."""

    path: str | None = None
    overrides: tuple[str, ...] = ()

    def load(self, *extra: str) -> Config:
        """The config file <- the base overrides <- ``extra`` (later ones win)."""
        return load_config(self.path, [*self.overrides, *extra])


def check_pair(system: SystemSpec, dataset: DatasetRef) -> None:
    """Combinations that cannot work, refused before any work."""
    if system.kind == "pyserini" and dataset.kind == "rerank":
        raise ConfigError(
            f"pyserini-bm25 retrieves from a full corpus; it does not apply to {dataset.spec} "
            "(use run:bm25, the shipped pyserini BM25 run)"
        )
    if system.kind == "dense" and dataset.kind == "rerank":
        raise ConfigError(
            f"{system.spec} retrieves from a full corpus; it does not apply to {dataset.spec} "
            "(use hybrid to re-rank with the dense model)"
        )
    if system.kind == "run" and dataset.kind == "irds":
        raise ConfigError(f"{system.spec} on {dataset.spec}: give run files for BEIR folders or DL protocols")


def pair_config(base: ConfigBase, system: SystemSpec, dataset: DatasetRef) -> Config:
    """The base, then the system's encoder overrides and the dataset's split (and DL relevance level)."""
    extra = [*system.overrides, f"eval.split={dataset.split}"]
    if dataset.kind == "rerank":
        extra.append(f"eval.relevance_level={DL_RELEVANCE_LEVEL}")
    return base.load(*extra)


def pair_info(system: SystemSpec, dataset: DatasetRef, built: BuiltIndex | None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "system_spec": system.spec,
        "system_kind": system.kind,
        "dataset_spec": dataset.spec,
        "dataset_kind": dataset.kind,
        "split": dataset.split,
        "build_seconds": None,
        "encode_seconds": None,
        "index": None,
        "cached": None,
    }
    if built is not None:
        info.update(
            index=str(built.path),
            cached=built.cached,
            build_seconds=built.build_seconds,
            encode_seconds=built.encode_seconds,
            cache_key=built.key or None,
            cache_inputs=built.inputs or None,
        )
    return info


def _described(
    ev: Evaluation, system: SystemSpec, dataset: DatasetRef, built: BuiltIndex | None, **sections: Any
) -> Evaluation:
    """The runner's evaluation as one pair of the report: labels, specs, cache and the chosen sections."""
    ev.system, ev.dataset = system.label, dataset.name
    ev.info = pair_info(system, dataset, built) | sections
    if built is not None and built.note:
        ev.notes.insert(0, built.note)
    return ev


def evaluate_pair(
    system: SystemSpec, dataset: DatasetRef, base: ConfigBase, cache_dir: Path, progress: bool = False
) -> Evaluation:
    """Evaluate one system on one dataset (builds or reuses its index)."""
    check_pair(system, dataset)
    cfg = pair_config(base, system, dataset)
    if system.kind == "run":
        return _run_file(system, dataset, cfg)
    if system.kind == "pyserini":
        return _pyserini(system, dataset, cfg, cache_dir)
    if dataset.kind == "rerank":
        return _dl_rerank(system, dataset, cfg, cache_dir, progress)
    built = ensure_index(system, cfg, dataset.corpus, cache_dir, progress=progress)
    spec = dataset.spec if dataset.kind == "irds" else str(dataset.folder)
    if system.kind == "dense":
        ev = evaluate_dense(built.path, spec, cfg, "dense-float")
        return _described(ev, system, dataset, built, dense=ev.info["dense"])
    ev = evaluate_sparse(built.path, spec, cfg, "dense" if system.kind == "hybrid" else None, progress)
    i = ev.info
    coverage = {k: i["dataset"][k] for k in ("qrels_unknown_docs", "qrels_missing_queries")}
    sections = {"run_qps": i["throughput"]["run_qps"], "encoder": i["encoder"], "coverage": coverage}
    return _described(ev, system, dataset, built, **sections, **{k: i[k] for k in ("rerank",) if k in i})


def _qrels(dataset: DatasetRef) -> Qrels:
    return read_qrels(qrels_path(dataset.folder, dataset.split))


def _run_file(system: SystemSpec, dataset: DatasetRef, cfg: Config) -> Evaluation:
    if dataset.kind == "rerank":
        path = find_run(dataset.folder, system.run, dataset.split)
    else:
        path = Path(system.run.replace("{split}", dataset.split))
        if not path.is_file():
            raise FileNotFoundError(f"{system.spec}: no run file {path}")
    ev = evaluate_run_file(system.label, dataset.name, read_run(path), _qrels(dataset), cfg)
    return _described(ev, system, dataset, None, run_file=str(path))


def _pyserini(system: SystemSpec, dataset: DatasetRef, cfg: Config, cache_dir: Path) -> Evaluation:
    lucene = cache_dir / f"pyserini-bm25-{corpus_digest(dataset.corpus)[:16]}"
    built = BuiltIndex(lucene, True, None, None)
    if not lucene.is_dir():
        start = time.perf_counter()
        build_lucene_index(open_corpus(dataset.corpus), lucene)
        built = BuiltIndex(lucene, False, round(time.perf_counter() - start, 3), None)
    spec = dataset.spec if dataset.kind == "irds" else dataset.folder
    ev = evaluate_pyserini(system.label, lucene, spec, dataset.split, cfg)
    return _described(ev, system, dataset, built)


def dl_candidates(dataset: DatasetRef) -> tuple[dict[str, list[str]], set[str]]:
    """Each judged query's first-stage top ``depth`` for the split, and the union over both DL splits."""
    union: set[str] = set()
    mine: dict[str, list[str]] = {}
    folder = dataset.folder
    for split in splits_of(folder):
        qrels = read_qrels(folder / "qrels" / f"{split}.tsv")
        cands = split_candidates(folder, dataset.run, split, dataset.depth, qrels)
        union.update(d for docs in cands.values() for d in docs)
        if split == dataset.split:
            mine = cands
    return mine, union


def _dl_rerank(
    system: SystemSpec, dataset: DatasetRef, cfg: Config, cache_dir: Path, progress: bool
) -> Evaluation:
    candidates, union = dl_candidates(dataset)
    built = ensure_index(system, cfg, dataset.corpus, cache_dir, doc_ids=union, progress=progress)
    searcher = Searcher(built.path)
    check_candidates_indexed(
        searcher.index.doc_keys, candidates, dataset.run, dataset.split, str(built.path), dataset.folder
    )
    ev = evaluate_candidates(
        searcher,
        load_queries(dataset.folder, dataset.split),
        _qrels(dataset),
        candidates,
        cfg,
        stage="dense" if system.kind == "hybrid" else None,
        depth=dataset.depth,
    )
    protocol = (
        f"re-rank the top {dataset.depth} of {dataset.run!r} ({dataset.split}); graded nDCG, binary "
        f"metrics at grade >= {DL_RELEVANCE_LEVEL}"
    )
    sections = {"protocol": protocol, "run_qps": ev.info["run_qps"], "encoder": ev.info["encoder"]}
    return _described(
        ev, system, dataset, built, **sections, **{k: ev.info[k] for k in ("rerank",) if k in ev.info}
    )


def run_suite(
    systems: list[SystemSpec],
    datasets: list[DatasetRef],
    base: ConfigBase,
    cache_dir: Path,
    progress: bool = False,
) -> list[Evaluation]:
    """Every system on every dataset, in order; pairs are checked before any work."""
    for d in datasets:
        for s in systems:
            check_pair(s, d)
    results = []
    for d in datasets:
        for s in systems:
            start = time.perf_counter()
            logger.info("evaluating %s on %s", s.label, d.name)
            ev = evaluate_pair(s, d, base, cache_dir, progress)
            ev.info["eval_seconds"] = round(time.perf_counter() - start, 3)
            results.append(ev)
    return results
