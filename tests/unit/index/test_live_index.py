"""A live index (segments + manifest + tombstones): equivalence with a fresh index of the surviving
documents over seeded random sequences of adds, updates, deletes and merges; the manifest, lock,
cleanup and bad-input cases."""

from __future__ import annotations

import json

import numpy as np
import pytest
from corpora import random_corpus
from live_util import fresh_index, ranked, rows_of

from lsr.index import BuildOptions, Index, SparseBatch, build_index
from lsr.index.io import ArtifactError
from lsr.index.manifest import WriteLockError, read_manifest
from lsr.index.segments import SegmentedIndex, open_index
from lsr.index.writer import IndexWriter, MergePolicy, VocabularyError

N_TERMS = 25
VOCAB = [f"t{i}" for i in range(N_TERMS)]
EQUIVALENCE_SEEDS = range(12)


def _base(tmp_path, rng, impact_dtype: str, n_docs: int = 30):
    corpus = random_corpus(rng, n_docs=n_docs, n_terms=N_TERMS, max_nnz=6, integer=False)
    ids = [f"d{i}" for i in range(n_docs)]
    out = tmp_path / "live"
    build_index(
        lambda: [corpus], N_TERMS, ids, VOCAB, out, BuildOptions(impact_dtype=impact_dtype, block_size=4)
    )
    return out, dict(zip(ids, rows_of(corpus), strict=True))


def _random_op(w: IndexWriter, rng: np.random.Generator, docs: dict, next_id: list[int]) -> None:
    """One random write, applied to the index and to the model ``docs`` (survivors in order)."""
    op = rng.choice(["add", "add", "delete", "merge", "policy"])
    if op == "add":
        n = int(rng.integers(1, 8))
        batch = random_corpus(rng, n_docs=n, n_terms=N_TERMS, max_nnz=6, integer=False)
        old = list(docs)
        ids = []
        for _ in range(n):
            if old and rng.random() < 0.4:
                ids.append(old.pop(int(rng.integers(len(old)))))  # an update
            else:
                ids.append(f"n{next_id[0]}")
                next_id[0] += 1
        w.add(batch, ids, VOCAB)
        for key, row in zip(ids, rows_of(batch), strict=True):
            docs.pop(key, None)
            docs[key] = row
    elif op == "delete":
        pool = list(docs) + ["unknown-1"]
        ids = list(rng.choice(pool, size=min(len(pool), int(rng.integers(1, 6))), replace=False))
        w.delete(ids)
        for key in ids:
            docs.pop(key, None)
    elif op == "merge":
        start = int(rng.integers(0, len(w.segments)))
        w.merge(start, int(rng.integers(start + 1, len(w.segments) + 1)))
    else:
        w.maybe_merge()


def _assert_equivalent(path, docs, tmp_path, options, rng, step) -> None:
    live = open_index(path)
    fresh = fresh_index(tmp_path / f"fresh-{step}", docs, VOCAB, options)
    try:
        for _ in range(8):
            m = int(rng.integers(1, 6))
            terms = rng.choice(N_TERMS, size=m, replace=False)
            weights = rng.uniform(0.2, 2.0, m).astype(np.float32)
            for k in (1, 5, 100):
                for mode in ("exact", "safe"):
                    got_ids, got_scores = ranked(live, terms, weights, k, mode)
                    ref_ids, ref_scores = ranked(fresh, terms, weights, k, mode)
                    assert got_ids == ref_ids, (step, mode, k)
                    np.testing.assert_array_equal(got_scores, ref_scores)
        _assert_batch_equivalent(live, fresh, rng)
    finally:
        if isinstance(live, SegmentedIndex):
            live.close()


def _assert_batch_equivalent(live, fresh, rng) -> None:
    rows = [(rng.choice(N_TERMS, size=3, replace=False), rng.uniform(0.2, 2.0, 3)) for _ in range(6)]
    queries = SparseBatch.from_rows(rows)
    for mode in ("exact", "safe"):
        got = live.search_batch(queries, k=5, threads=1, mode=mode)
        for i, result in enumerate(got):
            ref_ids, ref_scores = ranked(fresh, *queries.row(i), 5, mode)
            assert [live.doc_keys[d] for d in result.docs.tolist()] == ref_ids
            np.testing.assert_array_equal(np.asarray(result.scores, np.float32), ref_scores)


