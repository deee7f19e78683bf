"""Seeded random sparse collections and a tiny index builder, shared by the index tests."""

from __future__ import annotations

import numpy as np

from lsr.index import BuildOptions, Index, SparseBatch, build_index
from lsr.index.blockmax import build_blockmax


def random_corpus(
    rng: np.random.Generator, n_docs: int, n_terms: int, max_nnz: int, integer: bool
) -> SparseBatch:
    rows = []
    for _ in range(n_docs):
        nnz = int(rng.integers(0, max_nnz + 1))
        terms = rng.choice(n_terms, size=min(nnz, n_terms), replace=False)
        weights = rng.integers(1, 6, size=len(terms)) if integer else rng.uniform(0.01, 3.0, len(terms))
        rows.append((terms, weights))
    return SparseBatch.from_rows(rows)


def build(
    tmp_path,
    corpus: SparseBatch,
    n_terms: int,
    impact_dtype: str,
    batch_rows: int = 7,
    reorder: str = "none",
    block_size: int | None = None,
) -> Index:
    """Index ``corpus`` (fed in batches of ``batch_rows``); block-max data only if ``block_size``."""

    def batches():
        for s in range(0, len(corpus), batch_rows):
            e = min(s + batch_rows, len(corpus))
            lo, hi = corpus.indptr[s], corpus.indptr[e]
            yield SparseBatch(corpus.indptr[s : e + 1] - lo, corpus.term_ids[lo:hi], corpus.weights[lo:hi])

    out = tmp_path / f"idx-{impact_dtype}-{len(list(tmp_path.glob('idx-*')))}"
    build_index(
        batches,
        n_terms,
        [f"d{i}" for i in range(len(corpus))],
        [f"t{i}" for i in range(n_terms)],
        out,
        BuildOptions(impact_dtype=impact_dtype, reorder=reorder, bp_iterations=5, block_size=block_size),
    )
    return Index.load(out)


def build_with_blockmax(
    tmp_path,
    corpus: SparseBatch,
    n_terms: int,
    impact_dtype: str,
    block_size: int,
    reorder: str = "none",
    dense_fraction: float = 0.125,
) -> Index:
    """Block-max data built afterwards for an existing index (the `--blockmax-for` path)."""
    index = build(tmp_path, corpus, n_terms, impact_dtype, reorder=reorder)
    build_blockmax(index.path, block_size, dense_fraction)
    return Index.load(index.path)
