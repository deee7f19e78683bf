"""Shared fixtures: the staged offline data (../shared/data next to the repo) and a SciFact BM25 index.

A test that needs the staged data skips when it is missing, naming where it looked. With
``LSR_REQUIRE_DATA=1`` (set by .ci/run) such a skip is a failure instead: CI must not pass by skipping
the tests that check real data. A skip counts as one for missing data when its reason names the data
folder (``$LSR_SHARED_DATA``, default ``../shared/data``; or ``$LSR_DL_POOL``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LSR_SHARED_DATA") or REPO.parent / "shared" / "data")
SCIFACT = SHARED_DATA / "beir" / "scifact"
REQUIRE_DATA = os.environ.get("LSR_REQUIRE_DATA") == "1"
# Ray's usage telemetry off for the whole run (nothing leaves the machine): its collector threads
# otherwise stay alive in this process after the Ray tests and poll a Prometheus that is not there.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DATA_USAGE_DISABLED", "1")


def names_shared_data(reason: str) -> bool:
    """Whether a skip reason points at the staged data (so the skip means: the data is missing)."""
    places = [str(SHARED_DATA), "shared/data", "LSR_SHARED_DATA", os.environ.get("LSR_DL_POOL")]
    return any(place and place in reason for place in places)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    report: pytest.TestReport = yield
    if (
        REQUIRE_DATA
        and report.skipped
        and isinstance(report.longrepr, tuple)
        and not hasattr(report, "wasxfail")
    ):
        reason = report.longrepr[2].removeprefix("Skipped: ")
        if names_shared_data(reason):
            report.outcome = "failed"
            report.longrepr = f"LSR_REQUIRE_DATA=1, and this test skipped for missing data: {reason}"
    return report


@pytest.fixture(scope="session")
def scifact() -> Path:
    if not (SCIFACT / "corpus.jsonl.gz").is_file():
        pytest.skip(f"BEIR SciFact not found at {SCIFACT} (set LSR_SHARED_DATA)")
    return SCIFACT


@pytest.fixture(scope="session")
def scifact_bm25_index(scifact, tmp_path_factory) -> Path:
    """SciFact indexed with the default BM25 config, built once per test session through the CLI."""
    from lsr.cli import main

    out = tmp_path_factory.mktemp("scifact") / "bm25"
    assert main(["index", "--corpus", str(scifact), "--encoder", "bm25", "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="session")
def scifact_bm25_lucene_index(scifact, tmp_path_factory) -> Path:
    """SciFact indexed with the Lucene-exact preset (``--config bm25-lucene``), built once per session."""
    from lsr.cli import main

    out = tmp_path_factory.mktemp("scifact") / "bm25-lucene"
    args = [
        "index",
        "--corpus",
        str(scifact),
        "--encoder",
        "bm25",
        "--config",
        "bm25-lucene",
        "--out",
        str(out),
    ]
    args.append("--quiet")
    assert main(args) == 0
    return out
