"""The ``onnx-int8-smooth`` query runtime (lsr.encoders.smooth_int8 through onnx_query) against the
float32 path: the blockwise 8-bit weights against a numpy reference, the smoothing exact in float32,
the uniCOIL vectors (texts and seeded token sequences) and a SPLADE graph's within int8 error of
float32's (and really quantized: not equal), the load-time check and the float32 fallback it and a
non-BERT graph pick, auto's choice and bad runtime names refused.

Tolerances: a block's weights round to 127 levels of its largest (half a step: ``max|w| / 254``); the
smoothing only reorders float32 products (1e-5); the tiny 2-layer uniCOIL's weights and the shipped
one's within 5% of a query's largest weight (the shipped one moves by at most 4% of it on SciFact's
300 test queries, 1.5% on average; a broken kernel by O(1))."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from tiny_models import SHIPPED_QUERIES, as_dicts, query_config, saved_unicoil, shipped, shipped_words  # noqa: E402

from lsr.config import PruneConfig, TransformerConfig  # noqa: E402
from lsr.encoders import smooth_int8  # noqa: E402
from lsr.encoders.onnx_query import OnnxQueryRuntime, _session, resolve_runtime, token_feeds  # noqa: E402
from lsr.encoders.unicoil import UniCoilModel  # noqa: E402
from lsr.errors import ConfigError  # noqa: E402

QUERIES = ["the cat sat on the mat", "vitamin d lowers cancer risk", "", "dogs dogs dogs", "a b c d e f " * 4]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LSR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LSR_QUERY_RUNTIME", raising=False)
    return tmp_path / "cache"


def assert_within(got: list[dict], want: list[dict], share: float) -> None:
    """Every term's weight (0 where a row lacks it) within ``share`` of the row's largest float32 one."""
    for g, w in zip(got, want, strict=True):
        top = max(w.values(), default=0.0)
        for t in set(g) | set(w):
            assert abs(g.get(t, 0.0) - w.get(t, 0.0)) <= share * top, (t, g.get(t), w.get(t))


def test_block_quantize_against_reference():
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((200, 7)).astype(np.float32)  # K = 200: the second block is padded
    weight[:, 3] = 0.0
    q, scale = smooth_int8.block_quantize(weight, block=128)
    assert q.shape == (7, 2, 128) and q.dtype == np.uint8 and scale.shape == (7, 2)
    for n in range(7):
        for b in range(2):
            part = weight[b * 128 : (b + 1) * 128, n]
            step = max(float(np.abs(part).max()), 0.0) / 127
            back = (q[n, b, : len(part)].astype(np.float64) - 128) * scale[n, b]
            assert np.abs(back - part).max() <= step / 2 + 1e-7
            assert (q[n, b, len(part) :] == 128).all()  # padding decodes to 0
    assert (q[3] == 128).all() and (scale[3] == 1.0).all()


def test_block_int8_node_runs_as_reference():
    """A MatMul replaced by MatMulNBits computes x @ (the dequantized blocks) up to the per-block int8
    rounding of x (accuracy level 4: 1/254 of a block's largest |x| a term)."""
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((160, 24)).astype(np.float32) * 0.1
    x = rng.standard_normal((5, 160)).astype(np.float32)
    helper = onnx.helper
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [5, 160])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    smooth_int8.to_block_int8(model, model.graph.node[0], block=32)
    assert [n.op_type for n in model.graph.node] == ["MatMulNBits"]
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x}
    )[0]
    q, scale = smooth_int8.block_quantize(weight, block=32)
    dequant = ((q.astype(np.float64) - 128) * scale[..., None]).reshape(24, -1)[:, :160].T
    want = x.astype(np.float64) @ dequant
    bound = (np.abs(x).reshape(5, 5, 32).max(axis=2) / 254) @ np.abs(dequant).reshape(5, 32, 24).sum(axis=1)
    assert np.all(np.abs(got - want) <= bound * 1.01 + 1e-5)
    assert not np.allclose(got, x @ weight, atol=1e-6)


def test_weight_products_refuses_other_graphs():
    helper = onnx.helper
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="/encoder/layer.0/output/dense/MatMul")],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(np.ones((4, 4), np.float32), "w")],
    )
    with pytest.raises(ValueError, match="not a BERT encoder's graph.*'qkv': 0"):
        smooth_int8.weight_products(helper.make_model(graph))


def test_smoothing_alone_keeps_the_float32_outputs(tiny_backbone, tmp_path):
    model = saved_unicoil(tiny_backbone, tmp_path / "unicoil")
    reference = OnnxQueryRuntime(model, "onnx")
    proto = onnx.load(str(reference.path))
    products = smooth_int8.weight_products(proto)
    nodes = [n for r in smooth_int8.SMOOTHED for n in products[r]]
    feeds = token_feeds(model, "unicoil", seed=0)
    smooth_int8.smooth(proto, nodes, smooth_int8.input_ranges(proto, {n.input[0] for n in nodes}, feeds))
    assert sum(n.op_type == "Mul" and n.name.endswith("/smoothed/Mul") for n in proto.graph.node) == 2 * 2
    onnx.save(proto, str(tmp_path / "smoothed.onnx"))
    session = _session(tmp_path / "smoothed.onnx")
    for feed in token_feeds(model, "unicoil", seed=5):
        want = reference.session.run(None, feed)[0]
        np.testing.assert_allclose(session.run(None, feed)[0], want, atol=1e-5 * max(1.0, float(want.max())))


