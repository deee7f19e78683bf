"""A live BM25 index through the CLI: lsr add (updates said so), delete (unknown ids reported), merge,
info; after a full merge, BM25 results equal a rebuild from the surviving documents; bad input
leaves the committed index intact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lsr.cli import main
from lsr.index.manifest import generations
from lsr.index.writer import IndexWriter
from lsr.searcher import Plan, Queries, Searcher

WORDS = "cell protein gene cancer vitamin coffee sleep brain heart blood virus immune drug dose risk".split()
QUERIES = [
    "cell protein",
    "cancer risk vitamin",
    "coffee sleep brain",
    "virus immune drug",
    "heart blood dose",
]


def _docs(rng: np.random.Generator, ids: list[str]) -> list[dict]:
    return [
        {
            "_id": i,
            "title": str(rng.choice(WORDS)),
            "text": " ".join(rng.choice(WORDS, int(rng.integers(3, 15)))),
        }
        for i in ids
    ]


def _write(path: Path, docs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return path


def _run(searcher: Searcher, mode: str) -> dict:
    plan = Plan(k=10, mode=mode)
    results = searcher.search_batch(Queries(texts=QUERIES), plan)
    return searcher.to_run([f"q{i}" for i in range(len(QUERIES))], results)


@pytest.fixture
def live_bm25(tmp_path):
    rng = np.random.default_rng(0)
    base = _docs(rng, [f"d{i}" for i in range(40)])
    idx = tmp_path / "idx"
    assert (
        main(
            [
                "index",
                "--corpus",
                str(_write(tmp_path / "base.jsonl", base)),
                "--encoder",
                "bm25",
                "--out",
                str(idx),
                "--quiet",
            ]
        )
        == 0
    )
    return tmp_path, idx, base, rng


def test_add_delete_merge_equals_rebuild(live_bm25, capsys):
    tmp_path, idx, base, rng = live_bm25
    more = _docs(rng, ["d3", "d7", "d11", *[f"n{i}" for i in range(12)]])  # three updates
    capsys.readouterr()
    assert (
        main(["add", "--index", str(idx), "--corpus", str(_write(tmp_path / "more.jsonl", more)), "--quiet"])
        == 0
    )
    out = capsys.readouterr().out
    assert "added 12 new doc(s); 3 existing id(s) updated" in out
    (tmp_path / "del.txt").write_text("d1\nn2\nnot-there\n")
    assert main(["delete", "--index", str(idx), "--ids", str(tmp_path / "del.txt"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "deleted 2 doc(s)" in out and "not-there" in out
    assert main(["info", "--index", str(idx), "--json", "--quiet"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (len(info["segments"]), info["n_docs"], info["n_deleted"], info["encoder"]) == (2, 50, 5, "bm25")
    surviving = [d for d in base if d["_id"] not in {"d1", "d3", "d7", "d11"}] + [
        d for d in more if d["_id"] != "n2"
    ]
    before = _run(Searcher(idx), "exact")
    assert set().union(*(set(r) for r in before.values())) <= {d["_id"] for d in surviving}
    assert main(["merge", "--index", str(idx), "--quiet"]) == 0
    rebuilt = tmp_path / "rebuilt"
    assert (
        main(
            [
                "index",
                "--corpus",
                str(_write(tmp_path / "s.jsonl", surviving)),
                "--encoder",
                "bm25",
                "--out",
                str(rebuilt),
                "--quiet",
            ]
        )
        == 0
    )
    for mode in ("exact", "safe"):
        assert _run(Searcher(idx), mode) == _run(Searcher(rebuilt), mode)


def test_bad_input_leaves_the_index_intact(live_bm25, capsys):
    tmp_path, idx, _, rng = live_bm25
    (tmp_path / "del.txt").write_text("d1\n")
    assert main(["delete", "--index", str(idx), "--ids", str(tmp_path / "del.txt"), "--quiet"]) == 0
    gen = generations(idx)[-1]
    empty = _write(tmp_path / "empty.jsonl", [*_docs(rng, ["x1"]), {"_id": "x2", "title": "", "text": "  "}])
    assert main(["add", "--index", str(idx), "--corpus", str(empty), "--quiet"]) == 2
    assert "no text" in capsys.readouterr().err
    with IndexWriter(idx):
        assert main(["delete", "--index", str(idx), "--ids", str(tmp_path / "del.txt"), "--quiet"]) == 2
        assert "pid" in capsys.readouterr().err
    assert generations(idx)[-1] == gen
    vectors = tmp_path / "v.jsonl"
    vectors.write_text(json.dumps({"id": "v1", "vector": {"cell": 1.0}}) + "\n")
    assert main(["add", "--index", str(idx), "--vectors", str(vectors), "--quiet"]) == 2
    assert "BM25 index" in capsys.readouterr().err
    assert generations(idx)[-1] == gen


def test_pre_encoded_index_takes_vectors_not_a_corpus(tmp_path, capsys):
    vectors = tmp_path / "v.jsonl"
    vectors.write_text(
        "".join(json.dumps({"id": f"d{i}", "vector": {"a": 1.0 + i, "b": 0.5}}) + "\n" for i in range(5))
    )
    idx = tmp_path / "idx"
    assert main(["index", "--vectors", str(vectors), "--out", str(idx), "--quiet"]) == 0
    more = tmp_path / "more.jsonl"
    more.write_text(
        json.dumps({"id": "d0", "vector": {"c": 2.0}})
        + "\n"
        + json.dumps({"id": "e", "vector": {"a": 9.0}})
        + "\n"
    )
    capsys.readouterr()
    assert main(["add", "--index", str(idx), "--vectors", str(more), "--quiet"]) == 0
    assert "1 existing id(s) updated" in capsys.readouterr().out
    searcher = Searcher(idx)
    run = searcher.to_run(
        ["q"],
        searcher.search_batch(Queries(sparse=searcher.encode_vectors([{"a": 1.0, "c": 1.0}])), Plan(k=3)),
    )
    assert list(run["q"]) == ["e", "d4", "d3"]
    assert main(["add", "--index", str(idx), "--corpus", str(more), "--quiet"]) == 2
    assert "pre-encoded" in capsys.readouterr().err


def test_metadata_filters_through_the_cli_and_a_live_add(tmp_path, capsys):
    docs = [
        {"_id": "a", "title": "", "text": "cell protein", "metadata": {"year": 1999, "lang": "en"}},
        {"_id": "b", "title": "", "text": "cell gene", "metadata": {"year": 2005, "lang": "de"}},
        {"_id": "c", "title": "", "text": "cell cell", "metadata": {"year": 2012}},
    ]
    idx = tmp_path / "idx"
    fields = ["--set", "index.fields.year=int", "--set", "index.fields.lang=keyword"]
    corpus = str(_write(tmp_path / "c.jsonl", docs))
    assert (
        main(["index", "--corpus", corpus, "--encoder", "bm25", "--out", str(idx), "--quiet", *fields]) == 0
    )
    more = [{"_id": "d", "title": "", "text": "cell", "metadata": {"year": 2007, "lang": "en"}}]
    assert (
        main(["add", "--index", str(idx), "--corpus", str(_write(tmp_path / "m.jsonl", more)), "--quiet"])
        == 0
    )
    capsys.readouterr()
    flt = '{"range": {"year": {"gte": 2000, "lt": 2010}}}'
    assert main(["search", "--index", str(idx), "cell", "--filter", flt, "--quiet"]) == 0
    assert sorted(line.split()[1] for line in capsys.readouterr().out.splitlines()) == ["b", "d"]
    assert main(["search", "--index", str(idx), "cell", "--filter", '{"term": {"size": 1}}', "--quiet"]) == 2
    assert "unknown field 'size'" in capsys.readouterr().err
    bad = [{"_id": "e", "title": "", "text": "cell", "metadata": {"year": "later"}}]
    assert (
        main(["add", "--index", str(idx), "--corpus", str(_write(tmp_path / "b.jsonl", bad)), "--quiet"]) == 2
    )
    assert "field 'year'" in capsys.readouterr().err
    assert main(["merge", "--index", str(idx), "--quiet"]) == 0  # BM25 re-encode keeps the metadata
    capsys.readouterr()
    assert (
        main(["search", "--index", str(idx), "cell", "--filter", '{"term": {"lang": "en"}}', "--quiet"]) == 0
    )
    assert sorted(line.split()[1] for line in capsys.readouterr().out.splitlines()) == ["a", "d"]
