"""sentence-transformers SparseEncoder folders (saved by sentence-transformers itself from a tiny random
BERT): lsr reads their SpladePooling settings, max_seq_length and the inference-free Router layout, and
gives the vectors sentence-transformers gives; what it does not implement is refused by name."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
st = pytest.importorskip("sentence_transformers")

from tiny_models import DOCS, make_mlm  # noqa: E402

from lsr.cli import main  # noqa: E402
from lsr.config import load_config  # noqa: E402
from lsr.encoders import make_encoder  # noqa: E402
from lsr.encoders.st import read_st_folder  # noqa: E402
from lsr.errors import ConfigError  # noqa: E402
from lsr.searcher import Searcher  # noqa: E402

TEXTS = [f"{title} {text}" for _, title, text in DOCS if text.strip()]
QUERIES = ["vitamin d cancer", "the cat and the dog sat", "sleep quality in adults with coffee"]


def st_modules():
    """The module classes (ST 6 moved them from ``sparse_encoder.models`` to ``sparse_encoder.modules``)."""
    try:
        from sentence_transformers.sparse_encoder import modules
    except ImportError:
        from sentence_transformers.sparse_encoder import models as modules
    return modules.MLMTransformer, modules.SparseStaticEmbedding, modules.SpladePooling


@pytest.fixture(scope="module")
def st_splade(tmp_path_factory):
    """SpladePooling("sum", activation_function="log1p_relu"), max_seq_length 16: not lsr's defaults."""
    MLMTransformer, _, SpladePooling = st_modules()
    root = tmp_path_factory.mktemp("st")
    mlm = MLMTransformer(str(make_mlm(root / "mlm")), max_seq_length=16)
    model = st.SparseEncoder(
        modules=[mlm, SpladePooling("sum", activation_function="log1p_relu")], device="cpu"
    )
    model.save(str(root / "splade"))
    return root / "splade", model


@pytest.fixture(scope="module")
def st_inference_free(tmp_path_factory):
    """A Router: SparseStaticEmbedding for queries, MLMTransformer + SpladePooling for documents."""
    try:
        from sentence_transformers.base.modules import Router
    except ImportError:
        from sentence_transformers.models import Router

    MLMTransformer, SparseStaticEmbedding, SpladePooling = st_modules()
    root = tmp_path_factory.mktemp("st-if")
    mlm = MLMTransformer(str(make_mlm(root / "mlm", seed=1)))
    torch.manual_seed(0)
    weight = torch.rand(mlm.tokenizer.vocab_size) + 0.1
    weight[mlm.tokenizer.all_special_ids] = 0.0  # lsr never weighs [CLS]/[SEP]; ST counts them if weighted
    static = SparseStaticEmbedding(tokenizer=mlm.tokenizer, weight=weight, frozen=True)
    router = Router.for_query_document(query_modules=[static], document_modules=[mlm, SpladePooling("max")])
    model = st.SparseEncoder(modules=[router], device="cpu")
    model.save(str(root / "if"))
    return root / "if", model


def dense(batch, vocab_size):
    out = np.zeros((len(batch), vocab_size), dtype=np.float32)
    for i in range(len(batch)):
        terms, weights = batch.row(i)
        out[i, terms] = weights
    return out


def st_vectors(model, texts, side):
    encode = model.encode_query if side == "query" else model.encode_document
    vectors = encode(texts, convert_to_tensor=True, convert_to_sparse_tensor=False)
    return vectors.to_dense().cpu().numpy()


def test_splade_folder_pooling_activation_and_length_are_honored(st_splade):
    folder, model = st_splade
    layout = read_st_folder(folder)
    assert (layout.pooling, layout.activation, layout.max_seq_length) == ("sum", "log1p_relu", 16)
    encoder = make_encoder(
        load_config(None, ["encoder.name=splade", f"encoder.model={json.dumps(str(folder))}"]).encoder
    )
    ours = dense(encoder.encode(TEXTS), encoder.model.vocab_size)
    theirs = st_vectors(model, TEXTS, "document")
    assert np.abs(ours - theirs).max() < 1e-4
    described = encoder.describe()
    assert described["splade"]["pooling"] == "sum" and described["transformer"]["max_length"] == 16
    assert described["sentence_transformers"]["activation"] == "log1p_relu"


def test_inference_free_router_folder_indexes_and_searches(st_inference_free, tmp_path):
    folder, model = st_inference_free
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"_id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    out = tmp_path / "index"
    args = ["index", "--corpus", str(corpus), "--encoder", f"inference-free:{folder}", "--out", str(out)]
    assert main([*args, "--quiet"]) == 0
    searcher = Searcher(out)
    vocab_size = len(searcher.index.vocab)
    theirs = st_vectors(model, QUERIES, "query")
    ours = dense(searcher.encode_texts(QUERIES), vocab_size)
    assert np.abs(ours - theirs).max() < 1e-6  # the query side is the ST table, not corpus IDF
    meta = json.loads((out / "meta.json").read_text())
    assert meta["encoder"]["inference_free"]["query_weights"] == "model"
    encoder = make_encoder(
        load_config(None, ["encoder.name=inference-free", f"encoder.model={json.dumps(str(folder))}"]).encoder
    )
    docs = dense(encoder.encode(TEXTS), vocab_size)
    assert np.abs(docs - st_vectors(model, TEXTS, "document")).max() < 1e-4


