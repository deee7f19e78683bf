"""Helpers for the live-index tests: a model of the surviving documents and a fresh index of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lsr.index import BuildOptions, Index, SparseBatch, build_index


def rows_of(batch: SparseBatch) -> list[tuple[np.ndarray, np.ndarray]]:
    return [batch.row(i) for i in range(len(batch))]


def fresh_index(
    out: Path, docs: dict[str, tuple[np.ndarray, np.ndarray]], vocab: list[str], options: BuildOptions
):
    """A plain index of ``docs`` (in dict order), or None when there are none."""
    if not docs:
        return None
    batch = SparseBatch.from_rows(docs.values())
    build_index(lambda: [batch], len(vocab), list(docs), vocab, out, options)
    return Index.load(out)


def ranked(index, terms, weights, k: int, mode: str) -> tuple[list[str], np.ndarray]:
    """External ids and scores of one query (an empty index: nothing)."""
    if index is None:
        return [], np.zeros(0, np.float32)
    result = index.search(terms, weights, k, mode=mode)
    keys = index.doc_keys
    return [keys[d] for d in result.docs.tolist()], np.asarray(result.scores, np.float32)
