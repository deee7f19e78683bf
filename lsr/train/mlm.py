"""Continued masked-language-model training on a corpus (the first phase of ``lsr adapt``).

BERT's objective (Devlin et al. 2019) with the model's own MLM head: ``probability`` (15%) of the
non-special tokens of each text are chosen; 80% of them become ``[MASK]``, 10% a random token, 10%
stay; the loss is the cross-entropy of the original token at the chosen positions. A SPLADE model reads
its term weights from that same head, so by default (``freeze_head``) the vocabulary projection
(decoder weights, tied to the input embeddings in BERT, and its bias) stays fixed: the encoder learns
the corpus's text, the term space the index is built in does not move.

Writes a Hugging Face model folder (float32 safetensors and the tokenizer) atomically.
"""

from __future__ import annotations

import copy
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
        "loss_first": round(float(np.mean(losses[:10])), 4),
        "loss_last": round(float(np.mean(losses[-10:])), 4),
        "frozen_parameters": frozen,
    }


def _mlm_loop(
    model: Any,
    tokenizer: Any,
    data: _TokenizedTexts,
    settings: AdaptSettings,
    device: torch.device,
    seed: int,
    progress: bool,
) -> list[float]:
    """AdamW with a 10% linear warm-up then linear decay; the loss of each step."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.mlm_lr, weight_decay=0.01)
    steps, warm = settings.mlm_steps, max(1, settings.mlm_steps // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warm if s < warm else max(0.0, (steps - s) / max(1, steps - warm))
    )
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    vocab_size = int(model.get_output_embeddings().weight.shape[0])
    bar = _bar(progress, steps)
    losses: list[float] = []
    for _ in range(steps):
        rows = rng.choice(len(data.seqs), size=min(settings.mlm_batch_size, len(data.seqs)), replace=False)
        ids, attn, maskable = data.batch(rows.tolist(), device)
        inputs, labels = mask_tokens(
            ids, maskable, int(tokenizer.mask_token_id), vocab_size, settings.mlm_probability, generator
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


def _save(model: Any, tokenizer: Any, out: Path) -> None:
    """The model folder (float32, tokenizer), written beside ``out`` and renamed into place."""
    tmp = out.parent / f".{out.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval().to("cpu").save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    publish_directory(tmp, out)
