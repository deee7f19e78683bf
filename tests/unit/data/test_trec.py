"""lsr.data.trec: qrels (BEIR TSV, TREC) and runs (TREC six columns)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from lsr.data.trec import read_qrels, read_run, run_scores, write_run
from lsr.errors import DataFormatError

EXPECTED = {"q1": {"d1": 1, "d2": 0}, "q2": {"d3": 2}}


def test_qrels_beir_tsv_with_header(tmp_path):
    path = tmp_path / "test.tsv"
    path.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\nq2\td3\t2\n", encoding="utf-8")
    assert read_qrels(path) == EXPECTED


def test_qrels_beir_tsv_without_header(tmp_path):
    path = tmp_path / "test.tsv"
    path.write_text("q1\td1\t1\nq1\td2\t0\n\nq2\td3\t2\n", encoding="utf-8")
    assert read_qrels(path) == EXPECTED


def test_qrels_trec_four_columns(tmp_path):
    path = tmp_path / "qrels.txt"
    path.write_text("q1 0 d1 1\nq1 0 d2 0\nq2 Q0 d3 2\n", encoding="utf-8")
    assert read_qrels(path) == EXPECTED


def test_qrels_gzipped(tmp_path):
    path = tmp_path / "qrels.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("q1 0 d1 1\nq1 0 d2 0\nq2 0 d3 2\n")
    assert read_qrels(path) == EXPECTED


def test_qrels_grades_are_ints(tmp_path):
    path = tmp_path / "q.tsv"
    path.write_text("q1\td1\t2.0\nq1\td2\t-1\n", encoding="utf-8")
    qrels = read_qrels(path)
    assert qrels == {"q1": {"d1": 2, "d2": -1}}
    assert all(type(g) is int for g in qrels["q1"].values())


@pytest.mark.parametrize("grade", ["x", "high", "nan", "inf"])
def test_qrels_bad_grade_names_file_and_line(tmp_path, grade):
    path = tmp_path / "q.tsv"
    path.write_text(f"q1\td1\t1\nq1\td2\t{grade}\n", encoding="utf-8")
    with pytest.raises(DataFormatError) as exc:
        read_qrels(path)
    assert f"{path}:2" in str(exc.value) and repr(grade) in str(exc.value)


@pytest.mark.parametrize("line", ["q1\td1", "q1 0 d1 1 extra"])
def test_qrels_wrong_number_of_columns(tmp_path, line):
    path = tmp_path / "q.tsv"
    path.write_text(f"q1\td0\t1\n{line}\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=f"{path}:2"):
        read_qrels(path)


def run_lines(path):
    return [line.split() for line in path.read_text(encoding="utf-8").splitlines()]


def test_run_round_trip_with_ties(tmp_path):
    run = {
        "q1": {"c": 1.0, "b": 2.5, "a": 1.0, "z": 1.0, "y": 0.25},
        "q2": {"x": 0.5},
        "q10": {"m": 3.0, "n": 3.0},
    }
    path = tmp_path / "run.trec"
    write_run(run, path, tag="mytag")
    lines = run_lines(path)
    assert [line[0] for line in lines] == ["q1"] * 5 + ["q2"] + ["q10"] * 2  # queries in given order
    # descending score; tied docs in trec_eval's order (descending id: z, c, a), ranks 1..n, and the
    # tied scores made strictly decreasing by digits after the sixth decimal
    q1 = [(d, int(r), s) for q, _, d, r, s, _ in lines if q == "q1"]
    assert q1 == [
        ("b", 1, "2.500000"),
        ("z", 2, "1.0000002"),
        ("c", 3, "1.0000001"),
        ("a", 4, "1.0000000"),
        ("y", 5, "0.250000"),
    ]
    q10 = [(d, int(r)) for q, _, d, r, _, _ in lines if q == "q10"]
    assert q10 == [("n", 1), ("m", 2)]
    assert all(line[1] == "Q0" and line[5] == "mytag" and len(line) == 6 for line in lines)

    back = read_run(path)
    assert back == {q: {d: pytest.approx(s, abs=1e-6) for d, s in docs.items()} for q, docs in run.items()}
    assert list(back["q1"]) == ["b", "z", "c", "a", "y"]  # file (rank) order


def test_run_scores_strictly_decrease_and_keep_six_decimals():
    scores = [3.0] + [2.0] * 12 + [1.5, -0.5, -0.5, -0.5]
    written = run_scores(scores)
    values = [float(w) for w in written]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    assert [round(v, 6) for v in values] == scores
    assert written[1] == "2.00000011" and written[12] == "2.00000000" and written[0] == "3.000000"
    assert written[-3:] == ["-0.5000000", "-0.5000001", "-0.5000002"]


def test_every_tool_ranks_a_written_run_as_lsr_eval_does(tmp_path):
    """ranx's sort of tied scores is not stable: a run with ties gave it another nDCG than lsr eval."""
    ranx = pytest.importorskip("ranx")
    from lsr.eval.metrics import evaluate_run

    rng = np.random.default_rng(0)
    run = {f"q{q}": {f"d{d}": float(rng.integers(0, 4)) for d in range(60)} for q in range(40)}
    qrels = {q: {f"d{d}": int(rng.integers(1, 3)) for d in rng.choice(60, 5, replace=False)} for q in run}
    path = tmp_path / "run.trec"
    write_run(run, path)
    ours = evaluate_run(qrels, run, ["ndcg@10"])["ndcg@10"]
    theirs = ranx.evaluate(ranx.Qrels(qrels), ranx.Run.from_file(str(path), kind="trec"), "ndcg@10")
    assert theirs == pytest.approx(ours, abs=1e-12)


