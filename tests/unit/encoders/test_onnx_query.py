"""The ONNX Runtime query path (lsr.encoders.onnx_query) against the torch float32 path: the same
terms and weights (float32 rounding) for SPLADE and uniCOIL, int8 close, the export cached once,
the runtime chosen automatically and forced by LSR_QUERY_RUNTIME."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")

from tiny_models import (  # noqa: E402
    SHIPPED_QUERIES,
    as_dicts,
    assert_close,
    check_token_weights,
    query_config,
    saved_unicoil,
    shipped,
    shipped_words,
)

from lsr.config import PruneConfig, TransformerConfig  # noqa: E402
from lsr.encoders.onnx_query import OnnxQueryRuntime, resolve_runtime  # noqa: E402
from lsr.encoders.splade import SpladeModel  # noqa: E402
from lsr.encoders.unicoil import UniCoilModel  # noqa: E402
from lsr.errors import ConfigError  # noqa: E402

QUERIES = [
    "the cat sat on the mat",
    "vitamin d lowers cancer risk",
    "",
    "dogs dogs dogs",
    "cat",
    "a b c d e f",
]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LSR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LSR_QUERY_RUNTIME", raising=False)
    return tmp_path / "cache"


@pytest.mark.parametrize("pooling", ["max", "sum"])
def test_splade_onnx_equals_torch(tiny_mlm, cache, pooling):
    model = SpladeModel(tiny_mlm, query_config(), pooling=pooling)
    prune = PruneConfig()
    want = as_dicts(model.encode(QUERIES, prune, query=True))
    model.query_runtime = OnnxQueryRuntime(model, "onnx")
    got = as_dicts(model.encode(QUERIES, prune, query=True))
    assert_close(got, want, atol=1e-4)
    assert got[2] == {} and len(list((cache / "onnx").glob("*.onnx"))) == 1
    again = OnnxQueryRuntime(model, "onnx")  # the cached export is reused
    assert again.path == model.query_runtime.path


def test_unicoil_onnx_equals_torch(tiny_backbone, tmp_path):
    model = saved_unicoil(tiny_backbone, tmp_path / "unicoil")
    want = as_dicts(model.encode(QUERIES, PruneConfig(), query=True))
    model.query_runtime = OnnxQueryRuntime(model, "onnx")
    got = as_dicts(model.encode(QUERIES, PruneConfig(), query=True))
    assert_close(got, want, atol=1e-5)


def test_unicoil_onnx_token_weights_equal_torch(tiny_backbone, tmp_path, tiny_mlm):
    model = saved_unicoil(tiny_backbone, tmp_path / "unicoil")
    check_token_weights(model, OnnxQueryRuntime(model, "onnx"), [q for q in QUERIES if q], atol=1e-5)
    splade = SpladeModel(tiny_mlm, query_config())
    runtime = OnnxQueryRuntime(splade, "onnx")
    with pytest.raises(ValueError, match="splade query graph"):
        runtime.token_weights(np.ones((1, 3), np.int64), np.ones((1, 3), bool))


def test_shipped_unicoil_onnx_equals_torch():
    """The shipped uniCOIL's query rows (its word terms, as an index of it writes them)."""
    model = shipped(UniCoilModel, "unicoil")
    shipped_words(model)
    want = as_dicts(model.encode(SHIPPED_QUERIES, PruneConfig(), query=True))
    model.query_runtime = OnnxQueryRuntime(model, "onnx")
    got = as_dicts(model.encode(SHIPPED_QUERIES, PruneConfig(), query=True))
    assert_close(got, want, atol=1e-5)
    assert all(want)


def test_int8_is_close(tiny_mlm):
    model = SpladeModel(tiny_mlm, query_config())
    want = model.encode(QUERIES, PruneConfig(), query=True)
    model.query_runtime = OnnxQueryRuntime(model, "onnx-int8")
    got = model.encode(QUERIES, PruneConfig(), query=True)
    dense = np.zeros((2, len(QUERIES), model.vocab_size))
    for k, batch in enumerate((want, got)):
        for i in range(len(QUERIES)):
            terms, weights = batch.row(i)
            dense[k, i, terms] = weights
    assert np.abs(dense[0] - dense[1]).max() < 0.1 * max(dense[0].max(), 1e-6) + 0.05


def test_runtime_choice(monkeypatch):
    assert resolve_runtime("auto", "cpu", "unicoil") == "onnx-int8-smooth"
    assert resolve_runtime("auto", "cpu", "splade") == "lean"
    assert resolve_runtime("auto", "cuda", "unicoil") == "torch"
    assert resolve_runtime("onnx-int8", "cpu") == "onnx-int8"
    monkeypatch.setenv("LSR_QUERY_RUNTIME", "torch")
    assert resolve_runtime("auto", "cpu") == "torch"
    monkeypatch.setenv("LSR_QUERY_RUNTIME", "onnx16")
    with pytest.raises(ConfigError, match="'onnx16' is not one of"):
        resolve_runtime("auto", "cpu")
    with pytest.raises(ConfigError, match="query_runtime"):
        TransformerConfig(query_runtime="fast")
