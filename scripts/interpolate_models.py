#!/usr/bin/env python3
"""Weight-space interpolation of a fine-tuned model with the model it started from (WiSE-FT,
Wortsman et al. 2022): ``theta = alpha * tuned + (1 - alpha) * base``, tensor by tensor.

Fine-tuning a small SPLADE on one domain (SciFact) costs it quality elsewhere (TREC DL); the
interpolated model keeps part of both. Both folders must hold the same architecture (same tensor
names and shapes); the output takes the tuned folder's tokenizer, config and ``idf.json``, is
written as fp16 safetensors (sharded under 16 MB) into a temporary folder and renamed when complete.

    python scripts/interpolate_models.py --base models/splade-tiny --tuned lsr/models/splade \\
        --alpha 0.5 --out /tmp/splade-wise
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

COPY = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "idf.json",
    "lsr_train.json",
)
SHARD_BYTES = 15 * 2**20


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise SystemExit(f"{folder}: no .safetensors files")
    out: dict[str, torch.Tensor] = {}
    for f in files:
        out.update(load_file(str(f)))
    return out


def interpolate(
    base: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    if set(base) != set(tuned):
        raise SystemExit(f"the models differ in tensors: {sorted(set(base) ^ set(tuned))[:5]}")
    bad = [k for k in base if base[k].shape != tuned[k].shape]
    if bad:
        raise SystemExit(f"tensor shapes differ: {bad[:5]}")
    return {k: (alpha * tuned[k].float() + (1 - alpha) * base[k].float()).half().contiguous() for k in tuned}


def save_sharded(weights: dict[str, torch.Tensor], out: Path) -> None:
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in weights.items():
        n = t.numel() * t.element_size()
        if shards[-1] and size + n > SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += n
    if len(shards) == 1:
        save_file(shards[0], str(out / "model.safetensors"), metadata={"format": "pt"})
        return
    index = {
        "metadata": {"total_size": sum(t.numel() * t.element_size() for t in weights.values())},
        "weight_map": {},
    }
    for i, shard in enumerate(shards, start=1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(out / name), metadata={"format": "pt"})
        index["weight_map"].update(dict.fromkeys(shard, name))
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, type=Path)
    ap.add_argument("--tuned", required=True, type=Path)
    ap.add_argument("--alpha", type=float, required=True, help="weight of the tuned model, in [0, 1]")
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args()
    if not 0.0 <= args.alpha <= 1.0:
        raise SystemExit(f"--alpha {args.alpha} must lie in [0, 1]")
    if args.out.exists():
        raise SystemExit(f"{args.out} exists")
    weights = interpolate(read_weights(args.base), read_weights(args.tuned), args.alpha)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_sharded(weights, tmp)
    for name in COPY:
        if (args.tuned / name).is_file():
            shutil.copy(args.tuned / name, tmp / name)
    (tmp / "interpolation.json").write_text(
        json.dumps(
            {
                "method": "WiSE-FT weight interpolation",
                "alpha": args.alpha,
                "base": str(args.base),
                "tuned": str(args.tuned),
            },
            indent=2,
        )
        + "\n"
    )
    tmp.rename(args.out)
    print(f"{args.base} x {1 - args.alpha:g} + {args.tuned} x {args.alpha:g} -> {args.out}")


if __name__ == "__main__":
    main()
