"""Session fixtures: tiny random checkpoints (see tiny_models.py), built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_models import make_backbone, make_mlm


@pytest.fixture(scope="session")
def tiny_mlm(tmp_path_factory) -> Path:
    pytest.importorskip("transformers")
    return make_mlm(tmp_path_factory.mktemp("models") / "tiny-mlm")


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> Path:
    pytest.importorskip("transformers")
    return make_backbone(tmp_path_factory.mktemp("models") / "tiny-bert")
