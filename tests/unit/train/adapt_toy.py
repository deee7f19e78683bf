"""The toy inputs of the ``lsr adapt`` tests: a corpus in the tiny test vocabulary and CPU-sized settings."""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = (
    "the a and of in on with cat cats sat mat dog dogs bird fish vitamin d cancer risk coffee sleep "
    "quality adults screening lowers supplements protein cell cells gene study effect"
).split()

# every run of the tests: a few steps of each phase, bm25 as the only teacher (no MiniLM load)
TOY_SETTINGS = [
    "adapt.method=train",  # the training method (SPLADE folders default to select: test_adapt_select)
    "adapt.min_docs=10",
    "adapt.mlm_steps=4",
    "adapt.mlm_batch_size=4",
    "adapt.mlm_max_length=32",
    "adapt.keep_start_if_worse=false",  # the adapted weights, whatever the toy dev split says
    "prepare.pseudo_min_words=4",
    "prepare.mining_depth=8",
    "prepare.negatives=4",
    "prepare.dev_fraction=0.2",
    "prepare.teachers=[{name: bm25}]",
    "distill.weights={bm25: 1.0}",
    "distill.scale=10.0",
    "data.max_length=32",
    "data.query_max_length=16",
    "data.eval_max_length=32",
    "loss.flops_warmup=2",
    "optim.lr=0.001",
    "optim.warmup_steps=1",
    "train.steps=6",
    "train.batch_size=4",
    "train.negatives=2",
    "train.device=cpu",
    "train.log_every=3",
    "train.eval_every=3",
    "train.eval_batch_docs=16",
]


def toy_docs(n: int = 30, seed: int = 0) -> list[dict[str, str]]:
    """``n`` documents of random tiny-vocabulary words: a 2-3 word title, two sentences of 5-8 words."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        title = " ".join(rng.choices(WORDS, k=rng.randint(2, 3)))
        text = " ".join(" ".join(rng.choices(WORDS, k=rng.randint(5, 8))) + " ." for _ in range(2))
        docs.append({"_id": f"d{i}", "title": title, "text": text})
    return docs


def write_docs(path: Path, docs: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    return path


def settings_args(*extra: str) -> list[str]:
    return [arg for item in (*TOY_SETTINGS, *extra) for arg in ("--set", item)]
