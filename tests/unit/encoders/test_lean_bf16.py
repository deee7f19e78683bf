"""The ``lean-bf16`` query runtime (lsr.encoders.lean_query with bf16=True) against the float32 path:
the bfloat16 products against float64 sums of the same bfloat16 inputs, the fused BERT's hidden
states and uniCOIL's weights within bfloat16 rounding of float32 (and really in bfloat16: not equal),
the load-time check that catches a broken product and the float32 fallback it picks.

Tolerances: a bfloat16 product's inputs and output are rounded to 8 significant bits (relative 2^-9
each), so one product is within ~1% of float32; the 2-layer tiny models' hidden states within 2% of
their largest; uniCOIL weights (ReLU of a linear head) within 2% of a query's largest weight."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from tiny_models import SHIPPED_QUERIES, as_dicts, query_config, saved_unicoil, shipped, shipped_words  # noqa: E402

from lsr.config import PruneConfig, TransformerConfig  # noqa: E402
from lsr.encoders import lean_query  # noqa: E402
from lsr.encoders.lean_query import Bf16Linear, LeanBert, LeanQueryRuntime, check_bf16  # noqa: E402
from lsr.encoders.onnx_query import resolve_runtime  # noqa: E402
from lsr.encoders.splade import SpladeModel  # noqa: E402
from lsr.encoders.unicoil import UniCoilModel  # noqa: E402

QUERIES = ["the cat sat on the mat", "vitamin d lowers cancer risk", "", "dogs dogs dogs", "a b c d e f " * 8]


def assert_within(got: list[dict], want: list[dict], share: float) -> None:
    """Every term's weight (0 where a row lacks it) within ``share`` of the row's largest float32
    weight: a term may come or go only where its float32 weight is that close to 0."""
    for g, w in zip(got, want, strict=True):
        top = max(w.values(), default=0.0)
        for t in set(g) | set(w):
            assert abs(g.get(t, 0.0) - w.get(t, 0.0)) <= share * top, (t, g.get(t), w.get(t))


def bf16_reference(x, weight, bias):
    """float64 sums of the bfloat16-rounded inputs: what a bfloat16 product with float32
    accumulation computes, but for the accumulation's and the output's rounding."""
    r = [t.to(torch.bfloat16).double() for t in (x, weight, bias)]
    return r[0] @ r[1].T + r[2]


@pytest.mark.parametrize("gelu", [False, True])
@pytest.mark.parametrize("packed", [True, False])
def test_bf16_linear_equals_bf16_reference(gelu, packed):
    gen = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(96, 64, generator=gen) * 0.1, torch.randn(96, generator=gen) * 0.1
    x = torch.randn(23, 64, generator=gen)
    linear = Bf16Linear(weight, bias, gelu=gelu)
    if packed and linear.packed is None:
        pytest.skip("this torch has no oneDNN bfloat16 linear")
    if not packed:
        linear.packed = None
    want = bf16_reference(x, weight, bias)
    want = torch.nn.functional.gelu(want) if gelu else want
    got = linear(x)
    assert got.dtype == (torch.bfloat16 if gelu else torch.float32)
    # the output rounded to bfloat16 (2^-9 relative), the float32 sums and bias rounding: 2^-7 of the largest
    torch.testing.assert_close(got.double(), want, atol=float(want.abs().max()) * 2**-7, rtol=2**-7)


def test_bf16_lean_bert_is_close_to_float32_and_is_bf16(tiny_mlm, tiny_backbone):
    ids = torch.tensor([2, 7, 9, 11, 30, 41, 3])
    splade = SpladeModel(tiny_mlm, query_config())
    unicoil = UniCoilModel(tiny_backbone, query_config(), new_head=True)
    for net in (splade.trunk, unicoil.backbone):
        exact, bf16 = LeanBert.from_model(net), LeanBert.from_model(net, bf16=True)
        assert exact is not None and bf16 is not None and bf16.bf16 and not exact.bf16
        with torch.inference_mode():
            want, got = exact(ids), bf16(ids)
        diff = float((got - want).abs().max())
        assert 0 < diff <= 0.02 * float(want.abs().max())
        assert check_bf16(net, bf16)


def test_check_bf16_catches_a_broken_product(tiny_backbone):
    """Products off by 50% (as a kernel that mishandles bfloat16 could be) fail the check."""
    net = UniCoilModel(tiny_backbone, query_config(), new_head=True).backbone
    trunk = LeanBert.from_model(net, bf16=True)
    assert trunk is not None and check_bf16(net, trunk)
    for layer in trunk.layers:
        for linear in (layer[0], layer[1], layer[3], layer[4]):
            linear.weight.mul_(1.5)
            linear.packed = None  # the unpacked product reads the scaled weight
    assert not check_bf16(net, trunk)


def test_unicoil_lean_bf16_is_close_to_torch(tiny_backbone, tmp_path):
    model = saved_unicoil(tiny_backbone, tmp_path / "unicoil")
    want = as_dicts(model.encode(QUERIES, PruneConfig(), query=True))
    model.query_runtime = LeanQueryRuntime(model, bf16=True)
    assert model.query_runtime.forward == "bfloat16 fused BERT"
    got = as_dicts(model.encode(QUERIES, PruneConfig(), query=True))
    assert_within(got, want, 0.02)
    assert got[2] == {}
    assert got != want  # the products really ran in bfloat16


def test_a_failed_check_falls_back_to_float32(tiny_backbone, tmp_path, monkeypatch):
    monkeypatch.setenv("LSR_CACHE_DIR", str(tmp_path / "cache"))
    model = saved_unicoil(tiny_backbone, tmp_path / "unicoil")
    want = as_dicts(model.encode(QUERIES, PruneConfig(), query=True))
    monkeypatch.setattr(lean_query, "check_bf16", lambda net, trunk: False)
    model.query_runtime = LeanQueryRuntime(model, bf16=True)
    assert model.query_runtime.forward in ("ONNX Runtime", "fused BERT")
    got = as_dicts(model.encode(QUERIES, PruneConfig(), query=True))
    for g, w in zip(got, want, strict=True):
        assert set(g) == set(w) and all(g[t] == pytest.approx(w[t], abs=1e-5) for t in w)


def test_shipped_unicoil_lean_bf16_is_close_to_torch():
    """The shipped uniCOIL's query rows (its word terms, as an index of it writes them)."""
    model = shipped(UniCoilModel, "unicoil")
    shipped_words(model)
    texts = SHIPPED_QUERIES
    want = as_dicts(model.encode(texts, PruneConfig(), query=True))
    model.query_runtime = LeanQueryRuntime(model, bf16=True)
    assert model.query_runtime.forward == "bfloat16 fused BERT"
    got = as_dicts(model.encode(texts, PruneConfig(), query=True))
    assert_within(got, want, 0.02)
    assert all(set(g) & set(w) for g, w in zip(got, want, strict=True))


