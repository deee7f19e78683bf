"""lsr export --to anserini|seismic|ciff|bmp: what each format holds, the integer-weight rule, bad input, and
the CIFF writer (a numba kernel and numpy) against the message-by-message Python writer it replaced, byte
for byte. Round trips through Seismic and BMP themselves: tests/integration/test_export_tools.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

import lsr
from benchmarks.export_bench import doc_record_reference, postings_list_reference
from lsr.ciff import CiffHeader, _delimited, read_ciff, write_ciff
from lsr.cli import main
from lsr.index import Index
from lsr.searcher import Plan, Queries, Searcher

DOCS = [
    ("d1", "vitamin d lowers cancer risk in adults"),
    ("d2", "coffee and sleep quality in adults"),
    ("d3", "cancer screening with vitamin supplements"),
    ("d4", "the cat sat on the mat with the dog"),
    ("d5", "vitamin vitamin coffee"),
]


def read_vectors(path):
    return {r["id"]: r["vector"] for r in map(json.loads, path.read_text(encoding="utf-8").splitlines())}


def postings(path):
    """{doc key: {term: weight}} from an index, weights = impact x scale."""
    index = Index.load(path, blockmax=False)
    out: dict[str, dict[str, float]] = {k: {} for k in index.doc_keys}
    for t, term in enumerate(index.vocab):
        a, b = int(index.term_ptr[t]), int(index.term_ptr[t + 1])
        for d, w in zip(index.doc_ids[a:b].tolist(), index.impacts[a:b].tolist(), strict=True):
            out[index.doc_keys[d]][term] = float(w) * float(index.scale)
    return out, float(index.scale)


def export(*args):
    return main(["export", *map(str, args), "--quiet"])


def test_anserini_writes_integers_seismic_floats(tmp_path):
    lsr.Index.build(DOCS, path=tmp_path / "f")  # bm25: float32 impacts (exact BM25 weights)
    weights, _ = postings(tmp_path / "f")
    assert export("--index", tmp_path / "f", "--to", "anserini", "--out", tmp_path / "a.jsonl") == 2
    assert (
        export(
            "--index", tmp_path / "f", "--to", "anserini", "--quantize", 100, "--out", tmp_path / "a.jsonl"
        )
        == 0
    )
    ints = read_vectors(tmp_path / "a.jsonl")
    for doc, vector in weights.items():
        assert ints[doc] == {t: round(w * 100) for t, w in vector.items() if round(w * 100) >= 1}
        assert all(isinstance(w, int) for w in ints[doc].values())  # Anserini truncates floats
    assert export("--index", tmp_path / "f", "--to", "seismic", "--out", tmp_path / "s.jsonl") == 0
    floats = read_vectors(tmp_path / "s.jsonl")
    for doc, vector in weights.items():
        assert floats[doc] == pytest.approx(vector, abs=1e-6)
    assert list(floats) == [d for d, _ in DOCS]  # the index's document order


def test_uint8_impacts_export_as_they_are_and_seismic_round_trips(tmp_path):
    # rescore=none: the exported integers against the quantized scores they stand for
    lsr.Index.build(DOCS, overrides=["index.impact_dtype=uint8", "index.rescore=none"], path=tmp_path / "u")
    weights, scale = postings(tmp_path / "u")
    assert export("--index", tmp_path / "u", "--to", "anserini", "--out", tmp_path / "a.jsonl") == 0
    ints = read_vectors(tmp_path / "a.jsonl")
    for doc, vector in weights.items():
        assert ints[doc] == {t: round(w / scale) for t, w in vector.items()}
    # the seismic JSONL is lsr's own sparse-vector JSONL: lsr index --vectors reads it back
    assert export("--index", tmp_path / "u", "--to", "seismic", "--out", tmp_path / "s.jsonl") == 0
    rebuilt = ["index", "--vectors", str(tmp_path / "s.jsonl"), "--out", str(tmp_path / "r"), "--quiet"]
    assert main([*rebuilt, "--set", "index.impact_dtype=float32"]) == 0
    a, b = Searcher(tmp_path / "u"), Searcher(tmp_path / "r")
    for query in ({"vitamin": 1.0, "cancer": 2.0}, {"coffe": 1.0, "adult": 1.0}, {"cat": 3.0}):
        ra = a.search_batch(Queries(sparse=a.encode_vectors([query])), Plan(k=5))[0]
        rb = b.search_batch(Queries(sparse=b.encode_vectors([query])), Plan(k=5))[0]
        assert [a.index.doc_keys[d] for d in ra.docs] == [b.index.doc_keys[d] for d in rb.docs]
        np.testing.assert_allclose(rb.scores, ra.scores, rtol=1e-5)


def test_bad_requests_are_refused_by_name(tmp_path, capsys):
    lsr.Index.build(DOCS, path=tmp_path / "f")
    assert (
        export("--index", tmp_path / "f", "--to", "seismic", "--quantize", 100, "--out", tmp_path / "s") == 2
    )
    assert "seismic reads floats" in capsys.readouterr().err
    assert export("--index", tmp_path / "f", "--to", "ciff", "--out", tmp_path / "c.ciff") == 2
    assert "float32 impacts" in capsys.readouterr().err and not (tmp_path / "c.ciff").exists()
    (tmp_path / "c.ciff").write_bytes(b"keep")
    assert (
        export("--index", tmp_path / "f", "--to", "ciff", "--quantize", 10, "--out", tmp_path / "c.ciff") == 2
    )
    assert (tmp_path / "c.ciff").read_bytes() == b"keep" and "--overwrite" in capsys.readouterr().err
    bmp = ["--to", "bmp", "--bmp-block-size", 0, "--out", tmp_path / "b"]
    assert export("--index", tmp_path / "f", *bmp) == 2
    assert "--bmp-block-size 0 must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "--index", str(tmp_path / "f"), "--to", "lucene", "--out", str(tmp_path / "x")])
    assert "invalid choice: 'lucene'" in capsys.readouterr().err
    live = tmp_path / "live"
    assert (
        main(["index", "--corpus", str(corpus_file(tmp_path)), "--encoder", "bm25", "--out", str(live)]) == 0
    )
    assert main(["add", "--index", str(live), "--corpus", str(corpus_file(tmp_path, "d9")), "--quiet"]) == 0
    assert export("--index", live, "--to", "seismic", "--out", tmp_path / "l.jsonl") == 2
    assert "lsr merge" in capsys.readouterr().err


def corpus_file(tmp_path, doc_id="d1"):
    path = tmp_path / f"{doc_id}.jsonl"
    path.write_text(json.dumps({"_id": doc_id, "text": "vitamin d and coffee"}) + "\n", encoding="utf-8")
    return path


# --- the CIFF writer against the reference ------------------------------------------------------------


def reference_ciff(vocab, term_ptr, doc_ids, tfs, keys, description):
    keep = tfs >= 1
    term_of = np.repeat(np.arange(len(vocab)), np.diff(term_ptr))
    per_term = np.bincount(term_of[keep], minlength=len(vocab))
    lengths = np.bincount(doc_ids[keep], weights=tfs[keep], minlength=len(keys)).astype(np.int64)
    avg = float(lengths.mean()) if len(keys) else 0.0
    out = _delimited(
        CiffHeader(int((per_term > 0).sum()), len(keys), int(tfs[keep].sum()), avg, description).encode()
    )
    for t in np.flatnonzero(per_term).tolist():
        a, b = int(term_ptr[t]), int(term_ptr[t + 1])
        mask = keep[a:b]
        out += _delimited(postings_list_reference(vocab[t], doc_ids[a:b][mask], tfs[a:b][mask]))
    for d, key in enumerate(keys):
        out += _delimited(doc_record_reference(d, key, int(lengths[d])))
    return out


def random_postings(rng, n_terms, n_docs, big):
    lists = []
    for _ in range(n_terms):
        df = int(rng.integers(0, min(n_docs, 40) + 1))
        docs = np.sort(rng.choice(n_docs, size=df, replace=False))
        top = 2**31 - 1 if big else 300
        tfs = rng.integers(0, top, size=df, endpoint=True)  # zeros: left out
        lists.append((docs, tfs))
    term_ptr = np.concatenate([[0], np.cumsum([len(d) for d, _ in lists])]).astype(np.int64)
    doc_ids = np.concatenate([d for d, _ in lists] + [np.zeros(0, np.int64)]).astype(np.int64)
    tfs = np.concatenate([t for _, t in lists] + [np.zeros(0, np.int64)]).astype(np.int64)
    return term_ptr, doc_ids, tfs


@pytest.mark.parametrize("seed", range(6))
def test_ciff_writer_gives_the_reference_bytes(tmp_path, seed, monkeypatch):
    import lsr.ciff

    rng = np.random.default_rng(seed)
    n_docs = int(rng.integers(1, 3000))  # docids past 127 and 16383: multi-byte gaps
    n_terms = int(rng.integers(1, 60))
    term_ptr, doc_ids, tfs = random_postings(rng, n_terms, n_docs, big=seed % 2 == 1)
    vocab = ["", "é", "日本語", *(f"t{i}" for i in range(n_terms))][:n_terms]  # empty and non-ASCII terms
    keys = [f"doc-{i}-ü" if i % 7 else str(i) for i in range(n_docs)]
    monkeypatch.setattr(lsr.ciff, "_CHUNK_POSTINGS", int(rng.integers(1, 50)))  # many chunks
    monkeypatch.setattr(lsr.ciff, "_CHUNK_DOCS", int(rng.integers(1, 500)))
    counts = write_ciff(tmp_path / "x.ciff", vocab, term_ptr, doc_ids, tfs, keys, "seed")
    assert (tmp_path / "x.ciff").read_bytes() == reference_ciff(vocab, term_ptr, doc_ids, tfs, keys, "seed")
    assert counts["postings"] == int((tfs >= 1).sum())
    back = read_ciff(tmp_path / "x.ciff")  # the reader (numba) gives back what was written
    assert back.doc_ids == keys
    kept = [t for t in range(n_terms) if (tfs[term_ptr[t] : term_ptr[t + 1]] >= 1).any()]
    assert back.terms == [vocab[t] for t in kept]
    for t, (docs, got) in zip(kept, back.postings, strict=True):
        a, b = term_ptr[t], term_ptr[t + 1]
        keep = tfs[a:b] >= 1
        assert docs.tolist() == doc_ids[a:b][keep].tolist() and got.tolist() == tfs[a:b][keep].tolist()


def test_every_truncation_of_a_ciff_file_is_named(tmp_path):
    from lsr.errors import DataFormatError

    vocab, keys = ["a", "bb", "ccc"], ["x", "y", "z"]
    args = [np.array(a, dtype=np.int64) for a in ([0, 2, 3, 5], [0, 2, 1, 0, 2], [1, 300, 2, 70000, 5])]
    write_ciff(tmp_path / "f.ciff", vocab, *args, keys, "")
    data = (tmp_path / "f.ciff").read_bytes()
    assert read_ciff(tmp_path / "f.ciff").tfs.tolist() == [1, 300, 2, 70000, 5]
    for cut in range(len(data)):
        (tmp_path / "cut.ciff").write_bytes(data[:cut])
        with pytest.raises(DataFormatError, match=r"cut\.ciff"):
            read_ciff(tmp_path / "cut.ciff")


def test_ciff_writer_edge_cases(tmp_path):
    vocab, keys = ["a", "b", "c"], ["x", "y"]
    cases = [  # (term_ptr, doc_ids, tfs)
        ([0, 0, 0, 0], [], []),  # no postings
        ([0, 2, 2, 3], [0, 1, 1], [1, 2**31 - 1, 128]),  # docid 0 (a zero gap), the largest tf
        ([0, 1, 1, 2], [1, 0], [0, 5]),  # a list left empty by a zero tf
    ]
    for term_ptr, docs, tfs in cases:
        args = [np.array(a, dtype=np.int64) for a in (term_ptr, docs, tfs)]
        write_ciff(tmp_path / "e.ciff", vocab, *args, keys, "")
        assert (tmp_path / "e.ciff").read_bytes() == reference_ciff(vocab, *args, keys, "")
    with pytest.raises(ValueError, match="ascending"):
        write_ciff(
            tmp_path / "bad.ciff", vocab, np.array([0, 2, 2, 2]), np.array([1, 0]), np.array([1, 1]), keys
        )
    assert not (tmp_path / "bad.ciff").exists()
