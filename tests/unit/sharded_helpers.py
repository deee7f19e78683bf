"""Shared by the sharded-index tests: a small corpus with tied documents, its queries, and a stand-in for
a remote shard that can go down."""

from __future__ import annotations

import json
import random
from concurrent.futures import Future
from pathlib import Path

WORDS = (
    "vitamin cancer risk coffee sleep protein gene cell study effect adults screening dose trial "
    "heart blood pressure insulin brain memory bone density infection virus vaccine immune"
).split()


def write_corpus(path: Path, n: int = 160, seed: int = 0) -> Path:
    """Short random documents; every 7th repeats an earlier one's text (equal scores: ties)."""
    rng = random.Random(seed)
    texts: list[str] = []
    lines = []
    for i in range(n):
        fresh = " ".join(rng.choices(WORDS, k=rng.randint(4, 14)))
        text = rng.choice(texts) if texts and i % 7 == 0 else fresh
        texts.append(text)
        lines.append(json.dumps({"_id": f"doc{i:04d}", "title": "", "text": text}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


QUERIES = [
    " ".join(random.Random(q).choices(WORDS, k=random.Random(q + 100).randint(1, 4))) for q in range(25)
]


class FlakyShard:
    """A remote shard's stand-in (:class:`lsr.index.shards.RemoteShard`): searches its index, or fails
    while ``down`` (a dead replica)."""

    timeout_s = 1.0

    def __init__(self, index):
        self.index, self.down = index, False
        self.name, self.calls = index.path.name, 0

    def _answer(self, call) -> Future:
        self.calls += 1
        future: Future = Future()
        if self.down:
            future.set_exception(TimeoutError("replica down"))
        else:
            future.set_result(call())
        return future

    def ping(self) -> Future:
        return self._answer(lambda: True)

    def submit(self, queries, k, kwargs) -> Future:
        return self._answer(lambda: self.index.search_batch(queries, k=k, **kwargs))
