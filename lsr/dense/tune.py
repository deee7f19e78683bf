"""Fusion tuning (``lsr tune-fusion``, an index command): grid-search the dense weight of each fusion
method on a dev/train split and store the best in the index's dense meta.

The queries and the metric come in as a :class:`TuningSet` (the CLI builds it with lsr.eval, which
reads datasets and scores runs but never writes into an index). The sparse first stage is the
index's own (``plan``: mode, threads), its top ``plan.depth`` re-scored with the PQ codes, exactly as
``lsr search --rerank dense``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lsr.data.trec import Run
from lsr.dense.fusion import FUSION_METHODS
from lsr.dense.stage import store_fusion
from lsr.searcher import Plan, Queries, Searcher

WEIGHT_GRID = tuple(round(w, 2) for w in np.arange(0.0, 1.0001, 0.05))


@dataclass
class TuningSet:
    """Queries of the tuning split and the metric a run is judged by."""

    qids: list[str]
    texts: list[str]
    metric: str
    score: Callable[[Run], float]  # the metric's mean over the judged queries of a run
    about: dict[str, Any]  # where the queries come from (``dataset``, ``split``), stored with the weight


def tune_fusion(
    searcher: Searcher,
    data: TuningSet,
    plan: Plan,
    methods: tuple[str, ...] = ("convex-minmax", "convex-zscore"),
    grid: tuple[float, ...] = WEIGHT_GRID,
    store: bool = True,
) -> dict[str, Any]:
    """The grid of ``data.metric`` per method and weight; the best method and weight per method go into
    the dense meta unless ``store`` is false.

    Raises:
        ValueError: an unknown fusion method.
    """
    for m in methods:
        if m not in FUSION_METHODS:
            raise ValueError(f"fusion method {m!r} is not one of {list(FUSION_METHODS)}")
    searcher.require_dense()
    plan = dataclasses.replace(plan, k=plan.depth, first_stage="sparse", rerank="dense")
    queries = searcher.encode(Queries(texts=data.texts), plan)
    sparse = searcher.first_stage(queries, plan)

    def value(method: str, weight: float) -> float:
        weighted = dataclasses.replace(plan, fusion=method, fusion_weight=weight)
        return data.score(searcher.to_run(data.qids, searcher.rerank(queries, sparse, weighted)))

    table = {m: {f"{w:.2f}": value(m, float(w)) for w in grid} for m in methods}
    best = {m: max(table[m].items(), key=lambda kv: (kv[1], -abs(float(kv[0]) - 0.5))) for m in methods}
    method = max(methods, key=lambda m: best[m][1])
    weights = {m: float(best[m][0]) for m in methods}
    tuned_on = {
        **data.about,
        "n_queries": len(data.qids),
        "metric": data.metric,
        "depth": plan.depth,
        "value": best[method][1],
    }
    if store:
        store_fusion(searcher.index.path, method, weights[method], weights, tuned_on)
    return {
        "method": method,
        "weight": weights[method],
        "weights": weights,
        "tuned_on": tuned_on,
        "sparse": data.score(searcher.to_run(data.qids, sparse)),
        "grid": table,
        "stored": store,
    }
