"""The tuning set of ``lsr tune-fusion``: judged queries of a split and the metric of a run on them.

The tuning itself (a grid over fusion methods and dense weights, stored in the index's dense meta) is an
index command, :func:`lsr.dense.tune.tune_fusion`; evaluation only supplies the queries and the metric.
Hybrid and dense-only evaluation is :mod:`lsr.eval.runner`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from lsr.config import Config
from lsr.dense.tune import TuningSet
from lsr.eval.datasets import load_eval_dataset
from lsr.eval.metrics import evaluate_run

logger = logging.getLogger(__name__)


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
