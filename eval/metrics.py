"""IR metrics with trec_eval's conventions, per query and averaged (checked against pytrec_eval to 1e-6).

Conventions (those of ``trec_eval`` / ``pytrec_eval``, which published numbers use):

* a run is ranked by descending score, ties by descending document id (trec_eval's order);
* ``relevance_level`` applies to the binary metrics only (recall, MAP, MRR, precision):
  TREC DL counts grade >= 2 as relevant for them, while nDCG always uses the graded
  judgments (linear gain: the grade itself; log2 discount);
* ``recall@k``, ``map``/``map@k`` divide by the number of relevant documents of the query
  (retrieved or not); ``mrr@k`` is the reciprocal rank of the first relevant document in the
  top k (0 if none);
* the evaluated queries are the judged ones (at least one positive grade); a judged query
  missing from the run scores 0. Run queries that the qrels do not know are ignored and counted.

Pure Python and numpy: no compile step, so a 300-query evaluation takes well under a second.
Not ranx's metrics: ranx orders tied scores its own way (an unstable sort), and ties are common with
quantized impacts (SciFact BM25 nDCG@10: 0.6775 in trec_eval's order, 0.6767 in ranx's); published
numbers use trec_eval's. Run files written by ``lsr.data.trec.write_run`` carry that order in their
scores, so ranx reads them as lsr eval ranks them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np

from lsr.data.trec import trec_order

logger = logging.getLogger(__name__)

BINARY_METRICS = ("recall", "map", "mrr", "precision")
METRICS = ("ndcg", *BINARY_METRICS)


def parse_metric(metric: str) -> tuple[str, int | None]:
    """``"ndcg@10"`` -> ``("ndcg", 10)``, ``"map"`` -> ``("map", None)``.

    Raises:
        ValueError: an unknown metric name or a bad cutoff (the message names it).
    """
    base, sep, cut = metric.partition("@")
    if base not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)} (with an optional @k)")
    if not sep:
        if base in ("ndcg", "recall", "precision"):
            raise ValueError(f"metric {metric!r} needs a cutoff, e.g. {base}@10")
        return base, None
    if not cut.isdigit() or int(cut) < 1:
        raise ValueError(f"metric {metric!r}: the cutoff after '@' must be a positive integer")
    return base, int(cut)


def ranked(docs: Mapping[str, float]) -> list[str]:
    """Document ids by descending score, ties by descending id (trec_eval)."""
    return [d for d, _ in trec_order(docs)]


def _score(base: str, k: int | None, ranking: list[str], grades: Mapping[str, int], level: int) -> float:
    top = ranking if k is None else ranking[:k]
    if base == "ndcg":
        dcg = sum(grades.get(d, 0) / math.log2(i + 2) for i, d in enumerate(top) if grades.get(d, 0) > 0)
        ideal = sorted((g for g in grades.values() if g > 0), reverse=True)[:k]
        idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
        return dcg / idcg if idcg > 0 else 0.0
    relevant = {d for d, g in grades.items() if g >= level}
    if base == "mrr":
        return next((1.0 / (i + 1) for i, d in enumerate(top) if d in relevant), 0.0)
    if base == "precision":
        return sum(1 for d in top if d in relevant) / k if k else 0.0
    if not relevant:
        return 0.0
    if base == "recall":
        return sum(1 for d in top if d in relevant) / len(relevant)
    hits, total = 0, 0.0  # map
    for i, d in enumerate(top):
        if d in relevant:
            hits += 1
            total += hits / (i + 1)
    return total / len(relevant)


def judged_queries(qrels: Mapping[str, Mapping[str, int]]) -> list[str]:
    """The evaluated queries: those with at least one positive grade, in qrels order."""
    return [q for q, d in qrels.items() if any(g > 0 for g in d.values())]


def per_query_scores(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Mapping[str, float]],
    metrics: Sequence[str],
    relevance_level: int = 1,
) -> tuple[list[str], dict[str, np.ndarray]]:
    """``(query ids, {metric: scores})``, one score per judged query in the order of the ids.

    Raises:
        ValueError: an unknown metric, qrels without any relevant judgment, or a run that shares
            no query id with the qrels.
    """
    parsed = {m: parse_metric(m) for m in metrics}
    qids = judged_queries(qrels)
    if not qids:
        raise ValueError("the qrels hold no relevant judgment")
    if run and not set(qids) & set(run):
        raise ValueError(
            f"the run ({len(run)} queries, e.g. {next(iter(run))!r}) and the qrels ({len(qids)} judged "
            f"queries, e.g. {qids[0]!r}) share no query id; check that both come from the same dataset "
            "and split"
        )
    if not run:
        raise ValueError(f"the run is empty (the qrels judge {len(qids)} queries)")
    out = {m: np.zeros(len(qids), np.float64) for m in metrics}
    for i, q in enumerate(qids):
        docs = run.get(q)
        if not docs:
            continue
        ranking = ranked(docs)
        for m, (base, k) in parsed.items():
            out[m][i] = _score(base, k, ranking, qrels[q], relevance_level)
    return qids, out


def unknown_queries(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]]) -> int:
    """Run queries the qrels do not judge; warned about once (they do not count in the means)."""
    unknown = [q for q in run if q not in qrels]
    if unknown:
        logger.warning(
            "%d of %d run queries are not in the qrels (e.g. %r); ignored", len(unknown), len(run), unknown[0]
        )
    return len(unknown)


def evaluate_run(
    qrels: Mapping[str, Mapping[str, int]],
    run: Mapping[str, Mapping[str, float]],
    metrics: Sequence[str],
    relevance_level: int = 1,
) -> dict[str, float]:
    """Mean of each metric over the judged queries (a judged query missing from the run scores 0).

    Raises:
        ValueError: the run and the qrels share no query id; unknown metric.
    """
    _, scores = per_query_scores(qrels, run, metrics, relevance_level)
    return {m: float(s.mean()) for m, s in scores.items()}
