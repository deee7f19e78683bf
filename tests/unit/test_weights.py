"""lsr.weights: integer weights for export (lsr export --to anserini|ciff|bmp --quantize) and the warning when
one huge weight would flatten a quantized index."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from lsr.cli import main
from lsr.index.sparse import SparseBatch
from lsr.weights import flattening_warning, integer_weights


def batch(rows):
    return SparseBatch.from_rows(
        [(np.array(t, dtype=np.int64), np.array(w, dtype=np.float64)) for t, w in rows]
    )


def test_integer_weights_round_and_refuse_what_lucene_cannot_hold():
    q = integer_weights(np.array([0.004, 0.5, 1.234, 2.0, 0.006]), 100)
    assert q.tolist() == [0, 50, 123, 200, 1] and q.dtype == np.int64
    with pytest.raises(ValueError, match="32-bit term frequency"):
        integer_weights(np.array([1e30]), 100)
    with pytest.raises(ValueError, match="must be > 0"):
        integer_weights(q, 0)


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
