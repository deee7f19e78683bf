"""``lsr adapt`` with ``adapt.method: select`` (lsr.train.adapt_select): the pseudo-query windows, the
ranking of each one's document against slow references, and end to end on CPU with a tiny random BERT: a
folder whose ``lsr_doc.json`` / ``lsr_query.json`` hold the chosen setting and that ``lsr index`` loads."""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

pytest.importorskip("torch")
pytest.importorskip("transformers")

from adapt_toy import WORDS, write_docs

from lsr.cli import main
from lsr.encoders.query_idf import idf_table
from lsr.encoders.words import Saturation
from lsr.errors import ConfigError
from lsr.train import adapt_select
from lsr.train.adapt_config import load_adapt_config
from lsr.train.adapt_select import (
    WINDOWS_PER_DOC,
    Encoded,
    Setting,
    _ndcg_of_own,
    score_settings,
    window_queries,
)

SELECT = ["--set", "adapt.method=select", "--set", "adapt.min_docs=10", "--set", "adapt.select_queries=40"]


def _select(start: Path, corpus: Path, out: Path) -> int:
    """``lsr adapt`` of ``start`` (a SPLADE folder) with method select and the toy sizes."""
    return main(
        [
            "adapt",
            "--encoder",
            f"splade:{start}",
            "--corpus",
            str(corpus),
            "--out",
            str(out),
            "--quiet",
            *SELECT,
        ]
    )


def _long_docs(n: int, seed: int = 0, words: tuple[int, int] = (34, 50)) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [
        {
            "_id": f"d{i}",
            "title": " ".join(rng.choices(WORDS, k=2)),
            "text": " ".join(rng.choices(WORDS, k=rng.randint(*words))),
        }
        for i in range(n)
    ]


def test_window_queries_cut_a_window_out_of_its_document():
    rng = random.Random(1)
    texts = [" ".join(f"w{i}x{j}" for j in range(rng.randint(3, 80))) for i in range(200)]
    got = window_queries(texts, 50, seed=7)
    assert got == window_queries(texts, 50, seed=7) and got != window_queries(texts, 50, seed=8)
    assert len(got) == 50 and len({i for i, _, _ in got}) == 50
    for i, query, rest in got:
        words, window = texts[i].split(), query.split()
        assert len(words) >= 32 and 8 <= len(window) <= min(16, len(words) // 4)
        start = words.index(window[0])
        assert words[start : start + len(window)] == window
        assert rest.split() == words[:start] + words[start + len(window) :]
    short = ["one two three"] * 10
    assert window_queries(short, 5, seed=0) == []


def test_window_queries_take_several_windows_of_a_small_corpus():
    """Fewer long documents than queries asked: each gives one window per pass, WINDOWS_PER_DOC at most."""
    texts = [" ".join(f"d{i}w{j}" for j in range(40 + i)) for i in range(6)] + ["too short"] * 3
    got = window_queries(texts, 1000, seed=3)
    per_doc = Counter(i for i, _, _ in got)
    assert set(per_doc) == set(range(6)) and set(per_doc.values()) == {WINDOWS_PER_DOC}
    first_pass = [i for i, _, _ in got[:6]]
    assert sorted(first_pass) == list(range(6)) and [i for i, _, _ in got[6:12]] == first_pass
    assert len({(i, q) for i, q, _ in got}) > 6  # each pass cuts its own windows
    assert [i for i, _, _ in window_queries(texts, 8, seed=3)] == [i for i, _, _ in got[:8]]


@pytest.mark.parametrize("seed", range(4))
def test_ndcg_of_its_document_against_a_sort(seed):
    """Rank = 1 + documents above the own document's score, ties to the lower position (a stable sort)."""
    rng = np.random.default_rng(seed)
    n_q, n_d = 30, int(rng.integers(2, 40))
    scores = rng.integers(0, 5, (n_q, n_d)).astype(np.float64)  # many ties
    own = rng.integers(0, n_d, n_q)
    own_score = rng.integers(0, 5, n_q).astype(np.float64)
    expected = 0.0
    for i in range(n_q):
        row = scores[i].copy()
        row[own[i]] = own_score[i]
        rank = 1 + list(np.argsort(-row, kind="stable")).index(own[i])
        expected += 1 / np.log2(rank + 1) if rank <= 10 else 0.0
    assert _ndcg_of_own(scores.copy(), own, own_score) == pytest.approx(expected)


def _encoded(matrix: sp.csr_matrix, count: np.ndarray, lengths: np.ndarray) -> Encoded:
    enc = object.__new__(Encoded)
    enc.matrix, enc.count, enc.lengths = matrix, count, lengths
    enc.length = lengths[np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))]
    return enc


