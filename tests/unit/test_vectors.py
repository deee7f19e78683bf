"""lsr.vectors: the sharded on-disk encoded corpus, written atomically."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lsr.data.docstore import DocStore
from lsr.errors import DataFormatError
from lsr.index.io import ArtifactError
from lsr.vectors import Vectors, VectorWriter

VOCAB = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta"]


def make_rows(n_docs: int):
    """Doc i has terms {i % 7, (i + 2) % 7, ...} with distinct weights; doc 3 is empty."""
    rows = []
    for i in range(n_docs):
        if i == 3:
            rows.append((f"doc-{i}", np.zeros(0, np.int64), np.zeros(0, np.float32)))
            continue
        terms = np.array(sorted({i % 7, (i + 2) % 7, (i + 5) % 7}), dtype=np.int64)
        weights = (np.arange(1, len(terms) + 1) * (i + 1) / 4).astype(np.float32)
        rows.append((f"doc-{i}", terms, weights))
    return rows


def write_vectors(out, rows, shard_docs=3, store_docs=True, overwrite=False):
    with VectorWriter(out, shard_docs=shard_docs, store_docs=store_docs, overwrite=overwrite) as w:
        for doc_id, terms, weights in rows:
            w.add(doc_id, terms, weights, title=f"Title of {doc_id}", text=f"Text of {doc_id} é")
        return w.finish(VOCAB, {"encoder": {"name": "test"}, "source": {"corpus": "unit"}})


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_round_trip_across_several_shards(tmp_path):
    rows = make_rows(8)
    out = tmp_path / "vec"
    meta = write_vectors(out, rows, shard_docs=3)

    assert listing(tmp_path) == ["vec"]  # no temporary directory left beside it
    v = Vectors(out)
    assert v.meta == meta
    assert v.meta["format"] == "lsr-vectors" and v.meta["format_version"] == 1
    assert v.n_docs == 8 and v.n_terms == len(VOCAB)
    nnz = sum(len(t) for _, t, _ in rows)
    assert v.meta["nnz"] == nnz
    assert v.meta["doc_nnz_avg"] == pytest.approx(nnz / 8)
    assert [s["n_docs"] for s in v.meta["shards"]] == [3, 3, 2]
    assert [s["name"] for s in v.meta["shards"]] == ["shard-00000", "shard-00001", "shard-00002"]
    assert v.meta["encoder"] == {"name": "test"} and v.meta["source"] == {"corpus": "unit"}
    assert v.meta["docstore"] is True

    assert list(v.iter_ids()) == [r[0] for r in rows]
    assert v.vocab() == VOCAB

    batches = list(v.batches())
    assert [len(b) for b in batches] == [3, 3, 2]
    assert sum(b.nnz for b in batches) == nnz
    for shard, batch in zip(v.meta["shards"], batches, strict=True):
        assert shard["nnz"] == batch.nnz
        batch.validate(n_terms=len(VOCAB))
        assert batch.indptr.dtype == np.int64 and batch.term_ids.dtype == np.int32
        assert batch.weights.dtype == np.float32
    got = [batch.row(i) for batch in batches for i in range(len(batch))]
    for (_, terms, weights), (t, w) in zip(rows, got, strict=True):
        np.testing.assert_array_equal(t, terms)
        np.testing.assert_array_equal(w, weights)

    store = DocStore(out)
    assert len(store) == 8
    for i in (0, 3, 4, 7):  # first, last, and across shard boundaries
        assert store.get(i) == {"id": f"doc-{i}", "title": f"Title of doc-{i}", "text": f"Text of doc-{i} é"}
    with pytest.raises(IndexError):
        store.get(8)
    with pytest.raises(IndexError):
        store.get(-1)


def test_without_docstore(tmp_path):
    out = tmp_path / "vec"
    write_vectors(out, make_rows(4), store_docs=False)
    assert not (out / "docstore.jsonl").exists()
    assert Vectors(out).meta["docstore"] is False


def test_shard_size_exact_multiple(tmp_path):
    out = tmp_path / "vec"
    write_vectors(out, make_rows(6), shard_docs=3)
    assert [s["n_docs"] for s in Vectors(out).meta["shards"]] == [3, 3]


def test_existing_output_is_refused_without_overwrite(tmp_path):
    out = tmp_path / "vec"
    write_vectors(out, make_rows(2))
    before = (out / "meta.json").read_text(encoding="utf-8")
    with pytest.raises(FileExistsError):
        write_vectors(out, make_rows(5))
    assert (out / "meta.json").read_text(encoding="utf-8") == before
    assert listing(tmp_path) == ["vec"]


def test_overwrite_replaces_output(tmp_path):
    out = tmp_path / "vec"
    write_vectors(out, make_rows(2))
    write_vectors(out, make_rows(5), overwrite=True)
    assert Vectors(out).n_docs == 5
    assert listing(tmp_path) == ["vec"]


def test_duplicate_doc_ids_are_named_with_line_numbers(tmp_path):
    rows = make_rows(6)
    rows[4] = ("doc-1", *rows[4][1:])  # line 5 repeats line 2's id
    rows[5] = ("doc-0", *rows[5][1:])  # line 6 repeats line 1's id
    out = tmp_path / "vec"
    with pytest.raises(DataFormatError) as exc:
        write_vectors(out, rows, shard_docs=2)
    msg = str(exc.value)
    assert "'doc-0' (docs 1 and 6)" in msg
    assert "'doc-1' (docs 2 and 5)" in msg
    assert "doc-2" not in msg
    assert listing(tmp_path) == []  # no output directory, no hidden temporary one


def test_duplicate_doc_ids_keep_existing_output_with_overwrite(tmp_path):
    out = tmp_path / "vec"
    write_vectors(out, make_rows(3))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    rows = make_rows(4)
    rows[3] = ("doc-0", *rows[3][1:])
    with pytest.raises(DataFormatError, match="doc-0"):
        write_vectors(out, rows, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert listing(tmp_path) == ["vec"]
    assert Vectors(out).n_docs == 3


@pytest.mark.parametrize("overwrite", [False, True])
def test_crash_inside_the_block_leaves_nothing(tmp_path, overwrite):
    out = tmp_path / "vec"
    if overwrite:
        write_vectors(out, make_rows(2))
        before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(RuntimeError, match="boom"):
        with VectorWriter(out, shard_docs=2, store_docs=True, overwrite=overwrite) as w:
            for doc_id, terms, weights in make_rows(5):
                w.add(doc_id, terms, weights, "t", "x")  # several shards already on disk
            raise RuntimeError("boom")
    if overwrite:
        assert listing(tmp_path) == ["vec"]
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    else:
        assert listing(tmp_path) == []


def test_keyboard_interrupt_inside_the_block_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with VectorWriter(tmp_path / "vec", shard_docs=1) as w:
            w.add("a", np.array([0]), np.array([1.0], dtype=np.float32))
            raise KeyboardInterrupt
    assert listing(tmp_path) == []


def test_output_parent_is_created(tmp_path):
    out = tmp_path / "a" / "b" / "vec"
    write_vectors(out, make_rows(2))
    assert Vectors(out).n_docs == 2


def test_vectors_rejects_a_directory_without_meta(tmp_path):
    (tmp_path / "half").mkdir()
    with pytest.raises(ArtifactError, match="meta.json"):
        Vectors(tmp_path / "half")


def test_vectors_rejects_another_format(tmp_path):
    (tmp_path / "idx").mkdir()
    (tmp_path / "idx" / "meta.json").write_text(json.dumps({"format": "lsr-index", "format_version": 1}))
    with pytest.raises(ArtifactError, match="lsr-index"):
        Vectors(tmp_path / "idx")
