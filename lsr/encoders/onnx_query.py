"""The query side of SPLADE and uniCOIL on ONNX Runtime: the same numbers as torch, faster on a CPU.

A query is a few dozen tokens, so torch's per-operator overhead (not the arithmetic) dominates its
float32 path; ONNX Runtime runs the exported graph with fused kernels. The graph is exported from
the loaded model with ``torch.onnx.export`` once and cached (``LSR_CACHE_DIR``, default
``~/.cache/lsr``, ``onnx/<key>.onnx``; the key hashes the model folder's files, the model kind and
its pooling, the runtime, this module's export version and, for onnx-int8-smooth, its recipe's
version), written through a temporary file and a
rename. Runtimes (``encoder.transformer.query_runtime``, or the ``LSR_QUERY_RUNTIME`` environment
variable, which wins):

* ``auto`` (default): on a CPU ``lean`` for SPLADE, ``onnx-int8-smooth`` for uniCOIL when
  onnxruntime is installed (else ``lean``); on a GPU ``torch``;
* ``lean``: a fused float32 forward and, for SPLADE, a screened vocabulary projection
  (lsr.encoders.lean_query; the float32 weights to rounding);
* ``lean-bf16``: ``lean`` with the transformer's matrix products in bfloat16 (float32 accumulation,
  norms, attention; weights within ~1% of float32's; fast on a CPU with AMX, slower than float32 on
  one without bfloat16 instructions); opt-in;
* ``onnx``: the float32 graph (scores equal torch's to float32 rounding);
* ``onnx-int8``: the graph with its matrix products quantized to int8 (dynamic quantization);
* ``onnx-int8-smooth``: a BERT encoder's weight products in int8 where that keeps the weights close
  (lsr.encoders.smooth_int8: smoothed inputs, blockwise feed-forward outputs and first feed-forward
  input, dynamic int8 elsewhere; nDCG@10 within 0.002 of float32's on the seven collections measured,
  though ~30% of SciFact's top 10s change order, at ~3.3x torch's speed); checked against the
  float32 graph at load, which replaces it (with a warning) when the check fails, the model is no
  BERT encoder, or this ONNX Runtime cannot run it;
* ``torch``: the float32 torch path.

SPLADE graphs output the pooled ``[batch, vocab]`` weights; uniCOIL graphs output ``[batch,
tokens]`` token weights (zero at padding and special tokens): :meth:`OnnxQueryRuntime.token_weights`,
which a uniCOIL of word terms gives to its words' terms, and which ``rows`` pools by token id (max).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from lsr.config import QUERY_RUNTIMES
from lsr.encoders import smooth_int8
from lsr.encoders.hf import require

logger = logging.getLogger(__name__)

RUNTIMES = QUERY_RUNTIMES
EXPORT_VERSION = 2
OPSET = 17


def cache_dir() -> Path:
    return Path(os.environ.get("LSR_CACHE_DIR") or Path.home() / ".cache" / "lsr") / "onnx"


def resolve_runtime(configured: str, device_type: str, kind: str = "splade") -> str:
    """The runtime to use: ``LSR_QUERY_RUNTIME`` over the configured one; ``auto`` on a CPU -> lean for
    SPLADE, onnx-int8-smooth for uniCOIL when onnxruntime is installed (no projection to screen; its
    int8 products keep nDCG@10 within 0.002 of float32's at ~3.3x torch's speed), else lean; on a GPU
    torch."""
    runtime = os.environ.get("LSR_QUERY_RUNTIME") or configured
    if runtime not in RUNTIMES:
        from lsr.errors import ConfigError

        raise ConfigError(f"query runtime {runtime!r} is not one of {list(RUNTIMES)} (LSR_QUERY_RUNTIME)")
    if runtime != "auto":
        return runtime
    if device_type != "cpu":
        return "torch"
    if kind == "unicoil" and importlib.util.find_spec("onnxruntime") is not None:
        return "onnx-int8-smooth"
    return "lean"


def _folder_digest(path: Path) -> str:
    h = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


class _SpladeGraph:
    """torch module factory: (input_ids, mask) -> pooled [batch, vocab] SPLADE weights."""

    @staticmethod
    def module(model: Any) -> Any:
        import torch

        from lsr.encoders.splade import splade_pool_reference

        class Graph(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.trunk = model.trunk
                self.register_buffer("weight", model.weight.detach().float())
                self.register_buffer("bias", model.bias.detach().float())

            def forward(self, input_ids: Any, mask: Any) -> Any:
                hidden = self.trunk(input_ids=input_ids, attention_mask=mask).logits
                return splade_pool_reference(
                    hidden, mask.bool(), self.weight, self.bias, model.pooling, model.activation
                )

        return Graph()


class _UniCoilGraph:
    """torch module factory: (input_ids, mask) -> [batch, tokens] uniCOIL token weights."""

    @staticmethod
    def module(model: Any) -> Any:
        import torch

        class Graph(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.backbone = model.backbone
                self.head = model.head
                self.register_buffer("special", model.special.detach())

            def forward(self, input_ids: Any, mask: Any) -> Any:
                hidden = self.backbone(input_ids=input_ids, attention_mask=mask).last_hidden_state
                weights = torch.relu(self.head(hidden)).squeeze(-1).float()
                special: Any = self.special
                return weights * (mask.bool() & ~special[input_ids])

        return Graph()


class _TrunkGraph:
    """torch module factory: one query's ``[tokens]`` ids -> ``[tokens, hidden]``: what SPLADE's
    vocabulary projection reads (through the MLM head's transform), or uniCOIL's last hidden states."""

    @staticmethod
    def module(model: Any) -> Any:
        import torch

        class Graph(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = model.trunk if hasattr(model, "trunk") else model.backbone

            def forward(self, input_ids: Any) -> Any:
                ids = input_ids.unsqueeze(0)
                out = self.net(input_ids=ids, attention_mask=torch.ones_like(ids))
                return (out.logits if hasattr(out, "logits") else out.last_hidden_state)[0]

        return Graph()


GRAPHS: dict[str, Any] = {"splade": _SpladeGraph, "unicoil": _UniCoilGraph, "trunk": _TrunkGraph}


class OnnxQueryRuntime:
    """An ONNX Runtime session over a loaded SPLADE or uniCOIL model's exported query graph (with
    ``trunk``: the transformer only, one query at a time, for the lean runtime: :meth:`hidden`)."""

    def __init__(self, model: Any, runtime: str, trunk: bool = False):
        self.kind = "unicoil" if hasattr(model, "token_weights") else "splade"
        self.graph = "trunk" if trunk else self.kind
        self.runtime = runtime
        self.vocab_size = model.vocab_size
        if runtime == "onnx-int8-smooth":
            self._smoothed(model)
        else:
            self.path = self._exported(model)
            self.session = _session(self.path)
        version = require("onnxruntime").__version__
        logger.info("query encoder: ONNX Runtime %s (%s graph %s)", version, self.runtime, self.path.name)

    def _smoothed(self, model: Any) -> None:
        """The onnx-int8-smooth graph's session, or the float32 graph's (``runtime`` becomes onnx, with
        a warning) when the model is no BERT encoder, this ONNX Runtime cannot load the graph, or its
        outputs on seeded token sequences fail :func:`lsr.encoders.smooth_int8.agrees`."""
        reference = OnnxQueryRuntime(model, "onnx", trunk=self.graph == "trunk")
        try:
            self.path = self._exported(model, reference.path)
            self.session = _session(self.path)
        except Exception as err:  # ValueError: not BERT; ONNX Runtime's own errors: no MatMulNBits
            logger.warning("onnx-int8-smooth: %s; the float32 graph instead", err)
        else:
            if smooth_int8.agrees(self.session, reference.session, token_feeds(model, self.graph, seed=1)):
                return
            logger.warning("this CPU's int8 products fail the load-time check: the float32 graph instead")
        self.path, self.session, self.runtime = reference.path, reference.session, "onnx"

    def _key(self, model: Any) -> str:
        torch = require("torch")
        parts = [
            _folder_digest(model.path),
            self.kind,
            self.graph,
            str(getattr(model, "pooling", "")),
            str(getattr(model, "activation", "")),
            self.runtime,
            str(EXPORT_VERSION),
            torch.__version__,
        ]
        if self.runtime == "onnx-int8-smooth":
            parts.append(f"smooth {smooth_int8.VERSION}")
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]

    def _exported(self, model: Any, float32: Path | None = None) -> Path:
        """The cached graph of this runtime, made when missing: exported, then quantized unless the
        runtime is onnx; ``float32``: the float32 graph already exported (quantized, not exported again)."""
        out = cache_dir() / f"{self.kind}-{self.graph}-{self._key(model)}.onnx"
        if out.is_file():
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
        int8 = tmp.with_name(tmp.name + ".int8")
        try:
            if float32 is None:
                self._export(model, tmp)
                float32 = tmp
            if self.runtime != "onnx":
                self._quantize(model, float32, int8)
                os.replace(int8, tmp)
            os.replace(tmp, out)
        finally:
            for stray in (tmp, int8):
                stray.unlink(missing_ok=True)
        logger.info("exported the query graph to %s", out)
        return out

    def _quantize(self, model: Any, src: Path, dest: Path) -> None:
        """``src``'s graph in int8 as the runtime says: every product (dynamic quantization), or
        :func:`lsr.encoders.smooth_int8.quantize` (smoothing ranges from seeded token sequences)."""
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)  # the quantizer logs every tensor on the root logger
        try:
            if self.runtime == "onnx-int8-smooth":
                smooth_int8.quantize(src, dest, token_feeds(model, self.graph, seed=0))
                return
            quantization = require("onnxruntime.quantization")
            quantization.quantize_dynamic(
                str(src), str(dest), weight_type=quantization.QuantType.QInt8, per_channel=True
            )
        finally:
            logging.disable(previous)

    def _export(self, model: Any, dest: Path) -> None:
        torch = require("torch")
        graph = GRAPHS[self.graph].module(model).eval()
        ids = torch.arange(16, dtype=torch.int64).reshape(2, 8) % model.vocab_size
        mask = torch.ones((2, 8), dtype=torch.int64)
        axes = {0: "batch", 1: "tokens"}
        args: tuple[Any, ...]
        if self.graph == "trunk":
            args, inputs, outputs = (ids[0],), ["input_ids"], ["hidden"]
            dynamic = {"input_ids": {0: "tokens"}, "hidden": {0: "tokens"}}
        else:
            args, inputs, outputs = (ids, mask), ["input_ids", "mask"], ["weights"]
            dynamic = {"input_ids": axes, "mask": axes, "weights": {0: "batch"}}
        graph.requires_grad_(False)
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
            torch.onnx.export(
                graph,
                args,
                str(dest),
                input_names=inputs,
                output_names=outputs,
                dynamic_axes=dynamic,
                opset_version=OPSET,
                dynamo=False,
            )

    def hidden(self, ids: np.ndarray) -> np.ndarray:
        """The trunk graph's ``[tokens, hidden]`` float32 states of one query's int64 ids."""
        return self.session.run(None, {"input_ids": ids})[0]

    def rows(self, ids: np.ndarray, mask: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Sparse rows (ascending term ids, weights > 0) of a padded batch (int64 ids, bool mask)."""
        if self.kind == "unicoil":
            return [pool_tokens(ids[r, : len(w)], w) for r, w in enumerate(self.token_weights(ids, mask))]
        (out,) = self.session.run(None, {"input_ids": ids, "mask": mask.astype(np.int64)})
        rows = []
        for r in range(out.shape[0]):
            nz = np.flatnonzero(out[r] > 0)
            rows.append((nz.astype(np.int32), out[r, nz].astype(np.float32)))
        return rows

    def token_weights(self, ids: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
        """uniCOIL: each sequence's float32 token weights (its unpadded length; zero at special
        tokens) of a padded batch (int64 ids, bool mask, padding after each sequence).

        Raises:
            ValueError: a SPLADE graph, which pools over the vocabulary and has no token weights.
        """
        if self.kind != "unicoil":
            raise ValueError(f"token_weights: a {self.kind} query graph outputs pooled rows, none per token")
        (out,) = self.session.run(None, {"input_ids": ids, "mask": mask.astype(np.int64)})
        lengths = mask.sum(axis=1)
        return [out[r, : lengths[r]].astype(np.float32) for r in range(out.shape[0])]


def _session(path: Path) -> Any:
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # queries run concurrently on the model's worker threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


CHECK_LENGTHS = (6, 12, 24, 48, 96)  # token_feeds: sequence lengths (4 of each; at most the positions)


def token_feeds(model: Any, graph: str, seed: int) -> list[dict[str, np.ndarray]]:
    """Seeded query-like inputs of a query graph: sequences of the tokenizer's ordinary tokens (not
    special, not bracketed such as BERT's ``[unused3]``, which training never moves) between its
    ``[CLS]`` and ``[SEP]`` (where it has them), :data:`CHECK_LENGTHS` long, 4 of each."""
    tokenizer = model.tokenizer
    special = set(tokenizer.all_special_ids)
    ordinary = sorted(
        i
        for t, i in tokenizer.get_vocab().items()
        if i < model.vocab_size and i not in special and not (t[:1] + t[-1:] in ("[]", "<>") and len(t) > 2)
    )
    ends = [i for i in (tokenizer.cls_token_id, tokenizer.sep_token_id) if i is not None]
    rng = np.random.default_rng(seed)
    feeds = []
    for length in CHECK_LENGTHS:
        for _ in range(4):
            body = rng.choice(ordinary, size=min(length, model.max_positions) - len(ends))
            ids = np.array([*ends[:1], *body, *ends[1:]], dtype=np.int64)
            feeds.append(
                {"input_ids": ids}
                if graph == "trunk"
                else {"input_ids": ids[None], "mask": np.ones((1, len(ids)), np.int64)}
            )
    return feeds


def pool_tokens(ids: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Max weight per distinct token id (weights > 0 only), ascending ids."""
    keep = weights > 0
    terms, inverse = np.unique(ids[keep], return_inverse=True)
    pooled = np.zeros(len(terms), np.float32)
    np.maximum.at(pooled, inverse, weights[keep].astype(np.float32))
    return terms.astype(np.int32), pooled