def test_score_settings_against_dense_scoring():
    rng = np.random.default_rng(3)
    n_d, n_q, width = 25, 12, 30
    docs = sp.random(n_d, width, density=0.3, random_state=4, format="csr", dtype=np.float64)
    rest = sp.random(n_q, width, density=0.3, random_state=5, format="csr", dtype=np.float64)
    queries = sp.random(n_q, width, density=0.2, random_state=6, format="csr", dtype=np.float64)
    d_count, r_count = rng.integers(0, 4, docs.nnz).astype(float), rng.integers(0, 4, rest.nnz).astype(float)
    d_len, r_len = rng.integers(5, 60, n_d).astype(float), rng.integers(5, 60, n_q).astype(float)
    own = rng.integers(0, n_d, n_q)
    settings = [Setting(None, 0.0), Setting(None, 1.0), Setting(Saturation(1.2, 0.75, 30.0), 0.5)]
    got = score_settings(
        _encoded(docs, d_count, d_len), queries, own, _encoded(rest, r_count, r_len), settings
    )

    def dense(m, count, lengths, tf):
        out = m.toarray()
        if tf is not None:
            rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
            for (r, c), k in zip(zip(rows, m.indices, strict=True), count, strict=True):
                if k > 0:
                    out[r, c] *= k * (tf.k1 + 1) / (k + tf.k1 * (1 - tf.b + tf.b * lengths[r] / tf.avgdl))
        return out

    df = np.bincount(docs.indices, minlength=width)
    for setting, value in zip(settings, got, strict=True):
        d, r = dense(docs, d_count, d_len, setting.tf), dense(rest, r_count, r_len, setting.tf)
        q = queries.toarray() * idf_table(df, n_d, setting.power)[None, :]
        total = 0.0
        for i in range(n_q):
            row = d @ q[i]
            row[own[i]] = r[i] @ q[i]
            rank = 1 + list(np.argsort(-row, kind="stable")).index(own[i])
            total += 1 / np.log2(rank + 1) if rank <= 10 else 0.0
        assert value == pytest.approx(total / n_q)


class _Steps:
    """A progress bar that counts its steps."""

    def __init__(self) -> None:
        self.n = 0

    def update(self, k: int) -> None:
        self.n += k


def test_encoded_in_chunks_equals_one_batch(train_mlm, monkeypatch):
    from lsr.config import EncoderConfig
    from lsr.encoders import make_encoder

    encoder = make_encoder(EncoderConfig(name="splade", model=str(train_mlm)))
    encoder.model.saturate(None)
    texts = [d["title"] + " " + d["text"] for d in _long_docs(7)]
    whole = Encoded.encode(encoder, texts)
    monkeypatch.setattr(adapt_select, "ENCODE_CHUNK", 3)
    steps = _Steps()
    chunked = Encoded.encode(encoder, texts, steps)
    assert steps.n == 7 and chunked.matrix.shape == whole.matrix.shape == (7, len(encoder.vocab))
    assert chunked.matrix.nnz > 7 * 10
    np.testing.assert_allclose(chunked.matrix.toarray(), whole.matrix.toarray(), rtol=1e-5, atol=1e-6)
    assert (chunked.lengths == whole.lengths).all() and chunked.count.sum() == whole.count.sum()


def test_select_writes_the_chosen_setting_and_lsr_index_reads_it(train_mlm, tmp_path):
    start = tmp_path / "start"
    shutil.copytree(train_mlm, start)
    (start / "lsr_doc.json").write_text(json.dumps({"long_docs": "windows"}))  # kept beside the tf
    corpus = write_docs(tmp_path / "corpus.jsonl", _long_docs(60))
    out = tmp_path / "adapted"
    assert _select(start, corpus, out) == 0
    record = json.loads((out / "lsr_adapt.json").read_text())
    sel = record["select"]
    assert record["method"] == "select" and record["labels_used"] is False and record["docs_used"] == 60
    assert sel["pseudo_queries"] == 40
    assert len(sel["grid"]) == len(adapt_select.POWERS) * (1 + len(adapt_select.K1) * len(adapt_select.B))
    best = max(g["ndcg@10"] for g in sel["grid"])
    chosen = sel["chosen"]
    assert chosen["ndcg@10"] == max(best, sel["start"]["ndcg@10"])
    assert record["kept_start"] is (chosen == sel["start"])
    doc = json.loads((out / "lsr_doc.json").read_text())
    assert doc.get("long_docs") == "windows" and doc.get("tf") == chosen["tf"]
    assert json.loads((out / "lsr_query.json").read_text())["query_idf"] == chosen["query_idf"]
    assert "method select" in (out / "README.md").read_text()
    index = tmp_path / "index"
    assert (
        main(["index", "--encoder", f"splade:{out}", "--corpus", str(corpus), "--out", str(index), "--quiet"])
        == 0
    )
    meta = json.loads((index / "meta.json").read_text())["encoder"]
    assert meta.get("tf") == chosen["tf"] and meta["query_idf"] == chosen["query_idf"]


