"""CIFF export (lsr export) and import (lsr index --ciff): a round trip keeps every ranking, and
ciff-toolkit (the format's Python reader, when installed) reads what lsr writes."""

from __future__ import annotations

import numpy as np
import pytest

import lsr
from lsr.ciff import read_ciff
from lsr.cli import main
from lsr.errors import DataFormatError
from lsr.searcher import Plan, Queries, Searcher

DOCS = [
    ("d1", "vitamin d lowers cancer risk in adults"),
    ("d2", "coffee and sleep quality in adults"),
    ("d3", "cancer screening with vitamin supplements"),
    ("d4", "the cat sat on the mat with the dog"),
    ("d5", "vitamin vitamin coffee"),
]
QUERIES = [{"vitamin": 1.0, "cancer": 2.0}, {"coffe": 1.0, "adult": 1.0}, {"cat": 3.0}]


@pytest.fixture
def exported(tmp_path):
    # a CIFF carries integer impacts only: compare with the quantized ranking (no exact rescoring)
    lsr.Index.build(DOCS, overrides=["index.impact_dtype=uint8", "index.rescore=none"], path=tmp_path / "a")
    assert main(["export", "--index", str(tmp_path / "a"), "--out", str(tmp_path / "a.ciff"), "--quiet"]) == 0
    return tmp_path


def test_round_trip_keeps_rankings(exported):
    tmp = exported
    assert main(["index", "--ciff", str(tmp / "a.ciff"), "--out", str(tmp / "b"), "--quiet"]) == 0
    a, b = Searcher(tmp / "a"), Searcher(tmp / "b")
    assert b.index.doc_keys == a.index.doc_keys
    for vector in QUERIES:
        known = {t: w for t, w in vector.items() if t in a.index.term_index}
        ra = a.search_batch(Queries(sparse=a.encode_vectors([known])), Plan(k=5))[0]
        rb = b.search_batch(Queries(sparse=b.encode_vectors([known])), Plan(k=5))[0]
        assert ra.docs.tolist() == rb.docs.tolist()
        np.testing.assert_allclose(rb.scores * a.index.scale, ra.scores, rtol=1e-5)  # tfs = uint8 impacts


def test_ciff_toolkit_reads_our_file(exported):
    reader_module = pytest.importorskip("ciff_toolkit.read")
    ours = read_ciff(exported / "a.ciff")
    with reader_module.CiffReader(exported / "a.ciff") as reader:
        header = reader.read_header()
        assert (header.num_docs, header.num_postings_lists) == (len(DOCS), len(ours.terms))
        lists = list(reader.read_postings_lists())
        docs = list(reader.read_documents())
    assert [pl.term for pl in lists] == ours.terms
    for pl, (doc_ids, tfs) in zip(lists, ours.postings, strict=True):
        assert np.cumsum([p.docid for p in pl.postings]).tolist() == doc_ids.tolist()
        assert [p.tf for p in pl.postings] == tfs.tolist() and pl.df == len(doc_ids)
    assert [d.collection_docid for d in docs] == [d for d, _ in DOCS]


def test_float_impacts_need_a_scale_and_bad_files_are_named(tmp_path):
    lsr.Index.build(DOCS, path=tmp_path / "f")  # bm25: float32 impacts
    args = ["export", "--index", str(tmp_path / "f"), "--out", str(tmp_path / "f.ciff"), "--quiet"]
    assert main(args) == 2
    assert main([*args, "--quantize", "100"]) == 0
    assert len(read_ciff(tmp_path / "f.ciff").doc_ids) == len(DOCS)
    data = (tmp_path / "f.ciff").read_bytes()
    (tmp_path / "cut.ciff").write_bytes(data[: len(data) // 3])
    with pytest.raises(DataFormatError, match=r"cut\.ciff"):
        read_ciff(tmp_path / "cut.ciff")
