"""SPLADE on a tiny random BERT: the tiled pooling equals the straightforward one and an
independent oracle (the unmodified model, one text at a time, no padding)."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import numpy as np
import pytest

from lsr.config import PruneConfig, TransformerConfig, load_config
from lsr.errors import ConfigError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from tiny_models import VOCAB, make_mlm  # noqa: E402

from lsr.encoders.splade import SpladeEncoder, SpladeModel  # noqa: E402

TEXTS = [
    "vitamin d lowers cancer risk in adults",
    "coffee",
    "the cats sat on the mat with the dogs and the birds " * 3,
    "Sleeping, screening; supplements!",
    "protein",
]


def oracle(folder, texts, max_length, pooling="max"):
    """{term id: weight} per text from the untouched model, each text alone (no padding, no mask)."""
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    seqs = [tok(t, truncation=True, max_length=max_length)["input_ids"] if t.strip() else [] for t in texts]
    return oracle_ids(folder, seqs, pooling)


def oracle_ids(folder, seqs, pooling="max"):
    model = transformers.AutoModelForMaskedLM.from_pretrained(str(folder)).eval()
    rows = []
    for ids in seqs:
        if not ids:
            rows.append({})
            continue
        with torch.no_grad():
            act = torch.log1p(torch.relu(model(input_ids=torch.tensor([ids])).logits[0]))
        vec = act.max(0).values if pooling == "max" else act.sum(0)
        rows.append({int(i): float(vec[i]) for i in torch.nonzero(vec > 0).flatten()})
    return rows


def as_dicts(batch):
    return [dict(zip(*(a.tolist() for a in batch.row(i)), strict=True)) for i in range(len(batch))]


def assert_rows_close(got, want, tol=1e-5):
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        # terms whose weight is ~0 may fall on either side of the ReLU; all others must agree
        for term in set(g) | set(w):
            assert g.get(term, 0.0) == pytest.approx(w.get(term, 0.0), abs=tol), term


def tcfg(**kw):
    return dataclasses.replace(TransformerConfig(device="cpu"), **kw)


@pytest.mark.parametrize("pooling", ["max", "sum"])
@pytest.mark.parametrize("batch_tokens", [64, 16384])  # many small batches / one batch
def test_fast_and_reference_pooling_equal_the_oracle(tiny_mlm, pooling, batch_tokens):
    want = oracle(tiny_mlm, TEXTS, 24, pooling)
    for impl in ("fast", "reference"):
        model = SpladeModel(tiny_mlm, tcfg(max_length=24, batch_tokens=batch_tokens), pooling, impl)
        batch = model.encode(TEXTS, PruneConfig())
        batch.validate(n_terms=len(VOCAB))
        assert_rows_close(as_dicts(batch), want)


def test_rows_come_back_in_input_order_whatever_the_batching(tiny_mlm):
    model = SpladeModel(tiny_mlm, tcfg(max_length=24, batch_tokens=32))
    together = as_dicts(model.encode(TEXTS, PruneConfig()))
    alone = [as_dicts(model.encode([t], PruneConfig()))[0] for t in TEXTS]
    assert_rows_close(together, alone)


def test_windows_pool_over_all_windows(tiny_mlm):
    """long_docs=windows: the max over each window's own vector (windows cut by the tokenizer)."""
    text = TEXTS[2]
    model = SpladeModel(tiny_mlm, tcfg(max_length=10, long_docs="windows", window_overlap=3))
    seqs, owner = model.text_tokenizer.tokenize([text], 10, windows=True)
    assert len(seqs) > 2 and owner.tolist() == [0] * len(seqs)
    assert all(s[0] == VOCAB.index("[CLS]") and s[-1] == VOCAB.index("[SEP]") for s in seqs)
    per_window = oracle_ids(tiny_mlm, seqs)
    want = {}
    for row in per_window:
        for t, w in row.items():
            want[t] = max(want.get(t, 0.0), w)
    got = as_dicts(model.encode([text], PruneConfig()))
    assert_rows_close(got, [want])
    truncated = as_dicts(SpladeModel(tiny_mlm, tcfg(max_length=10)).encode([text], PruneConfig()))
    assert_rows_close(truncated, oracle(tiny_mlm, [text], 10))
    assert len(got[0]) >= len(truncated[0])


def test_queries_use_query_max_length(tiny_mlm):
    model = SpladeModel(tiny_mlm, tcfg(max_length=40, query_max_length=8))
    got = as_dicts(model.encode([TEXTS[2]], PruneConfig(), query=True))
    assert_rows_close(got, oracle(tiny_mlm, [TEXTS[2]], 8))


def test_empty_whitespace_bad_unicode_and_huge_texts(tiny_mlm):
    model = SpladeModel(tiny_mlm, tcfg(max_length=24))
    huge = "vitamin d lowers cancer risk " * 20_000  # 100,000 words: truncated, not a crash
    batch = model.encode(["", "   \n\t", "vitamin \udcff risk", "coffee", huge], PruneConfig())
    assert batch.row_nnz().tolist()[:2] == [0, 0]
    assert all(n > 0 for n in batch.row_nnz()[2:])
    assert as_dicts(batch)[4] == as_dicts(model.encode([huge[:2000]], PruneConfig()))[0]
    assert len(model.encode([], PruneConfig())) == 0


