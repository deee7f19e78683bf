"""A crashed transformer encode resumes from its last complete shard and ends identical to a clean one."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from lsr import pipeline
from lsr.config import load_config
from lsr.data.docstore import DocStore
from lsr.vectors import Vectors

pytest.importorskip("torch")
pytest.importorskip("transformers")

from tiny_models import DOCS, write_corpus

from lsr.encoders.splade import SpladeEncoder


def config(model, *extra):
    return load_config(
        None,
        [
            "encoder.name=splade",
            f"encoder.model={model}",
            "encoder.shard_docs=2",
            "encoder.transformer.sort_docs=2",
            "encoder.transformer.max_length=16",
            *extra,
        ],
    )


def contents(path):
    v = Vectors(path)
    rows = [(t.tolist(), w.tolist()) for b in v.batches() for t, w in (b.row(i) for i in range(len(b)))]
    store = DocStore(path)
    return list(v.iter_ids()), rows, [store.get(i) for i in range(len(store))], v.vocab()


@pytest.fixture()
def crashed(tiny_mlm, tmp_path, monkeypatch):
    """An encode that dies while encoding docs 5-6 (shards 0 and 1, docs 1-4, are complete)."""
    corpus = write_corpus(tmp_path / "corpus.jsonl")
    real = SpladeEncoder.encode
    calls = []

    def flaky(self, texts):
        calls.append(list(texts))
        if len(calls) == 3:
            raise RuntimeError("boom")
        return real(self, texts)

    monkeypatch.setattr(SpladeEncoder, "encode", flaky)
    with pytest.raises(RuntimeError, match="boom"):
        pipeline.encode_corpus(config(tiny_mlm), corpus, tmp_path / "vec")
    monkeypatch.setattr(SpladeEncoder, "encode", real)
    return corpus, tmp_path / "vec", tmp_path / ".vec.partial"


def test_resume_skips_done_shards_and_matches_a_clean_encode(
    tiny_mlm, crashed, tmp_path, monkeypatch, caplog
):
    corpus, out, partial = crashed
    assert not out.exists()
    record = json.loads((partial / "progress.json").read_text())
    assert record["n_docs"] == 4 and [s["name"] for s in record["shards"]] == ["shard-00000", "shard-00001"]
    # what a kill -9 can leave after the checkpoint: half a shard, extra ids and docstore lines
    (partial / "shard-00002.indptr.npy").write_bytes(b"half")
    with open(partial / "ids.txt", "a") as f:
        f.write("d5\nd6\n")

    encoded = []
    real = SpladeEncoder.encode
    monkeypatch.setattr(
        SpladeEncoder, "encode", lambda self, texts: encoded.extend(texts) or real(self, texts)
    )
    with caplog.at_level(logging.INFO):
        meta = pipeline.encode_corpus(config(tiny_mlm), corpus, out)
    assert "resuming the interrupted encode" in caplog.text
    assert len(encoded) == len(DOCS) - 4 and meta["resumed_from_doc"] == 4
    assert not partial.exists() and not (out / "progress.json").exists()
    assert meta["n_docs"] == len(DOCS) and meta["empty_docs"] == 1

    pipeline.encode_corpus(config(tiny_mlm), corpus, tmp_path / "clean")
    got, want = contents(out), contents(tmp_path / "clean")
    assert got[0] == want[0] and got[2] == want[2] and got[3] == want[3]
    for (gt, gw), (wt, ww) in zip(got[1], want[1], strict=True):
        assert gt == wt
        np.testing.assert_allclose(gw, ww, rtol=1e-6)


def test_another_config_or_corpus_starts_over(tiny_mlm, crashed, monkeypatch, caplog):
    corpus, out, partial = crashed
    with caplog.at_level(logging.WARNING):
        meta = pipeline.encode_corpus(config(tiny_mlm, "encoder.prune.doc_max_terms=5"), corpus, out)
    assert "discarding" in caplog.text and "resumed_from_doc" not in meta
    assert meta["n_docs"] == len(DOCS) and not partial.exists()


def test_crash_before_the_first_shard_leaves_nothing(tiny_mlm, tmp_path, monkeypatch):
    corpus = write_corpus(tmp_path / "corpus.jsonl")

    def boom(self, texts):
        raise RuntimeError("boom")

    monkeypatch.setattr(SpladeEncoder, "encode", boom)
    with pytest.raises(RuntimeError):
        pipeline.encode_corpus(config(tiny_mlm), corpus, tmp_path / "vec")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.jsonl"]


def test_index_from_corpus_resumes_too(tiny_mlm, tmp_path, monkeypatch):
    corpus = write_corpus(tmp_path / "corpus.jsonl")
    real = SpladeEncoder.encode
    calls = []

    def flaky(self, texts):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return real(self, texts)

    monkeypatch.setattr(SpladeEncoder, "encode", flaky)
    with pytest.raises(RuntimeError):
        pipeline.index_corpus(config(tiny_mlm), corpus, tmp_path / "idx")
    assert (tmp_path / "..idx.vectors.partial" / "progress.json").is_file()
    monkeypatch.setattr(SpladeEncoder, "encode", real)
    meta = pipeline.index_corpus(config(tiny_mlm), corpus, tmp_path / "idx")
    assert meta["n_docs"] == len(DOCS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.jsonl", "idx"]
