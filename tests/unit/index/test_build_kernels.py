"""The index build's parallel kernels against slow pure-Python references on seeded random input:
the inverted scatter (any number of row chunks), the posting sort, linear quantization and the
forward index's scatter with its error maxima."""

from __future__ import annotations

import numpy as np
import pytest
from corpora import random_corpus

from lsr.index.blockmax import blockmax_arrays
from lsr.index.kernels.invert import _quantize_linear, _scatter_postings, _sort_postings
from lsr.index.kernels.prune import _prune_lists, _pruned_lengths
from lsr.index.kernels.rescore import _scatter_rows

CHUNKS = [1, 2, 3, 7, 64]


def _reference_scatter(indptr, term_ids, impacts, new_ids, fill_pos, n_postings):
    docs = np.full(n_postings, -1, np.int32)
    out = np.zeros(n_postings, impacts.dtype)
    cursor = fill_pos.copy()
    for r in range(len(indptr) - 1):
        for p in range(indptr[r], indptr[r + 1]):
            t = term_ids[p]
            docs[cursor[t]], out[cursor[t]] = new_ids[r], impacts[p]
            cursor[t] += 1
    return docs, out, cursor


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n_chunks", CHUNKS)
def test_scatter_postings_equals_the_row_by_row_scatter(seed, n_chunks):
    rng = np.random.default_rng(seed)
    n_terms = 40
    batch = random_corpus(rng, 50, n_terms, 12, integer=False)
    counts = np.bincount(batch.term_ids, minlength=n_terms) + rng.integers(0, 3, n_terms)  # room after
    offset = rng.integers(0, 3, n_terms)  # postings of earlier batches
    term_ptr = np.concatenate([[0], np.cumsum(counts + offset)])
    fill_pos = (term_ptr[:-1] + offset).astype(np.int64)
    new_ids = rng.permutation(len(batch)).astype(np.int32)
    impacts = rng.integers(1, 256, batch.nnz).astype(np.uint8)
    want_docs, want_impacts, want_cursor = _reference_scatter(
        batch.indptr, batch.term_ids, impacts, new_ids, fill_pos, int(term_ptr[-1])
    )
    docs = np.full(int(term_ptr[-1]), -1, np.int32)
    got = np.zeros(int(term_ptr[-1]), np.uint8)
    cursor = fill_pos.copy()
    _scatter_postings(batch.indptr, batch.term_ids, impacts, new_ids, cursor, docs, got, n_chunks)
    np.testing.assert_array_equal(docs, want_docs)
    np.testing.assert_array_equal(got, want_impacts)
    np.testing.assert_array_equal(cursor, want_cursor)


@pytest.mark.parametrize("seed", range(4))
def test_sort_postings_sorts_each_list_by_doc_carrying_impacts(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 30, 25)
    term_ptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    docs = np.concatenate([rng.choice(1000, n, replace=False) for n in lengths]).astype(np.int32)
    impacts = rng.integers(1, 256, len(docs)).astype(np.uint8)
    spans = list(zip(term_ptr[:-1], term_ptr[1:], strict=True))

    def lists():
        return [list(zip(docs[s:e].tolist(), impacts[s:e].tolist(), strict=True)) for s, e in spans]

    want = [sorted(pairs) for pairs in lists()]
    _sort_postings(term_ptr, docs, impacts)
    assert lists() == want


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_quantize_linear_rounds_half_to_even_and_clips_like_numpy(dtype):
    rng = np.random.default_rng(0)
    top = float(np.iinfo(dtype).max)
    scale = 3.0 / top
    halves = (np.arange(0, 20) + 0.5) * scale  # ties: round half to even
    weights = np.concatenate([rng.uniform(1e-6, 4.0, 5000), halves, [1e-9, scale * 0.49, 3.0, 7.5]])
    weights = weights.astype(np.float32)
    want = np.clip(np.rint(weights.astype(np.float64) / scale), 1, top).astype(dtype)
    got = np.empty(len(weights), dtype)
    _quantize_linear(weights, scale, top, got)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n_chunks", CHUNKS)
def test_forward_scatter_equals_the_row_by_row_copy(seed, n_chunks):
    rng = np.random.default_rng(seed)
    n_terms = 30
    batch = random_corpus(rng, 40, n_terms, 10, integer=False)
    scale = 3.0 / 255
    impacts = np.clip(np.rint(batch.weights / scale), 1, 255).astype(np.uint8)
    perm = rng.permutation(len(batch))  # internal doc i is row perm[i]
    internal_start = np.concatenate([[0], np.cumsum(np.diff(batch.indptr)[perm])])[:-1]
    row_start = internal_start[np.argsort(perm)]
    want_terms = np.zeros(batch.nnz, np.uint16)
    want_weights = np.zeros(batch.nnz, np.float32)
    want_err = rng.uniform(0, 0.001, n_terms)  # maxima of earlier batches
    term_err = want_err.copy()
    for r in range(len(batch)):
        for j, p in enumerate(range(batch.indptr[r], batch.indptr[r + 1])):
            t = batch.term_ids[p]
            want_terms[row_start[r] + j], want_weights[row_start[r] + j] = t, batch.weights[p]
            err = abs(float(batch.weights[p]) - scale * float(impacts[p]))
            want_err[t] = max(want_err[t], err)
    terms = np.zeros(batch.nnz, np.uint16)
    weights = np.zeros(batch.nnz, np.float32)
    args = (batch.indptr, batch.term_ids, batch.weights, impacts, scale, row_start.astype(np.int64))
    _scatter_rows(*args, terms, weights, term_err, n_chunks)
    np.testing.assert_array_equal(terms, want_terms)
    np.testing.assert_array_equal(weights, want_weights)
    np.testing.assert_array_equal(term_err, want_err)


