"""Fusion tuning of the dense re-rank stage: ``lsr tune-fusion`` (it writes the tuned weights into the
index's dense meta, so it is an index command; evaluation of the hybrid and dense-only runs is
lsr.eval.runner).

* ``tune_fusion``: grid search of the convex weight on a dev/train split; the best weight per method
  goes into the dense meta.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from lsr.config import Config
from lsr.dense.fusion import FUSION_METHODS
from lsr.dense.stage import store_fusion
from lsr.eval.datasets import load_eval_dataset
from lsr.eval.metrics import evaluate_run
from lsr.searcher import Searcher, search_params

logger = logging.getLogger(__name__)

WEIGHT_GRID = tuple(round(w, 2) for w in np.arange(0.0, 1.0001, 0.05))


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
