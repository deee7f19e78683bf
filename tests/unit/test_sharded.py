"""Sharded indexes (lsr index --shards): 4 shards answer exactly as one index (ids, scores and tie order)
for BM25, SPLADE and inference-free, exact and safe; a broken sharded directory is refused at open,
naming the shard; a shard whose remote backend fails makes a partial answer, not an error."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from sharded_helpers import QUERIES, FlakyShard, write_corpus

from lsr.cli import main
from lsr.index.io import ArtifactError
from lsr.index.search import SearchResult
from lsr.index.shards import ShardedIndex, merge_topk
from lsr.index.sparse import SparseBatch
from lsr.searcher import Plan, Queries, Searcher
from lsr.sharded import ShardedSearcher, shard_assignment, take_rows


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus") / "corpus.jsonl")


def build(corpus: Path, out: Path, encoder: str, shards: int | None = None, split: str = "hash") -> Path:
    args = ["index", "--corpus", str(corpus), "--encoder", encoder, "--out", str(out), "--quiet"]
    args += ["--shards", str(shards), "--shard-by", split] if shards else []
    assert main(args) == 0
    return out


def ranked(searcher: Searcher, mode: str, k: int = 40) -> list[list[tuple[str, float]]]:
    results = searcher.search_batch(Queries(texts=QUERIES), Plan(k=k, mode=mode))
    keys = searcher.index.doc_keys
    return [[(keys[d], s) for d, s in zip(r.docs.tolist(), r.scores.tolist(), strict=True)] for r in results]


ENCODERS = ["bm25", "splade", "inference-free"]


@pytest.mark.parametrize("encoder", ENCODERS)
def test_four_shards_equal_one_index(corpus, tmp_path, encoder):
    if encoder != "bm25":
        pytest.importorskip("torch")
    one = Searcher(build(corpus, tmp_path / "one", encoder))
    four = ShardedSearcher(build(corpus, tmp_path / "four", encoder, shards=4))
    assert len(four.index.segments) == 4 and four.index.n_docs == one.index.n_docs
    assert sorted(four.index.doc_keys) == sorted(one.index.doc_keys)
    for mode in ("exact", "safe"):
        expected, got = ranked(one, mode), ranked(four, mode)
        assert sum(len(r) for r in expected) > 200  # the queries match many documents
        assert got == expected, f"{encoder} {mode}"  # ids, scores (float equality) and tie order
    ties = [r for r in ranked(one, "exact") if len({s for _, s in r}) < len(r)]
    assert ties, "the corpus must produce tied scores for the tie order to be tested"


def test_range_split_and_the_searcher_paths(corpus, tmp_path):
    """Contiguous ranges; single-query search, paging and hits through the one Searcher."""
    one = Searcher(build(corpus, tmp_path / "one", "bm25"))
    four = Searcher(build(corpus, tmp_path / "four", "bm25", shards=4, split="range"))  # open_index sees it
    sizes = [s.n_docs for s in four.index.segments]
    assert sizes == [40, 40, 40, 40]
    for offset in (0, 5):
        plan = Plan(k=7, offset=offset)
        a, b = one.search("vitamin cancer risk", plan), four.search("vitamin cancer risk", plan)
        assert one.hits(a, ("title", "text"), offset) == four.hits(b, ("title", "text"), offset)


def test_bm25_shards_use_the_whole_corpus_statistics(corpus, tmp_path):
    """A shard alone scores as the single index (global df and avgdl), not as a small index would."""
    one = Searcher(build(corpus, tmp_path / "one", "bm25"))
    four = ShardedSearcher(build(corpus, tmp_path / "four", "bm25", shards=4))
    shard = four.index.segments[2]
    q = one.encode_texts(["vitamin coffee gene"])
    full = one.index.search(*q.row(0), k=one.index.n_docs)
    alone = shard.search(*q.row(0), k=shard.n_docs)
    score_one = dict(zip([one.index.doc_keys[d] for d in full.docs], full.scores.tolist(), strict=True))
    score_shard = dict(zip([shard.doc_keys[d] for d in alone.docs], alone.scores.tolist(), strict=True))
    assert len(score_shard) > 5
    assert score_shard == {doc: score_one[doc] for doc in score_shard}


def test_hash_split_is_stable_and_balanced():
    ids = [f"d{i}" for i in range(4000)]
    a = shard_assignment(ids, 4, "hash")
    assert np.array_equal(a, shard_assignment(ids, 4, "hash"))
    assert a[ids.index("d17")] == shard_assignment(["d17"], 4, "hash")[0]  # depends on the id only
    assert np.bincount(a, minlength=4).min() > 900
    assert shard_assignment(ids[:10], 4, "range").tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]


def test_take_rows_matches_rows():
    rng = np.random.default_rng(0)
    rows = [(np.sort(rng.choice(50, size=n, replace=False)), rng.random(n) + 0.1) for n in (3, 0, 5, 1, 4)]
    batch = SparseBatch.from_rows(rows)
    got = take_rows(batch, np.array([0, 1, 4]))
    for j, i in enumerate((0, 1, 4)):
        for part in (0, 1):
            assert np.array_equal(got.row(j)[part], batch.row(i)[part])


def test_merge_orders_ties_by_corpus_position():
    """Merge against a slow reference: sort all (score desc, position asc) of random results."""
    rng = np.random.default_rng(1)
    positions = [rng.permutation(100)[:30] for _ in range(3)]  # shard-local doc -> corpus position
    bases = np.array([0, 30, 60, 90])
    parts = []
    for i in range(3):
        docs = rng.choice(30, size=12, replace=False)
        parts.append((i, SearchResult(docs.astype(np.int32), rng.integers(0, 4, 12).astype(np.float32))))
    docs, scores = merge_topk(parts, bases, positions, 10)
    every = [(i, d, s) for i, r in parts for d, s in zip(r.docs, r.scores, strict=True)]
    ref = sorted((-float(s), int(positions[i][d]), int(bases[i] + d)) for i, d, s in every)[:10]
    assert docs.tolist() == [g for _, _, g in ref] and scores.tolist() == [-s for s, _, _ in ref]


# --- bad input ------------------------------------------------------------------------------------


def test_missing_shard_is_refused_naming_it(corpus, tmp_path):
    out = build(corpus, tmp_path / "four", "bm25", shards=4)
    shutil.rmtree(out / "shard-002")
    with pytest.raises(ArtifactError, match=r"shard-002 is missing"):
        ShardedSearcher(out)
    assert main(["search", "--index", str(out), "vitamin", "--quiet"]) != 0


def test_mixed_builds_are_refused(corpus, tmp_path):
    a = build(corpus, tmp_path / "a", "bm25", shards=4)
    b = build(corpus, tmp_path / "b", "bm25", shards=4)
    shutil.rmtree(a / "shard-001")
    shutil.copytree(b / "shard-001", a / "shard-001")
    with pytest.raises(ArtifactError, match=r"shard-001 belongs to build .* shards of two builds are mixed"):
        ShardedIndex.open(a)


def test_shard_of_another_encoder_is_refused(corpus, tmp_path):
    pytest.importorskip("torch")
    a = build(corpus, tmp_path / "a", "bm25", shards=2)
    b = build(corpus, tmp_path / "b", "splade", shards=2)
    shutil.rmtree(a / "shard-000")
    shutil.copytree(b / "shard-000", a / "shard-000")
    with pytest.raises(ArtifactError, match=r"shard-000 was encoded by 'splade'.*sharded index by 'bm25'"):
        ShardedIndex.open(a)


def test_bad_shard_counts(corpus, tmp_path):
    assert main(["index", "--corpus", str(corpus), "--encoder", "bm25", "--out", str(tmp_path / "x"),
                 "--shards", "0", "--quiet"]) != 0  # fmt: skip
    tiny = tmp_path / "tiny.jsonl"
    tiny.write_text('{"_id": "a", "text": "x y"}\n{"_id": "b", "text": "y z"}\n', encoding="utf-8")
    with pytest.raises(Exception, match="2 documents, fewer than 3 shards"):
        from lsr.config import load_config
        from lsr.sharded import index_corpus_sharded

        index_corpus_sharded(load_config(), tiny, tmp_path / "y", 3)
    assert not (tmp_path / "y").exists()


# --- remote shards that fail: partial answers ---------------------------------------------------


def test_a_failed_shard_gives_a_partial_answer(corpus, tmp_path):
    out = build(corpus, tmp_path / "four", "bm25", shards=4)
    local = ShardedIndex.open(out)
    backends = [FlakyShard(s) for s in local.segments]
    searcher = ShardedSearcher(out, backends)
    full = searcher.search("vitamin cancer", Plan(k=20))
    backends[1].down = True
    part = searcher.search("vitamin cancer", Plan(k=20))
    assert getattr(part, "missing", None) == ("shard-001",)
    lost = set(searcher.index.segments[1].doc_keys)
    keys = searcher.index.doc_keys
    expected = [keys[d] for d in full.docs if keys[d] not in lost]
    assert [keys[d] for d in part.docs][: len(expected)] == expected[: len(part.docs)]
    assert searcher.index.probe() == ["shard-001"]
    backends[1].down = False
    assert searcher.index.probe() == []
    again = searcher.search("vitamin cancer", Plan(k=20))
    assert not hasattr(again, "missing") and again.docs.tolist() == full.docs.tolist()
