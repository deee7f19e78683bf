"""Documents' tf saturation of a wordpiece SPLADE (``lsr_doc.json``): rows against the formula by hand
over the rows without tf, the meta, live adds, and bad files refused before the model loads."""

from __future__ import annotations

import json
import pickle
import random
import shutil

import numpy as np
import pytest

from lsr import pipeline
from lsr.config import load_config
from lsr.errors import ConfigError, LsrError

transformers = pytest.importorskip("transformers")

from tiny_models import DOCS, WORDS, write_corpus  # noqa: E402

from lsr.data.corpus import Doc  # noqa: E402
from lsr.encoders import load_query_encoder, make_encoder  # noqa: E402
from lsr.encoders.splade import DOC_FILE  # noqa: E402
from lsr.live import LiveIndex  # noqa: E402
from lsr.searcher import Plan, Searcher  # noqa: E402

TF = {"k1": 0.9, "b": 0.6, "avgdl": 7.0}
MAX_LENGTH = 12


@pytest.fixture(scope="module")
def tf_mlm(tiny_mlm, tmp_path_factory):
    out = tmp_path_factory.mktemp("splade-tf") / "model"
    shutil.copytree(tiny_mlm, out)
    (out / DOC_FILE).write_text(json.dumps({"tf": TF, "what": "a test"}))
    return out


def encoder_config(folder, *extra):
    settings = [
        "encoder.name=splade",
        f"encoder.model={folder}",
        "encoder.transformer.device=cpu",
        "encoder.transformer.threads=2",
        "encoder.transformer.batch_tokens=64",
        f"encoder.transformer.max_length={MAX_LENGTH}",
        "encoder.transformer.window_overlap=3",
        "index.impact_dtype=float32",
    ]
    return load_config(None, [*settings, *extra])


def as_dicts(batch):
    return [dict(zip(*(a.tolist() for a in batch.row(i)), strict=True)) for i in range(len(batch))]


def texts():
    rng = random.Random(7)
    seeded = [" ".join(rng.choices(WORDS, k=rng.randint(1, 40))) for _ in range(10)]
    return [
        *seeded,
        "cat cat cat cat sat",  # a repeated token
        "cats sleeping catsing",  # pieces: ##s counted in several words
        "protein gene cell study effect " * 6,  # long: windows, or truncated (counted whole)
        "",
        "  \n",
        "vitamin € d",  # € is [UNK], a special token: not counted
    ]


def saturated(tokenizer, text, row):
    """``row`` (without tf) x BM25's tf factor, the slow way: counts and length from the whole text's
    tokens, special tokens left out; terms the text does not hold keep their weight."""
    special = set(tokenizer.all_special_ids)
    ids = [i for i in tokenizer(text, add_special_tokens=False)["input_ids"] if i not in special]
    norm = TF["k1"] * (1 - TF["b"] + TF["b"] * len(ids) / TF["avgdl"])
    return {
        t: w * (ids.count(t) * (TF["k1"] + 1) / (ids.count(t) + norm) if t in ids else 1.0)
        for t, w in row.items()
    }


@pytest.mark.parametrize("long_docs", ["windows", "truncate"])
def test_saturated_rows_match_the_reference(tiny_mlm, tf_mlm, long_docs):
    setting = f"encoder.transformer.long_docs={long_docs}"
    encoder = make_encoder(encoder_config(tf_mlm, setting).encoder)
    plain = make_encoder(encoder_config(tiny_mlm, setting).encoder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tiny_mlm))
    got, rows = as_dicts(encoder.encode(texts())), as_dicts(plain.encode(texts()))
    want = [saturated(tokenizer, t, row) for t, row in zip(texts(), rows, strict=True)]
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys()
        for term in g:
            assert g[term] == pytest.approx(w[term], rel=1e-6)
    changed = [abs(g[t] - r[t]) > 1e-4 for g, r in zip(got, rows, strict=True) for t in g]
    assert any(changed) and not all(changed)  # input terms move, expansion terms stay
    assert got[13] == got[14] == {}


