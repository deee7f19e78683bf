"""lsr.weights: integer export for Anserini (lsr encode --format jsonl --quantize) and the warning when
one huge weight would flatten a quantized index."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from lsr.cli import main
from lsr.index.sparse import SparseBatch
from lsr.weights import flattening_warning, quantize_batch


def batch(rows):
    return SparseBatch.from_rows(
        [(np.array(t, dtype=np.int64), np.array(w, dtype=np.float64)) for t, w in rows]
    )


def test_quantize_rounds_and_drops_zeros():
    b = batch([([0, 3, 5, 7], [0.004, 0.5, 1.234, 2.0]), ([], []), ([1], [0.001]), ([2], [0.006])])
    q, dropped = quantize_batch(b, 100)
    assert dropped == 2
    assert [q.row(i)[0].tolist() for i in range(4)] == [[3, 5, 7], [], [], [2]]
    assert [q.row(i)[1].tolist() for i in range(4)] == [[50.0, 123.0, 200.0], [], [], [1.0]]
    with pytest.raises(ValueError, match="32-bit term frequency"):
        quantize_batch(batch([([0], [1e30])]), 100)
    with pytest.raises(ValueError, match="must be > 0"):
        quantize_batch(b, 0)


def write_corpus(path):
    docs = [("d1", "vitamin d lowers cancer risk"), ("d2", "coffee and sleep"), ("d3", "cancer screening")]
    path.write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in docs), encoding="utf-8")
    return path


def read_vectors(path):
    return {r["id"]: r["vector"] for r in map(json.loads, path.read_text(encoding="utf-8").splitlines())}


def test_cli_quantized_jsonl_for_anserini(tmp_path):
    corpus = write_corpus(tmp_path / "c.jsonl")
    base = ["encode", "--encoder", "bm25", "--corpus", str(corpus), "--format", "jsonl", "--quiet"]
    assert main([*base, "--out", str(tmp_path / "float.jsonl")]) == 0
    assert main([*base, "--out", str(tmp_path / "int.jsonl"), "--quantize", "100"]) == 0
    floats, ints = read_vectors(tmp_path / "float.jsonl"), read_vectors(tmp_path / "int.jsonl")
    text = (tmp_path / "int.jsonl").read_text()
    assert "." not in text.replace('"', " ").split("vector")[1].split("}")[0]  # integers, no decimals
    for doc, vector in floats.items():
        want = {t: round(w * 100) for t, w in vector.items() if round(w * 100) >= 1}
        assert ints[doc] == pytest.approx(want, abs=1)  # floats were rounded to 6 decimals first
        assert all(isinstance(w, int) and w >= 1 for w in ints[doc].values())
    assert (
        main(
            [
                "encode",
                "--encoder",
                "bm25",
                "--corpus",
                str(corpus),
                "--out",
                str(tmp_path / "v"),
                "--quantize",
                "100",
                "--quiet",
            ]
        )
        == 2
    )


def test_huge_weight_warns_before_a_quantized_build(tmp_path, caplog):
    rows = [{"id": f"d{i}", "vector": {"a": 1.0 + i / 10, "b": 0.5}} for i in range(50)]
    rows.append({"id": "outlier", "vector": {"spike": 1e30, "a": 1.0}})
    vectors = tmp_path / "v.jsonl"
    vectors.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        args = ["index", "--vectors", str(vectors), "--out", str(tmp_path / "i"), "--quiet"]
        assert main([*args, "--set", "index.impact_dtype=uint8"]) == 0
    assert "largest weight, 1e+30 (doc 'outlier', term 'spike')" in caplog.text
    assert "index.impact_dtype=float32" in caplog.text
    fine = batch([([0, 1], [1.0, 3.0]), ([2], [2.5])])
    assert flattening_warning([fine], "uint8") is None and flattening_warning([fine], "float32") is None
