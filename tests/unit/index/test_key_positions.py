"""ChainedKeys (several id sequences read as one) reads as the concatenated list; KeyPositions (an id's
position without a dict) answers as ``{key: i for i, key in enumerate(keys)}`` does, collisions and
repeated ids included."""

from __future__ import annotations

import random

import numpy as np
import pytest

from lsr.index import keys as keys_module
from lsr.index.keys import ChainedKeys, DocKeys, KeyPositions, key_hash, key_hashes

ALPHABET = "abcXYZ019-_#:/.é中😀 \t"


def random_ids(rng: random.Random, n: int) -> list[str]:
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 10))).strip() for _ in range(n)]


def doc_keys(ids: list[str]) -> DocKeys:
    return DocKeys("".join(f"{i}\n" for i in ids).encode("utf-8"))


def random_parts(rng: random.Random, ids: list[str]) -> list[DocKeys | list[str]]:
    """``ids`` cut at random places (empty parts included), each part a DocKeys or a list."""
    cuts = sorted(rng.randint(0, len(ids)) for _ in range(rng.randint(0, 6)))
    bounds = [0, *cuts, len(ids)]
    return [rng.choice([doc_keys, list])(ids[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


@pytest.mark.parametrize("seed", range(8))
def test_chained_reads_as_the_concatenated_list(seed):
    rng = random.Random(seed)
    ids = random_ids(rng, rng.randint(0, 200))
    keys = ChainedKeys(random_parts(rng, ids))
    assert len(keys) == len(ids)
    assert list(keys) == ids and keys == ids and ids == keys and keys == doc_keys(ids)
    for _ in range(60):
        if ids:
            j = rng.randrange(-len(ids), len(ids))
            assert keys[j] == ids[j] and keys[np.int64(j)] == ids[j]
        a, b, step = rng.randint(-5, len(ids) + 5), rng.randint(-5, len(ids) + 5), rng.choice([1, -1, -3, 4])
        assert keys[a:b:step] == ids[a:b:step]
    assert keys != [*ids, "extra"] and keys != "".join(ids)
    for bad in (len(ids), -len(ids) - 1, len(ids) + 7):
        with pytest.raises(IndexError, match=f"doc {bad} out of range for {len(ids)} docs"):
            keys[bad]


def test_chained_edges():
    assert len(ChainedKeys([])) == 0 and list(ChainedKeys([[], doc_keys([])])) == []
    with pytest.raises(IndexError, match="doc 0 out of range for 0 docs"):
        ChainedKeys([])[0]
    with pytest.raises(TypeError):
        ChainedKeys([["a"]])["a"]  # type: ignore[call-overload]
    assert repr(ChainedKeys([["a"], ["b", "c"]])) == "ChainedKeys(['a', 'b', 'c'], n=3)"


def test_the_hash_kernel_matches_the_reference():
    rng = random.Random(3)
    ids = random_ids(rng, 500)
    want = np.array([key_hash(i.encode("utf-8")) for i in ids], dtype=np.uint64)
    assert (doc_keys(ids).hashes() == want).all()
    assert (key_hashes(ids) == want).all()
    assert (key_hashes(ChainedKeys(random_parts(rng, ids))) == want).all()
    assert key_hash(b"") == 0xCBF29CE484222325 and key_hash(b"a") == 0xAF63DC4C8601EC8C  # FNV-1a's vectors


def check_against_dict(keys, probes):
    want = {key: i for i, key in enumerate(keys)}
    got = KeyPositions(keys)
    assert len(got) == len(keys)
    assert got.find(probes).tolist() == [want.get(key, -1) for key in probes]
    assert got.find([]).dtype == np.int64 and len(got.find([])) == 0
    for key in probes:
        assert got.get(key) == want.get(key), key
        assert got.get(key, -1) == want.get(key, -1)
        assert (key in got) == (key in want)
        if key in want:
            assert got[key] == want[key]
        else:
            with pytest.raises(KeyError):
                got[key]


@pytest.mark.parametrize("seed", range(6))
def test_positions_answer_as_the_dict(seed):
    rng = random.Random(seed)
    ids = random_ids(rng, rng.randint(0, 300))
    ids += [rng.choice(ids) for _ in range(rng.randint(0, 20))] if ids else []  # repeated ids: last wins
    rng.shuffle(ids)
    probes = [*ids, *random_ids(rng, 50), "never-there"]
    check_against_dict(doc_keys(ids), probes)
    check_against_dict(ChainedKeys(random_parts(rng, ids)), probes)
    check_against_dict(ids, probes)


@pytest.mark.parametrize("buckets", [1, 4])
def test_positions_under_hash_collisions(monkeypatch, buckets):
    """Every id in one of ``buckets`` hashes: the ids are told apart by comparing them."""
    monkeypatch.setattr(keys_module, "key_hash", lambda data: key_hash(data) % buckets)
    monkeypatch.setattr(keys_module, "key_hashes", lambda keys: key_hashes(list(keys)) % np.uint64(buckets))
    rng = random.Random(buckets)
    ids = random_ids(rng, 120)
    ids += ids[:10]
    check_against_dict(doc_keys(ids), [*ids, *random_ids(rng, 30)])


def test_positions_edges():
    check_against_dict([], ["", "a"])
    check_against_dict(doc_keys(["", "a", ""]), ["", "a", "b"])
    positions = KeyPositions(["a"])
    assert positions.get(1) is None and 1 not in positions and positions.get(None, 7) == 7  # not a str
    assert positions.find([1, "a", b"a", ""]).tolist() == [-1, 0, -1, -1]
    assert positions.nbytes == 8 + 4
