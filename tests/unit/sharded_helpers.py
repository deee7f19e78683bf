"""Shared by the sharded-index tests: a small corpus with tied documents, its queries, and a stand-in for
a remote shard that can go down."""

from __future__ import annotations

import json
import random
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
    """A remote shard's stand-in: searches its index, or raises while ``down`` (a dead replica)."""

    def __init__(self, index):
        self.index, self.down = index, False

    def _check(self):
        if self.down:
            raise TimeoutError("replica down")

    def ping(self):
        self._check()

    def search(self, q_terms, q_weights, k=10, **kwargs):
        self._check()
        return self.index.search(q_terms, q_weights, k=k, **kwargs)

    def search_batch(self, queries, k=10, **kwargs):
        self._check()
        return self.index.search_batch(queries, k=k, **kwargs)
