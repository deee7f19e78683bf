"""The index unit tests check the block-max kernels on small random collections, so safe mode runs
block-max here at every size (``Index.exhaustive_docs = 0``); test_blockmax checks the default, which
scores small collections exhaustively in safe mode."""

from __future__ import annotations

import pytest

from lsr.index import Index


@pytest.fixture(autouse=True)
def _safe_mode_runs_block_max(monkeypatch):
    monkeypatch.setattr(Index, "exhaustive_docs", 0)
