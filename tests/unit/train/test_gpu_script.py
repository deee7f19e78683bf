"""scripts/gpu_train.py on a bare copy of the checkout (no install): the import shim and a toy run with ranx,
PyStemmer and ir_datasets made unimportable (the GPU machine has none of them)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def bare_copy(tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("bare") / "repo"
    dst.mkdir()
    for item in ("lsr", "index", "eval", "service", "configs", "scripts"):
        if (REPO / item).is_dir():
            shutil.copytree(REPO / item, dst / item, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", dst / "pyproject.toml")
    return dst


def test_toy_run_without_eval_dependencies(bare_copy, train_mlm, tmp_path):
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
        "scripts/gpu_train.py",
        "--out",
        str(out),
        "--work",
        str(tmp_path / "work"),
        "--block-eval-deps",
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
    res = subprocess.run(cmd, cwd=bare_copy, capture_output=True, text=True, timeout=300)
    assert res.returncode == 1, (
        res.stdout[-3000:] + res.stderr[-3000:]
    )  # the broken run fails, the others ran
    runs = json.loads((out / "runs.json").read_text())
    assert [r["ok"] for r in runs] == [True, False] and "optim.lr" in runs[1]["error"]
    test = runs[0]["test"]  # the best model scored on the held-out test split, after training
    assert test["split"] == "test" and test["n_queries"] > 0 and 0.0 <= test["ndcg@10"] <= 1.0
    assert sorted(p.name for p in out.iterdir()) == ["runs.json", "toy-if.tar.gz"]
    modules = json.loads(next(x for x in res.stdout.splitlines() if x.startswith('{"lsr"')))
    for path in modules.values():  # the shim imports the copy, not the installed package
        assert path.startswith(str(bare_copy)), modules
    with tarfile.open(out / "toy-if.tar.gz") as tar:
        names = tar.getnames()
    assert (
        "toy-if/best/idf.json" in names
        and "toy-if/summary.json" in names
        and "toy-if/train_log.jsonl" in names
    )
    assert not any("checkpoint" in n for n in names)
