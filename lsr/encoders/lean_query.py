"""The ``lean`` query runtime: SPLADE and uniCOIL queries in float32 on the CPU, with less work.

A query is a few dozen tokens. Two things cost the time on a CPU:

* **the vocabulary projection** of SPLADE (``tokens x hidden x vocab``: for the shipped splade-tiny
  backbone 22 x 128 x 30,522 multiply-adds a query, 80% of the time), whose output is almost all
  zero: a query keeps ~28 of the 30,522 terms. :class:`ScreenedHead` finds the terms that can be
  non-zero with a bfloat16 product (3-4x faster than float32 on a CPU) and a rigorous bound on its
  error, then computes exactly those rows (float64 sums, rounded to float32). A term is dropped only
  when its bound proves ``max_i logit_i + bias <= 0`` (the activation is zero), so the weights are the
  float32 path's to float32 rounding, and the term set is the same. Only the rows of the searched
  index's terms, when the searcher says which (:meth:`ScreenedHead.restrict`).
* **the transformer's module overhead**: the Hugging Face modules run dozens of small ops, each with
  checks and dispatch, on padded batches. Here each query runs alone, unpadded (so its hidden states
  never depend on the queries encoded with it), on ONNX Runtime's session of the exported trunk when
  onnxruntime is installed, else as :class:`LeanBert`: a BERT encoder (the shipped splade and uniCOIL
  models) as a handful of fused float32 torch ops, else on the Hugging Face modules.

The bound: with round-to-nearest bfloat16 (unit roundoff ``u = 2^-8``) inputs ``h~ = h (1 + d)`` and
``w~ = w (1 + e)``, ``|d|, |e| <= u``, float32 accumulation over ``n <= 4096`` terms and a bfloat16
output, ``|h . w - bf16(h~ . w~)| <= (3u + 4u^2 + n 2^-23) |h|_2 |w|_2`` (Cauchy-Schwarz on
``sum |h_k w_k|``). :data:`BOUND_SLACK` covers the float32 rounding of the bound itself. At load the
bound is checked against this machine's kernels on seeded inputs (:func:`check_bound`); a machine
whose bfloat16 product breaks it gets the float32 projection instead.

The ``lean-bf16`` runtime (``LeanQueryRuntime(bf16=True)``, opt-in) runs :class:`LeanBert` with its
matrix products in bfloat16 (:class:`Bf16Linear`: weights packed once for oneDNN, float32
accumulation; norms, attention and residuals in float32): the shipped uniCOIL's weights within ~1% of
float32's, 2.4-2.65x torch float32 on an AMX CPU against the ONNX float32 graph's 1.9-2.2x (the
wordpiece and the word-terms defaults; benchmarks/RESULTS.md). :func:`check_bf16` compares it with
the float32 forward at load; a machine whose products fail gets the float32 transformer.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from typing import Any

import numpy as np

from lsr.encoders.hf import require
from lsr.encoders.onnx_query import OnnxQueryRuntime, pool_tokens

logger = logging.getLogger(__name__)

UNIT_ROUNDOFF = 2.0**-8  # bfloat16, round to nearest
BOUND_SLACK = 1.01  # the bound's own float32 rounding, with room


def bound_factor(hidden: int) -> float:
    """``c`` with ``|h . w - bf16 product| <= c |h| |w|`` (module docstring)."""
    u = UNIT_ROUNDOFF
    return (3 * u + 4 * u * u + hidden * 2.0**-23) * BOUND_SLACK


class ScreenedHead:
    """SPLADE's pooled ``log1p(relu(h W^T + b))`` over a vocabulary, computed only where it can be > 0.

    Args:
        weight: ``[vocab, hidden]`` float32 projection (the MLM decoder).
        bias: ``[vocab]`` float32.
        pooling: "max" or "sum" over a query's tokens.
        activation: "relu" (``log1p(relu(x))``) or "log1p_relu" (log1p once more).
        screen: False computes every row in float32 (the fallback, and the oracle in tests).
    """

    def __init__(self, weight: Any, bias: Any, pooling: str, activation: str, screen: bool = True):
        torch = require("torch")
        self.torch = torch
        self.weight = weight.detach().float().contiguous()
        self.bias = bias.detach().float().contiguous()
        self.pooling, self.activation = pooling, activation
        self.screen = screen
        self.restrict(None)

    def restrict(self, terms: np.ndarray | None) -> None:
        """Compute only the rows ``terms`` (ascending ids; None: all). Terms outside it get no weight:
        exact for ranking when they are the terms that have postings in the searched index."""
        torch = self.torch
        self.terms = None if terms is None else torch.from_numpy(np.asarray(terms, dtype=np.int64))
        weight = self.weight if self.terms is None else self.weight[self.terms]
        self.screen_bias = self.bias if self.terms is None else self.bias[self.terms]
        self.screen_weight: Any = weight.to(torch.bfloat16) if self.screen else None
        self.screen_norm = weight.norm(dim=1) * bound_factor(weight.shape[1])

    def rows(self, tokens: list[Any]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Sparse rows (ascending term ids, weights > 0) of queries given as ``[tokens, dim]`` hidden
        states each: one screening product for them all, then each query's candidates exactly."""
        candidates = self._candidates(tokens) if self.screen else [self.terms] * len(tokens)
        return [self._exact(h, rows) for h, rows in zip(tokens, candidates, strict=True)]

    def _candidates(self, tokens: list[Any]) -> list[Any]:
        """Per query, the vocabulary ids whose pooled weight the bound cannot prove zero: one bfloat16
        product over the queries' tokens, then a max over each query's tokens."""
        torch = self.torch
        flat = tokens[0] if len(tokens) == 1 else torch.cat(tokens)
        approx = torch.matmul(flat.to(torch.bfloat16), self.screen_weight.T)
        out, start = [], 0
        for h in tokens:
            upper = approx[start : start + len(h)].amax(dim=0).float()
            start += len(h)
            upper += self.screen_bias
            upper.add_(self.screen_norm, alpha=float(h.norm(dim=1).max()))
            ids = torch.nonzero(upper > 0).squeeze(1)
            out.append(ids if self.terms is None else self.terms[ids])
        return out

    def _exact(self, hidden: Any, rows: Any) -> tuple[np.ndarray, np.ndarray]:
        """Pooled weights of one query (``hidden`` ``[tokens, dim]``) over ``rows`` (None: all). The
        logits are summed in float64 and rounded to float32: the same numbers whatever the other
        rows (a float32 product's summation order may depend on the shape), so a query's weights do
        not depend on the queries screened with it."""
        torch = self.torch
        weight = self.weight if rows is None else self.weight[rows]
        bias = self.bias if rows is None else self.bias[rows]
        logits = torch.matmul(hidden.double(), weight.double().T).float()
        if self.pooling == "max":
            act = torch.relu_(logits.amax(dim=0) + bias).log1p_()
        else:
            act = torch.log1p(torch.relu(logits + bias))
        if self.activation == "log1p_relu":
            act = torch.log1p(act)
        if self.pooling == "sum":
            act = act.sum(dim=0)
        keep = act > 0
        terms = torch.nonzero(keep).squeeze(1) if rows is None else rows[keep]
        return terms.numpy().astype(np.int32), act[keep].numpy().astype(np.float32)