def test_word_terms_saturate_in_the_grid_as_the_encoder_does(train_mlm, tmp_path):
    """A SPLADE of word terms: the grid's tf weights (analyzer counts, a term the text does not hold
    counted once) equal the rows `lsr index` writes for the folder with that tf in lsr_terms.json."""
    from lsr.config import EncoderConfig
    from lsr.encoders import make_encoder
    from lsr.encoders.words import analyzer_section, write_terms_file

    plain, saturated = tmp_path / "plain", tmp_path / "tf"
    shutil.copytree(train_mlm, plain)
    write_terms_file(plain, analyzer_section())
    shutil.copytree(plain, saturated)
    tf = Saturation(1.2, 0.6, 20.0)
    write_terms_file(saturated, analyzer_section(), tf)
    texts = [d["title"] + " " + d["text"] for d in _long_docs(6)]
    encoder = make_encoder(EncoderConfig(name="splade", model=str(plain)))
    encoded = Encoded.encode(encoder, texts)
    assert encoded.matrix.shape == (6, len(encoder.vocab)) and (encoded.count >= 1).all()
    want_encoder = make_encoder(EncoderConfig(name="splade", model=str(saturated)))
    batch = want_encoder.encode(texts)
    assert want_encoder.vocab == encoder.vocab  # the same texts: the same terms in the same order
    want = sp.csr_matrix((batch.weights, batch.term_ids, batch.indptr), shape=encoded.matrix.shape)
    np.testing.assert_allclose(encoded.with_tf(tf).toarray(), want.toarray(), rtol=1e-5, atol=1e-6)


def test_select_on_a_word_terms_folder_writes_its_tf_into_lsr_terms(train_mlm, tmp_path):
    from lsr.encoders.words import analyzer_section, read_terms_file, write_terms_file

    start = tmp_path / "start"
    shutil.copytree(train_mlm, start)
    write_terms_file(start, analyzer_section(), Saturation(0.5, 0.4, 30.0))
    corpus = write_docs(tmp_path / "corpus.jsonl", _long_docs(60))
    out = tmp_path / "adapted"
    assert _select(start, corpus, out) == 0
    record = json.loads((out / "lsr_adapt.json").read_text())
    chosen = record["select"]["chosen"]
    assert record["select"]["start"]["tf"] == {"k1": 0.5, "b": 0.4, "avgdl": 30.0}
    assert read_terms_file(out).get("tf") == chosen["tf"] and not (out / "lsr_doc.json").exists()
    index = tmp_path / "index"
    args = ["index", "--encoder", f"splade:{out}", "--corpus", str(corpus), "--out", str(index), "--quiet"]
    assert main(args) == 0
    meta = json.loads((index / "meta.json").read_text())["encoder"]
    assert meta["terms"] == "words" and meta.get("tf") == chosen["tf"]


def test_select_keeps_the_start_setting_unless_another_scores_higher(train_mlm, tmp_path, monkeypatch):
    monkeypatch.setattr(
        adapt_select, "score_settings", lambda d, q, o, r, settings, bar=None: [0.5] * len(settings)
    )
    corpus = write_docs(tmp_path / "corpus.jsonl", _long_docs(40))
    out = tmp_path / "adapted"
    assert _select(train_mlm, corpus, out) == 0
    record = json.loads((out / "lsr_adapt.json").read_text())
    assert record["kept_start"] is True and record["select"]["chosen"]["tf"] is None
    assert not (out / "lsr_doc.json").exists()
    assert (
        json.loads((out / "lsr_query.json").read_text())["query_idf"]
        == record["select"]["start"]["query_idf"]
    )


def test_select_refuses_a_corpus_of_short_documents(train_mlm, tmp_path, capsys):
    corpus = write_docs(tmp_path / "corpus.jsonl", _long_docs(40, words=(3, 9)))
    out = tmp_path / "adapted"
    assert _select(train_mlm, corpus, out) != 0
    assert "32 words or more" in capsys.readouterr().err and not out.exists()


def test_method_auto_resolves_by_kind_and_select_is_splade_only():
    for kind, method in (("splade", "select"), ("inference-free", "train"), ("unicoil", "train")):
        assert load_adapt_config("adapt", [f"model.kind={kind}"]).method == method
    with pytest.raises(ConfigError, match="SPLADE folder"):
        load_adapt_config("adapt", ["model.kind=unicoil", "adapt.method=select"])
