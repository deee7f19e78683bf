"""Every shipped training config loads (every key is checked before a model loads)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsr.train.config import load_train_config

CONFIGS = sorted((Path(__file__).resolve().parents[3] / "configs").glob("train-*.yaml"))


def test_there_are_training_configs():
    assert len(CONFIGS) >= 5


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads(path):
    cfg = load_train_config(str(path))
    assert cfg.name and cfg.train.steps > 0


def test_the_shipped_unicoil_recipe_is_the_shipped_models():
    """configs/train-minilm-unicoil-words.yaml trains what lsr/models/unicoil records it was trained with."""
    import json

    root = Path(__file__).resolve().parents[3]
    cfg = load_train_config(str(root / "configs" / "train-minilm-unicoil-words.yaml"))
    record = json.loads((root / "lsr" / "models" / "unicoil" / "lsr_train.json").read_text())["config"]
    for section in ("model", "loss", "distill", "optim", "train"):
        for key, value in record[section].items():
            if section == "model" and key == "init":
                continue  # a folder on the GPU machine there, the packaged MiniLM here
            want = tuple(value) if isinstance(value, list) else value
            assert getattr(getattr(cfg, section), key) == want, (section, key)