def test_lean_bf16_is_a_runtime():
    assert resolve_runtime("lean-bf16", "cpu", "unicoil") == "lean-bf16"
    assert TransformerConfig(query_runtime="lean-bf16").query_runtime == "lean-bf16"


def test_splade_lean_bf16_is_close_to_torch(tiny_mlm):
    """SPLADE on lean-bf16: the bfloat16 transformer, then the same screened projection."""
    model = SpladeModel(tiny_mlm, query_config())
    want = as_dicts(model.encode(QUERIES, PruneConfig(), query=True))
    model.query_runtime = LeanQueryRuntime(model, bf16=True)
    assert model.query_runtime.forward == "bfloat16 fused BERT" and model.query_runtime.head.screen
    got = as_dicts(model.encode(QUERIES, PruneConfig(), query=True))
    assert_within(got, want, 0.02)
    assert got != want


def test_a_cpu_without_bf16_instructions_is_warned_about(tiny_backbone, tmp_path, monkeypatch, caplog):
    model = saved_unicoil(tiny_backbone, tmp_path / "unicoil")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert not lean_query.has_bf16_instructions()
    with caplog.at_level("WARNING", logger="lsr.encoders.lean_query"):
        LeanQueryRuntime(model, bf16=True)
    assert "slower than float32" in caplog.text
