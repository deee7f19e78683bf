"""Seeded random sparse collections and a tiny index builder, shared by the index tests."""

from __future__ import annotations

import numpy as np

from lsr.index import Index, SparseBatch, build_index
from lsr.index.blockmax import build_blockmax


def random_corpus(rng: np.random.Generator, n_docs: int, n_terms: int, max_nnz: int,
                  integer: bool) -> SparseBatch:
    rows = []
    for _ in range(n_docs):
        nnz = int(rng.integers(0, max_nnz + 1))
        terms = rng.choice(n_terms, size=min(nnz, n_terms), replace=False)
        weights = rng.integers(1, 6, size=len(terms)) if integer else rng.uniform(0.01, 3.0, len(terms))
        rows.append((terms, weights))
    return SparseBatch.from_rows(rows)


def build(tmp_path, corpus: SparseBatch, n_terms: int, impact_dtype: str, batch_rows: int = 7) -> Index:
    def batches():
        for s in range(0, len(corpus), batch_rows):
            e = min(s + batch_rows, len(corpus))
            lo, hi = corpus.indptr[s], corpus.indptr[e]
            yield SparseBatch(corpus.indptr[s : e + 1] - lo, corpus.term_ids[lo:hi], corpus.weights[lo:hi])

    out = tmp_path / f"idx-{impact_dtype}-{len(list(tmp_path.glob('idx-*')))}"
    build_index(batches, n_terms, [f"d{i}" for i in range(len(corpus))],
                [f"t{i}" for i in range(n_terms)], out, impact_dtype=impact_dtype)
    return Index.load(out)


def build_with_blockmax(tmp_path, corpus: SparseBatch, n_terms: int, impact_dtype: str,
                        block_size: int) -> Index:
    index = build(tmp_path, corpus, n_terms, impact_dtype)
    build_blockmax(index.path, block_size)
    return Index.load(index.path)
