"""CIFF export (lsr export) and import (lsr index --ciff): a round trip keeps every ranking, and
ciff-toolkit (the format's Python reader, when installed) reads what lsr writes."""

from __future__ import annotations

import numpy as np
import pytest

import lsr
from lsr.ciff import read_ciff
from lsr.cli import main
from lsr.errors import DataFormatError
from lsr.index import Index
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
    assert (
        main(
            [
                "export",
                "--index",
                str(tmp_path / "a"),
                "--to",
                "ciff",
                "--out",
                str(tmp_path / "a.ciff"),
                "--quiet",
            ]
        )
        == 0
    )
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
    args = [
        "export",
        "--index",
        str(tmp_path / "f"),
        "--to",
        "ciff",
        "--out",
        str(tmp_path / "f.ciff"),
        "--quiet",
    ]
    assert main(args) == 2
    assert main([*args, "--quantize", "100"]) == 0
    assert len(read_ciff(tmp_path / "f.ciff").doc_ids) == len(DOCS)
    data = (tmp_path / "f.ciff").read_bytes()
    (tmp_path / "cut.ciff").write_bytes(data[: len(data) // 3])
    with pytest.raises(DataFormatError, match=r"cut\.ciff"):
        read_ciff(tmp_path / "cut.ciff")


def test_a_file_written_by_protobuf_is_byte_for_byte_ours_and_imports(tmp_path):
    """ciff-toolkit's writer (Google's protobuf serializing ciff.proto's messages) and ours give the same
    bytes; and a file from that other source imports (lsr index --ciff) with its postings intact."""
    pytest.importorskip("ciff_toolkit.write")
    from ciff_toolkit.ciff_pb2 import DocRecord, Header, Posting, PostingsList
    from ciff_toolkit.write import CiffWriter

    from lsr.ciff import write_ciff

    rng = np.random.default_rng(7)
    n_docs, vocab = 400, [f"term{i}" for i in range(30)]
    lists = [np.sort(rng.choice(n_docs, size=int(rng.integers(1, 60)), replace=False)) for _ in vocab]
    tfs = [rng.integers(1, 70_000, size=len(d)) for d in lists]
    keys = [f"doc{i}" for i in range(n_docs)]
    term_ptr = np.concatenate([[0], np.cumsum([len(d) for d in lists])])
    lengths = np.zeros(n_docs, np.int64)
    for d, t in zip(lists, tfs, strict=True):
        np.add.at(lengths, d, t)
    write_ciff(tmp_path / "ours.ciff", vocab, term_ptr, np.concatenate(lists), np.concatenate(tfs), keys, "x")
    header = Header(
        version=1, num_postings_lists=len(vocab), num_docs=n_docs, total_postings_lists=len(vocab),
        total_docs=n_docs, total_terms_in_collection=int(lengths.sum()),
        average_doclength=float(lengths.mean()), description="x",
    )  # fmt: skip
    with CiffWriter(tmp_path / "theirs.ciff") as writer:
        writer.write_header(header)
        writer.write_postings_lists(
            PostingsList(
                term=term,
                df=len(d),
                cf=int(t.sum()),
                postings=[
                    Posting(docid=int(g), tf=int(f)) for g, f in zip(np.diff(d, prepend=0), t, strict=True)
                ],
            )  # fmt: skip
            for term, d, t in zip(vocab, lists, tfs, strict=True)
        )
        writer.write_documents(
            DocRecord(docid=i, collection_docid=k, doclength=int(n))
            for i, (k, n) in enumerate(zip(keys, lengths, strict=True))
        )
    assert (tmp_path / "theirs.ciff").read_bytes() == (tmp_path / "ours.ciff").read_bytes()
    assert (
        main(["index", "--ciff", str(tmp_path / "theirs.ciff"), "--out", str(tmp_path / "i"), "--quiet"]) == 0
    )
    index = Index.load(tmp_path / "i")
    assert index.doc_keys == keys
    for term, docs, t in zip(vocab, lists, tfs, strict=True):
        i = index.term_index[term]
        a, b = int(index.term_ptr[i]), int(index.term_ptr[i + 1])
        assert index.doc_ids[a:b].tolist() == docs.tolist()
        np.testing.assert_allclose(index.impacts[a:b] * index.scale, t, rtol=1e-6)  # tfs are the impacts