def test_meta_records_tf_and_queries_stay(tiny_mlm, tf_mlm):
    encoder = make_encoder(encoder_config(tf_mlm).encoder)
    meta = encoder.describe()
    assert meta["tf"] == TF
    plain = make_encoder(encoder_config(tiny_mlm).encoder).describe()
    assert "tf" not in plain
    vocab = {t: i for i, t in enumerate(encoder.vocab)}
    queries = ["vitamin d and cancer", "cat cat cat", ""]
    got = [as_dicts(load_query_encoder(m, vocab).encode(queries)) for m in (meta, plain)]
    assert got[0] == got[1]


def test_tokens_carry_the_counts_across_processes(tf_mlm):
    """``lsr encode --ray``: tokens made on a CPU worker, through bytes, give the rows ``encode`` gives."""
    from lsr.encoders.transformer import Tokens

    encoder = make_encoder(encoder_config(tf_mlm, "encoder.transformer.long_docs=windows").encoder)
    worker = pickle.loads(pickle.dumps(encoder.text_tokenizer))  # as --ray ships it to a CPU worker
    tokens = Tokens.from_bytes(worker(texts()).to_bytes())
    assert tokens.counts is not None and len(tokens.counts) == len(tokens.live)
    assert as_dicts(encoder.encode_tokens(tokens)) == as_dicts(encoder.encode(texts()))
    with pytest.raises(ValueError, match="carry no counts"):
        encoder.encode_tokens(Tokens(tokens.n_texts, tokens.live, tokens.seqs, tokens.owner))


def scores(index, query):
    searcher = Searcher(index)
    result = searcher.search(query, Plan(k=10, mode="exact"))
    return dict(zip((searcher.index.doc_keys[d] for d in result.docs), result.scores.tolist(), strict=True))


def test_live_adds_saturate_as_the_index_did(tf_mlm, tmp_path):
    config = encoder_config(tf_mlm, "encoder.transformer.query_runtime=torch")
    whole, part = tmp_path / "whole", tmp_path / "part"
    docs = [d for d in DOCS if d[1].strip() or d[2].strip()]  # live adds refuse an empty document
    pipeline.index_corpus(config, write_corpus(tmp_path / "all.jsonl", docs), whole)
    pipeline.index_corpus(config, write_corpus(tmp_path / "some.jsonl", docs[:3]), part)
    LiveIndex(part).add_documents([Doc(i, t, x) for i, t, x in docs[3:]])
    for query in ("vitamin d cancer", "cells protein gene", "cat mat"):
        a, b = scores(whole, query), scores(part, query)
        assert a.keys() == b.keys()
        np.testing.assert_allclose([b[k] for k in a], list(a.values()), rtol=1e-5)
    # the folder's tf changed since the index was built: adding is refused
    saved = (tf_mlm / DOC_FILE).read_text()
    (tf_mlm / DOC_FILE).write_text(json.dumps({"tf": {**TF, "k1": 2.0}}))
    try:
        with pytest.raises(LsrError, match="tf saturation"):
            LiveIndex(part).add_documents([Doc("z1", "", "cat")])
    finally:
        (tf_mlm / DOC_FILE).write_text(saved)


@pytest.mark.parametrize(
    "content, match",
    [
        ("{not json", "not JSON"),
        (json.dumps([1]), "expected a JSON object"),
        (json.dumps({"tf": TF, "k1": 1}), r"unknown key\(s\) \['k1'\]"),
        (json.dumps({"tf": {"k1": 1.2}}), "tf must be"),
        (json.dumps({"tf": {**TF, "k1": 0}}), "tf.k1 = 0"),
        (json.dumps({"tf": {**TF, "b": 2}}), "tf.b = 2"),
        (json.dumps({"tf": {**TF, "avgdl": "x"}}), "tf.avgdl = 'x'"),
        (json.dumps({"tf": {**TF, "k1": True}}), "tf.k1 = True"),
    ],
)
def test_a_bad_doc_file_is_refused_by_name_before_the_model_loads(
    tiny_mlm, tmp_path, content, match, monkeypatch
):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_mlm, bad)
    (bad / DOC_FILE).write_text(content)
    from lsr.encoders import splade

    def no_model(*args, **kwargs):
        raise AssertionError("the model loaded before the file was checked")

    monkeypatch.setattr(splade, "SpladeModel", no_model)
    with pytest.raises(ConfigError, match=match) as err:
        make_encoder(encoder_config(bad).encoder)
    assert str(bad / DOC_FILE) in str(err.value)
