"""Training data: pairs, dev split, negatives, pseudo-queries, the prepared dataset on
tests/data/train-tiny."""

from __future__ import annotations

import random

import pytest

from lsr.data.trec import read_qrels
from lsr.errors import ConfigError
from lsr.train.config import PrepareConfig, TeacherConfig
from lsr.train.data import (
    load_prepared,
    pick_negatives,
    positive_pairs,
    prepare_dataset,
    pseudo_queries,
    split_dev,
)


def test_positive_pairs_skips_and_counts():
    qrels = {"a": {"d1": 1, "d2": 0}, "b": {"d3": 0}, "c": {"d1": 2}, "e": {"zz": 1}}
    pairs, counts = positive_pairs(qrels, {"a": "x", "b": "y", "c": " ", "e": "z"}, {"d1", "d2", "d3"})
    assert pairs == {"a": ["d1"]}
    assert counts == {"skipped_no_positive": 2, "skipped_no_text": 1, "positives_not_in_corpus": 1}


def test_dev_split_is_seeded_disjoint_and_complete():
    qids = [f"q{i}" for i in range(50)]
    train, dev = split_dev(qids, 0.2, seed=7)
    assert len(dev) == 10 and not set(train) & set(dev) and set(train) | set(dev) == set(qids)
    assert split_dev(qids, 0.2, seed=7) == (train, dev)
    assert split_dev(qids, 0.2, seed=8)[1] != dev
    assert len(split_dev(qids, 0.2, seed=7, max_dev=3)[1]) == 3


def test_negatives_never_positives_and_padded():
    rng = random.Random(0)
    negs, padded = pick_negatives(
        ["p1", "n1", "p2", "n2"], {"p1", "p2"}, 3, ["p1", "p2", "n1", "n2", "n3"], rng
    )
    assert negs[:2] == ["n1", "n2"] and negs[2] == "n3" and padded == 1
    with pytest.raises(ValueError, match="non-positive"):
        pick_negatives([], {"p1"}, 3, ["p1", "n1"], rng)


def test_pseudo_queries_come_from_their_document():
    docs = [
        ("d1", "Vitamin D lowers risk", "First sentence has enough words here. Short one."),
        ("d2", "X", "Another sentence with plenty of words in it."),
    ]
    out = pseudo_queries(docs, n_titles=5, n_spans=5, min_words=5, seed=0)
    titles = [o for o in out if o[2] == "title"]
    spans = [o for o in out if o[2] == "span"]
    assert titles == [("title:d1", "Vitamin D lowers risk", "title", "d1")]  # one-word titles are skipped
    assert {s[3] for s in spans} == {"d1", "d2"}
    for _, text, _, doc in spans:
        assert text in dict((d[0], d[2]) for d in docs)[doc] and len(text.split()) >= 5


def test_prepare_on_tiny_beir(train_tiny, tmp_path):
    cfg = PrepareConfig(
        dataset=str(train_tiny),
        dev_fraction=0.25,
        pseudo_titles=3,
        pseudo_spans=3,
        pseudo_min_words=3,
        mining_depth=6,
        negatives=4,
        teachers=(TeacherConfig("bm25"),),
    )
    meta = prepare_dataset(cfg, tmp_path / "p")
    data = load_prepared(tmp_path / "p")
    train_qrels = read_qrels(train_tiny / "qrels" / "train.tsv")
    test_qids = set(read_qrels(train_tiny / "qrels" / "test.tsv"))
    assert meta["counts"]["skipped_no_positive"] == 1  # q13: judged, no positive
    labelled = {e.qid for e in data.train if e.source == "qrels"}
    dev = {d.qid for d in data.dev}
    assert len(dev) == 3 and not labelled & dev and labelled | dev == set(train_qrels) - {"q13"}
    assert not ({e.qid for e in data.train} | dev) & test_qids  # never test queries
    assert {e.source for e in data.train} == {"qrels", "title", "span"}
    for e in data.train:
        positives = {d for d, g in train_qrels.get(e.qid, {}).items() if g > 0} or {e.cands[0]}
        assert e.cands[0] in positives and not positives & set(e.cands[1:])
        assert len(e.cands) == 5 and len(set(e.cands)) == 5
        assert len(e.scores["bm25"]) == 5
    q4 = [e for e in data.train if e.qid == "q4"]  # two positives: one example each, same negatives
    if q4:
        assert sorted(e.cands[0] for e in q4) == ["t4", "t8"]
    assert len(data.doc_ids) == 12


def test_prepare_refuses_evaluation_data(tmp_path):
    with pytest.raises(ConfigError, match="test qrels"):
        PrepareConfig(dataset="x", train_split="test")
    pool = tmp_path / "msmarco" / "dl-pool"
    pool.mkdir(parents=True)
    with pytest.raises(ConfigError, match="DL pool"):
        prepare_dataset(PrepareConfig(dataset=str(pool), train_split="train"), tmp_path / "out")
