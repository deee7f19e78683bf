"""Matrix files are checked row by row before any work; the report renders tables, markers and plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lsr.errors import ConfigError
from lsr.eval.matrix import load_matrix, validate
from lsr.eval.record import Evaluation
from lsr.eval.report import build_report, format_table, write_report

TINY = Path(__file__).resolve().parents[2] / "data" / "beir-tiny"
ROW = f"{{system: bm25, dataset: {TINY}, metric: ndcg@10, expected: 0.5, tolerance: 0.01, tier: ci}}"


def write(tmp_path, rows: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text("rows:\n" + rows)
    return path


@pytest.mark.parametrize(
    "row, match",
    [
        (
            "  - {system: bm25, dataset: x, metric: ndcg@10, expected: 0.5, tolerance: 0.01, tier: nightly}",
            "tier 'nightly'",
        ),
        (
            "  - {system: bm25, dataset: x, metric: ndcg@10, expected: high, tolerance: 0.01, tier: ci}",
            "expected must be a number",
        ),
        ("  - {system: bm25, dataset: x, metric: ndcg@10, expected: 0.5, tier: ci, colour: red}", "colour"),
        ("  - just a string", "expected a mapping"),
    ],
)
def test_malformed_rows(tmp_path, row, match):
    with pytest.raises(ConfigError, match=match):
        load_matrix(write(tmp_path, row + "\n"))


def test_every_row_validated_before_work(tmp_path):
    rows = load_matrix(write(tmp_path, f"  - {ROW}\n  - {ROW.replace('system: bm25', 'system: bm52')}\n"))
    with pytest.raises(ConfigError, match="row 2 .*unknown system 'bm52'"):
        validate(rows, "m.yaml")
    rows = load_matrix(write(tmp_path, f"  - {ROW.replace('ndcg@10', 'ndgc@10')}\n"))
    with pytest.raises(ConfigError, match="unknown metric 'ndgc@10'"):
        validate(rows)
    rows = load_matrix(write(tmp_path, f"  - {ROW.replace(str(TINY), '/no/such/folder')}\n"))
    with pytest.raises(ConfigError, match="/no/such/folder"):
        validate(rows)
    validate(load_matrix(write(tmp_path, f"  - {ROW}\n")))


def fake(system, dataset, scores, p50):
    qids = [f"q{i}" for i in range(len(scores))]
    return Evaluation(
        system,
        dataset,
        {"ndcg@10": float(np.mean(scores))},
        qids,
        {"ndcg@10": np.asarray(scores, float)},
        n_queries=len(qids),
        latency_ms={"p50": p50, "p99": 2 * p50},
        qps=1e3 / p50,
        index_bytes=2**20,
        doc_nnz_avg=10.0,
        query_nnz_avg=3.0,
        flops=p50,
    )


def test_report_files_and_markers(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.uniform(0.1, 0.5, 100)
    results = [
        fake("weak", "ds", base, 1.0),
        fake("strong", "ds", base + 0.3, 5.0),
        fake("weak", "ds2", base, 1.0),
        fake("strong", "ds2", base, 2.0),
    ]
    report = build_report(results, ["weak", "strong"], ["ds", "ds2"])
    table = format_table(report)
    assert "(b) strong" in table and ">a" in table
    paths = write_report(report, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "<sup>a</sup>" in md and md.count("<sup>") == 1  # only strong on ds beats weak
    assert {p.name for p in paths} == {"report.json", "report.md", "quality_latency.png", "quality_flops.png"}
    assert all(p.stat().st_size > 1000 for p in paths if p.suffix == ".png")
