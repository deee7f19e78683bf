"""Masked-language-model training on a corpus: continued MLM (the first phase of ``lsr adapt``) and the
warm-up of a fresh MLM head (:func:`warm_fresh_head`, ``scripts/mlm_warmup.py``).

BERT's objective (Devlin et al. 2019) with the model's own MLM head: ``probability`` (15%) of the
non-special tokens of each text are chosen; 80% of them become ``[MASK]``, 10% a random token, 10%
stay; the loss is the cross-entropy of the original token at the chosen positions. A SPLADE model reads
its term weights from that same head, so by default (``freeze_head``) the vocabulary projection
(decoder weights, tied to the input embeddings in BERT, and its bias) stays fixed: the encoder learns
the corpus's text, the term space the index is built in does not move.

A bare encoder such as all-MiniLM-L6-v2 has no MLM head: :func:`lsr.train.model.load_mlm` adds a fresh
one whose decoder is tied to the input embeddings, and its logits first rank unrelated words. The
warm-up trains only that head's transform (dense + LayerNorm) and its decoder bias (and, if asked, the
transformer layers) with the same objective; the input embeddings, and so the decoder weights tied to
them, stay fixed: the term space is the tokenizer's own and the trunk keeps what it learned. The folder
it writes (``lsr_mlm.json`` records how) is a ``model.init`` for SPLADE training.

Writes a Hugging Face model folder (float32 safetensors and the tokenizer) atomically.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lsr.encoders.hf import clean_text
from lsr.errors import ConfigError
from lsr.index.io import publish_directory
from lsr.train.adapt_config import AdaptSettings
from lsr.train.model import load_mlm

logger = logging.getLogger(__name__)

WARMUP_FILE = "lsr_mlm.json"  # in a warmed folder: what the head was trained on and how


def mask_tokens(
    ids: torch.Tensor,
    maskable: torch.Tensor,
    mask_id: int,
    vocab_size: int,
    probability: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, labels)`` of BERT's masking; labels are -100 where no loss is taken.

    Args:
        ids: ``[B, L]`` int64 token ids.
        maskable: ``[B, L]`` bool, true for the tokens that may be chosen (not special, not padding).
        generator: a CPU generator (seeded: the same batch masks the same way).

    At least one token of the batch is chosen, so the loss is always defined.
    """
    shape = ids.shape
    chosen = (torch.rand(shape, generator=generator) < probability).to(ids.device) & maskable
    if not bool(chosen.any()) and bool(maskable.any()):
        first = maskable.nonzero()[0]
        chosen[first[0], first[1]] = True
    roll = torch.rand(shape, generator=generator).to(ids.device)
    random_ids = torch.randint(vocab_size, shape, generator=generator).to(ids.device)
    inputs = ids.clone()
    inputs[chosen & (roll < 0.8)] = mask_id
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    inputs[swap] = random_ids[swap]
    labels = ids.masked_fill(~chosen, -100)
    return inputs, labels


def _freeze_head(model: Any) -> int:
    """Fix the vocabulary projection (and the input embeddings tied to it); the parameters frozen."""
    head = model.get_output_embeddings()
    frozen = 0
    for p in head.parameters():
        p.requires_grad_(False)
        frozen += p.numel()
    return frozen


class _TokenizedTexts:
    """The corpus texts as token ids (truncated), batched into padded tensors."""

    def __init__(self, tokenizer: Any, texts: Sequence[str], max_length: int):
        backend = copy.deepcopy(tokenizer.backend_tokenizer)  # the saved tokenizer keeps its settings
        backend.no_padding()
        backend.enable_truncation(max_length)
        enc = backend.encode_batch_fast([clean_text(t) for t in texts])
        self.seqs = [(e.ids, e.special_tokens_mask) for e in enc if any(not s for s in e.special_tokens_mask)]
        if not self.seqs:
            raise ConfigError("continued MLM: no text of the corpus has a token to mask")
        self.pad_id = int(tokenizer.pad_token_id or 0)

    def batch(self, rows: Sequence[int], device: torch.device) -> tuple[torch.Tensor, ...]:
        width = max(len(self.seqs[i][0]) for i in rows)
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        attn = np.zeros((len(rows), width), dtype=bool)
        maskable = np.zeros((len(rows), width), dtype=bool)
        for r, i in enumerate(rows):
            seq, special = self.seqs[i]
            ids[r, : len(seq)] = seq
            attn[r, : len(seq)] = True
            maskable[r, : len(seq)] = ~np.asarray(special, dtype=bool)
        return tuple(torch.from_numpy(a).to(device) for a in (ids, attn, maskable))


