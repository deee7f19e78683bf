"""Bad input through the CLI: a clear error (exit 2, message naming the problem), existing data intact."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lsr.cli import main
from lsr.searcher import Plan, Searcher

DOCS = [
    {"_id": "d1", "title": "Vitamin D", "text": "vitamin d lowers cancer risk"},
    {"_id": "d2", "title": "Coffee", "text": "coffee and sleep quality in adults"},
    {"_id": "d3", "title": "", "text": "cancer screening with vitamin supplements"},
]


def write_beir(folder: Path, docs=DOCS, queries=None, qrels=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "corpus.jsonl", "w") as f:
        for d in docs:
            f.write((d if isinstance(d, str) else json.dumps(d)) + "\n")
    queries = queries or {"q1": "vitamin cancer", "q2": "coffee sleep"}
    with open(folder / "queries.jsonl", "w") as f:
        for qid, text in queries.items():
            f.write(json.dumps({"_id": qid, "text": text}) + "\n")
    (folder / "qrels").mkdir(exist_ok=True)
    rows = qrels or [("q1", "d1", 1), ("q2", "d2", 1)]
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{g}\n" for q, d, g in rows)
    )
    return folder


def index(corpus: Path, out: Path, *extra: str) -> int:
    return main(["index", "--corpus", str(corpus), "--encoder", "bm25", "--out", str(out), "--quiet", *extra])


@pytest.fixture()
def built(tmp_path) -> tuple[Path, Path]:
    corpus = write_beir(tmp_path / "beir")
    out = tmp_path / "idx"
    assert index(corpus, out) == 0
    return corpus, out


def test_existing_output_is_refused_without_overwrite(built, capsys):
    corpus, out = built
    before = (out / "meta.json").read_text()
    assert index(corpus, out) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert (out / "meta.json").read_text() == before


def test_failed_overwrite_keeps_the_good_index(built, tmp_path, capsys):
    _, out = built
    broken = write_beir(tmp_path / "broken", docs=[DOCS[0], '{"_id": "d9", "text": ', DOCS[1]])
    assert index(broken, out, "--overwrite") == 2
    err = capsys.readouterr().err
    assert "corpus.jsonl:2" in err and "malformed JSON" in err
    searcher = Searcher(out)
    assert searcher.hits(searcher.search("vitamin", Plan(k=5)))[0].doc_id == "d1"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp left behind


def test_duplicate_doc_ids_are_refused(tmp_path, capsys):
    corpus = write_beir(tmp_path / "dup", docs=[DOCS[0], DOCS[1], {**DOCS[2], "_id": "d1"}])
    assert index(corpus, tmp_path / "idx") == 2
    assert "duplicate doc ids: 'd1' (docs 1 and 3)" in capsys.readouterr().err
    assert not (tmp_path / "idx").exists()


def test_missing_field_is_reported_with_line(tmp_path, capsys):
    corpus = write_beir(tmp_path / "nofield", docs=[DOCS[0], {"_id": "d2", "title": "x"}])
    assert index(corpus, tmp_path / "idx") == 2
    assert "corpus.jsonl:2: missing field 'text'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: (p / "meta.json").unlink(), "half-written"),
        (
            lambda p: (p / "meta.json").write_text(
                json.dumps({**json.loads((p / "meta.json").read_text()), "format_version": 99})
            ),
            "format version 99",
        ),
        (lambda p: (p / "meta.json").write_text('{"format": "seismic"}'), "holds format 'seismic'"),
        (lambda p: (p / "meta.json").write_text("{not json"), "corrupt"),
        (lambda p: (p / "doc_ids.npy").unlink(), "doc_ids.npy is missing"),
        (lambda p: (p / "impacts.npy").write_bytes(b"garbage"), "impacts.npy has 7 bytes"),
        (lambda p: (p / "ids.txt").unlink(), "ids.txt is missing"),
    ],
)
def test_damaged_or_foreign_index_is_refused(built, damage, message, capsys):
    _, out = built
    damage(out)
    assert main(["search", "--index", str(out), "vitamin"]) == 2
    assert message in capsys.readouterr().err


def test_unknown_qrels_ids_warn_with_counts(tmp_path, caplog):
    corpus = write_beir(
        tmp_path / "beir", qrels=[("q1", "d1", 1), ("q1", "nope", 1), ("q2", "d2", 1), ("q7", "d3", 1)]
    )
    assert index(corpus, tmp_path / "idx") == 0
    report = tmp_path / "r.json"
    assert (
        main(
            [
                "eval",
                "index",
                "--index",
                str(tmp_path / "idx"),
                "--dataset",
                str(corpus),
                "--k",
                "10",
                "--out",
                str(report),
            ]
        )
        == 0
    )
    data = json.loads(report.read_text())
    assert data["dataset"]["qrels_unknown_docs"] == 1 and data["dataset"]["qrels_missing_queries"] == 1
    assert "1 qrels rows name doc ids that are not in the index" in caplog.text


def test_empty_query_is_refused(built, capsys):
    _, out = built
    assert main(["search", "--index", str(out), "   "]) == 2
    assert "empty query" in capsys.readouterr().err


def test_unknown_config_key_and_encoder(built, tmp_path, capsys):
    corpus, _ = built
    assert index(corpus, tmp_path / "x", "--set", "index.impact_bits=8") == 2
    assert "unknown key(s) in index: ['impact_bits']" in capsys.readouterr().err
    assert main(["index", "--corpus", str(corpus), "--encoder", "splodge", "--out", str(tmp_path / "y")]) == 2
    assert "unknown encoder 'splodge'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_offline_ir_datasets_id_names_local_alternative(built, capsys):
    _, out = built
    assert main(["eval", "index", "--index", str(out), "--dataset", "no-such/dataset-id"]) == 2
    assert "local BEIR folder" in capsys.readouterr().err


def test_no_overlap_between_run_and_qrels_is_an_error(tmp_path, capsys):
    corpus = write_beir(tmp_path / "beir", queries={"q1": "vitamin"}, qrels=[("q5", "d1", 1)])
    shutil.copy(corpus / "queries.jsonl", corpus / "q.jsonl")
    assert index(corpus, tmp_path / "idx") == 0
    assert main(["eval", "index", "--index", str(tmp_path / "idx"), "--dataset", str(corpus)]) == 2
    assert "share no query id" in capsys.readouterr().err


def test_query_of_unknown_terms_returns_nothing(built, capsys):
    _, out = built
    assert main(["search", "--index", str(out), "zyzzyva quux"]) == 0
    assert capsys.readouterr().out == ""


def test_index_from_jsonl_vectors_needs_pre_encoded_queries(tmp_path, capsys, caplog):
    vectors = tmp_path / "v.jsonl"
    vectors.write_text('{"id": "a", "vector": {"cat": 2, "dog": 1}}\n{"id": "b", "vector": {"dog": 3}}\n')
    out = tmp_path / "idx"
    assert main(["index", "--vectors", str(vectors), "--out", str(out), "--quiet"]) == 0
    assert main(["search", "--index", str(out), "cat"]) == 2
    assert "pre-encoded queries" in capsys.readouterr().err
    queries = tmp_path / "q.jsonl"
    queries.write_text(
        '{"id": "q1", "vector": {"dog": 1.0, "unknown": 5}}\n{"id": "q2", "vector": {"cat": 1}}\n'
    )
    run = tmp_path / "run.trec"
    assert main(["search", "--index", str(out), "--queries", str(queries), "--out", str(run), "--quiet"]) == 0
    assert [line.split()[:3] for line in run.read_text().splitlines()] == [
        ["q1", "Q0", "b"],
        ["q1", "Q0", "a"],
        ["q2", "Q0", "a"],
    ]
    assert "1 query term(s) in 1 of 2 queries are not in the index vocabulary; ignored" in caplog.text


def test_malformed_vector_jsonl_names_line_and_term(tmp_path, capsys):
    vectors = tmp_path / "v.jsonl"
    vectors.write_text('{"id": "a", "vector": {"cat": 2}}\n{"id": "b", "vector": {"dog": "x"}}\n')
    assert main(["index", "--vectors", str(vectors), "--out", str(tmp_path / "idx")]) == 2
    err = capsys.readouterr().err
    assert "v.jsonl:2" in err and "'dog'" in err
    assert not (tmp_path / "idx").exists()