def test_unimplemented_modules_and_settings_are_refused_by_name(st_splade, tmp_path):
    folder, _ = st_splade
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    modules = json.loads((copy / "modules.json").read_text())
    modules.append(
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
    )
    (copy / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ConfigError, match=r"modules \['MLMTransformer', 'SpladePooling', 'Normalize'\]"):
        read_st_folder(copy)
    (copy / "modules.json").write_text(json.dumps(modules[:2]))
    pooling = copy / "1_SpladePooling" / "config.json"
    pooling.write_text(json.dumps({"pooling_strategy": "mean", "activation_function": "relu"}))
    with pytest.raises(ConfigError, match=r"SpladePooling\('mean'"):
        read_st_folder(copy)
    assert read_st_folder(tmp_path) is None  # a plain Hugging Face folder: no modules.json


def test_a_bare_router_folder_is_inference_free(st_inference_free, st_splade):
    from lsr.encoders import encoder_overrides

    assert encoder_overrides(str(st_inference_free[0]))[0] == "encoder.name=inference-free"
    assert encoder_overrides(str(st_splade[0]))[0] == "encoder.name=splade"


def test_our_models_export_to_folders_sentence_transformers_loads(tmp_path):
    """lsr export-st: an inference-free model (idf.json) loads in ST with its query table, a SPLADE one as
    MLMTransformer + SpladePooling; both give lsr's vectors, and lsr reads the export back the same."""
    from tiny_models import VOCAB

    model = make_mlm(tmp_path / "if-model", seed=2)
    rng = np.random.default_rng(0)
    (model / "idf.json").write_text(json.dumps({t: float(rng.uniform(0.5, 3)) for t in VOCAB[5:]}))
    out = tmp_path / "st-if"
    assert main(["export-st", "--model", str(model), "--out", str(out)]) == 0
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"_id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    for name, encoder in (("ours", f"inference-free:{model}"), ("export", f"inference-free:{out}")):
        args = [
            "index",
            "--corpus",
            str(corpus),
            "--encoder",
            encoder,
            "--out",
            str(tmp_path / name),
            "--quiet",
        ]
        assert main(args) == 0
    ours, again = Searcher(tmp_path / "ours"), Searcher(tmp_path / "export")
    size = len(ours.index.vocab)
    loaded = st.SparseEncoder(str(out), device="cpu")
    want = dense(ours.encode_texts(QUERIES), size)
    assert np.abs(st_vectors(loaded, QUERIES, "query") - want).max() < 1e-6
    assert np.abs(dense(again.encode_texts(QUERIES), size) - want).max() == 0
    cfg = load_config(None, ["encoder.name=splade", f"encoder.model={json.dumps(str(model))}"])
    docs = dense(make_encoder(cfg.encoder).encode(TEXTS), size)
    assert np.abs(st_vectors(loaded, TEXTS, "document") - docs).max() < 1e-4

    (model / "idf.json").unlink()
    assert main(["export-st", "--model", str(model), "--out", str(tmp_path / "st-splade")]) == 0
    splade = st.SparseEncoder(str(tmp_path / "st-splade"), device="cpu")
    assert np.abs(st_vectors(splade, TEXTS, "document") - docs).max() < 1e-4
    assert main(["export-st", "--model", str(model), "--out", str(tmp_path / "st-splade")]) == 2  # exists


def test_the_shipped_inference_free_model_in_sentence_transformers(tmp_path):
    """[fit] row: our shipped inference-free model, loaded in sentence-transformers' SparseEncoder after
    lsr export-st, is a Router whose query side is the model's idf.json (not a plain SPLADE): ST's query
    vectors are lsr's exactly and its document vectors lsr's to float rounding."""
    from lsr.encoders import SHIPPED_MODELS_DIR

    shipped = str(SHIPPED_MODELS_DIR / "inference-free")  # the SPLADE one (the default now writes words)
    out = tmp_path / "st"
    assert main(["export-st", "--model", shipped, "--out", str(out), "--quiet"]) == 0
    assert main(["export-st", "--model", "inference-free", "--out", str(tmp_path / "u"), "--quiet"]) == 2
    assert main(["export-st", "--model", "splade", "--out", str(tmp_path / "w"), "--quiet"]) == 2  # words
    loaded = st.SparseEncoder(str(out), device="cpu")
    assert type(loaded[0]).__name__ == "Router"  # query and document sides differ
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"_id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    index = tmp_path / "index"
    assert (
        main(
            ["index", "--corpus", str(corpus), "--encoder", f"inference-free:{shipped}", "--out", str(index)]
            + ["--quiet"]
        )
        == 0
    )
    searcher = Searcher(index)
    size = len(searcher.index.vocab)
    queries = [*QUERIES, "what lowers the risk of cancer?"]
    # the model's query side (the index's encoder.query_idf factor is the collection's, not the model's)
    want = dense(searcher.query_encoder.encode(queries), size)
    assert (want > 0).sum(axis=1).min() >= 2
    assert np.abs(st_vectors(loaded, queries, "query") - want).max() < 1e-6
    model = json.dumps(shipped)
    encoder = make_encoder(
        load_config(None, ["encoder.name=inference-free", f"encoder.model={model}"]).encoder
    )
    docs = dense(encoder.encode(TEXTS), size)
    assert np.abs(st_vectors(loaded, TEXTS, "document") - docs).max() < 1e-4