def continued_mlm(
    init: Path,
    texts: Sequence[str],
    out: Path,
    settings: AdaptSettings,
    device: torch.device,
    seed: int,
    progress: bool = False,
) -> dict[str, Any]:
    """Train the MLM of ``init`` on ``texts`` for ``settings.mlm_steps`` steps; write it to ``out``.

    Returns:
        ``{"steps", "seconds", "loss_first", "loss_last", "frozen_parameters"}`` (losses: the mean of
        the first and last ten steps).
    """
    start = time.perf_counter()
    torch.manual_seed(seed)
    model, tokenizer, fresh = load_mlm(init)
    if fresh:
        raise ConfigError(f"{init}: no MLM head to continue training")
    model.to(device).train()
    frozen = _freeze_head(model) if settings.mlm_freeze_head else 0
    data = _TokenizedTexts(tokenizer, texts, settings.mlm_max_length)
    losses = _mlm_loop(model, tokenizer, data, settings, device, seed, progress)
    _save(model, tokenizer, out)
    return {
        "steps": settings.mlm_steps,
        "seconds": round(time.perf_counter() - start, 2),
        **_loss_ends(losses),
        "frozen_parameters": frozen,
    }


def warm_fresh_head(
    init: Path,
    texts: Sequence[str],
    out: Path,
    settings: AdaptSettings,
    device: torch.device,
    seed: int,
    train_trunk: bool = False,
    held_out: int = 256,
    max_seconds: float | None = None,
    progress: bool = False,
    source: str = "",
    target_nnz: int = 0,
    doc_length: int = 256,
    trunk_lr: float | None = None,
) -> dict[str, Any]:
    """Train the fresh MLM head of the bare encoder ``init`` on ``texts`` (the ``mlm_*`` fields of
    ``settings``); write the model folder to ``out`` with ``lsr_mlm.json`` (the returned record).

    ``train_trunk``: the transformer layers learn too, at ``trunk_lr`` (default ``settings.mlm_lr``).
    ``held_out`` texts (a seeded sample) are kept out of training; their MLM loss, with the same masks,
    before and after is the record's ``heldout_loss_before`` / ``heldout_loss_after``.

    The MLM loss (a softmax) cannot see a constant added to every logit, but a SPLADE vector keeps
    exactly the terms whose logit is positive: with ``target_nnz``, one constant is added to the decoder
    bias so that the held-out documents' SPLADE vectors (over their first ``doc_length`` tokens, as the
    trainer encodes documents) have that many non-zero terms on average (:func:`shift_bias`); the MLM's
    predictions are unchanged.

    Raises:
        ConfigError: ``init`` has an MLM head already, or too few texts to hold some out.
    """
    start = time.perf_counter()
    torch.manual_seed(seed)
    model, tokenizer, fresh = load_mlm(init)
    if not fresh:
        raise ConfigError(
            f"{init}: has an MLM head already; the warm-up trains a fresh one (lsr adapt continues one)"
        )
    if held_out < 0 or len(texts) <= held_out:
        raise ConfigError(f"MLM warm-up: held_out = {held_out} needs more texts than that (got {len(texts)})")
    order = np.random.default_rng(seed).permutation(len(texts))
    held = (
        _TokenizedTexts(tokenizer, [texts[i] for i in order[:held_out]], settings.mlm_max_length)
        if held_out
        else None
    )
    data = _TokenizedTexts(tokenizer, [texts[i] for i in order[held_out:]], settings.mlm_max_length)
    model.to(device).train()
    trained = train_only_head(model, train_trunk)
    before = heldout_loss(model, tokenizer, held, settings, device, seed) if held else None
    groups = _head_and_trunk(model, settings.mlm_lr, trunk_lr or settings.mlm_lr)
    losses = _mlm_loop(model, tokenizer, data, settings, device, seed, progress, max_seconds, groups)
    after = heldout_loss(model, tokenizer, held, settings, device, seed) if held else None
    sample = [texts[i] for i in order[: held_out or 256]]
    shift = _shift_to_target(
        model, tokenizer, sample, target_nnz, doc_length, device, settings.mlm_batch_size
    )
    record = {
        "format": "lsr-mlm-warmup",
        "format_version": 1,
        "init": str(init),
        "trained": "head+trunk" if train_trunk else "head",
        "trunk_lr": (trunk_lr or settings.mlm_lr) if train_trunk else None,
        "trainable_parameters": trained,
        "texts": len(data.seqs),
        "text_source": source,
        "held_out": held_out,
        "steps": len(losses),
        "steps_asked": settings.mlm_steps,
        "batch_size": settings.mlm_batch_size,
        "max_length": settings.mlm_max_length,
        "probability": settings.mlm_probability,
        "lr": settings.mlm_lr,
        "seed": seed,
        "device": str(device),
        **_loss_ends(losses),
        "heldout_loss_before": before,
        "heldout_loss_after": after,
        **shift,
        "seconds": round(time.perf_counter() - start, 2),
    }
    _save(model, tokenizer, out, record)
    return record


