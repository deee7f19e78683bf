"""System names, the content-hash index cache, and the explain contributions, on the tiny BEIR folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lsr.config import load_config
from lsr.errors import ConfigError
from lsr.eval.explain import explain_query
from lsr.eval.systems import cache_key, corpus_digest, ensure_index, parse_system
from lsr.explain import doc_impact

TINY = Path(__file__).resolve().parents[2] / "data" / "beir-tiny"


def test_parse_system_forms(tmp_path):
    assert parse_system("bm25").kind == "encoder"
    assert parse_system("pyserini-bm25").kind == "pyserini"
    run = parse_system("run:bm25")
    assert run.kind == "run" and run.run == "bm25"
    (tmp_path / "idx").mkdir()
    (tmp_path / "idx" / "meta.json").write_text("{}")
    assert parse_system(str(tmp_path / "idx")).kind == "index"
    for bad, match in (
        ("bm52", "unknown system 'bm52'"),
        ("splade:/no/such/model", "no such model folder"),
        ("run:/no/such.trec", "no such run file"),
        ("", "empty"),
    ):
        with pytest.raises(ConfigError, match=match):
            parse_system(bad)


def test_dense_system_spec(tmp_path):
    dense = parse_system("dense")
    assert (dense.kind, dense.label) == ("dense", "dense")
    assert dense.overrides == ("encoder.name=bm25", "dense.keep_float=true")  # float vectors: an exact scan
    model = tmp_path / "minilm"
    model.mkdir()
    named = parse_system(f"dense:{model}")
    assert (named.kind, named.label) == ("dense", "dense:minilm")
    assert f'dense.model="{model}"' in named.overrides
    assert parse_system("dense:sentence-transformers/all-MiniLM-L6-v2").label == "dense:all-MiniLM-L6-v2"
    for bad, match in (
        ("dense:", "needs a dense model"),
        ("dense:/no/such/model", "no such dense model folder"),
    ):
        with pytest.raises(ConfigError, match=match):
            parse_system(bad)


def test_dense_system_key_holds_the_dense_section(tmp_path):
    from lsr.eval.systems import sparse_part

    dense = parse_system("dense")
    assert sparse_part(dense).label == "bm25"  # the cheap index under the dense stage
    base = load_config(None, list(dense.overrides))
    other = load_config(None, [*dense.overrides, "dense.pq_m=16"])
    assert (
        cache_key(base, "c", {"dense": {"pq_m": 48}})[0] != cache_key(other, "c", {"dense": {"pq_m": 16}})[0]
    )


def test_dense_system_refuses_the_rerank_protocols():
    from lsr.eval.datasets import DatasetRef
    from lsr.eval.suite import check_pair

    with pytest.raises(ConfigError, match="does not apply to dl19-rerank"):
        check_pair(parse_system("dense"), DatasetRef("dl19-rerank", "rerank", "dl19-rerank", "dl19"))


def test_cache_key_follows_content(tmp_path):
    corpus = tmp_path / "c.jsonl"
    shutil.copy(TINY / "corpus.jsonl", corpus)
    cfg = load_config(None, ["encoder.name=bm25"])
    key, inputs = cache_key(cfg, corpus_digest(corpus))
    assert key == cache_key(load_config(None, ["encoder.name=bm25"]), corpus_digest(corpus))[0]
    assert key != cache_key(load_config(None, ["encoder.bm25.k1=1.2"]), corpus_digest(corpus))[0]
    assert key != cache_key(load_config(None, ["index.impact_dtype=float32"]), corpus_digest(corpus))[0]
    corpus.write_text(corpus.read_text() + json.dumps({"_id": "dx", "title": "", "text": "new"}) + "\n")
    assert key != cache_key(cfg, corpus_digest(corpus))[0]
    # a model folder's weights are part of the key
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "w.bin").write_bytes(b"1")
    mcfg = load_config(None, ["encoder.name=splade", f"encoder.model={model}"])
    k1 = cache_key(mcfg, "c")[0]
    (model / "w.bin").write_bytes(b"2")
    assert cache_key(mcfg, "c")[0] != k1


def test_ensure_index_builds_once_then_reuses(tmp_path):
    system = parse_system("bm25")
    cfg = load_config(None, list(system.overrides))
    first = ensure_index(system, cfg, TINY, tmp_path / "cache")
    assert not first.cached and first.build_seconds is not None and (first.path / "meta.json").is_file()
    again = ensure_index(system, cfg, TINY, tmp_path / "cache")
    assert again.cached and again.path == first.path
    subset = ensure_index(system, cfg, TINY, tmp_path / "cache", doc_ids=["d1", "d2"])
    assert subset.path != first.path and "2 candidate passages" in subset.note
    assert json.loads((subset.path / "meta.json").read_text())["n_docs"] == 2


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_explain_contributions_sum_to_the_score(tmp_path, dtype):
    from lsr.cli import main

    out = tmp_path / "idx"
    assert (
        main(
            [
                "index",
                "--corpus",
                str(TINY),
                "--encoder",
                "bm25",
                "--out",
                str(out),
                "--quiet",
                "--set",
                f"index.impact_dtype={dtype}",
            ]
        )
        == 0
    )
    from lsr.eval.datasets import load_eval_dataset
    from lsr.index import Index

    ds = load_eval_dataset(TINY, "test")
    qid = next(iter(ds.queries))
    ex = explain_query(out, qid, ds.queries, ds.qrels, k=3)
    assert ex.docs, "the query matches some documents"
    for d in ex.docs:
        assert d.total == pytest.approx(d.score, rel=1e-5)
        assert d.terms == sorted(d.terms, key=lambda t: -t[3])
    # doc_impact against a scan of the forward row (exact weights, uint8 indexes rescore) ...
    index = Index.load(out)
    assert index.rescore == (dtype == "uint8")
    if index.forward is not None:
        fwd = index.forward
        for d in range(index.n_docs):
            row = dict(
                zip(
                    fwd.terms[fwd.indptr[d] : fwd.indptr[d + 1]].tolist(),
                    fwd.weights[fwd.indptr[d] : fwd.indptr[d + 1]].tolist(),
                    strict=True,
                )
            )
            for t in range(index.n_terms):
                assert doc_impact(index, t, d) == row.get(t, 0.0)
    # ... and against a scan of the posting list (dequantized impacts)
    index.rescore = False
    for t in range(index.n_terms):
        lo, hi = int(index.term_ptr[t]), int(index.term_ptr[t + 1])
        for d in range(index.n_docs):
            hit = np.flatnonzero(np.asarray(index.doc_ids[lo:hi]) == d)
            want = float(index.impacts[lo + hit[0]]) * float(index.scale) if len(hit) else 0.0
            assert doc_impact(index, t, d) == want
    with pytest.raises(KeyError, match="not in the dataset"):
        explain_query(out, "nope", ds.queries, ds.qrels)