def test_thresholds_and_max_terms(tiny_mlm):
    model = SpladeModel(tiny_mlm, tcfg(max_length=24))
    full = as_dicts(model.encode(TEXTS, PruneConfig()))
    cut = as_dicts(model.encode(TEXTS, PruneConfig(doc_threshold=0.5, doc_max_terms=5)))
    for f, c in zip(full, cut, strict=True):
        want = sorted((t for t, w in f.items() if w >= 0.5), key=lambda t: (-f[t], t))[:5]
        assert sorted(c) == sorted(want)
        assert all(c[t] == f[t] for t in c)
    q = as_dicts(model.encode(TEXTS, PruneConfig(query_max_terms=3), query=True))
    assert all(len(r) <= 3 for r in q)


def test_checkpoint_without_mlm_head_is_refused(tiny_backbone):
    with pytest.raises(ConfigError, match="no masked-language-model head.*cls.predictions"):
        SpladeModel(tiny_backbone, tcfg())


def test_query_model_with_another_vocabulary_is_refused(tiny_mlm, tmp_path):
    other = make_mlm(tmp_path / "other", vocab=[*VOCAB[:-2], VOCAB[-1], VOCAB[-2]])  # two ids swapped
    cfg = load_config(
        None,
        [
            "encoder.name=splade",
            f"encoder.model={tiny_mlm}",
            f"encoder.query_model={other}",
            "encoder.transformer.device=cpu",
        ],
    ).encoder
    with pytest.raises(ConfigError, match="vocabulary mismatch"):
        SpladeEncoder(cfg)


def test_describe_has_what_the_query_side_needs(tiny_mlm):
    cfg = load_config(
        None,
        [
            "encoder.name=splade",
            f"encoder.model={tiny_mlm}",
            "encoder.transformer.max_length=32",
            "encoder.prune.query_max_terms=7",
        ],
    ).encoder
    meta = SpladeEncoder(cfg).describe()
    assert meta["name"] == "splade" and meta["model"] == str(tiny_mlm.resolve())
    assert meta["query_model"] == meta["model"] and meta["vocab_size"] == len(VOCAB)
    assert meta["splade"] == {"pooling": "max"} and meta["transformer"]["max_length"] == 32
    assert meta["prune"]["query_max_terms"] == 7 and len(meta["vocab_sha256"]) == 16


def test_missing_folder_and_offline_hub_name_fail_fast(monkeypatch, tmp_path):
    from lsr.encoders.hf import resolve_model

    with pytest.raises(ConfigError, match="not a model folder"):
        resolve_model(str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="is empty"):
        resolve_model("")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="pass a local model folder"):
        resolve_model("naver/splade-v3")
    assert time.perf_counter() - start < 10


def test_encoder_flag_forms(tiny_mlm):
    import lsr.encoders
    from lsr.encoders import encoder_overrides

    assert encoder_overrides("bm25") == ["encoder.name=bm25"]
    assert encoder_overrides("splade")[0] == "encoder.name=splade"
    shipped = Path(lsr.encoders.__file__).resolve().parents[1] / "models" / "unicoil"
    assert encoder_overrides("unicoil") == ["encoder.name=unicoil", f'encoder.model="{shipped}"']
    cfg = load_config(None, encoder_overrides(f"inference-free:{tiny_mlm}")).encoder
    assert (cfg.name, cfg.model) == ("inference-free", str(tiny_mlm))
    cfg = load_config(None, encoder_overrides(str(tiny_mlm))).encoder
    assert (cfg.name, cfg.model) == ("splade", str(tiny_mlm))
    cfg = load_config(None, encoder_overrides(os.path.relpath(tiny_mlm))).encoder  # no YAML surprises
    assert cfg.model == os.path.relpath(tiny_mlm)
    with pytest.raises(ConfigError, match="unknown encoder 'splodge'"):
        encoder_overrides("splodge")


def test_dense_rows_are_csr(tiny_mlm):
    model = SpladeModel(tiny_mlm, tcfg())
    dense = torch.tensor([[0.0, 1.5, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0]])
    rows = model._dense_rows(dense)
    assert [r[0].tolist() for r in rows] == [[1, 3], [], [0]]
    assert [r[1].tolist() for r in rows] == [[1.5, 2.0], [], [3.0]]
    assert rows[0][0].dtype == np.int32 and rows[0][1].dtype == np.float32


def test_bare_unicoil_has_no_splade_tiny_fallback(monkeypatch, tmp_path):
    """splade-tiny has no uniCOIL head: without the shipped model a bare unicoil names no model."""
    import lsr.encoders
    from lsr.encoders import default_model

    monkeypatch.setattr(lsr.encoders, "SHIPPED_MODELS_DIR", tmp_path)
    assert default_model("unicoil") is None
    assert default_model("splade") is None or default_model("splade").name == "splade-tiny"
