"""The one evaluation record: what every ``lsr eval`` mode measures for one system on one dataset.

Every mode (one index, systems side by side, the matrix, the DL re-rank protocol, a run file, the
hybrid, dense-only) produces an :class:`Evaluation` through :mod:`lsr.eval.runner`; the reports
(:mod:`lsr.eval.report`, :mod:`lsr.eval.views`) are views of it. Metrics come from :func:`score`,
per query, so every system gets significance tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lsr.data.trec import Qrels, Run
from lsr.eval.metrics import per_query_scores

PAIR_LATENCY = ("p50", "p99", "mean")


@dataclass
class Evaluation:
    """One system on one dataset: quality (mean and per query), cost, configs, notes, the run.

    ``latency_ms``: per query on one thread (lsr.timing keys); ``info``: the mode's own JSON-ready
    sections (dataset coverage, index layout, throughput, the dense re-rank section, build and cache
    data, the DL protocol...), merged into the reports as they are.
    """

    system: str
    dataset: str
    metrics: dict[str, float]
    qids: list[str] = field(default_factory=list)
    per_query: dict[str, np.ndarray] = field(default_factory=dict)
    n_queries: int = 0
    unknown_queries: int = 0
    latency_ms: dict[str, Any] = field(default_factory=dict)
    qps: float | None = None
    index_bytes: int | None = None
    doc_nnz_avg: float | None = None
    query_nnz_avg: float | None = None
    flops: float | None = None
    config: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    run: Run | None = None

    def to_dict(self) -> dict[str, Any]:
        """The per-pair JSON of ``report.json`` (``pairs``): the fields, then ``info``."""
        lat = self.latency_ms or {}
        return {
            "system": self.system,
            "dataset": self.dataset,
            "metrics": self.metrics,
            "n_queries": self.n_queries,
            "unknown_queries": self.unknown_queries,
            "latency_ms": {k: lat[k] for k in PAIR_LATENCY if k in lat},
            "qps": self.qps,
            "index_bytes": self.index_bytes,
            "doc_nnz_avg": self.doc_nnz_avg,
            "query_nnz_avg": self.query_nnz_avg,
            "flops": self.flops,
            "notes": self.notes,
            "config": self.config,
            **self.info,
        }


def score(
    qrels: Qrels, run: Run, metrics: tuple[str, ...] | list[str], level: int
) -> tuple[list[str], dict[str, np.ndarray], dict[str, float]]:
    """``(judged query ids, {metric: per-query scores}, {metric: mean})`` with trec_eval's conventions."""
    qids, scores = per_query_scores(qrels, run, metrics, level)
    return qids, scores, {m: float(s.mean()) for m, s in scores.items()}
