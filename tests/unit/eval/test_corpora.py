"""Real benchmark collections (benchmarks.corpora): each name prepares with its own encoder, a
collection without a query split (the DL pool) included; tiny BEIR folders, a tiny random MLM."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import corpora
from benchmarks.corpora import REAL_COLLECTIONS, prepare_real
from benchmarks.groundtruth import exact_topk
from lsr.data.sparse_jsonl import read_sparse_jsonl

ENCODERS = Path(__file__).resolve().parents[1] / "encoders"
QUERIES = [("q1", "vitamin d cancer"), ("q2", "coffee sleep adults"), ("q3", "cat on the mat")]


def _tiny_models():
    if "tiny_models" in sys.modules:
        return sys.modules["tiny_models"]
    spec = importlib.util.spec_from_file_location("tiny_models", ENCODERS / "tiny_models.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["tiny_models"] = module
    spec.loader.exec_module(module)
    return module


def _dl_pool_like(root: Path) -> Path:
    """A BEIR folder at ``root/msmarco/dl-pool`` with corpus and queries and no qrels (no split)."""
    folder = root / "msmarco" / "dl-pool"
    folder.mkdir(parents=True)
    _tiny_models().write_corpus(folder / "corpus.jsonl")
    lines = "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in QUERIES)
    (folder / "queries.jsonl").write_text(lines, encoding="utf-8")
    return root


def _check_truth(coll: corpora.PreparedCollection, k: int) -> None:
    """The saved ground truth is the exact top-k of the written documents and queries."""
    ids, docs, vocab = read_sparse_jsonl(coll.files.docs_jsonl)
    qids, queries, _ = read_sparse_jsonl(coll.files.queries_jsonl, dict(vocab), grow_vocab=False)
    assert qids == coll.query_ids
    truth = exact_topk(docs, queries, len(vocab), k)
    assert [t.tolist() for t in truth] == [t.tolist() for t in coll.truth]
    assert coll.doc_position == {d: i for i, d in enumerate(ids)}


def test_every_real_collection_names_its_encoder():
    assert REAL_COLLECTIONS["dl-pool"] == ("msmarco/dl-pool", None, "bm25")
    assert REAL_COLLECTIONS["dl-pool-splade"] == ("msmarco/dl-pool", None, "splade")
    assert {encoder for _, _, encoder in REAL_COLLECTIONS.values()} == {"bm25", "splade", "unicoil"}


def test_unknown_collection_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown real collection 'dl-pool-splodge'"):
        prepare_real("dl-pool-splodge", tmp_path, tmp_path, 10, 255)


def test_dl_pool_is_bm25_with_all_its_queries(tmp_path):
    """The name's dash does not make it a learned collection (it once asked for a 'pool' encoder)."""
    root = _dl_pool_like(tmp_path / "data")
    (tmp_path / "out").mkdir()
    coll = prepare_real("dl-pool", tmp_path / "out", root, 3, 255)
    assert coll.stats["encoder"] == "bm25"
    assert coll.stats["split"] is None
    assert coll.query_ids == ["q1", "q2", "q3"]
    _check_truth(coll, 3)


def test_learned_collection_without_a_split(tmp_path, monkeypatch):
    """dl-pool-splade's path, with a tiny random MLM in place of the shipped splade."""
    pytest.importorskip("transformers")
    model = _tiny_models().make_mlm(tmp_path / "tiny-mlm")
    monkeypatch.setitem(REAL_COLLECTIONS, "dl-pool-splade", ("msmarco/dl-pool", None, str(model)))
    root = _dl_pool_like(tmp_path / "data")
    (tmp_path / "out").mkdir()
    coll = prepare_real("dl-pool-splade", tmp_path / "out", root, 3, 255)
    assert coll.stats["encoder"] == "splade"
    assert coll.stats["split"] is None
    assert coll.query_ids == ["q1", "q2", "q3"]
    assert coll.stats["n_docs"] == len(coll.doc_position) >= 6
    assert np.isfinite(coll.stats["max_weight"]) and coll.stats["max_weight"] > 0
    _check_truth(coll, 3)
