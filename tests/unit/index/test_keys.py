"""DocKeys (an index's external ids, decoded when read) reads as the list of strings it replaces."""

from __future__ import annotations

import random

import numpy as np
import pytest

from lsr.index.keys import DocKeys

ALPHABET = "abcXYZ019-_#:/.é中😀 \t"


def random_ids(rng: random.Random, n: int) -> list[str]:
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 12))).strip() or "x" for _ in range(n)]


@pytest.mark.parametrize("seed", range(5))
def test_reads_as_the_list_of_lines(seed):
    rng = random.Random(seed)
    ids = random_ids(rng, rng.randint(0, 300))
    keys = DocKeys("".join(f"{i}\n" for i in ids).encode("utf-8"))
    assert len(keys) == len(ids)
    assert list(keys) == ids and keys == ids and ids == keys
    for _ in range(50):
        if ids:
            j = rng.randrange(-len(ids), len(ids))
            assert keys[j] == ids[j]
        a, b, step = rng.randint(-5, len(ids) + 5), rng.randint(-5, len(ids) + 5), rng.choice([1, 2, -1, 3])
        assert keys[a:b:step] == ids[a:b:step]
    assert keys == DocKeys("".join(f"{i}\n" for i in ids).encode("utf-8"))
    assert keys != [*ids, "extra"] and keys != "".join(ids)


def test_edges():
    assert len(DocKeys(b"")) == 0 and list(DocKeys(b"")) == []
    assert list(DocKeys(b"a\nb")) == ["a", "b"]  # a last line without its newline
    assert list(DocKeys(b"a\n\nb\n")) == ["a", "", "b"]
    with pytest.raises(IndexError):
        DocKeys(b"a\n")[1]
    with pytest.raises(IndexError):
        DocKeys(b"a\n")[-2]
    with pytest.raises(UnicodeDecodeError):
        DocKeys(b"\xff\n")
    with pytest.raises(TypeError):
        hash(DocKeys(b"a\n"))
    big = DocKeys("".join(f"doc-{i}\n" for i in range(10_000)).encode())
    assert big.nbytes < 15 * 10_000  # bytes and one offset a doc, not a string object each
    assert big.index("doc-9999") == 9999 and "doc-5" in big
    assert big[np.int64(7)] == "doc-7" and big[np.int32(-1)] == "doc-9999"  # the kernels' doc ids
