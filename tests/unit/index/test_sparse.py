"""SparseBatch row slicing and chunking against rows taken one by one."""

from __future__ import annotations

import numpy as np
import pytest

from lsr.index.sparse import SparseBatch, concat


def random_batch(n_rows: int, seed: int) -> SparseBatch:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n_rows):
        n = int(rng.integers(0, 6))  # empty rows included
        terms = rng.choice(50, size=n, replace=False)
        rows.append((terms, rng.uniform(0.1, 2.0, size=n)))
    return SparseBatch.from_rows(rows)


def rows_of(batch: SparseBatch) -> list[tuple[list[int], list[float]]]:
    return [(t.tolist(), w.tolist()) for t, w in (batch.row(i) for i in range(len(batch)))]


@pytest.mark.parametrize(("start", "end"), [(0, 0), (0, 7), (3, 7), (6, 7), (2, 3), (4, 4)])
def test_slice_is_the_rows_in_between(start, end):
    batch = random_batch(7, seed=start * 10 + end)
    part = batch.slice(start, end)
    assert len(part) == end - start and part.indptr[0] == 0
    assert rows_of(part) == rows_of(batch)[start:end]


@pytest.mark.parametrize("rows", [1, 3, 7, 100])
def test_chunks_cover_the_batch_in_order(rows):
    batch = random_batch(7, seed=rows)
    chunks = list(batch.chunks(rows))
    assert all(1 <= len(c) <= rows for c in chunks)
    assert rows_of(concat(chunks)) == rows_of(batch)


def test_chunks_of_an_empty_batch():
    assert list(SparseBatch.empty().chunks(4)) == []
