"""Shared fixtures: the staged offline data (../shared/data next to the repo) and a SciFact BM25 index."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LSR_SHARED_DATA", REPO.parent / "shared" / "data"))
SCIFACT = SHARED_DATA / "beir" / "scifact"


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
