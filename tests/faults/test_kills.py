"""A few SIGKILL trials (scripts/kill_trials.py runs 100): ``lsr index --overwrite`` killed at random
moments leaves the old index or the new one, complete and verified; ``lsr encode`` killed mid-corpus
then run again gives the vectors of an uninterrupted run; ``lsr train`` killed then resumed gives its
model."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("kill_trials", REPO / "scripts" / "kill_trials.py")
kill_trials = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kill_trials)


@pytest.fixture(scope="module")
def needs_data():
    if not (kill_trials.SCIFACT / "corpus.jsonl.gz").is_file():
        pytest.skip(f"BEIR SciFact not found at {kill_trials.SCIFACT} (set LSR_SHARED_DATA)")


pytestmark = pytest.mark.faults


def test_index_overwrite_killed_leaves_the_old_or_the_new_index(tmp_path, needs_data):
    trials = kill_trials.IndexTrials(tmp_path, docs=600)
    rnd = random.Random(1)
    rows = []
    for i in range(3):
        (tmp_path / f"t{i}").mkdir()
        rows.append(trials.trial(rnd, tmp_path / f"t{i}"))
    assert all(r["recovered"] for r in rows), rows


@pytest.mark.slow  # five runs of splade-tiny: a few minutes on a loaded CI machine
def test_encode_killed_then_run_again_equals_an_uninterrupted_encode(tmp_path, needs_data):
    if not (kill_trials.SPLADE_TINY / "model.safetensors").is_file():
        pytest.skip("models/splade-tiny is missing (scripts/fetch_models.py)")
    trials = kill_trials.EncodeTrials(tmp_path, docs=120)
    rnd = random.Random(2)
    rows = []
    for i in range(2):
        (tmp_path / f"t{i}").mkdir()
        rows.append(trials.trial(rnd, tmp_path / f"t{i}"))
    assert all(r["recovered"] for r in rows), rows


@pytest.mark.slow  # three runs of a tiny random BERT: a few minutes on a loaded CI machine
def test_train_killed_then_resumed_equals_an_uninterrupted_run(tmp_path):
    trials = kill_trials.TrainTrials(tmp_path)
    (tmp_path / "t0").mkdir()
    row = trials.trial(random.Random(3), tmp_path / "t0")
    assert row["recovered"], row
