"""Every single-byte flip (xor 0xff) and every truncation of every file of a tiny index is refused on open,
found by ``lsr verify``, or harmless (the same ids, scores and texts); never a crash or a wrong answer.
The sweep with more patterns: ``python -m benchmarks.corruption``."""

from __future__ import annotations

import os
from collections import Counter

from benchmarks.corruption import answers, build_tiny, open_all, sweep
from lsr.verify import verify


def test_tiny_index_is_sound_and_verifies(tmp_path):
    path = build_tiny(tmp_path / "tiny")
    assert verify(path).ok
    assert len(answers(open_all(path))) == 30


def test_every_flip_and_truncation_is_detected_or_harmless(tmp_path):
    path = build_tiny(tmp_path / "tiny")
    stride = 13 if os.environ.get("NUMBA_DISABLE_JIT") == "1" else 1  # kernels as Python: a sample
    result = sweep(path, [0xFF], stride=stride)
    assert result["problems"] == []
    total = Counter()
    for counts in result["files"].values():
        total.update(counts)
    assert total["wrong"] == 0 and total["raised"] == 0
    assert total["flip"] == total["truncate"] > 5000 // stride  # every byte of every file, each way
    assert total["open"] + total["verify"] + total["harmless"] == total["flip"] + total["truncate"]
    assert verify(path).ok  # every file restored
