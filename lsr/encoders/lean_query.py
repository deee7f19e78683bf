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

    Build it with :meth:`from_model`, which returns None for a model it does not cover.
    """

    def __init__(self, base: Any, transform: Any | None):
        torch = require("torch")
        self.torch = torch
        emb = base.embeddings
        self.word = emb.word_embeddings.weight.detach()
        self.position = emb.position_embeddings.weight.detach()
        self.type0 = emb.token_type_embeddings.weight.detach()[0]
        self.emb_norm = _norm(emb.LayerNorm)
        self.heads = int(base.config.num_attention_heads)
        self.layers = [_layer(layer) for layer in base.encoder.layer]
        self.transform = None
        if transform is not None:
            self.transform = (
                transform.dense.weight.detach(),
                transform.dense.bias.detach(),
                _norm(transform.LayerNorm),
            )

    @classmethod
    def from_model(cls, model: Any) -> LeanBert | None:
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
        return cls(base, transform)

    def __call__(self, ids: Any) -> Any:
        F = self.torch.nn.functional
        length = len(ids)
        x = self.word[ids] + self.position[:length] + self.type0
        x = F.layer_norm(x, *self.emb_norm)
        for qkv_w, qkv_b, out_w, out_b, norm1, in_w, in_b, ff_w, ff_b, norm2 in self.layers:
            q, k, v = F.linear(x, qkv_w, qkv_b).view(length, 3, self.heads, -1).permute(1, 2, 0, 3)
            ctx = F.scaled_dot_product_attention(q, k, v).transpose(0, 1).reshape(length, -1)
            x = F.layer_norm(F.linear(ctx, out_w, out_b) + x, *norm1)
            x = F.layer_norm(F.linear(F.gelu(F.linear(x, in_w, in_b)), ff_w, ff_b) + x, *norm2)
        if self.transform is not None:
            t_w, t_b, t_norm = self.transform
            x = F.layer_norm(F.gelu(F.linear(x, t_w, t_b)), *t_norm)
        return x


def _norm(module: Any) -> tuple[tuple[int, ...], Any, Any, float]:
    return (tuple(module.normalized_shape), module.weight.detach(), module.bias.detach(), float(module.eps))


def _layer(layer: Any) -> tuple[Any, ...]:
    torch = require("torch")
    sa = layer.attention.self
    qkv_w = torch.cat([sa.query.weight, sa.key.weight, sa.value.weight]).detach().contiguous()
    qkv_b = torch.cat([sa.query.bias, sa.key.bias, sa.value.bias]).detach().contiguous()
    out = layer.attention.output
    return (
        qkv_w,
        qkv_b,
        out.dense.weight.detach(),
        out.dense.bias.detach(),
        _norm(out.LayerNorm),
        layer.intermediate.dense.weight.detach(),
        layer.intermediate.dense.bias.detach(),
        layer.output.dense.weight.detach(),
        layer.output.dense.bias.detach(),
        _norm(layer.output.LayerNorm),
    )


class LeanQueryRuntime:
    """The ``lean`` runtime of a loaded SPLADE or uniCOIL model (the ``rows`` interface of
    :class:`lsr.encoders.onnx_query.OnnxQueryRuntime`). The transformer runs one query at a time on
    ONNX Runtime when it is installed (its exported trunk; its float32 products beat torch's at a
    query's size), else as :class:`LeanBert`, else on the Hugging Face modules."""

    def __init__(self, model: Any):
        self.torch = require("torch")
        self.kind = "unicoil" if hasattr(model, "token_weights") else "splade"
        self.model = model
        self.onnx = None
        if importlib.util.find_spec("onnxruntime") is not None:
            self.onnx = OnnxQueryRuntime(model, "onnx", trunk=True)
        net = model.trunk if self.kind == "splade" else model.backbone
        self.trunk = None if self.onnx is not None else LeanBert.from_model(net)
        if self.kind == "splade":
            self.head = ScreenedHead(model.weight, model.bias, model.pooling, model.activation)
            if not check_bound(self.head):
                logger.warning("this CPU's bfloat16 product breaks the screening bound: float32 projection")
                self.head = ScreenedHead(model.weight, model.bias, model.pooling, model.activation, False)
        forward = "ONNX Runtime" if self.onnx else "fused BERT" if self.trunk else "Hugging Face"
        logger.info(
            "query encoder: lean %s (%s forward%s)",
            self.kind,
            forward,
            ", bfloat16-screened projection" if self.kind == "splade" and self.head.screen else "",
        )

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
        torch = self.torch
        if torch.get_num_threads() != 1:  # numba's OpenMP layer sets this thread's OpenMP threads
            torch.set_num_threads(1)  # after a search: ops of a query's size only lose by splitting
        with torch.inference_mode():
            queries = [torch.from_numpy(ids[r, mask[r]]) for r in range(len(ids))]
            hidden = [self.hidden(q).float() for q in queries]
            if self.kind == "splade":
                return self.head.rows(hidden)
            model = self.model
            out = []
            for q, h in zip(queries, hidden, strict=True):
                weights = torch.relu(model.head(h)).squeeze(-1).float() * ~model.special[q]
                out.append(pool_tokens(q.numpy(), weights.numpy()))
            return out
