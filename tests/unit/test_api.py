"""lsr.Index: the in-memory Python API (build, search, search_batch, save, load) on the one retrieval path."""

from __future__ import annotations

import json

import numpy as np
import pytest

import lsr
from lsr.cli import main
from lsr.errors import DataFormatError
from lsr.searcher import Plan, Searcher

DOCS = [
    {"id": "d1", "title": "Cats", "text": "The cat sat on the mat."},
    {"id": "d2", "text": "A dog and a cat."},
    {"id": "d3", "title": "Dogs", "text": "Dogs chase cats in the park."},
    {"id": "d4", "text": "Birds fly south in winter."},
]


def test_build_search_save_load_round_trip(tmp_path):
    index = lsr.Index.build(DOCS, encoder="bm25")
    assert len(index) == 4 and "bm25" in repr(index)
    hits = index.search("cat dogs", k=3)
    assert [h.rank for h in hits] == [1, 2, 3] and {h.doc_id for h in hits} <= {"d1", "d2", "d3"}
    assert hits[0].fields["text"] and all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))
    saved = index.save(tmp_path / "saved")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        index.save(tmp_path / "saved")
    loaded = lsr.Index.load(saved)
    again = loaded.search("cat dogs", k=3)
    assert [(h.doc_id, h.score) for h in again] == [(h.doc_id, h.score) for h in hits]


def test_same_results_as_the_cli_index(tmp_path):
    """One retrieval path: an in-memory build equals `lsr index` over the same documents as JSONL."""
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in DOCS), encoding="utf-8")
    out = ["--out", str(tmp_path / "i"), "--quiet"]
    assert main(["index", "--corpus", str(corpus), "--encoder", "bm25", *out]) == 0
    searcher = Searcher(tmp_path / "i")
    cli = [(h.doc_id, h.score) for h in searcher.hits(searcher.search("cat in the park", Plan(k=4)))]
    api = lsr.Index.build(DOCS, path=tmp_path / "api")
    assert [(h.doc_id, h.score) for h in api.search("cat in the park", k=4)] == cli
    assert lsr.Index.build(corpus).search("cat in the park", k=4)[0].doc_id == cli[0][0]  # a path works too


def test_pairs_strings_and_batch_arrays():
    pairs = [("a", "red apples"), ("b", "Fruit", "green apples and pears"), ("c", "blue sky")]
    index = lsr.Index.build(pairs)
    ids, scores = index.search_batch(["apples", "sky", "zebra"], k=2)
    assert ids.shape == scores.shape == (3, 2)
    assert set(ids[0]) == {"a", "b"} and list(ids[1]) == ["c", ""] and list(ids[2]) == ["", ""]
    assert np.isnan(scores[1, 1]) and np.isnan(scores[2]).all() and scores[0, 0] >= scores[0, 1]
    strings = lsr.Index.build(["hello world", "goodbye world"])
    assert strings.search("goodbye", mode="safe")[0].doc_id == "1"


def test_bad_documents_are_named():
    with pytest.raises(DataFormatError, match="document 1: expected a dict"):
        lsr.Index.build(["fine", 3.5])
    with pytest.raises(DataFormatError, match="duplicate document id 'x'"):
        lsr.Index.build([("x", "one"), ("x", "two")])
    with pytest.raises(DataFormatError, match="no text field"):
        lsr.Index.build([{"id": "x", "body2": "one"}])
    with pytest.raises(ValueError, match="empty query"):
        lsr.Index.build(["one"]).search("  ")


def test_lsr_info_summarizes_a_saved_index(tmp_path, capsys):
    lsr.Index.build(DOCS).save(tmp_path / "idx")
    assert main(["info", "--index", str(tmp_path / "idx"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["n_docs"], info["encoder"], info["n_deleted"]) == (4, "bm25", 0)
    details = info["details"]
    assert details["docstore"] and details["blockmax"] and not details["dense"]
    assert details["n_postings"] > 0 and info["bytes"] > 0 and details["impacts"]["dtype"] == "float32"
    assert main(["info", "--index", str(tmp_path / "missing")]) == 2