def _shift_to_target(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    target_nnz: int,
    doc_length: int,
    device: torch.device,
    batch_size: int,
) -> dict[str, Any]:
    """:func:`shift_bias` on ``texts`` cut at ``doc_length`` tokens (nothing when ``target_nnz`` is 0); the
    record's ``target_nnz``, ``heldout_nnz_unshifted``, ``bias_offset``, ``heldout_nnz``."""
    if not target_nnz:
        return {"target_nnz": 0, "heldout_nnz_unshifted": None, "bias_offset": None, "heldout_nnz": None}
    pooled = pooled_logits(model, _TokenizedTexts(tokenizer, texts, doc_length), device, batch_size)
    unshifted = mean_nnz(pooled, 0.0)
    offset = shift_bias(model, pooled, target_nnz)
    return {
        "target_nnz": target_nnz,
        "heldout_nnz_unshifted": unshifted,
        "bias_offset": offset,
        "heldout_nnz": mean_nnz(pooled, offset),
        "doc_length": doc_length,
    }


def train_only_head(model: Any, train_trunk: bool = False) -> int:
    """Freeze every parameter but the MLM head's own (transform, decoder bias) and, with ``train_trunk``,
    the transformer layers; the embeddings (and the decoder weights tied to them) stay fixed. Returns the
    number of trainable parameters."""
    base = model.base_model
    embeddings = {id(p) for p in getattr(base, "embeddings", base.get_input_embeddings()).parameters()}
    trunk = {id(p) for p in base.parameters()} - embeddings
    head = {id(p) for p in model.parameters()} - {id(p) for p in base.parameters()}
    trainable = head | (trunk if train_trunk else set())
    count = 0
    for p in model.parameters():
        p.requires_grad_(id(p) in trainable)
        count += p.numel() if id(p) in trainable else 0
    return count


def _head_and_trunk(model: Any, lr: float, trunk_lr: float) -> list[dict[str, Any]]:
    """The trainable parameters as groups: the head's at ``lr``, the base model's at ``trunk_lr``."""
    base = {id(p) for p in model.base_model.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trainable if id(p) not in base], "lr": lr},
        {"params": [p for p in trainable if id(p) in base], "lr": trunk_lr},
    ]
    return [g for g in groups if g["params"]]


@torch.no_grad()
def pooled_logits(model: Any, data: _TokenizedTexts, device: torch.device, batch_size: int) -> torch.Tensor:
    """``[texts, V]`` float32 (CPU): each text's logits max-pooled over its tokens (special ones
    included), the SPLADE vector before log(1 + ReLU(.))."""
    was_training = model.training
    model.eval()
    rows_out = []
    for s in range(0, len(data.seqs), batch_size):
        ids, attn, _ = data.batch(list(range(s, min(s + batch_size, len(data.seqs)))), device)
        with _autocast(device):
            logits = model(input_ids=ids, attention_mask=attn.long()).logits.float()
        rows_out.append(logits.masked_fill(~attn.unsqueeze(-1), float("-inf")).max(dim=1).values.cpu())
    model.train(was_training)
    return torch.cat(rows_out)


def mean_nnz(pooled: torch.Tensor, offset: float) -> float:
    """The mean number of terms above zero per text once ``offset`` is added to every logit."""
    return round(float((pooled + offset > 0).sum(dim=1).float().mean()), 2)


def shift_bias(model: Any, pooled: torch.Tensor, target_nnz: int) -> float:
    """Add to the decoder bias the constant (bisected to 1e-4) whose :func:`mean_nnz` is closest to
    ``target_nnz``; returns it."""
    vocab = pooled.shape[1]
    if not 0 < target_nnz < vocab:
        raise ConfigError(f"target_nnz = {target_nnz} must lie in (0, {vocab})")
    finite = pooled[torch.isfinite(pooled)]
    lo, hi = -float(finite.max()) - 1.0, -float(finite.min()) + 1.0  # nnz 0 at lo, every term at hi
    while hi - lo > 1e-4:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mean_nnz(pooled, mid) < target_nnz else (lo, mid)
    bias = model.get_output_embeddings().bias
    with torch.no_grad():
        bias += hi
    return round(hi, 4)


