"""The lean query runtime (lsr.encoders.lean_query) against the torch float32 path: the fused BERT
forward equals the Hugging Face modules, the screened projection equals the full float32 one (same
terms, weights to float32 rounding) on seeded inputs built to sit at the bound's edge, a query's
weights do not depend on the queries encoded with it, and leaving out the terms without postings
changes nothing else."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from tiny_models import (  # noqa: E402
    SHIPPED_QUERIES,
    as_dicts,
    assert_close,
    check_token_weights,
    query_config,
    saved_unicoil,
    shipped,
)

from lsr.config import PruneConfig  # noqa: E402
from lsr.encoders import lean_query  # noqa: E402
from lsr.encoders.lean_query import LeanBert, LeanQueryRuntime, ScreenedHead, check_bound  # noqa: E402
from lsr.encoders.onnx_query import resolve_runtime  # noqa: E402
from lsr.encoders.splade import SpladeModel, splade_pool_reference  # noqa: E402
from lsr.encoders.unicoil import UniCoilModel  # noqa: E402

QUERIES = [
    "the cat sat on the mat",
    "vitamin d lowers cancer risk",
    "",
    "dogs dogs dogs",
    "cat",
    "a b c d e f " * 8,
]


def reference_rows(hidden, weight, bias, pooling, activation):
    """The straightforward float32 SPLADE pooling of each query (``[tokens, dim]`` hidden states)."""
    out = []
    for h in hidden:
        dense = splade_pool_reference(
            h.unsqueeze(0), torch.ones(1, len(h), dtype=torch.bool), weight, bias, pooling, activation
        )[0]
        nz = torch.nonzero(dense > 0).squeeze(1)
        out.append(dict(zip(nz.tolist(), dense[nz].tolist(), strict=True)))
    return out


def edge_case(seed: int, vocab: int = 3000, dim: int = 64, queries: int = 5):
    """Random hidden states and rows, with biases set so that many pooled logits land 1e-4 to 1e-3
    above or below zero: far inside the screen's error bound (so it must compute them exactly to
    keep those above), far outside float32 rounding (so the reference's term set is certain)."""
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(vocab, dim, generator=gen) * 0.1
    hidden = [
        torch.randn(int(n), dim, generator=gen) * 5 for n in torch.randint(1, 40, (queries,), generator=gen)
    ]
    top = torch.stack([(h @ weight.T).amax(dim=0) for h in hidden]).amax(dim=0)
    sign = torch.randint(0, 2, (vocab,), generator=gen) * 2 - 1
    jitter = sign * (1e-4 + torch.rand(vocab, generator=gen) * 9e-4)
    bias = -top + jitter
    bias[::3] = (torch.randn(vocab, generator=gen) * 2)[::3]  # and ordinary ones
    return hidden, weight, bias


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("pooling", "activation"), [("max", "relu"), ("sum", "relu"), ("max", "log1p_relu")])
def test_screened_head_equals_float32(seed, pooling, activation):
    hidden, weight, bias = edge_case(seed)
    head = ScreenedHead(weight, bias, pooling, activation)
    got = [dict(zip(t.tolist(), w.tolist(), strict=True)) for t, w in head.rows(hidden)]
    want = reference_rows(hidden, weight, bias, pooling, activation)
    assert_close(got, want, atol=2e-5)
    assert sum(map(len, want)) > 1000  # the edge case has many small positive weights to find


def test_screen_keeps_tiny_positive_weights():
    """A logit just above zero (1e-6 after the bias) is kept; one just below is not."""
    weight = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    hidden = [torch.tensor([[3.0, 0.5]])]
    bias = torch.tensor([-3.0 + 1e-6, -3.0 - 1e-6, -0.5])
    head = ScreenedHead(weight, bias, "max", "relu")
    ((terms, weights),) = head.rows(hidden)
    assert terms.tolist() == [0] and weights[0] == pytest.approx(1e-6, rel=0.2)


def test_restricted_head_keeps_only_those_terms():
    hidden, weight, bias = edge_case(5)
    full = ScreenedHead(weight, bias, "max", "relu")
    keep = np.arange(0, weight.shape[0], 2)
    part = ScreenedHead(weight, bias, "max", "relu")
    part.restrict(keep)
    for (t_all, w_all), (t_part, w_part) in zip(full.rows(hidden), part.rows(hidden), strict=True):
        mine = np.isin(t_all, keep)
        assert t_part.tolist() == t_all[mine].tolist()
        assert np.array_equal(w_part, w_all[mine])
    unscreened = ScreenedHead(weight, bias, "max", "relu", screen=False)
    unscreened.restrict(keep)
    for (t_a, w_a), (t_b, w_b) in zip(part.rows(hidden), unscreened.rows(hidden), strict=True):
        assert t_a.tolist() == t_b.tolist() and np.array_equal(w_a, w_b)


def test_weights_do_not_depend_on_the_other_queries():
    hidden, weight, bias = edge_case(7, queries=8)
    head = ScreenedHead(weight, bias, "max", "relu")
    together = head.rows(hidden)
    for h, (terms, weights) in zip(hidden, together, strict=True):
        ((alone_terms, alone_weights),) = head.rows([h])
        assert terms.tolist() == alone_terms.tolist() and np.array_equal(weights, alone_weights)