@pytest.mark.parametrize("seed", EQUIVALENCE_SEEDS)
@pytest.mark.parametrize("impact_dtype", ["float32", "uint8"])
def test_random_writes_equal_a_fresh_index(tmp_path, seed, impact_dtype):
    """Adds, updates, deletes, merges and policy merges: after each write, exact and safe top-k (ids and
    scores, ties included) equal those of a fresh index of the surviving docs (same quantization
    scale for uint8)."""
    rng = np.random.default_rng(seed)
    path, docs = _base(tmp_path, rng, impact_dtype)
    scale = float(Index.load(path).scale) if impact_dtype == "uint8" else None
    options = BuildOptions(impact_dtype=impact_dtype, block_size=4, scale=scale)
    next_id = [0]
    with IndexWriter(path, MergePolicy(max_segments=3, max_deleted=0.5)) as w:
        for step in range(10):
            _random_op(w, rng, docs, next_id)
            assert w.n_live == len(docs)
            _assert_equivalent(path, docs, tmp_path, options, rng, step)
        w.merge()
        assert len(w.segments) == 1
    _assert_equivalent(path, docs, tmp_path, options, rng, "final")


def test_plain_index_opens_unchanged(tmp_path):
    rng = np.random.default_rng(0)
    path, _ = _base(tmp_path, rng, "uint8")
    index = open_index(path)
    assert type(index) is Index and read_manifest(path) is None
    with IndexWriter(path):
        pass  # opening a writer commits nothing
    assert read_manifest(path) is None and type(open_index(path)) is Index


def test_update_delete_unknown_and_generations(tmp_path):
    rng = np.random.default_rng(1)
    path, _ = _base(tmp_path, rng, "uint8", n_docs=10)
    batch = random_corpus(rng, n_docs=2, n_terms=N_TERMS, max_nnz=4, integer=False)
    with IndexWriter(path) as w:
        added = w.add(batch, ["d3", "new"], VOCAB)
        assert (added.added, added.updated, added.generation) == (["new"], ["d3"], 1)
        gone = w.delete(["d4", "nope"])
        assert (gone.deleted, gone.unknown, gone.generation) == (["d4"], ["nope"], 2)
        nothing = w.delete(["nope"])
        assert (nothing.deleted, nothing.unknown, nothing.generation) == ([], ["nope"], 2)
    index = open_index(path)
    assert isinstance(index, SegmentedIndex) and index.generation == 2 and index.n_live == 10
    assert sorted(index.doc_keys[d] for d in np.flatnonzero(index.live_mask)) == sorted(
        [f"d{i}" for i in range(10) if i != 4] + ["new"]
    )


def test_second_writer_gets_a_clear_error(tmp_path):
    rng = np.random.default_rng(2)
    path, _ = _base(tmp_path, rng, "uint8", n_docs=5)
    with IndexWriter(path), pytest.raises(WriteLockError, match=r"pid \d+"), IndexWriter(path):
        pass
    with IndexWriter(path):  # released
        pass


