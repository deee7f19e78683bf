"""The ``onnx-int8-smooth`` query graph: a BERT encoder's products in int8, placed to keep the rankings.

ONNX Runtime's dynamic int8 (the ``onnx-int8`` runtime) quantizes each product's input with one scale
for the whole tensor. A BERT's layer-norm outputs carry a few channels far above the rest (the shipped
uniCOIL: up to ~28 against ~1), so the int8 step is coarse for every other channel, and the
feed-forward output product's input (the intermediate's gelu) is as uneven; the shipped uniCOIL's
query token weights move by ~2.9% of their mean, enough to move nDCG@10 by 0.002-0.004 on the small
ood collections. This graph instead:

* smooths the inputs of the products that read a layer norm's output (query/key/value, feed-forward
  input) as SmoothQuant does (Xiao et al., 2023): the input's channel ``j`` divided by
  ``s_j = max|x_j|^a / max|W_j|^(1-a)`` (:data:`ALPHA`) and the weight's row ``j`` multiplied by it,
  the same product in exact arithmetic (one ``Mul`` a product input), which moves the outlier
  channels' range into the weights; ``max|x_j|`` from seeded token sequences run through the float32
  graph (the caller's ``feeds``: no data set needed);
* runs the query/key/value, attention output and feed-forward input products in ONNX Runtime's
  dynamic int8 (per-channel weights, per-tensor inputs);
* runs the feed-forward output products, and the first layer's feed-forward input (the most
  sensitive: its error runs through every later layer), as ``MatMulNBits`` (com.microsoft): 8-bit
  weights in blocks of :data:`BLOCK` along the input, each with its own scale, and (accuracy level
  4) the input quantized per block of :data:`BLOCK` too, which keeps the gelu's uneven channels apart;
* keeps the rest in float32: embeddings, attention scores, norms, the output head.

On the shipped uniCOIL the token weights move by ~0.8% of their mean (the plain int8 graph's: 2.9%)
at ~1.8x the float32 graph's speed (benchmarks/RESULTS.md, "onnx-int8-smooth").
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from lsr.encoders.hf import require

logger = logging.getLogger(__name__)

VERSION = 1  # of this recipe: part of the cached graph's key (lsr.encoders.onnx_query)
ALPHA = 0.5  # SmoothQuant's migration strength
BLOCK = 128  # MatMulNBits block along the input (a power of 2, >= 16)
ROLES = ("qkv", "attention_out", "ffn_in", "ffn_out")
SMOOTHED = ("qkv", "ffn_in")  # the products whose input is a layer norm's output
DYNAMIC = ("qkv", "attention_out", "ffn_in")  # dynamic int8 (per-tensor inputs) but where blockwise


def blockwise(products: dict[str, list[Any]]) -> list[Any]:
    """The products run as MatMulNBits: every feed-forward output and the first layer's feed-forward
    input (the most sensitive: its error runs through every later layer)."""
    return [*products["ffn_out"], *products["ffn_in"][:1]]


def role(name: str) -> str | None:
    """Which of a BERT layer's weight products a ``MatMul`` node is, by the module path the exporter
    writes into its name (``.../layer.0/attention/self/query/MatMul``), or None."""
    if "/attention/self/" in name and any(f"/{p}/" in name for p in ("query", "key", "value")):
        return "qkv"
    if "/attention/output/dense/" in name:
        return "attention_out"
    if "/intermediate/dense/" in name:
        return "ffn_in"
    if "/output/dense/" in name:
        return "ffn_out"
    return None


def weight_products(model: Any) -> dict[str, list[Any]]:
    """The graph's BERT weight products (``MatMul`` nodes with a constant weight) by role.

    Raises:
        ValueError: the graph does not have 3 query/key/value and one of each other product per layer
            with an unshared weight (not a BERT encoder's graph as torch exports it).
    """
    inits = {i.name for i in model.graph.initializer}
    uses: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    out: dict[str, list[Any]] = {r: [] for r in ROLES}
    for node in model.graph.node:
        kind = role(node.name) if node.op_type == "MatMul" and node.input[1] in inits else None
        if kind is not None:
            out[kind].append(node)
    layers = len(out["ffn_out"])
    counts = {r: len(v) for r, v in out.items()}
    shared = [n.name for v in out.values() for n in v if uses[n.input[1]] != 1]
    if layers == 0 or counts != {r: layers * (3 if r == "qkv" else 1) for r in ROLES} or shared:
        raise ValueError(f"not a BERT encoder's graph: weight products {counts}, shared weights {shared}")
    return out


def input_ranges(model: Any, names: set[str], feeds: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Per tensor of ``names``, its largest ``|x|`` per channel (last axis) over the runs of ``feeds``."""
    onnx = require("onnx")
    ort = require("onnxruntime")
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name in sorted(names):
        probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]
    ranges: dict[str, np.ndarray] = {}
    for feed in feeds:
        for name, value in zip(outputs, session.run(None, feed), strict=True):
            if name in names:
                peak = np.abs(value.reshape(-1, value.shape[-1])).max(axis=0)
                ranges[name] = np.maximum(ranges[name], peak) if name in ranges else peak
    return ranges


