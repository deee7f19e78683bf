"""scripts/gpu_train.py as the GPU machine runs it (from the editable install of the checkout): a toy run
with ranx, PyStemmer and ir_datasets made unimportable (the GPU machine has none of them)."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[3]

# python -c BLOCKED SCRIPT ARGS...: runs SCRIPT as __main__ with the eval-only dependencies blocked
BLOCKED = """
import importlib.abc, runpy, sys

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"ranx", "Stemmer", "ir_datasets"}:
            raise ImportError(f"{name} is blocked: the GPU machine does not have it")

sys.meta_path.insert(0, Blocker())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_toy_run_without_eval_dependencies(train_mlm, tmp_path):
    from lsr.cli import main

    prepared = tmp_path / "prep"
    assert (
        main(
            [
                "train-prepare",
                "--config",
                str(REPO / "configs" / "train-toy.yaml"),
                "--set",
                f"prepare.dataset={REPO / 'tests' / 'data' / 'train-tiny'}",
                "--out",
                str(prepared),
                "--quiet",
            ]
        )
        == 0
    )
    out = tmp_path / "OUT"
    cmd = [
        sys.executable,
        "-c",
        BLOCKED,
        "scripts/gpu_train.py",
        "--out",
        str(out),
        "--work",
        str(tmp_path / "work"),
        "--set",
        f"data.prepared={prepared}",
        "--set",
        f"model.init={train_mlm}",
        "--set",
        "train.steps=4",
        "--set",
        "train.eval_every=2",
        "--test-dataset",
        str(REPO / "tests" / "data" / "train-tiny"),
        "--run",
        "configs/train-toy.yaml::name=toy-if::model.kind=inference-free",
        "--run",
        "configs/train-toy.yaml::name=broken::optim.lr=-1",
    ]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 1, (
        res.stdout[-3000:] + res.stderr[-3000:]
    )  # the broken run fails, the others ran
    runs = json.loads((out / "runs.json").read_text())
    assert [r["ok"] for r in runs] == [True, False] and "optim.lr" in runs[1]["error"]
    test = runs[0]["test"]  # the best model scored on the held-out test split, after training
    assert test["split"] == "test" and test["n_queries"] > 0 and 0.0 <= test["ndcg@10"] <= 1.0
    assert sorted(p.name for p in out.iterdir()) == ["runs.json", "toy-if.tar.gz"]
    modules = json.loads(next(x for x in res.stdout.splitlines() if x.startswith('{"lsr"')))
    for path in modules.values():  # the editable install imports this checkout
        assert Path(path).resolve().is_relative_to(REPO), modules
    with tarfile.open(out / "toy-if.tar.gz") as tar:
        names = tar.getnames()
    assert (
        "toy-if/best/idf.json" in names
        and "toy-if/summary.json" in names
        and "toy-if/train_log.jsonl" in names
    )
    assert not any("checkpoint" in n for n in names)