def test_bad_manifests_are_refused_and_left_intact(tmp_path):
    rng = np.random.default_rng(3)
    path, _ = _base(tmp_path, rng, "uint8", n_docs=5)
    with IndexWriter(path) as w:
        w.delete(["d1"])
    manifest = path / "segments_1.json"
    good = manifest.read_text()
    manifest.write_text(good[: len(good) // 2])
    with pytest.raises(ArtifactError, match="truncated or corrupt"):
        open_index(path)
    with pytest.raises(ArtifactError, match="truncated or corrupt"), IndexWriter(path):
        pass
    assert manifest.read_text() == good[: len(good) // 2]  # nothing was rewritten
    manifest.write_text(json.dumps({**json.loads(good), "format_version": 99}))
    with pytest.raises(ArtifactError, match="version 99"):
        open_index(path)


def test_truncated_segment_is_refused(tmp_path):
    rng = np.random.default_rng(4)
    path, _ = _base(tmp_path, rng, "uint8", n_docs=8)
    batch = random_corpus(rng, n_docs=3, n_terms=N_TERMS, max_nnz=4, integer=False)
    with IndexWriter(path) as w:
        w.add(batch, ["a", "b", "c"], VOCAB)
    impacts = path / "seg-000001" / "impacts.npy"
    impacts.write_bytes(impacts.read_bytes()[:-3])
    with pytest.raises(ArtifactError):
        open_index(path)


def test_vectors_from_another_vocabulary_are_refused(tmp_path):
    rng = np.random.default_rng(5)
    path, _ = _base(tmp_path, rng, "uint8", n_docs=5)
    batch = random_corpus(rng, n_docs=2, n_terms=N_TERMS, max_nnz=4, integer=False)
    with IndexWriter(path) as w:
        with pytest.raises(VocabularyError, match="another vocabulary"):
            w.add(batch, ["a", "b"], [f"x{i}" for i in range(N_TERMS)])
        with pytest.raises(VocabularyError, match="fixed vocabulary"):
            w.add(batch, ["a", "b"], [*VOCAB, "extra"])
        with pytest.raises(ValueError, match="repeat"):
            w.add(batch, ["a", "a"], VOCAB)
        with pytest.raises(ValueError, match="without whitespace"):
            w.add(batch, ["a b", "c"], VOCAB)
        assert w.generation == 0
    assert read_manifest(path) is None


def test_growing_vocabulary_drops_unknown_query_terms_in_older_segments(tmp_path):
    rng = np.random.default_rng(6)
    path, _ = _base(tmp_path, rng, "float32", n_docs=6)
    vocab = [*VOCAB, "fresh"]
    batch = SparseBatch.from_rows([([N_TERMS], [2.0]), ([0, N_TERMS], [1.0, 1.0])])
    with IndexWriter(path) as w:
        w.add(batch, ["x", "y"], vocab, grow_vocab=True)
    index = open_index(path)
    assert index.n_terms == N_TERMS + 1 and index.vocab[-1] == "fresh"
    result = index.search([N_TERMS], [1.0], 5, mode="safe")
    assert [index.doc_keys[d] for d in result.docs] == ["x", "y"]


def test_merge_removes_old_files_after_commit_and_not_while_held(tmp_path):
    rng = np.random.default_rng(7)
    path, _ = _base(tmp_path, rng, "uint8", n_docs=8)
    batch = random_corpus(rng, n_docs=3, n_terms=N_TERMS, max_nnz=4, integer=False)
    with IndexWriter(path) as w:
        w.add(batch, ["a", "b", "c"], VOCAB)
    reader = open_index(path)
    assert isinstance(reader, SegmentedIndex)
    with IndexWriter(path) as w:
        w.merge()  # generation 2: seg-000002 only
        w.delete(["a"])  # generation 3: generation 1's files are unreferenced, but the reader holds them
    assert (path / "seg-000001").is_dir() and (path / "meta.json").is_file()
    assert [p.name.split("-")[1] for p in (path / "leases").glob("*.json")] == ["1"]
    assert len(reader.search([0, 1, 2], [1.0, 1.0, 1.0], 5)) > 0  # still searchable
    reader.close()
    with IndexWriter(path):  # the next writer removes them
        pass
    names = sorted(p.name for p in path.iterdir())
    assert names == [
        "del-seg-000002-g3.npy",
        "leases",
        "seg-000002",
        "segments_2.json",
        "segments_3.json",
        "write.lock",
    ]


def test_stray_files_are_removed_on_writer_open(tmp_path):
    rng = np.random.default_rng(8)
    path, _ = _base(tmp_path, rng, "uint8", n_docs=8)
    with IndexWriter(path) as w:
        w.delete(["d0"])
    stray = {"seg-000009", ".seg-000010.tmp-abc", ".segments_2.json.tmp", "del-seg-000009-g2.npy"}
    stray |= {".add-1234abcd", "..add-1234abcd.tmp-ab12", ".merge-xyz"}
    for name in stray:
        target = path / name
        target.mkdir() if not name.endswith((".tmp", ".npy")) else target.write_text("x")
    with IndexWriter(path):
        pass
    names = {p.name for p in path.iterdir()}
    assert not names & stray
    assert "meta.json" in names  # the plain index is still segment "."


def test_merge_policy(tmp_path):
    rng = np.random.default_rng(9)
    path, _ = _base(tmp_path, rng, "uint8", n_docs=10)
    with IndexWriter(path, MergePolicy(max_segments=3, max_deleted=0.25)) as w:
        for i in range(4):
            batch = random_corpus(rng, n_docs=2, n_terms=N_TERMS, max_nnz=4, integer=False)
            w.add(batch, [f"a{i}", f"b{i}"], VOCAB)
        assert len(w.segments) == 5
        w.maybe_merge()
        assert len(w.segments) == 3 and w.n_live == 18
        w.delete(["d0", "d1", "d2"])
        w.maybe_merge()  # 30% of segment "." deleted: rewritten alone
        assert [e.n_deleted for e in w.manifest.segments] == [0, 0, 0] and w.n_live == 15


def test_all_deleted_then_merged(tmp_path):
    rng = np.random.default_rng(10)
    path, docs = _base(tmp_path, rng, "uint8", n_docs=6)
    with IndexWriter(path) as w:
        w.delete(list(docs))
        assert len(open_index(path).search([0, 1, 2, 3], [1, 1, 1, 1], 10, mode="safe")) == 0
        w.merge()
    index = open_index(path)
    assert index.n_docs == 0 and index.n_terms == N_TERMS
    assert len(index.search([0, 1], [1.0, 1.0], 10)) == 0


def test_merging_segments_with_nothing_live_drops_them(tmp_path):
    rng = np.random.default_rng(11)
    path, docs = _base(tmp_path, rng, "uint8", n_docs=6)
    batch = random_corpus(rng, n_docs=2, n_terms=N_TERMS, max_nnz=4, integer=False)
    with IndexWriter(path) as w:
        w.add(batch, ["x", "y"], VOCAB)
        w.delete(list(docs))
        result = w.merge(0, 1)
        assert result.merged == ["."] and [e.name for e in w.manifest.segments] == ["seg-000001"]
        assert w.n_live == 2


def test_a_reader_in_another_process_keeps_its_files_until_it_exits(tmp_path):
    """A lease (leases/PID-GEN-ID.json) of a live process keeps its generation's files through merges;
    once that process is gone, the next writer removes the lease and the files."""
    import subprocess
    import sys

    rng = np.random.default_rng(11)
    path, _ = _base(tmp_path, rng, "uint8", n_docs=8)
    with IndexWriter(path) as w:
        w.add(random_corpus(rng, n_docs=3, n_terms=N_TERMS, max_nnz=4, integer=False), ["a", "b", "c"], VOCAB)
    code = (
        "import sys; from lsr.index.segments import open_index; r = open_index(sys.argv[1]); "
        "print(r.generation, flush=True); sys.stdin.read(); print(len(r.search([0, 1, 2], [1, 1, 1], 5)))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline().strip() == "1"
    with IndexWriter(path) as w:
        w.merge()
        w.delete(["a"])
        w.delete(["b"])  # generation 4: generation 1 is two commits old, held only by the lease
    assert (path / "seg-000001").is_dir() and (path / "segments_1.json").is_file()
    out, _ = proc.communicate("")
    assert int(out.strip()) > 0  # the reader searched its generation to the end
    with IndexWriter(path):
        pass
    assert not (path / "seg-000001").exists() and not list((path / "leases").glob("*.json"))


def test_an_updated_id_names_its_newest_copy(tmp_path):
    """The tombstoned copies stay in ``doc_keys``; the searcher's id lookup answers the last one (the
    live one), as the dict it replaces did."""
    from lsr.searcher import Searcher

    rng = np.random.default_rng(5)
    path, _ = _base(tmp_path, rng, "uint8", n_docs=10)
    with IndexWriter(path, MergePolicy(max_segments=1000, max_deleted=1.0)) as w:
        for ids in (["d3", "x"], ["d3", "d7"]):
            w.add(random_corpus(rng, n_docs=2, n_terms=N_TERMS, max_nnz=4, integer=False), ids, VOCAB)
    index = open_index(path)
    assert isinstance(index, SegmentedIndex) and len(index.segments) == 3
    keys = index.doc_keys
    assert list(keys) == [f"d{i}" for i in range(10)] + ["d3", "x", "d3", "d7"]
    positions = Searcher(index).doc_positions
    want = {key: i for i, key in enumerate(keys)}
    assert all(positions[key] == i for key, i in want.items()) and positions["d3"] == 12
    assert index.live_mask[[positions[key] for key in want]].all()
    assert positions.get("nope") is None