def check_bound(head: ScreenedHead, seed: int = 0, trials: int = 4) -> bool:
    """True when this machine's bfloat16 product stays inside :func:`bound_factor` on seeded inputs
    shaped like queries (hidden states of norm ~50 against the head's own rows; before any
    :meth:`ScreenedHead.restrict`)."""
    torch = head.torch
    gen = torch.Generator().manual_seed(seed)
    dim = head.weight.shape[1]
    for _ in range(trials):
        hidden = torch.randn(24, dim, generator=gen) * (50.0 / math.sqrt(dim))
        exact = torch.matmul(hidden.double(), head.weight.double().T)
        approx = torch.matmul(hidden.to(torch.bfloat16), head.screen_weight.T).double()
        bound = hidden.norm(dim=1, keepdim=True).double() * head.screen_norm.double().unsqueeze(0)
        if not bool(((approx - exact).abs() <= bound).all()):
            return False
    return True


class LeanBert:
    """A BERT encoder's forward pass as a few fused float32 ops, one query at a time (no padding, so
    a query's hidden states never depend on the queries encoded with it): ``[tokens]`` ids ->
    ``[tokens, hidden]`` last hidden states (of a ``BertForMaskedLM``: through the MLM head's
    transform, which is what SPLADE's vocabulary projection reads).

    ``bf16=True``: the matrix products with the weights (a layer's query/key/value, attention output
    and the two feed-forward ones, :class:`Bf16Linear`) take bfloat16 inputs and weights with float32
    accumulation; the embeddings, residual sums, layer norms, attention (scores, softmax) and gelu stay
    float32. On a CPU with AMX the products run ~3x faster than float32 ones; the hidden states move by
    ~0.2% (bfloat16 rounding of the products' inputs and outputs).

    Build it with :meth:`from_model`, which returns None for a model it does not cover.
    """

    def __init__(self, base: Any, transform: Any | None, bf16: bool = False):
        torch = require("torch")
        self.torch = torch
        self.bf16 = bf16
        emb = base.embeddings
        self.word = emb.word_embeddings.weight.detach()
        self.position = emb.position_embeddings.weight.detach()
        self.type0 = emb.token_type_embeddings.weight.detach()[0]
        self.emb_norm = _norm(emb.LayerNorm)
        self.heads = int(base.config.num_attention_heads)
        linear = Bf16Linear if bf16 else Float32Linear
        self.layers = [_layer(layer, linear) for layer in base.encoder.layer]
        self.transform = None
        if transform is not None:
            dense = linear(transform.dense.weight, transform.dense.bias, gelu=True)
            self.transform = (dense, _norm(transform.LayerNorm))

    @classmethod
    def from_model(cls, model: Any, bf16: bool = False) -> LeanBert | None:
        """The lean forward of a ``BertForMaskedLM`` (through its MLM transform) or ``BertModel``, or
        None when ``model`` is another architecture or a BERT variant this class does not run."""
        base = getattr(model, "bert", model)
        config = getattr(base, "config", None)
        if type(base).__name__ != "BertModel" or config is None:
            return None
        if (
            getattr(config, "position_embedding_type", "absolute") != "absolute"
            or getattr(config, "hidden_act", None) != "gelu"
            or getattr(config, "is_decoder", False)
        ):
            return None
        transform = None
        if base is not model:
            transform = getattr(getattr(getattr(model, "cls", None), "predictions", None), "transform", None)
            if transform is None or getattr(config, "hidden_act", None) != "gelu":
                return None
        return cls(base, transform, bf16)

    def __call__(self, ids: Any) -> Any:
        F = self.torch.nn.functional
        length = len(ids)
        x = self.word[ids] + self.position[:length] + self.type0
        x = F.layer_norm(x, *self.emb_norm)
        scores = self.torch.empty(self.heads, length, length)
        scale = 1.0 / math.sqrt(x.shape[1] // self.heads)
        for qkv, out, norm1, inner, ff, norm2 in self.layers:
            q, k, v = qkv(x).view(length, 3, self.heads, -1).permute(1, 2, 0, 3)
            # softmax(q k^T / sqrt(d)) v: at a query's size 2x faster than scaled_dot_product_attention
            att = self.torch.baddbmm(scores, q, k.transpose(1, 2), beta=0.0, alpha=scale).softmax(-1)
            ctx = self.torch.bmm(att, v).transpose(0, 1).reshape(length, -1)
            x = F.layer_norm(out(ctx) + x, *norm1)
            x = F.layer_norm(ff(inner(x)) + x, *norm2)
        if self.transform is not None:
            dense, t_norm = self.transform
            x = F.layer_norm(dense(x).float(), *t_norm)
        return x


class Float32Linear:
    """``x W^T + b`` in float32 (``gelu``: then the exact gelu)."""

    def __init__(self, weight: Any, bias: Any, gelu: bool = False):
        self.F = require("torch").nn.functional
        self.weight, self.bias = weight.detach().float(), bias.detach().float()
        self.gelu = gelu

    def __call__(self, x: Any) -> Any:
        out = self.F.linear(x, self.weight, self.bias)
        return self.F.gelu(out) if self.gelu else out


class Bf16Linear:
    """``x W^T + b`` from bfloat16 ``x``, ``W`` and ``b`` with float32 accumulation: float32 out, or
    with ``gelu`` the exact gelu of it in bfloat16 (what the next product reads). The weight is packed
    once for oneDNN's kernel (``torch.ops.mkldnn``: AMX or AVX-512 BF16 tiles; packing per call cost
    ~40% of a query-sized product), the gelu applied on the float32 sums inside it, where this torch
    has it; else a bfloat16 ``linear``."""

    def __init__(self, weight: Any, bias: Any, gelu: bool = False):
        torch = require("torch")
        self.torch = torch
        self.weight = weight.detach().to(torch.bfloat16).contiguous()
        self.bias = bias.detach().to(torch.bfloat16).contiguous()
        self.gelu = gelu
        self.packed = _mkldnn_packed(self.weight)
        self.pointwise: Any = torch.ops.mkldnn._linear_pointwise if self.packed is not None else None
        self.attr = "gelu" if gelu else "none"

    def __call__(self, x: Any) -> Any:
        torch = self.torch
        x = x.to(torch.bfloat16)
        if self.packed is not None:
            out = self.pointwise(x, self.packed, self.bias, self.attr, [], "none")
            return out if self.gelu else out.float()
        out = torch.nn.functional.linear(x, self.weight, self.bias).float()
        return torch.nn.functional.gelu(out).to(torch.bfloat16) if self.gelu else out


def _mkldnn_packed(weight: Any) -> Any | None:
    """``weight`` (bfloat16 ``[out, in]``) in oneDNN's blocked layout, or None where this torch or CPU
    has no such kernel (it is checked on one row)."""
    torch = require("torch")
    mkldnn = getattr(torch.ops, "mkldnn", None)
    if not torch.backends.mkldnn.is_available() or mkldnn is None:
        return None
    try:
        packed = mkldnn._reorder_linear_weight(weight, None)
        probe = torch.ones(1, weight.shape[1], dtype=torch.bfloat16)
        got = mkldnn._linear_pointwise(probe, packed, None, "none", [], "").float()
        want = weight.float().sum(dim=1).unsqueeze(0)
    except (AttributeError, RuntimeError):
        return None
    return packed if bool(torch.allclose(got, want, rtol=2e-2, atol=1e-2 * float(want.abs().max()))) else None


def _norm(module: Any) -> tuple[tuple[int, ...], Any, Any, float]:
    return (tuple(module.normalized_shape), module.weight.detach(), module.bias.detach(), float(module.eps))


def _layer(layer: Any, linear: Any) -> tuple[Any, ...]:
    """One BERT layer as (qkv, attention output, norm, intermediate (with its gelu), output, norm):
    ``linear`` makes each product from its weight and bias (query, key and value as one product)."""
    torch = require("torch")
    sa = layer.attention.self
    qkv_w = torch.cat([sa.query.weight, sa.key.weight, sa.value.weight]).detach().contiguous()
    qkv_b = torch.cat([sa.query.bias, sa.key.bias, sa.value.bias]).detach().contiguous()
    out = layer.attention.output
    return (
        linear(qkv_w, qkv_b),
        linear(out.dense.weight, out.dense.bias),
        _norm(out.LayerNorm),
        linear(layer.intermediate.dense.weight, layer.intermediate.dense.bias, gelu=True),
        linear(layer.output.dense.weight, layer.output.dense.bias),
        _norm(layer.output.LayerNorm),
    )


def has_bf16_instructions() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AMX tiles or AVX-512 BF16), as torch reports
    it; without, oneDNN emulates bfloat16 products (~3x slower than float32 ones on the shipped
    uniCOIL)."""
    cpu = require("torch").cpu
    checks = [getattr(cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(check is not None and bool(check()) for check in checks)


BF16_TOLERANCE = 0.02  # check_bf16: largest |bf16 - float32| hidden state / largest |float32| one


def check_bf16(net: Any, trunk: LeanBert, seed: int = 0) -> bool:
    """True when ``trunk``'s (bfloat16) hidden states of seeded token sequences (5, 24 and 64 tokens,
    or the model's positions) are within :data:`BF16_TOLERANCE` of the float32 forward's, relative to
    the largest float32 one (what the bfloat16 rounding moves on the shipped uniCOIL: ~0.3%; a broken
    kernel moves them by O(1))."""
    torch = trunk.torch
    exact = LeanBert.from_model(net)
    assert exact is not None  # trunk came from the same model
    gen = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        for length in (5, 24, 64):
            ids = torch.randint(len(exact.word), (min(length, len(exact.position)),), generator=gen)
            want = exact(ids)
            if not float((trunk(ids) - want).abs().max()) <= BF16_TOLERANCE * float(want.abs().max()):
                return False
    return True


class LeanQueryRuntime:
    """The ``lean`` runtime of a loaded SPLADE or uniCOIL model (the ``rows`` and, for uniCOIL,
    ``token_weights`` interface of :class:`lsr.encoders.onnx_query.OnnxQueryRuntime`). The
    transformer runs one query at a time on ONNX Runtime when it is installed (its exported trunk;
    its float32 products beat torch's at a query's size), else as :class:`LeanBert`, else on the
    Hugging Face modules. ``bf16=True`` (the ``lean-bf16`` runtime): as :class:`LeanBert` with
    bfloat16 products, when the model is a BERT encoder and this machine's products pass
    :func:`check_bf16` (else as with ``bf16=False``)."""

    def __init__(self, model: Any, bf16: bool = False):
        self.torch = require("torch")
        self.kind = "unicoil" if hasattr(model, "token_weights") else "splade"
        self.model = model
        net = model.trunk if self.kind == "splade" else model.backbone
        self.trunk = LeanBert.from_model(net, bf16=True) if bf16 else None
        if bf16 and not has_bf16_instructions():
            logger.warning("this CPU has no AMX or AVX-512 BF16: lean-bf16 runs slower than float32 here")
        if bf16 and self.trunk is None:
            logger.warning("lean-bf16 runs BERT encoders only: float32 transformer for %s", model.path)
        elif self.trunk is not None and not check_bf16(net, self.trunk):
            logger.warning("this CPU's bfloat16 products fail the load-time check: float32 transformer")
            self.trunk = None
        self.onnx = None
        if self.trunk is None and importlib.util.find_spec("onnxruntime") is not None:
            self.onnx = OnnxQueryRuntime(model, "onnx", trunk=True)
        if self.trunk is None and self.onnx is None:
            self.trunk = LeanBert.from_model(net)
        if self.kind == "splade":
            self.head = ScreenedHead(model.weight, model.bias, model.pooling, model.activation)
            if not check_bound(self.head):
                logger.warning("this CPU's bfloat16 product breaks the screening bound: float32 projection")
                self.head = ScreenedHead(model.weight, model.bias, model.pooling, model.activation, False)
        logger.info(
            "query encoder: lean %s (%s forward%s)",
            self.kind,
            self.forward,
            ", bfloat16-screened projection" if self.kind == "splade" and self.head.screen else "",
        )

    @property
    def forward(self) -> str:
        """Which transformer forward runs: ``ONNX Runtime``, ``fused BERT``, ``bfloat16 fused BERT`` or
        ``Hugging Face``."""
        if self.onnx is not None:
            return "ONNX Runtime"
        if self.trunk is None:
            return "Hugging Face"
        return "bfloat16 fused BERT" if self.trunk.bf16 else "fused BERT"

    def restrict(self, terms: np.ndarray) -> None:
        """SPLADE: compute only the vocabulary rows ``terms`` (:meth:`ScreenedHead.restrict`)."""
        if self.kind == "splade":
            self.head.restrict(terms)

    def hidden(self, ids: Any) -> Any:
        """``[tokens, hidden]`` of one query's token ids."""
        if self.onnx is not None:
            return self.torch.from_numpy(self.onnx.hidden(ids.numpy()))
        if self.trunk is not None:
            return self.trunk(ids)
        ids, mask = ids.unsqueeze(0), self.torch.ones((1, len(ids)), dtype=self.torch.bool)
        if self.kind == "splade":
            return self.model.hidden(ids, mask)[0]
        return self.model.backbone(input_ids=ids, attention_mask=mask.long()).last_hidden_state[0]

    def rows(self, ids: np.ndarray, mask: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Sparse rows (ascending term ids, weights > 0) of a padded batch (int64 ids, bool mask):
        the transformer runs on each query alone, unpadded; SPLADE's screening product on them all."""
        if self.kind == "unicoil":
            return [pool_tokens(ids[r, : len(w)], w) for r, w in enumerate(self.token_weights(ids, mask))]
        with self.torch.inference_mode():
            return self.head.rows(self._hidden_states(ids, mask))

    def token_weights(self, ids: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
        """uniCOIL: each query's float32 token weights ``relu(head(hidden))`` (its unpadded length; zero
        at special tokens) of a padded batch (int64 ids, bool mask, padding after each query).

        Raises:
            ValueError: a SPLADE model, which has no token weights.
        """
        if self.kind != "unicoil":
            raise ValueError(f"token_weights: a {self.kind} model pools over its vocabulary: none per token")
        torch, model = self.torch, self.model
        with torch.inference_mode():
            out = []
            for r, h in enumerate(self._hidden_states(ids, mask)):
                special = model.special[torch.from_numpy(ids[r, mask[r]])]
                out.append((torch.relu(model.head(h)).squeeze(-1).float() * ~special).numpy())
            return out

    def _hidden_states(self, ids: np.ndarray, mask: np.ndarray) -> list[Any]:
        """Each query's float32 ``[tokens, hidden]``, the transformer run on it alone, unpadded."""
        torch = self.torch
        if torch.get_num_threads() != 1:  # numba's OpenMP layer sets this thread's OpenMP threads
            torch.set_num_threads(1)  # after a search: ops of a query's size only lose by splitting
        return [self.hidden(torch.from_numpy(ids[r, mask[r]])).float() for r in range(len(ids))]