@torch.no_grad()
def heldout_loss(
    model: Any,
    tokenizer: Any,
    data: _TokenizedTexts,
    settings: AdaptSettings,
    device: torch.device,
    seed: int,
) -> float:
    """The mean MLM cross-entropy over every chosen token of ``data`` (masks drawn from ``seed``: the same
    masks for the same texts)."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    vocab_size = int(model.get_output_embeddings().weight.shape[0])
    total, count = 0.0, 0
    for s in range(0, len(data.seqs), settings.mlm_batch_size):
        rows = list(range(s, min(s + settings.mlm_batch_size, len(data.seqs))))
        inputs, attn, labels = _masked_batch(data, rows, tokenizer, vocab_size, settings, generator, device)
        with _autocast(device):
            logits = model(input_ids=inputs, attention_mask=attn.long()).logits
        loss = torch.nn.functional.cross_entropy(
            logits.float().reshape(-1, vocab_size), labels.reshape(-1), ignore_index=-100, reduction="sum"
        )
        total += float(loss)
        count += int((labels != -100).sum())
    model.train(was_training)
    return round(total / max(count, 1), 4)


def _mlm_loop(
    model: Any,
    tokenizer: Any,
    data: _TokenizedTexts,
    settings: AdaptSettings,
    device: torch.device,
    seed: int,
    progress: bool,
    max_seconds: float | None = None,
    groups: list[dict[str, Any]] | None = None,
) -> list[float]:
    """AdamW (over ``groups`` when given, each with its own learning rate) with a 10% linear warm-up then
    linear decay; the loss of each step (fewer than ``settings.mlm_steps`` when ``max_seconds`` runs out
    first)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(groups or params, lr=settings.mlm_lr, weight_decay=0.01)
    steps, warm = settings.mlm_steps, max(1, settings.mlm_steps // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warm if s < warm else max(0.0, (steps - s) / max(1, steps - warm))
    )
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    vocab_size = int(model.get_output_embeddings().weight.shape[0])
    bar = _bar(progress, steps)
    losses: list[float] = []
    start = time.perf_counter()
    for _ in range(steps):
        if max_seconds is not None and time.perf_counter() - start > max_seconds:
            logger.warning("MLM stopped by its time limit (%.0f s) after %d steps", max_seconds, len(losses))
            break
        rows = rng.choice(len(data.seqs), size=min(settings.mlm_batch_size, len(data.seqs)), replace=False)
        inputs, attn, labels = _masked_batch(
            data, rows.tolist(), tokenizer, vocab_size, settings, generator, device
        )
        with _autocast(device):
            loss = model(input_ids=inputs, attention_mask=attn.long(), labels=labels).loss
        value = loss.item()
        if not math.isfinite(value):
            raise ConfigError(f"continued MLM: the loss is {value}; lower adapt.mlm_lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(value)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
    if bar is not None:
        bar.close()
    return losses


def _masked_batch(
    data: _TokenizedTexts,
    rows: list[int],
    tokenizer: Any,
    vocab_size: int,
    settings: AdaptSettings,
    generator: torch.Generator,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(inputs, attention, labels)`` of ``rows`` of ``data`` masked as BERT does (:func:`mask_tokens`)."""
    ids, attn, maskable = data.batch(rows, device)
    inputs, labels = mask_tokens(
        ids, maskable, int(tokenizer.mask_token_id), vocab_size, settings.mlm_probability, generator
    )
    return inputs, attn, labels


def _loss_ends(losses: list[float]) -> dict[str, float | None]:
    """``loss_first`` / ``loss_last``: the mean loss of the first and of the last ten steps."""
    if not losses:
        return {"loss_first": None, "loss_last": None}
    return {
        "loss_first": round(float(np.mean(losses[:10])), 4),
        "loss_last": round(float(np.mean(losses[-10:])), 4),
    }


def _bar(progress: bool, steps: int) -> Any:
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=steps, desc="adapt: continued MLM", unit="step")


def _autocast(device: torch.device) -> Any:
    import contextlib

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _save(model: Any, tokenizer: Any, out: Path, record: dict[str, Any] | None = None) -> None:
    """The model folder (float32, tokenizer, ``record`` as ``lsr_mlm.json``), written beside ``out`` and
    renamed into place."""
    tmp = out.parent / f".{out.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval().to("cpu").save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    if record is not None:
        (tmp / WARMUP_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    publish_directory(tmp, out)
