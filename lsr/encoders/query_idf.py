"""Query term weights scaled by the indexed collection's own IDF.

A learned sparse model weighs terms by what it learned on its training collection; it cannot know
that a term is in every document of the user's collection ("library" in a library-science corpus).
BM25 knows, through IDF. With ``encoder.query_idf = p > 0`` every text query's weights become

    w'(t) = w(t) * idf(t) ** p,   idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5)),

where N is the number of documents in the index and df(t) the length of t's posting list (deleted
documents of a live index included, summed over segments and shards, so every shard scores with
the same table and a sharded search equals one index's). Documents are untouched: the power can
change without re-encoding. Pre-encoded query vectors are searched as given.

The shipped models carry their selected power in ``lsr_query.json`` (``{"query_idf": p}``), chosen
on the mean of the out-of-domain suite and SciFact dev (reports/query-idf); ``encoder.query_idf``
left negative (the default) takes it, a model folder without the file gets 0 (off).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from lsr.config import MAX_QUERY_IDF
from lsr.encoders.base import CorpusStats
from lsr.errors import ConfigError
from lsr.index.sparse import WEIGHT_DTYPE, SparseBatch

MODEL_FILE = "lsr_query.json"


def resolve(power: float, model_dir: Path | None) -> float:
    """The power an index records: ``power`` when >= 0, else the model folder's ``lsr_query.json``
    value, else 0.

    Raises:
        ConfigError: an ``lsr_query.json`` that is not JSON or whose ``query_idf`` is not a number in
            [0, MAX_QUERY_IDF].
    """
    if power >= 0:
        return float(power)
    path = model_dir / MODEL_FILE if model_dir is not None else None
    if path is None or not path.is_file():
        return 0.0
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("query_idf")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
        raise ConfigError(f"{path}: not a JSON object with a query_idf number ({exc})") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_QUERY_IDF:
        raise ConfigError(f"{path}: query_idf = {value!r} must be a number in [0, {MAX_QUERY_IDF:g}]")
    return float(value)


def idf_table(doc_freq: NDArray[np.integer], n_docs: int, power: float) -> NDArray[np.float32]:
    """``idf(t) ** power`` for every term id (float32[n_terms])."""
    return (CorpusStats(n_docs, np.asarray(doc_freq)).idf() ** power).astype(WEIGHT_DTYPE)


def reweight(batch: SparseBatch, table: NDArray[np.float32]) -> SparseBatch:
    """``batch`` with every weight multiplied by its term's table entry."""
    weights = np.asarray(batch.weights, dtype=WEIGHT_DTYPE) * table[np.asarray(batch.term_ids)]
    return SparseBatch(batch.indptr, batch.term_ids, weights.astype(WEIGHT_DTYPE))