def smooth(model: Any, nodes: list[Any], ranges: dict[str, np.ndarray], alpha: float = ALPHA) -> None:
    """SmoothQuant ``nodes`` in place: each input ``x`` becomes ``x / s`` (one ``Mul`` per input,
    before its first product) and each weight's row ``j`` ``W_j * s_j``, with
    ``s_j = max|x_j|^alpha / max|W_j|^(1 - alpha)`` over the products sharing the input."""
    onnx = require("onnx")
    numpy_helper = onnx.numpy_helper
    inits = {i.name: i for i in model.graph.initializer}
    by_input: dict[str, list[Any]] = {}
    for node in nodes:
        by_input.setdefault(node.input[0], []).append(node)
    for source, group in by_input.items():
        weights = [numpy_helper.to_array(inits[n.input[1]]) for n in group]
        w_max = np.max([np.abs(w).max(axis=1) for w in weights], axis=0)
        scale = np.maximum(ranges[source], 1e-5) ** alpha / np.maximum(w_max, 1e-5) ** (1 - alpha)
        scaled = f"{source}/smoothed"
        model.graph.initializer.append(
            numpy_helper.from_array((1 / scale).astype(np.float32), f"{scaled}/inv")
        )
        first = min(i for i, n in enumerate(model.graph.node) if n in group)
        mul = onnx.helper.make_node("Mul", [source, f"{scaled}/inv"], [scaled], name=f"{scaled}/Mul")
        model.graph.node.insert(first, mul)
        for node, weight in zip(group, weights, strict=True):
            rows = (weight * scale[:, None]).astype(np.float32)
            inits[node.input[1]].CopyFrom(numpy_helper.from_array(rows, node.input[1]))
            node.input[0] = scaled


def block_quantize(weight: np.ndarray, block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """A ``[K, N]`` float weight as MatMulNBits' 8-bit blocks: ``uint8 [N, ceil(K / block), block]``
    (value ``round(w / scale) + 128``, the zero point MatMulNBits assumes without one; the input's
    tail zero-padded) and float32 scales ``[N, ceil(K / block)]`` (the block's ``max|w| / 127``)."""
    k, n = weight.shape
    blocks = -(-k // block)
    padded = np.zeros((n, blocks * block), np.float32)
    padded[:, :k] = weight.T
    padded = padded.reshape(n, blocks, block)
    scale = np.abs(padded).max(axis=2) / 127
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(padded / scale[..., None]), -127, 127) + 128
    return q.astype(np.uint8), scale.astype(np.float32)


def to_block_int8(model: Any, node: Any, block: int = BLOCK) -> None:
    """Replace the ``MatMul`` ``node`` (constant ``[K, N]`` weight) in place by a MatMulNBits of
    :func:`block_quantize`'s blocks, accuracy level 4 (the input quantized per block as well)."""
    onnx = require("onnx")
    graph = model.graph
    init = next(i for i in graph.initializer if i.name == node.input[1])
    weight = onnx.numpy_helper.to_array(init)
    q, scale = block_quantize(weight, block)
    name = node.input[1]
    graph.initializer.remove(init)
    graph.initializer.extend(
        [onnx.numpy_helper.from_array(q, f"{name}/q8"), onnx.numpy_helper.from_array(scale, f"{name}/scales")]
    )
    blockwise = onnx.helper.make_node(
        "MatMulNBits",
        [node.input[0], f"{name}/q8", f"{name}/scales"],
        list(node.output),
        name=f"{node.name}/q8",
        domain="com.microsoft",
        K=weight.shape[0],
        N=weight.shape[1],
        bits=8,
        block_size=block,
        accuracy_level=4,
    )
    index = list(graph.node).index(node)
    graph.node.remove(node)
    graph.node.insert(index, blockwise)


def quantize(src: Path, dest: Path, feeds: list[dict[str, np.ndarray]]) -> None:
    """Write to ``dest`` the float32 graph ``src`` with its BERT products quantized as the module
    docstring says (``feeds``: the inputs whose runs give the smoothing ranges).

    Raises:
        ValueError: ``src`` is not a BERT encoder's graph (:func:`weight_products`).
    """
    onnx = require("onnx")
    quantization = require("onnxruntime.quantization")
    model = onnx.load(str(src))
    products = weight_products(model)
    smoothed = [n for r in SMOOTHED for n in products[r]]
    smooth(model, smoothed, input_ranges(model, {n.input[0] for n in smoothed}, feeds))
    blocks = {n.name for n in blockwise(products)}
    staged = dest.with_name(dest.name + ".smoothed")
    try:
        onnx.save(model, str(staged))
        quantization.quantize_dynamic(
            str(staged),
            str(dest),
            weight_type=quantization.QuantType.QInt8,
            per_channel=True,
            nodes_to_quantize=[n.name for r in DYNAMIC for n in products[r] if n.name not in blocks],
        )
    finally:
        staged.unlink(missing_ok=True)
    model = onnx.load(str(dest))
    for node in [n for n in model.graph.node if n.name in blocks]:
        to_block_int8(model, node)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(dest))


TOLERANCE = 0.15  # agrees: largest |int8 - float32| output / largest |float32| one


def agrees(session: Any, reference: Any, feeds: list[dict[str, np.ndarray]]) -> bool:
    """True when ``session``'s first output is within :data:`TOLERANCE` of ``reference``'s (relative
    to the largest reference value) on every feed: what catches a machine whose int8 kernels are
    broken (O(1) errors). The shipped uniCOIL's smoothed int8 graph: up to 0.07 on
    ``onnx_query.token_feeds`` (random tokens move it more than queries do: on SciFact's test queries
    at most 0.04 of a query's largest weight, 0.015 on average)."""
    for feed in feeds:
        (got,), (want,) = session.run(None, feed)[:1], reference.run(None, feed)[:1]
        if not float(np.abs(got - want).max()) <= TOLERANCE * max(float(np.abs(want).max()), 1e-6):
            return False
    return True