def test_bound_holds_here_and_a_broken_product_falls_back(tiny_mlm, monkeypatch):
    hidden, weight, bias = edge_case(3)
    assert check_bound(ScreenedHead(weight, bias, "max", "relu"))
    monkeypatch.setattr(lean_query, "check_bound", lambda head: False)
    runtime = LeanQueryRuntime(SpladeModel(tiny_mlm, query_config()))
    assert not runtime.head.screen


def test_lean_bert_equals_hugging_face(tiny_mlm, tiny_backbone):
    splade = SpladeModel(tiny_mlm, query_config())
    lean = LeanBert.from_model(splade.trunk)
    assert lean is not None and lean.transform is not None
    ids = torch.tensor([2, 7, 9, 11, 3])
    with torch.inference_mode():
        want = splade.hidden(ids.unsqueeze(0), torch.ones(1, 5, dtype=torch.bool))[0]
        torch.testing.assert_close(lean(ids), want, atol=1e-5, rtol=1e-5)
    unicoil = UniCoilModel(tiny_backbone, query_config(), new_head=True)
    lean = LeanBert.from_model(unicoil.backbone)
    assert lean is not None and lean.transform is None
    with torch.inference_mode():
        want = unicoil.backbone(input_ids=ids.unsqueeze(0)).last_hidden_state[0]
        torch.testing.assert_close(lean(ids), want, atol=1e-5, rtol=1e-5)
    assert LeanBert.from_model(torch.nn.Linear(2, 2)) is None


def without_onnxruntime(monkeypatch) -> None:
    """The lean runtime as on a machine without onnxruntime: the fused torch forward."""
    find_spec = lean_query.importlib.util.find_spec
    monkeypatch.setattr(
        lean_query.importlib.util,
        "find_spec",
        lambda name: None if name == "onnxruntime" else find_spec(name),
    )


@pytest.fixture(params=["onnxruntime", "torch"])
def forward(request, monkeypatch, tmp_path):
    """Both transformer forwards of the lean runtime: ONNX Runtime's exported trunk and LeanBert."""
    monkeypatch.setenv("LSR_CACHE_DIR", str(tmp_path / "cache"))
    if request.param == "onnxruntime":
        pytest.importorskip("onnxruntime")
    else:
        without_onnxruntime(monkeypatch)
    return request.param


@pytest.mark.parametrize("pooling", ["max", "sum"])
def test_splade_lean_equals_torch(tiny_mlm, pooling, forward):
    model = SpladeModel(tiny_mlm, query_config(), pooling=pooling)
    want = as_dicts(model.encode(QUERIES, PruneConfig(), query=True))
    model.query_runtime = LeanQueryRuntime(model)
    assert (model.query_runtime.onnx is not None) == (forward == "onnxruntime")
    assert (model.query_runtime.trunk is not None) == (forward == "torch")
    got = as_dicts(model.encode(QUERIES, PruneConfig(), query=True))
    assert_close(got, want, atol=1e-5)
    assert got[2] == {}


def test_unicoil_lean_equals_torch(tiny_backbone, tmp_path, forward):
    model = saved_unicoil(tiny_backbone, tmp_path / "unicoil")
    want = as_dicts(model.encode(QUERIES, PruneConfig(), query=True))
    model.query_runtime = LeanQueryRuntime(model)
    got = as_dicts(model.encode(QUERIES, PruneConfig(), query=True))
    assert_close(got, want, atol=1e-5)


def test_unicoil_lean_token_weights_equal_torch(tiny_backbone, tmp_path, tiny_mlm, forward):
    model = saved_unicoil(tiny_backbone, tmp_path / "unicoil")
    check_token_weights(model, LeanQueryRuntime(model), [q for q in QUERIES if q], atol=1e-5)
    splade = SpladeModel(tiny_mlm, query_config())
    runtime = LeanQueryRuntime(splade)
    with pytest.raises(ValueError, match="splade model"):
        runtime.token_weights(np.ones((1, 3), np.int64), np.ones((1, 3), bool))


def test_shipped_splade_lean_equals_torch():
    model = shipped(SpladeModel, "splade")
    texts = SHIPPED_QUERIES
    want = as_dicts(model.encode(texts, PruneConfig(), query=True))
    model.query_runtime = LeanQueryRuntime(model)
    runtime = model.query_runtime
    assert (runtime.onnx is not None or runtime.trunk is not None) and runtime.head.screen
    got = as_dicts(model.encode(texts, PruneConfig(), query=True))
    assert_close(got, want, atol=1e-5)


def test_runtime_choice(monkeypatch):
    monkeypatch.delenv("LSR_QUERY_RUNTIME", raising=False)
    assert resolve_runtime("auto", "cpu", "splade") == "lean"
    assert resolve_runtime("auto", "cuda", "splade") == "torch"
    assert resolve_runtime("lean", "cpu", "unicoil") == "lean"
    monkeypatch.setenv("LSR_QUERY_RUNTIME", "torch")
    assert resolve_runtime("auto", "cpu") == "torch"


def test_a_search_before_does_not_leave_the_encoder_on_two_threads(tiny_mlm):
    """numba's OpenMP layer sets the calling thread's OpenMP threads (2 on 2 cores) after a parallel
    search; the lean runtime puts torch back on one thread for its query-sized ops (on two, the
    bfloat16 max ran 7x slower on a 2-core machine)."""
    model = SpladeModel(tiny_mlm, query_config())
    model.query_runtime = LeanQueryRuntime(model)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        model.encode(QUERIES, PruneConfig(), query=True)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