def test_run_default_tag_and_numpy_scores(tmp_path):
    path = tmp_path / "run.trec"
    write_run({"q1": {"d1": np.float32(0.5), "d2": np.float64(1.25)}}, path)
    assert run_lines(path) == [
        ["q1", "Q0", "d2", "1", "1.250000", "lsr"],
        ["q1", "Q0", "d1", "2", "0.500000", "lsr"],
    ]


def test_write_run_replaces_existing_file(tmp_path):
    path = tmp_path / "run.trec"
    path.write_text("old\n", encoding="utf-8")
    write_run({"q1": {"d1": 1.0}}, path)
    assert run_lines(path) == [["q1", "Q0", "d1", "1", "1.000000", "lsr"]]


@pytest.mark.parametrize(
    "bad_score",
    [
        np.array([1.0, 2.0]),  # sorts alone, but cannot be formatted with :.6f
        "not a number",  # cannot even be sorted
    ],
    ids=["format-fails", "sort-fails"],
)
def test_write_run_is_atomic(tmp_path, bad_score):
    path = tmp_path / "run.trec"
    path.write_text("OLD CONTENT\n", encoding="utf-8")
    # q1 is written before q2 fails: a non-atomic writer would leave a partial run
    run = {"q1": {"d1": 2.0, "d2": 1.0}, "q2": {"d3": bad_score}}
    with pytest.raises((TypeError, ValueError)):
        write_run(run, path)
    assert path.read_text(encoding="utf-8") == "OLD CONTENT\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.trec"]  # no temporary file left


def test_write_run_failure_without_existing_file_leaves_nothing(tmp_path):
    path = tmp_path / "run.trec"
    with pytest.raises(TypeError):
        write_run({"q1": {"d1": 1.0}, "q2": {"d2": np.array([1.0, 2.0])}}, path)
    assert list(tmp_path.iterdir()) == []


def test_read_run_errors_name_file_and_line(tmp_path):
    path = tmp_path / "run.trec"
    path.write_text("q1 Q0 d1 1 1.0 t\nq1 Q0 d2 2 0.5\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=f"{path}:2.*6 columns"):
        read_run(path)
    path.write_text("q1 Q0 d1 1 high t\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=f"{path}:1.*'high'"):
        read_run(path)


def test_run_formats_and_tag(tmp_path):
    import json

    run = {"q1": {"a": 1.0, "b": 2.0, "c": 1.0}}
    write_run(run, tmp_path / "r.tsv", fmt="tsv")
    lines = (tmp_path / "r.tsv").read_text().splitlines()
    assert lines == ["q1\tb\t1\t2.000000", "q1\tc\t2\t1.0000001", "q1\ta\t3\t1.0000000"]
    write_run(run, tmp_path / "r.json", fmt="json")
    back = json.loads((tmp_path / "r.json").read_text())
    assert list(back["q1"]) == ["b", "c", "a"] and back["q1"]["c"] > back["q1"]["a"]  # ties kept apart
    write_run(run, tmp_path / "r.trec", tag="my-run")
    assert {line.split()[5] for line in (tmp_path / "r.trec").read_text().splitlines()} == {"my-run"}
    with pytest.raises(ValueError, match="run tag"):
        write_run(run, tmp_path / "x.trec", tag="two words")
    with pytest.raises(ValueError, match="run format"):
        write_run(run, tmp_path / "x.trec", fmt="csv")
