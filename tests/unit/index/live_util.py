"""Helpers for the live-index tests: a model of the surviving documents and a fresh index of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from corpora import random_corpus

from lsr.index import BuildOptions, Index, SparseBatch, build_index
from lsr.index.blockmax import MergedBounds
from lsr.index.segments import SegmentedIndex, open_index
from lsr.index.writer import IndexWriter, MergePolicy

N_TERMS = 30  # random_live_index's vocabulary
NO_POLICY = MergePolicy(max_segments=1000, max_deleted=1.0)


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


def random_live_index(
    tmp_path, rng, impact_dtype: str, n_segments: int, n_terms: int = N_TERMS, integer: bool = True
) -> SegmentedIndex:
    """A live index of ``n_segments`` segments of random sizes (later ones with more terms), about a
    third of the docs deleted; integer weights (every sum exact) unless ``integer`` is False."""
    vocab = [f"t{i}" for i in range(n_terms)]
    first = 8 + int(rng.integers(0, 40))
    corpus = random_corpus(rng, n_docs=first, n_terms=n_terms - 6, max_nnz=8, integer=integer)
    path = tmp_path / f"live-{impact_dtype}-{n_segments}"
    ids = [f"d{i}" for i in range(first)]
    build_index(
        lambda: [corpus], n_terms - 6, ids, vocab[:-6], path, BuildOptions(impact_dtype, block_size=4)
    )
    n = first
    with IndexWriter(path, NO_POLICY) as w:
        for s in range(1, n_segments):
            size = 1 + int(rng.integers(0, 60))
            terms = n_terms - 6 + min(s, 6)
            batch = random_corpus(rng, n_docs=size, n_terms=terms, max_nnz=8, integer=integer)
            w.add(batch, [f"d{i}" for i in range(n, n + size)], vocab[:terms], grow_vocab=True)
            n += size
        w.delete([f"d{i}" for i in range(n) if rng.random() < 0.3])
    index = open_index(path)
    assert isinstance(index, SegmentedIndex) and index._multi is not None
    return index


PLANS = ("merged", "part", "own")  # all segments' block maxima merged, the smaller half, none


def plan_bounds(index: SegmentedIndex, plan: str) -> SegmentedIndex:
    """Set (before the first search) how much of the generation the one-call kernel reads merged:
    ``merged`` all segments, ``own`` none (each from its own block-max arrays), ``part`` the smaller
    half (a budget of exactly their estimated size)."""
    assert index._multi is not None
    total = int(index._multi[1][-1, 3] + index._multi[1][-1, 1])
    scaled = len({float(s.blockmax.ub_ratio) for s in index.segments}) > 1
    sizes = sorted(MergedBounds.estimate_nbytes(s.blockmax, total, scaled) for s in index.segments)
    budget = {"merged": float("inf"), "own": 0.0, "part": sum(sizes[: len(sizes) // 2]) / 1e6}[plan]
    index.merged_bounds_mb = budget
    return index
