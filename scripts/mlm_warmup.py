#!/usr/bin/env python3
"""Warm up the fresh MLM head of a bare encoder (all-MiniLM-L6-v2) on a prepared dataset's corpus text.

    python scripts/mlm_warmup.py --prepared artifacts/train-data/scifact-all --out WARMED \\
        --steps 2000 --batch-size 64 [--init minilm] [--train-trunk] [--show 2]

Only the documents of ``--prepared`` (``lsr train-prepare``'s ``docs.jsonl.gz``: the training corpus)
are read, never queries or labels. :func:`lsr.train.mlm.warm_fresh_head` trains the head's transform
and decoder bias (``--train-trunk``: and the transformer layers) with the input embeddings, tied to the
decoder, fixed, and writes a model folder with ``lsr_mlm.json``; train SPLADE from it with
``--set model.init=WARMED``. ``--show N`` prints the top SPLADE terms (max-pooled log(1 + ReLU(logit)))
and the number of non-zero terms of N held-out documents before and after.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lsr.encoders.transformer import pick_device
from lsr.train.adapt_config import AdaptSettings
from lsr.train.data import load_prepared
from lsr.train.mlm import warm_fresh_head
from lsr.train.model import load_mlm, resolve_init


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prepared", required=True, help="lsr train-prepare output: its documents are the text")
    ap.add_argument("--out", required=True, help="the warmed model folder")
    ap.add_argument("--init", default="minilm", help="a bare encoder folder, or minilm")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--probability", type=float, default=0.15)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--held-out", type=int, default=256, help="documents kept out of training, scored after")
    ap.add_argument("--train-trunk", action="store_true", help="train the transformer layers too")
    ap.add_argument("--trunk-lr", type=float, default=5e-5, help="their learning rate (--train-trunk)")
    ap.add_argument("--max-seconds", type=float, default=None, help="stop early after this long (recorded)")
    ap.add_argument(
        "--target-nnz",
        type=int,
        default=256,
        help="shift the decoder bias so held-out documents have this many SPLADE terms (0: no shift)",
    )
    ap.add_argument(
        "--doc-length", type=int, default=256, help="document tokens for --target-nnz (data.max_length)"
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument("--show", type=int, default=2, help="held-out documents whose top terms are printed")
    return ap


@torch.no_grad()
def splade_terms(model: Any, tokenizer: Any, text: str, k: int = 12) -> tuple[list[tuple[str, float]], int]:
    """The top ``k`` terms of ``text``'s SPLADE vector and its number of non-zero terms."""
    model.eval()
    device = next(model.parameters()).device
    enc = tokenizer(text, truncation=True, max_length=256, return_tensors="pt").to(device)
    logits = model(**enc).logits[0].float()
    weights = torch.log1p(torch.relu(logits.max(dim=0).values))
    weights[tokenizer.all_special_ids] = 0
    top = torch.topk(weights, k)
    terms = [(tokenizer.convert_ids_to_tokens(int(i)), round(float(w), 2)) for w, i in zip(*top, strict=True)]
    return terms, int((weights > 0).sum())


def show(label: str, folder: Path, texts: list[str]) -> None:
    model, tokenizer, _ = load_mlm(folder)
    for text in texts:
        terms, nnz = splade_terms(model, tokenizer, text)
        print(f"[{label}] nnz {nnz:5d} | {text[:70]!r}\n    {terms}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    init = resolve_init(args.init)
    texts = load_prepared(args.prepared).doc_texts
    settings = AdaptSettings(
        mlm_steps=args.steps,
        mlm_batch_size=args.batch_size,
        mlm_max_length=args.max_length,
        mlm_lr=args.lr,
        mlm_probability=args.probability,
        mlm_freeze_head=False,
    )
    # the same seeded sample warm_fresh_head holds out: shown texts were not trained on
    order = np.random.default_rng(args.seed).permutation(len(texts))
    shown = [texts[i] for i in order[: min(args.show, args.held_out)]]
    show("before", init, shown)
    device = pick_device(args.device, key="--device")
    record = warm_fresh_head(
        init,
        texts,
        Path(args.out),
        settings,
        device,
        args.seed,
        train_trunk=args.train_trunk,
        trunk_lr=args.trunk_lr,
        held_out=args.held_out,
        max_seconds=args.max_seconds,
        source=f"{args.prepared} (documents)",
        target_nnz=args.target_nnz,
        doc_length=args.doc_length,
    )
    print(json.dumps(record), flush=True)
    show("after", Path(args.out), shown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
