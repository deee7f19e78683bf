"""A live generation's merged block maxima in their memory-mapped bounds file (lsr.index.merged_file):
the same arrays and the same search results, bit for bit, as the MergedBounds built in memory, on
seeded random live indexes (several segment counts, deletions, uint8 / float32 impacts, every plan);
a generation without the file (an older lsr's) builds it; a truncated, corrupt or foreign file is
rebuilt, never searched; a read-only directory or a full disk keeps the maxima in memory; racing
readers and a reader killed while writing leave a sound file or none; the writer removes the bounds
files of segments that are gone."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest
from corpora import random_corpus
from live_util import NO_POLICY, PLANS, plan_bounds, random_live_index

import lsr.index.merged_file as merged_file
from lsr.index import SparseBatch
from lsr.index import segments as segments_module
from lsr.index.blockmax import MERGED_ARRAYS
from lsr.index.merged_file import BOUNDS_PREFIX, load_bounds
from lsr.index.segments import SegmentedIndex
from lsr.index.writer import IndexWriter


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch):
    """Each test opens generations without the MergedBounds of earlier tests (same paths, new dirs)."""
    monkeypatch.setattr(segments_module, "_MERGED", weakref.WeakValueDictionary())


def _reopen(path: Path, plan: str, mmap: bool = True) -> SegmentedIndex:
    """A reader that shares no MergedBounds with the ones before it."""
    segments_module._MERGED = weakref.WeakValueDictionary()
    index = SegmentedIndex.open(path, mmap=mmap)
    return plan_bounds(index, plan)


def _queries(rng, n_terms: int, n: int = 8) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for _ in range(n):
        m = int(rng.integers(1, 7))
        terms = np.sort(rng.choice(n_terms, size=min(m, n_terms), replace=False)).astype(np.int32)
        out.append((terms, rng.uniform(0.5, 3.0, size=len(terms)).astype(np.float32)))
    return out


def _results(index: SegmentedIndex, queries) -> list[tuple[np.ndarray, np.ndarray]]:
    """Safe and approx top-k (one query, and batches) of every query, for k 1, 5 and 1000."""
    out = []
    for k in (1, 5, 1000):
        for mode, alpha in (("safe", 1.0), ("approx", 0.7)):
            for terms, weights in queries:
                got = index.search(terms, weights, k, mode=mode, alpha=alpha)
                out.append((got.docs, got.scores))
            batch = index.search_batch(SparseBatch.from_rows(queries), k=k, threads=2, mode=mode, alpha=alpha)
            out += [(got.docs, got.scores) for got in batch]
    return out


def _assert_same(a, b) -> None:
    assert len(a) == len(b)
    for (docs_a, scores_a), (docs_b, scores_b) in zip(a, b, strict=True):
        np.testing.assert_array_equal(docs_a, docs_b)
        assert scores_a.dtype == scores_b.dtype
        np.testing.assert_array_equal(scores_a.view(np.uint32), scores_b.view(np.uint32))


def _bounds_dirs(path: Path) -> list[Path]:
    return sorted(path.glob(f"{BOUNDS_PREFIX}*"))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("impact_dtype", ["uint8", "float32"])
@pytest.mark.parametrize("n_segments", [2, 4, 9])
@pytest.mark.parametrize("plan", PLANS)
def test_mapped_bounds_equal_the_in_memory_ones(tmp_path, seed, impact_dtype, n_segments, plan):
    """The first reader builds the bounds file, a second maps it; both equal an index opened with
    mmap=False (MergedBounds in memory, as before): every array (dtype, bytes) and every result."""
    rng = np.random.default_rng(seed)
    live = random_live_index(tmp_path, rng, impact_dtype, n_segments)
    path, queries = live.path, _queries(rng, live.n_terms)
    memory = _reopen(path, plan, mmap=False)
    expected = memory.merged_bounds
    assert expected.path is None and not _bounds_dirs(path)
    want = _results(memory, queries)
    for attempt in ("built", "mapped"):
        index = _reopen(path, plan)
        got = index.merged_bounds
        assert got.path is not None and got.path.parent == path and _bounds_dirs(path) == [got.path]
        mapped = isinstance(got.sp_block, np.memmap) or isinstance(got.sp_block.base, np.memmap)
        assert mapped and not got.sp_block.flags.writeable
        assert got.ratio == expected.ratio
        for name in MERGED_ARRAYS:
            a, b = getattr(got, name), getattr(expected, name)
            assert a.dtype == b.dtype and a.shape == b.shape, name
            assert a.tobytes() == b.tobytes(), (attempt, name)
        _assert_same(_results(index, queries), want)
        index.close()
    memory.close()


def test_a_generation_without_a_bounds_file_builds_it(tmp_path):
    """A live index written before bounds files (none in its directory) opens and searches; its first
    block-max search writes the file, its second reader maps it (the file is not rewritten)."""
    rng = np.random.default_rng(5)
    index = random_live_index(tmp_path, rng, "uint8", 5)
    assert not _bounds_dirs(index.path)
    queries = _queries(rng, index.n_terms)
    first = _results(index, queries)
    (directory,) = _bounds_dirs(index.path)
    stamp = (directory / "meta.json").stat().st_mtime_ns
    again = _reopen(index.path, "merged")
    _assert_same(_results(again, queries), first)
    assert (directory / "meta.json").stat().st_mtime_ns == stamp
    for terms, weights in queries:
        exact = again.search(terms, weights, 5, mode="exact")
        safe = again.search(terms, weights, 5, mode="safe")
        np.testing.assert_array_equal(exact.docs, safe.docs)
        np.testing.assert_array_equal(exact.scores, safe.scores)


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x5A
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-3])


def _foreign_key(directory: Path) -> None:
    meta_path = directory / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["key"]["n_terms"] += 1
    from lsr.index.checksum import json_crc32

    meta["meta_crc32"] = json_crc32(meta)
    meta_path.write_text(json.dumps(meta))


DAMAGE = {
    "flipped sp_max": lambda d: _flip(d / "sp_max.npy"),
    "flipped dn_max": lambda d: _flip(d / "dn_max.npy"),
    "flipped sp_start": lambda d: _flip(d / "sp_start.npy"),
    "truncated sp_block": lambda d: _truncate(d / "sp_block.npy"),
    "missing dn_off": lambda d: (d / "dn_off.npy").unlink(),
    "missing meta": lambda d: (d / "meta.json").unlink(),
    "garbage meta": lambda d: (d / "meta.json").write_text("{not json"),
    "foreign key": _foreign_key,
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_bounds_file_is_rebuilt_never_searched(tmp_path, caplog, damage):
    """A bounds file that fails its checksum, its sizes, its format or its key: the reader logs a warning
    naming it and rebuilds it (sound again afterwards); its results equal the in-memory ones."""
    rng = np.random.default_rng(11)
    index = random_live_index(tmp_path, rng, "uint8", 6)
    index.merged_bounds_mb = float("inf")
    queries = _queries(rng, index.n_terms)
    want = _results(_reopen(index.path, "merged", mmap=False), queries)
    _ = index.merged_bounds
    (directory,) = _bounds_dirs(index.path)
    key = json.loads((directory / "meta.json").read_text())["key"]
    index.close()
    del index
    DAMAGE[damage](directory)
    with caplog.at_level(logging.WARNING, logger="lsr.index.merged_file"):
        again = _reopen(directory.parent, "merged")
        got = _results(again, queries)
    assert any(str(directory) in r.getMessage() and "rebuilding" in r.getMessage() for r in caplog.records)
    _assert_same(got, want)
    assert again.merged_bounds.path == directory and load_bounds(directory, key) is not None
    assert not [p for p in directory.parent.iterdir() if p.name.startswith(".bounds-")]


def test_load_bounds_names_the_damaged_file(tmp_path):
    """What the warning says: the damaged file and what is wrong with it."""
    index = random_live_index(tmp_path, np.random.default_rng(12), "uint8", 4)
    index.merged_bounds_mb = float("inf")
    directory = index.merged_bounds.path
    key = json.loads((directory / "meta.json").read_text())["key"]
    _flip(directory / "sp_len.npy")
    with pytest.raises(merged_file.CorruptArtifactError, match=r"sp_len\.npy fails its checksum"):
        load_bounds(directory, key)
    _truncate(directory / "sp_len.npy")
    with pytest.raises(merged_file.CorruptArtifactError, match=r"sp_len\.npy"):
        load_bounds(directory, key)


def _read_only(monkeypatch) -> None:
    """The index directory cannot be written (root ignores chmod, so the first write fails as it would)."""

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(merged_file, "atomic_directory", refuse)


@pytest.mark.parametrize("failure", ["read-only", "disk full"])
def test_an_unwritable_directory_keeps_the_bounds_in_memory(tmp_path, monkeypatch, failure):
    """A read-only index directory or a full disk (posix_fallocate fails): the maxima are built in
    memory, the results unchanged, nothing left behind; a sound file already there is still mapped."""
    rng = np.random.default_rng(21)
    live = random_live_index(tmp_path, rng, "float32", 5)
    path, queries = live.path, _queries(rng, live.n_terms)
    want = _results(_reopen(path, "merged", mmap=False), queries)
    if failure == "read-only":
        _read_only(monkeypatch)
    else:

        def full(fd, offset, length):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "posix_fallocate", full)
    index = _reopen(path, "merged")
    _assert_same(_results(index, queries), want)
    assert index.merged_bounds.path is None
    assert not [p for p in path.iterdir() if "bounds-" in p.name]
    monkeypatch.undo()
    _ = _reopen(path, "merged").merged_bounds  # written now
    _read_only(monkeypatch)
    mapped = _reopen(path, "merged")
    assert mapped.merged_bounds.path is not None
    _assert_same(_results(mapped, queries), want)


def test_racing_writes_of_one_bounds_file(tmp_path):
    """Two readers writing the same generation's file: the later rename replaces the earlier file, whose
    arrays stay valid for the reader that mapped them; both equal the in-memory maxima."""
    rng = np.random.default_rng(31)
    path = random_live_index(tmp_path, rng, "uint8", 6).path
    first = _reopen(path, "merged").merged_bounds
    expected = _reopen(path, "merged", mmap=False).merged_bounds
    directory = first.path
    key = json.loads((directory / "meta.json").read_text())["key"]
    second = merged_file.write_bounds(directory, key, lambda allocate: _rebuild(path, allocate))
    for merged in (first, second):
        for name in MERGED_ARRAYS:
            assert getattr(merged, name).tobytes() == getattr(expected, name).tobytes()
    assert _bounds_dirs(path) == [directory] and load_bounds(directory, key) is not None


def _rebuild(path: Path, allocate):
    index = _reopen(path, "merged", mmap=False)
    chosen = index.bound_plan[0]
    seg_int = index._multi[1]
    total = int(seg_int[-1, 3] + seg_int[-1, 1])
    return segments_module.MergedBounds.build(
        [index.segments[i].blockmax for i in chosen],
        [index.segments[i].term_ptr for i in chosen],
        chosen,
        seg_int[chosen, 3],
        total,
        index.n_terms,
        allocate,
    )


READER = """
import os, signal, sys
import lsr.index.merged_file as mf
from lsr.index.segments import open_index
point = sys.argv[2]
def die(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)
if point == "arrays":
    real = mf._mapped_array
    calls = []
    def some(*a, **k):
        calls.append(1)
        if len(calls) == 6:
            die()
        return real(*a, **k)
    mf._mapped_array = some
