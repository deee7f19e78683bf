"""IR metrics through ranx, with TREC conventions made explicit.

``relevance_level`` applies to the binary metrics only (recall, MAP, MRR,
precision): TREC DL counts grade >= 2 as relevant for them, while nDCG always
uses the graded judgments.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

BINARY_METRICS = ("recall", "map", "mrr", "precision", "hit_rate", "r-precision")


def _ranx_name(metric: str, relevance_level: int) -> str:
    base = metric.split("@")[0]
    if relevance_level > 1 and base in BINARY_METRICS:
        return f"{metric}-l{relevance_level}"
    return metric


def evaluate_run(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Mapping[str, float]],
    metrics: Sequence[str],
    relevance_level: int = 1,
) -> dict[str, float]:
    """Mean of each metric over the judged queries (a judged query missing from the run scores 0).

    Raises:
        ValueError: the run and the qrels share no query id.
    """
    from ranx import Qrels, Run, evaluate

    judged = {q: dict(d) for q, d in qrels.items() if any(g > 0 for g in d.values())}
    if not judged:
        raise ValueError("the qrels hold no relevant judgment")
    if not set(judged) & set(run):
        raise ValueError(
            f"the run ({len(run)} queries) and the qrels ({len(judged)} queries) share no query id; "
            "check that both come from the same dataset and split"
        )
    kept_run = {q: dict(d) for q, d in run.items() if q in judged and d}
    names = {m: _ranx_name(m, relevance_level) for m in metrics}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ranx's numba kernels warn about uint64 casts
        scores = evaluate(Qrels.from_dict(judged), Run.from_dict(kept_run), list(names.values()),
                          make_comparable=True)
    if isinstance(scores, float):
        scores = {names[metrics[0]]: scores}
    return {m: float(scores[names[m]]) for m in metrics}