def test_unicoil_smooth_is_close_to_float32(tiny_backbone, tmp_path, cache):
    model = saved_unicoil(tiny_backbone, tmp_path / "unicoil")
    want = as_dicts(model.encode(QUERIES, PruneConfig(), query=True))
    model.query_runtime = runtime = OnnxQueryRuntime(model, "onnx-int8-smooth")
    assert runtime.runtime == "onnx-int8-smooth"
    ops = {n.op_type for n in onnx.load(str(runtime.path)).graph.node}
    assert {"MatMulNBits", "DynamicQuantizeLinear"} <= ops or {"MatMulNBits", "MatMulInteger"} <= ops
    got = as_dicts(model.encode(QUERIES, PruneConfig(), query=True))
    assert_within(got, want, 0.05)
    assert got != want  # really quantized
    assert (
        len(list((cache / "onnx").glob("*.onnx"))) == 2
    )  # its graph and the float32 one it is checked against


def test_shipped_unicoil_smooth_is_close_to_float32():
    model = shipped(UniCoilModel, "unicoil")
    shipped_words(model)
    want = as_dicts(model.encode(SHIPPED_QUERIES, PruneConfig(), query=True))
    model.query_runtime = OnnxQueryRuntime(model, "onnx-int8-smooth")
    assert model.query_runtime.runtime == "onnx-int8-smooth"
    assert_within(as_dicts(model.encode(SHIPPED_QUERIES, PruneConfig(), query=True)), want, 0.05)


def test_agrees_catches_a_broken_session():
    class Fixed:
        def __init__(self, out):
            self.out = out

        def run(self, _names, _feed):
            return [self.out]

    want = np.array([[0.0, 1.0, 2.0]], np.float32)
    feeds = [{"input_ids": np.zeros((1, 3), np.int64)}]
    assert smooth_int8.agrees(Fixed(want + 0.1), Fixed(want), feeds)
    assert not smooth_int8.agrees(Fixed(want * 1.5), Fixed(want), feeds)


@pytest.mark.parametrize("failure", ["check", "not_bert"])
def test_falls_back_to_float32(tiny_backbone, tmp_path, monkeypatch, caplog, failure):
    model = saved_unicoil(tiny_backbone, tmp_path / "unicoil")
    want = as_dicts(model.encode(QUERIES, PruneConfig(), query=True))
    if failure == "check":
        monkeypatch.setattr(smooth_int8, "agrees", lambda *_: False)
    else:

        def not_bert(_model):
            raise ValueError("not a BERT encoder's graph")

        monkeypatch.setattr(smooth_int8, "weight_products", not_bert)
    model.query_runtime = runtime = OnnxQueryRuntime(model, "onnx-int8-smooth")
    assert runtime.runtime == "onnx"
    assert "the float32 graph instead" in caplog.text
    got = as_dicts(model.encode(QUERIES, PruneConfig(), query=True))
    for g, w in zip(got, want, strict=True):
        assert set(g) == set(w) and all(abs(g[t] - w[t]) <= 1e-5 for t in w)


def test_auto_picks_it_for_unicoil(monkeypatch):
    assert resolve_runtime("auto", "cpu", "unicoil") == "onnx-int8-smooth"
    assert resolve_runtime("auto", "cpu", "splade") == "lean"
    assert resolve_runtime("auto", "cuda", "unicoil") == "torch"
    assert resolve_runtime("onnx-int8-smooth", "cpu", "splade") == "onnx-int8-smooth"
    with pytest.raises(ConfigError, match="'onnx-int8-smoth'"):
        TransformerConfig(query_runtime="onnx-int8-smoth")
    monkeypatch.setenv("LSR_QUERY_RUNTIME", "int8-smooth")
    with pytest.raises(ConfigError, match="'int8-smooth' is not one of"):
        resolve_runtime("auto", "cpu", "unicoil")


@pytest.mark.parametrize("seed", [2, 3])
def test_seeded_sequences_within_tolerance(tiny_backbone, tmp_path, seed):
    """The graph's token weights on seeded token sequences (6-64 tokens) within 5% of the largest float32
    weight (the load-time check allows 15%)."""
    model = saved_unicoil(tiny_backbone, tmp_path / "unicoil")
    smooth, reference = OnnxQueryRuntime(model, "onnx-int8-smooth"), OnnxQueryRuntime(model, "onnx")
    assert smooth.runtime == "onnx-int8-smooth"
    for feed in token_feeds(model, "unicoil", seed):
        got, want = smooth.session.run(None, feed)[0], reference.session.run(None, feed)[0]
        assert 0 < np.abs(got - want).max() <= 0.05 * np.abs(want).max()


def test_splade_graph_is_close(tiny_mlm):
    """A SPLADE query graph takes the same recipe (its vocabulary projection stays float32)."""
    from lsr.encoders.splade import SpladeModel

    model = SpladeModel(tiny_mlm, query_config())
    want = as_dicts(model.encode(QUERIES, PruneConfig(), query=True))
    model.query_runtime = OnnxQueryRuntime(model, "onnx-int8-smooth")
    assert model.query_runtime.runtime == "onnx-int8-smooth"
    assert_within(as_dicts(model.encode(QUERIES, PruneConfig(), query=True)), want, 0.05)