elif point == "meta":
    mf.write_meta = die
elif point == "publish":
    import lsr.index.io as io
    real_replace = os.replace
    def swap(src, dst):
        real_replace(src, dst)
        if ".bounds-" in str(dst) and ".old-" in str(dst):
            die()
    io.os.replace = swap
index = open_index(sys.argv[1])
index.merged_bounds_mb = float("inf")
print(index.merged_bounds.path, flush=True)
"""


@pytest.mark.parametrize("point", ["arrays", "meta", "publish", "none"])
def test_a_reader_killed_while_writing_leaves_a_sound_index(tmp_path, point):
    """SIGKILL of a reader while it fills the arrays, before the meta is sealed, or between the swap of
    a new directory and the removal of the old one: the index opens and searches as before (equal to
    exact mode), the bounds file there (if any) is sound, and the next writer removes the leftovers."""
    rng = np.random.default_rng(41)
    path = random_live_index(tmp_path, rng, "uint8", 6).path
    if point == "publish":  # a bounds file to replace: a damaged one
        subprocess.run([sys.executable, "-c", READER, str(path), "none"], check=True)
        _flip(_bounds_dirs(path)[0] / "sp_max.npy")
    done = subprocess.run([sys.executable, "-c", READER, str(path), point], capture_output=True, text=True)
    assert done.returncode == (-signal.SIGKILL if point != "none" else 0), done.stderr
    index = _reopen(path, "merged")
    for terms, weights in _queries(rng, index.n_terms):
        exact = index.search(terms, weights, 10, mode="exact")
        safe = index.search(terms, weights, 10, mode="safe")
        np.testing.assert_array_equal(safe.docs, exact.docs)
        np.testing.assert_array_equal(safe.scores, exact.scores)
    key = json.loads((index.merged_bounds.path / "meta.json").read_text())["key"]
    assert load_bounds(index.merged_bounds.path, key) is not None
    index.close()
    with IndexWriter(path, NO_POLICY):
        pass
    assert not [p.name for p in path.iterdir() if p.name.startswith(".bounds-")]


def _add(path: Path, rng, ids: list[str]) -> None:
    with IndexWriter(path, NO_POLICY) as w:
        w.add(
            random_corpus(rng, n_docs=len(ids), n_terms=len(w.vocab), max_nnz=5, integer=True), ids, w.vocab
        )


def _searched_bounds(path: Path) -> Path:
    """The bounds file of the newest generation, built by a search."""
    index = _reopen(path, "merged")
    index.search(np.array([0, 1], np.int32), np.ones(2, np.float32), 5, mode="safe")
    return index.merged_bounds.path


def test_the_writer_keeps_the_bounds_files_of_the_kept_generations_only(tmp_path):
    """Adds searched in between leave at most two bounds files (the current and the previous generation's:
    a file of older segments is no leak); a delete-only commit shares its generation's file (same
    segments and blocks: one left); a merge's old file goes with the generation the writer stops keeping; a
    reader still mapping a removed file searches on."""
    rng = np.random.default_rng(51)
    path = random_live_index(tmp_path, rng, "uint8", 4).path
    files = [_searched_bounds(path)]
    reader = _reopen(path, "merged")
    reader.search(np.array([0, 1], np.int32), np.ones(2, np.float32), 5, mode="safe")
    for step in range(4):
        _add(path, rng, [f"a{step}-{i}" for i in range(3)])
        files.append(_searched_bounds(path))
        assert set(_bounds_dirs(path)) == set(files[-2:])
    with IndexWriter(path, NO_POLICY) as w:
        w.delete(["a3-0"])
    assert _searched_bounds(path) == files[-1] and _bounds_dirs(path) == [files[-1]]
    with IndexWriter(path, NO_POLICY) as w:
        w.merge(0, 3)
    merged = _searched_bounds(path)
    assert set(_bounds_dirs(path)) == {files[-1], merged}
    _add(path, rng, ["b0", "b1"])
    assert _bounds_dirs(path) == [merged]
    got = reader.search(np.array([0, 1], np.int32), np.ones(2, np.float32), 5, mode="safe")
    exact = reader.search(np.array([0, 1], np.int32), np.ones(2, np.float32), 5, mode="exact")
    np.testing.assert_array_equal(got.docs, exact.docs)
    reader.close()


def test_two_processes_racing_to_build_one_bounds_file(tmp_path):
    """Two reader processes whose first searches build the same bounds file at once: both finish, one
    sound directory is left, no temporary, and a third reader maps it."""
    rng = np.random.default_rng(61)
    path = random_live_index(tmp_path, rng, "uint8", 6).path
    procs = [
        subprocess.Popen([sys.executable, "-c", READER, str(path), "none"], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    printed = {proc.communicate()[0].strip() for proc in procs}
    assert [proc.returncode for proc in procs] == [0, 0]
    (directory,) = _bounds_dirs(path)
    assert printed == {str(directory)}
    assert not [p.name for p in path.iterdir() if p.name.startswith(".bounds-")]
    key = json.loads((directory / "meta.json").read_text())["key"]
    assert load_bounds(directory, key) is not None
    assert _reopen(path, "merged").merged_bounds.path == directory
