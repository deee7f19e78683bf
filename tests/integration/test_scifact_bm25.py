"""End to end on BEIR SciFact: the README's commands, the numbers they must give, their artifacts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lsr.cli import main
from lsr.data.trec import read_run


def test_readme_commands_give_published_bm25_quality(scifact, scifact_bm25_index, tmp_path, capsys):
    report_path = tmp_path / "sf.json"
    assert main(["eval", "--index", str(scifact_bm25_index), "--dataset", str(scifact), "--split", "test",
                 "--out", str(report_path), "--quiet"]) == 0
    report = json.loads(report_path.read_text())
    # Anserini/pyserini BEIR SciFact bm25-flat: nDCG@10 0.6789, R@100 0.9253 (pyserini 2cr/beir.yaml)
    assert 0.66 <= report["metrics"]["ndcg@10"] <= 0.70
    assert report["metrics"]["recall@100"] >= 0.90
    assert report["dataset"]["n_queries"] == 300
    assert report["dataset"]["qrels_unknown_docs"] == 0
    for key in ("p50", "p99"):
        assert 0 < report["latency_ms"][key] < 1000
    assert report["index_bytes"] > 0 and 50 < report["doc_nnz_avg"] < 200 and report["query_nnz_avg"] > 1
    assert report["config"]["index"]["encoder"]["bm25"]["k1"] == 0.9
    assert "ndcg@10" in capsys.readouterr().out


def test_search_file_writes_trec_run_and_free_text_prints_titles(scifact, scifact_bm25_index, tmp_path,
                                                                 capsys):
    run_path = tmp_path / "run.trec"
    assert main(["search", "--index", str(scifact_bm25_index), "--queries", str(scifact), "--split", "test",
                 "--k", "20", "--out", str(run_path), "--quiet"]) == 0
    run = read_run(run_path)
    assert len(run) == 300 and all(len(docs) <= 20 for docs in run.values())
    lines = run_path.read_text().splitlines()[:20]
    assert [int(line.split()[3]) for line in lines] == sorted(int(line.split()[3]) for line in lines)
    capsys.readouterr()
    assert main(["search", "--index", str(scifact_bm25_index), "vitamin D and cancer risk", "--k", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and "itamin" in out[0]


def test_index_meta_describes_itself(scifact_bm25_index):
    meta = json.loads((scifact_bm25_index / "meta.json").read_text())
    assert meta["format"] == "lsr-index" and meta["format_version"] == 1
    assert meta["n_docs"] == 5183
    assert meta["impacts"]["dtype"] == "uint8" and meta["impacts"]["scale"] > 0
    assert meta["config"]["encoder"]["name"] == "bm25" and meta["config_hash"]
    assert meta["encoder"] == {"name": "bm25", "bm25": meta["config"]["encoder"]["bm25"]}


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "lsr.cli", "index", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for flag in ("--vectors", "--corpus", "--encoder", "--out", "--overwrite", "--set"):
        assert flag in out


@pytest.mark.parametrize("fmt", ["npy", "jsonl"])
def test_encode_then_index_equals_index_from_corpus(scifact, scifact_bm25_index, tmp_path, fmt):
    """`lsr encode` + `lsr index --vectors` (directory or JSONL) gives the same rankings as one step."""
    from lsr.searcher import Searcher

    vectors = tmp_path / ("vectors.jsonl" if fmt == "jsonl" else "vectors")
    assert main(["encode", "--encoder", "bm25", "--corpus", str(scifact), "--out", str(vectors),
                 "--format", fmt, "--quiet"]) == 0
    index = tmp_path / "index"
    assert main(["index", "--vectors", str(vectors), "--out", str(index), "--quiet"]) == 0
    one_step, two_step = Searcher(scifact_bm25_index), Searcher(index)
    # the JSONL path has no text query encoder: search both with the same pre-encoded query
    vector = {"vitamin": 1.0, "cancer": 2.0, "risk": 1.0}
    a = one_step.index.search_batch(one_step.encode_vectors([vector]), k=20)[0]
    b = two_step.index.search_batch(two_step.encode_vectors([vector]), k=20)[0]
    assert [one_step.index.doc_keys[d] for d in a.docs] == [two_step.index.doc_keys[d] for d in b.docs]
    assert a.scores == pytest.approx(b.scores, rel=1e-3)
