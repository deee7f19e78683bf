"""lsr.live.LiveIndex from Python, and a live index through the Searcher (hits from segment docstores)."""

from __future__ import annotations

import json

import pytest

from lsr.cli import main
from lsr.errors import DataFormatError, IndexLockedError, VocabularyMismatchError
from lsr.index.writer import IndexWriter
from lsr.live import LiveIndex, read_ids
from lsr.searcher import Plan, Searcher


@pytest.fixture
def bm25_index(tmp_path):
    corpus = tmp_path / "c.jsonl"
    docs = [
        {"_id": "a", "title": "Cats", "text": "the cat sat on the mat"},
        {"_id": "b", "title": "Dogs", "text": "dogs chase cats in the park"},
        {"_id": "c", "title": "Birds", "text": "birds sing at dawn"},
    ]
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
    out = tmp_path / "idx"
    assert main(["index", "--corpus", str(corpus), "--encoder", "bm25", "--out", str(out), "--quiet"]) == 0
    return out


def test_python_api_and_searcher_hits(bm25_index, tmp_path):
    live = LiveIndex(bm25_index)
    more = tmp_path / "more.jsonl"
    more.write_text(
        json.dumps({"_id": "d", "title": "Owls", "text": "owls and cats"})
        + "\n"
        + json.dumps({"_id": "a", "title": "Mats", "text": "mats"})
        + "\n"
    )
    result = live.add_corpus(more)
    assert (result.added, result.updated) == (["d"], ["a"])
    searcher = Searcher(bm25_index)
    hits = searcher.hits(searcher.search("cat", Plan(k=5)))
    assert {h.doc_id: h.title for h in hits} == {"d": "Owls", "b": "Dogs"}
    assert live.delete(["zzz"]).unknown == ["zzz"]
    info = live.info()
    assert (info["n_docs"], info["n_deleted"], info["encoder"], info["generation"]) == (
        4,
        0,
        "bm25",
        2,
    )  # 1 of 3 deleted: the policy rewrote "."
    live.merge()
    info = live.info()
    assert (len(info["segments"]), info["n_docs"], info["n_deleted"]) == (1, 4, 0)
    searcher = Searcher(bm25_index)
    assert [h.doc_id for h in searcher.hits(searcher.search("owls", Plan(k=5)))] == ["d"]


def test_locked_index_and_fixed_vocabulary(bm25_index, tmp_path):
    with IndexWriter(bm25_index), pytest.raises(IndexLockedError, match="pid"):
        LiveIndex(bm25_index).delete(["a"])
    vectors = tmp_path / "v.jsonl"
    vectors.write_text(json.dumps({"id": "d0", "vector": {"x": 1.0}}) + "\n")
    out = tmp_path / "ext"
    assert main(["index", "--vectors", str(vectors), "--out", str(out), "--quiet"]) == 0
    live = LiveIndex(out)
    with pytest.raises(VocabularyMismatchError, match="fixed vocabulary"):
        _add_with_encoder(live, "splade", {"d1": {"unknown-term": 1.0}})
    assert live.add_vectors({"d1": {"x": 2.0, "new-term": 1.0}}).added == ["d1"]  # external: grows
    with pytest.raises(DataFormatError, match="empty vector"):
        live.add_vectors({"d2": {}})


def _add_with_encoder(live: LiveIndex, name: str, vectors: dict) -> None:
    original = IndexWriter.sections

    def sections(self):  # the index's encoder section, as a transformer index records it
        return {**original(self), "encoder": {"name": name}}

    IndexWriter.sections = sections  # type: ignore[method-assign]
    try:
        live.add_vectors(vectors)
    finally:
        IndexWriter.sections = original  # type: ignore[method-assign]


def test_read_ids(tmp_path):
    (tmp_path / "a.txt").write_text("x\n\n y \n")
    (tmp_path / "b.json").write_text('["p", "q"]')
    assert read_ids(tmp_path / "a.txt") == ["x", "y"]
    assert read_ids(tmp_path / "b.json") == ["p", "q"]


def test_paging_never_repeats_and_keeps_the_order(tmp_path):
    corpus = tmp_path / "p.jsonl"
    texts = ["cat", "cat cat", "cat dog", "dog", "cat mat", "cat cat cat", "mat", "cat bird", "bird"]
    corpus.write_text(
        "".join(json.dumps({"_id": f"p{i}", "title": "", "text": t}) + "\n" for i, t in enumerate(texts))
    )
    out = tmp_path / "idx"
    assert main(["index", "--corpus", str(corpus), "--encoder", "bm25", "--out", str(out), "--quiet"]) == 0
    LiveIndex(out).delete(["p1"])  # a live index pages the same way
    searcher = Searcher(out)
    for mode in ("exact", "safe"):
        full = searcher.search("cat", Plan(k=10, mode=mode))
        pages = [searcher.search("cat", Plan(k=2, offset=o, mode=mode)) for o in (0, 2, 4, 6)]
        assert [d for p in pages for d in p.docs.tolist()] == full.docs.tolist()
        assert [h.rank for h in searcher.hits(pages[1], offset=2)] == [3, 4]
    with pytest.raises(ValueError, match="offset"):
        Plan(offset=-1)