def _reference_blockmax(term_ptr, doc_ids, impacts, n_docs, block_size, dense_fraction):
    """The block-max layout (lsr.index.kernels.blockmax_build) written out plainly."""
    n_blocks = -(-n_docs // block_size)
    lists = [
        (doc_ids[s:e] // block_size, impacts[s:e]) for s, e in zip(term_ptr[:-1], term_ptr[1:], strict=True)
    ]
    runs = [len(set(blocks.tolist())) for blocks, _ in lists]
    dense = [n > 0 and n >= dense_fraction * n_blocks for n in runs]
    rows = {"max": [], "base": [], "off": []}
    for t in np.flatnonzero(dense):
        blocks, imp = lists[t]
        first = [
            int(np.searchsorted(blocks, b)) for b in range(n_blocks + 1)
        ]  # first posting in a block >= b
        base = [first[b] for b in range(0, n_blocks + 1, 256)]
        rows["max"].append([int(imp[blocks == b].max(initial=0)) for b in range(n_blocks)])
        rows["base"].append(base + [0] * ((n_blocks >> 8) + 1 - len(base)))
        rows["off"].append([first[b] - base[b >> 8] for b in range(n_blocks + 1)])
    lengths = np.diff(term_ptr)
    dense_before = np.concatenate([[0], np.cumsum(np.where(dense, lengths, 0))[:-1]])
    entries = []  # (block, max, start in sparse coordinates)
    for t, (blocks, imp) in enumerate(lists):
        if not dense[t]:
            for b in dict.fromkeys(blocks.tolist()):
                p = int(np.flatnonzero(blocks == b)[0]) + term_ptr[t]
                entries.append((b, int(imp[blocks == b].max()), p - dense_before[t]))
    tb_base = np.zeros((len(entries) >> 8) + 1, np.int64)
    tb_base[: -(-len(entries) // 256)] = [entries[q][2] for q in range(0, len(entries), 256)]
    row_of = np.full(len(lists), -1)
    row_of[np.flatnonzero(dense)] = np.arange(int(np.sum(dense)))
    return {
        "row_of": row_of,
        "dense_max": np.array(rows["max"], np.uint8).reshape(-1, n_blocks),
        "dense_base": np.array(rows["base"], np.uint32).reshape(-1, (n_blocks >> 8) + 1),
        "dense_off": np.array(rows["off"], np.uint16).reshape(-1, n_blocks + 1),
        "tb_ptr": np.concatenate([[0], np.cumsum(np.where(dense, 0, runs))]),
        "tb_block": np.array([e[0] for e in entries]),
        "tb_max": np.array([e[1] for e in entries], np.uint8),
        "tb_base": tb_base,
        "tb_off": np.array([e[2] - tb_base[q >> 8] for q, e in enumerate(entries)]),
        "dense_before": dense_before,
    }


@pytest.mark.parametrize("seed", range(3))
def test_blockmax_arrays_equal_the_layout_written_out(seed):
    """Several groups of 256 sparse runs and of 256 dense blocks, rows and runs filled in parallel."""
    rng = np.random.default_rng(seed)
    n_docs, block_size, n_terms = 1100, 4, 120
    share = np.where(
        rng.random(n_terms) < 0.15, rng.uniform(0.1, 0.6, n_terms), rng.uniform(0, 0.02, n_terms)
    )
    lists = [np.flatnonzero(rng.random(n_docs) < s) for s in share]
    term_ptr = np.concatenate([[0], np.cumsum([len(x) for x in lists])]).astype(np.int64)
    doc_ids = np.concatenate(lists).astype(np.int32)
    impacts = rng.integers(1, 256, len(doc_ids)).astype(np.uint8)
    arrays, info = blockmax_arrays((term_ptr, doc_ids, impacts), n_docs, block_size, 0.25)
    want = _reference_blockmax(term_ptr, doc_ids, impacts, n_docs, block_size, 0.25)
    assert info["n_dense_terms"] > 0 and info["n_sparse_runs"] > 512 and info["n_blocks"] > 256
    for name, value in want.items():
        np.testing.assert_array_equal(arrays[name], value, err_msg=name)


@pytest.mark.parametrize("n_workers", [1, 3, 8])
def test_pruned_lists_do_not_depend_on_the_workers(n_workers):
    rng = np.random.default_rng(n_workers)
    lengths = rng.integers(0, 40, 30)
    term_ptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    docs = np.concatenate([np.sort(rng.choice(500, n, replace=False)) for n in lengths]).astype(np.int32)
    impacts = rng.integers(1, 6, len(docs)).astype(np.uint8)  # many ties at the cut
    out_ptr = _pruned_lengths(term_ptr, 10)
    want_docs, want_impacts = [], []
    for s, e in zip(term_ptr[:-1], term_ptr[1:], strict=True):  # top 10 by impact, ties to lower docs
        keep = sorted(sorted(range(s, e), key=lambda j: (-int(impacts[j]), int(docs[j])))[:10])
        want_docs += docs[keep].tolist()
        want_impacts += impacts[keep].tolist()
    got_docs = np.zeros(int(out_ptr[-1]), np.int32)
    got_impacts = np.zeros(int(out_ptr[-1]), np.uint8)
    _prune_lists(term_ptr, docs, impacts, 10, 255, out_ptr, got_docs, got_impacts, n_workers)
    assert got_docs.tolist() == want_docs and got_impacts.tolist() == want_impacts
