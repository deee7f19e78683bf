"""The query side of SPLADE and uniCOIL on ONNX Runtime: the same numbers as torch, faster on a CPU.

A query is a few dozen tokens, so torch's per-operator overhead (not the arithmetic) dominates its
float32 path; ONNX Runtime runs the exported graph with fused kernels. The graph is exported from
the loaded model with ``torch.onnx.export`` once and cached (``LSR_CACHE_DIR``, default
``~/.cache/lsr``, ``onnx/<key>.onnx``; the key hashes the model folder's files, the model kind and
its pooling, the runtime and this module's export version), written through a temporary file and a
rename. Runtimes (``encoder.transformer.query_runtime``, or the ``LSR_QUERY_RUNTIME`` environment
variable, which wins):

* ``auto`` (default): on a CPU ``lean`` for SPLADE, ``onnx`` for uniCOIL when onnxruntime is
  installed (else ``lean``); on a GPU ``torch``;
* ``lean``: a fused float32 forward and, for SPLADE, a screened vocabulary projection
  (lsr.encoders.lean_query; the float32 weights to rounding);
* ``lean-bf16``: ``lean`` with the transformer's matrix products in bfloat16 (float32 accumulation,
  norms, attention; weights within ~1% of float32's; fast on a CPU with AMX, slower than float32 on
  one without bfloat16 instructions); opt-in;
* ``onnx``: the float32 graph (scores equal torch's to float32 rounding);
* ``onnx-int8``: the graph with its matrix products quantized to int8 (dynamic quantization);
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
from lsr.encoders.hf import require

logger = logging.getLogger(__name__)

RUNTIMES = QUERY_RUNTIMES
EXPORT_VERSION = 2
OPSET = 17


def cache_dir() -> Path:
    return Path(os.environ.get("LSR_CACHE_DIR") or Path.home() / ".cache" / "lsr") / "onnx"


def resolve_runtime(configured: str, device_type: str, kind: str = "splade") -> str:
    """The runtime to use: ``LSR_QUERY_RUNTIME`` over the configured one; ``auto`` on a CPU -> lean for
    SPLADE, onnx for uniCOIL when onnxruntime is installed (faster there: no projection to screen,
    and ONNX Runtime's float32 products beat torch's at a query's size), else lean; on a GPU torch."""
    runtime = os.environ.get("LSR_QUERY_RUNTIME") or configured
    if runtime not in RUNTIMES:
        from lsr.errors import ConfigError

        raise ConfigError(f"query runtime {runtime!r} is not one of {list(RUNTIMES)} (LSR_QUERY_RUNTIME)")
    if runtime != "auto":
        return runtime
    if device_type != "cpu":
        return "torch"
    if kind == "unicoil" and importlib.util.find_spec("onnxruntime") is not None:
        return "onnx"
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
        self.path = self._exported(model)
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # queries run concurrently on the model's worker threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        logger.info("query encoder: ONNX Runtime %s (%s graph %s)", ort.__version__, runtime, self.path.name)

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
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:24]

    def _exported(self, model: Any) -> Path:
        out = cache_dir() / f"{self.kind}-{self.graph}-{self._key(model)}.onnx"
        if out.is_file():
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
        try:
            self._export(model, tmp)
            if self.runtime == "onnx-int8":
                quantization = require("onnxruntime.quantization")
                quantized = tmp.with_name(tmp.name + ".int8")
                quantization.quantize_dynamic(
                    str(tmp), str(quantized), weight_type=quantization.QuantType.QInt8, per_channel=True
                )
                os.replace(quantized, tmp)
            os.replace(tmp, out)
        finally:
            for stray in (tmp, tmp.with_name(tmp.name + ".int8")):
                stray.unlink(missing_ok=True)
        logger.info("exported the query graph to %s", out)
        return out

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


def pool_tokens(ids: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Max weight per distinct token id (weights > 0 only), ascending ids."""
    keep = weights > 0
    terms, inverse = np.unique(ids[keep], return_inverse=True)
    pooled = np.zeros(len(terms), np.float32)
    np.maximum.at(pooled, inverse, weights[keep].astype(np.float32))
    return terms.astype(np.int32), pooled
