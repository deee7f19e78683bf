"""Inference-free: SPLADE documents, IDF-weighted query tokens, and no torch on the query side."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from lsr import pipeline
from lsr.config import load_config
from lsr.errors import ConfigError

pytest.importorskip("torch")
pytest.importorskip("transformers")

from tiny_models import DOCS, VOCAB, WORDS, write_corpus

from lsr.encoders.inference_free import TABLE_FILE, TOKENIZER_FILE
from lsr.searcher import Plan, Searcher


def tokens_of(text):
    """The tiny vocabulary's WordPiece tokens of ``text`` (whole words only in these tests)."""
    return [VOCAB.index(w) for w in text.lower().split()]


@pytest.fixture(scope="module")
def index(tiny_mlm, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("if")
    cfg = load_config(
        None,
        [
            "encoder.name=inference-free",
            f"encoder.model={tiny_mlm}",
            "encoder.transformer.max_length=16",
            "encoder.shard_docs=3",
        ],
    )
    pipeline.index_corpus(cfg, write_corpus(tmp / "corpus.jsonl"), tmp / "index")
    return tmp / "index"


def test_query_table_is_corpus_idf(index):
    table = np.load(index / TABLE_FILE)
    assert table.shape == (len(VOCAB),) and table.dtype == np.float32
    n = len(DOCS)
    texts = [f"{t} {x}" if t else x for _, t, x in DOCS]
    for word in ("vitamin", "adults", "cancer", "coffee", "bird", "the"):
        df = sum(word in text.lower().split() for text in texts)
        assert table[VOCAB.index(word)] == pytest.approx(math.log(1 + (n - df + 0.5) / (df + 0.5)), rel=1e-6)
    for special in ("[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]"):
        assert table[VOCAB.index(special)] == 0
    meta = json.loads((index / "meta.json").read_text())
    assert meta["encoder"]["name"] == "inference-free" and meta["encoder"]["query_model"] is None
    assert {TABLE_FILE, TOKENIZER_FILE} <= set(meta["files"])


def test_query_weights_are_table_lookups(index):
    searcher = Searcher(index)
    table = np.load(index / TABLE_FILE)
    batch = searcher.encode_texts(["Vitamin cancer vitamin", "", "zebra", "the coffee"])
    batch.validate(n_terms=len(VOCAB))
    rows = [dict(zip(*(a.tolist() for a in batch.row(i)), strict=True)) for i in range(len(batch))]
    want0 = {t: pytest.approx(float(table[t])) for t in sorted(set(tokens_of("vitamin cancer")))}
    assert rows[0] == want0  # a repeated token counts once
    assert rows[1] == {}
    assert set(rows[2]) <= {VOCAB.index(c) for c in "zebra"} | {VOCAB.index(f"##{c}") for c in "ebra"}
    assert rows[3] == {t: pytest.approx(float(table[t])) for t in tokens_of("the coffee")}
    df = np.diff(np.asarray(searcher.index.term_ptr))
    word = max(WORDS, key=lambda w: df[VOCAB.index(w)])  # a random model expands arbitrarily
    assert len(searcher.search(word, Plan(k=3))) == min(3, df[VOCAB.index(word)])


def test_query_side_never_imports_torch(index):
    code = (
        "import sys; from lsr.searcher import Plan, Searcher; "
        f"s = Searcher({str(index)!r}); b = s.encode_texts(['vitamin d and cancer', 'coffee']); "
        "hits = s.search('the cat sat on the mat with the dog', Plan(k=2)); "
        "print(b.nnz > 0, len(hits), 'torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["True", "2", "False", "False"], out.stderr


def test_learned_table_from_the_model_folder(tiny_mlm, tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_mlm, model)
    (model / "idf.json").write_text(json.dumps({"vitamin": 2.5, "coffee": 0.5, "notatoken": 9.0}))
    cfg = load_config(
        None,
        [
            "encoder.name=inference-free",
            f"encoder.model={model}",
            "encoder.inference_free.query_weights=model",
        ],
    )
    pipeline.index_corpus(cfg, write_corpus(tmp_path / "c.jsonl"), tmp_path / "idx")
    batch = Searcher(tmp_path / "idx").encode_texts(["vitamin coffee cancer"])
    assert dict(zip(*(a.tolist() for a in batch.row(0)), strict=True)) == {
        VOCAB.index("vitamin"): 2.5,
        VOCAB.index("coffee"): 0.5,
    }
    # the default (auto) takes the table a model ships: the one it was trained with
    cfg = load_config(None, ["encoder.name=inference-free", f"encoder.model={model}"])
    pipeline.index_corpus(cfg, write_corpus(tmp_path / "c.jsonl"), tmp_path / "idx-auto")
    searcher = Searcher(tmp_path / "idx-auto")
    assert searcher.index.meta["encoder"]["inference_free"]["query_weights"] == "model"
    assert dict(
        zip(*(a.tolist() for a in searcher.encode_texts(["vitamin coffee cancer"]).row(0)), strict=True)
    ) == {VOCAB.index("vitamin"): 2.5, VOCAB.index("coffee"): 0.5}
    cfg = load_config(
        None,
        [
            "encoder.name=inference-free",
            f"encoder.model={tiny_mlm}",
            "encoder.inference_free.query_weights=model",
        ],
    )
    with pytest.raises(ConfigError, match="idf.json does not exist"):
        pipeline.index_corpus(cfg, write_corpus(tmp_path / "c.jsonl"), tmp_path / "idx2")


def test_vocabulary_mismatch_is_refused(index, tmp_path):
    """A well-formed index whose vocabulary is not the query tokenizer's (not a damaged file: its
    checksums are rewritten after the edit)."""
    import shutil

    from lsr.index.io import write_meta

    bad = tmp_path / "bad"
    shutil.copytree(index, bad)
    vocab = json.loads((bad / "vocab.json").read_text())
    vocab[5], vocab[6] = vocab[6], vocab[5]
    (bad / "vocab.json").write_text(json.dumps(vocab))
    meta = json.loads((bad / "meta.json").read_text())
    write_meta(bad, {k: v for k, v in meta.items() if k not in ("checksums", "meta_crc32")})  # sealed anew
    with pytest.raises(ConfigError, match="vocabulary mismatch"):
        Searcher(bad).encode_texts(["cat"])
