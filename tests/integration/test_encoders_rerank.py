"""The TREC DL re-rank protocol (`lsr eval --rerank RUN`) on a hand-made pool, and (slow) the staged one."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lsr.cli import main

REPO = Path(__file__).resolve().parents[2]

DOCS = {
    "p1": "the capital of france is paris",
    "p2": "paris hilton is a celebrity",
    "p3": "france borders spain and italy",
    "p4": "berlin is the capital of germany",
    "p5": "cooking pasta takes ten minutes",
}
QUERIES = {"q1": "capital of france", "q2": "capital of germany"}
QRELS = [("q1", "p1", 3), ("q1", "p3", 1), ("q1", "p2", 0), ("q2", "p4", 2)]
# first stage: the best passage last, and a passage that shares no term with its query
RUN = {"q1": ["p5", "p2", "p3", "p1"], "q2": ["p5", "p1", "p4"]}


def write_pool(folder: Path) -> Path:
    (folder / "qrels").mkdir(parents=True)
    (folder / "runs").mkdir()
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": d, "title": "", "text": t}) + "\n" for d, t in DOCS.items())
    )
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in QUERIES.items())
    )
    (folder / "qrels" / "dl19.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{g}\n" for q, d, g in QRELS)
    )
    (folder / "runs" / "bm25.dl19.trec").write_text(
        "".join(
            f"{q} Q0 {d} {r} {10 - r} first\n" for q, docs in RUN.items() for r, d in enumerate(docs, start=1)
        )
    )
    return folder


def test_rerank_with_one_command(tmp_path, capsys):
    pool = write_pool(tmp_path / "pool")
    report_path = tmp_path / "r.json"
    assert (
        main(
            [
                "eval",
                "rerank",
                "--run",
                "bm25",
                "--dataset",
                str(pool),
                "--encoder",
                "bm25",
                "--out",
                str(report_path),
                "--quiet",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "re-rank of bm25 top-100 with bm25" in out and "dl19" in out
    report = json.loads(report_path.read_text())
    split = report["splits"]["dl19"]
    assert split["n_queries"] == 2
    assert split["metrics"]["ndcg@10"] == pytest.approx(1.0)  # p1 first for q1, p4 first for q2
    assert split["first_stage_metrics"]["ndcg@10"] < 0.8
    assert split["metrics"]["mrr@10"] == pytest.approx(1.0)  # binary at grade >= 2: p1, p4
    assert report["encoder"]["name"] == "bm25" and report["index"]["path"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pool", "r.json"]  # the temporary index is gone


def test_rerank_order_and_an_existing_index(tmp_path):
    from lsr.eval.runner import rerank_candidates
    from lsr.searcher import Searcher

    pool = write_pool(tmp_path / "pool")
    assert (
        main(["index", "--corpus", str(pool), "--encoder", "bm25", "--out", str(tmp_path / "idx"), "--quiet"])
        == 0
    )
    run = rerank_candidates(Searcher(tmp_path / "idx"), QUERIES, RUN)
    ranked = {q: sorted(docs, key=lambda d: -docs[d]) for q, docs in run.items()}
    # p5 and p2 share no term with q1 ("of" is a stopword): last, in their first-stage order
    assert ranked["q1"] == ["p1", "p3", "p5", "p2"]
    assert ranked["q2"] == ["p4", "p1", "p5"]
    assert run["q1"]["p3"] > 0 > run["q1"]["p5"] > run["q1"]["p2"]
    report = tmp_path / "r.json"
    assert (
        main(
            [
                "eval",
                "rerank",
                "--run",
                "bm25",
                "--dataset",
                str(pool),
                "--index",
                str(tmp_path / "idx"),
                "--depth",
                "2",
                "--out",
                str(report),
                "--quiet",
            ]
        )
        == 0
    )
    data = json.loads(report.read_text())
    assert data["depth"] == 2 and data["index"]["path"] == str(tmp_path / "idx")


def test_rerank_bad_usage(tmp_path, capsys):
    pool = write_pool(tmp_path / "pool")
    assert main(["eval", "rerank", "--run", "bm25", "--dataset", str(pool)]) == 2
    assert "lsr eval rerank needs either --index" in capsys.readouterr().err
    assert (
        main(["eval", "rerank", "--run", "tasb", "--dataset", str(pool), "--encoder", "bm25", "--quiet"]) == 2
    )
    assert "no run 'tasb' for split 'dl19'" in capsys.readouterr().err
    assert main(["eval", "index", "--dataset", str(pool)]) == 2
    assert "--index is required" in capsys.readouterr().err


@pytest.mark.slow
def test_dl19_dl20_rerank_with_splade_tiny(tmp_path):
    """Re-rank the shipped BM25 top-100 with splade-tiny (measured about 0.675 / 0.603); about 5 minutes."""
    pool = Path(os.environ.get("LSR_SHARED_DATA", REPO.parent / "shared" / "data")) / "msmarco" / "dl-pool"
    model = REPO / "models" / "splade-tiny"
    if not (pool / "corpus.jsonl.gz").is_file() or not model.is_dir():
        pytest.skip("needs ../shared/data/msmarco/dl-pool and models/splade-tiny")
    report = tmp_path / "dl.json"
    assert (
        main(
            [
                "eval",
                "rerank",
                "--run",
                "bm25",
                "--dataset",
                str(pool),
                "--encoder",
                str(model),
                "--out",
                str(report),
                "--quiet",
            ]
        )
        == 0
    )
    splits = json.loads(report.read_text())["splits"]
    assert splits["dl19"]["first_stage_metrics"]["ndcg@10"] == pytest.approx(0.5058, abs=1e-3)
    assert splits["dl19"]["metrics"]["ndcg@10"] == pytest.approx(0.675, abs=0.015)
    assert splits["dl20"]["metrics"]["ndcg@10"] == pytest.approx(0.603, abs=0.015)
