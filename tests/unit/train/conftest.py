"""Fixtures of the training tests: a tiny random BertForMaskedLM (tests/unit/encoders/tiny_models.py)
and the tiny BEIR folder tests/data/train-tiny."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
TRAIN_TINY = REPO / "tests" / "data" / "train-tiny"


def _tiny_models():
    if "tiny_models" in sys.modules:
        return sys.modules["tiny_models"]
    spec = importlib.util.spec_from_file_location("tiny_models", HERE.parent / "encoders" / "tiny_models.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["tiny_models"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny_models():
    return _tiny_models()


@pytest.fixture(scope="session")
def train_mlm(tmp_path_factory) -> Path:
    pytest.importorskip("transformers")
    return _tiny_models().make_mlm(tmp_path_factory.mktemp("train-models") / "mlm", seed=3)


@pytest.fixture(scope="session")
def train_tiny() -> Path:
    return TRAIN_TINY
