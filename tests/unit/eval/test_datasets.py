"""Named datasets of ``lsr eval``: the staged out-of-domain collections and the group ``ood``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lsr.cli import main
from lsr.eval.datasets import DATASET_GROUPS, expand_datasets, resolve_dataset

TINY = Path(__file__).resolve().parents[2] / "data" / "beir-tiny"
OOD = ["ood-adi", "ood-time", "ood-med", "ood-cacm", "ood-lisa", "ood-npl"]


@pytest.fixture
def shared(tmp_path, monkeypatch):
    """A staged-data folder holding ``ood/adi`` and ``beir/scifact`` (copies of the tiny BEIR folder)."""
    for rel in ("ood/adi", "beir/scifact"):
        shutil.copytree(TINY, tmp_path / rel)
    monkeypatch.setenv("LSR_SHARED_DATA", str(tmp_path))
    return tmp_path


def test_ood_name_resolves_to_the_staged_folder(shared):
    ref = resolve_dataset("ood-adi")
    assert (ref.kind, ref.name, ref.split, ref.path) == ("beir", "ood-adi", "test", shared / "ood" / "adi")
    assert resolve_dataset("ood-adi", "dev").name == "ood-adi/dev"


def test_unknown_ood_name_lists_the_valid_ones(shared):
    with pytest.raises(FileNotFoundError) as exc:
        resolve_dataset("ood-cranfield")
    assert "'ood-cranfield'" in str(exc.value)
    assert "valid: ood-adi, ood-time, ood-med, ood-cacm, ood-lisa, ood-npl" in str(exc.value)


def test_unknown_name_lists_the_staged_names(shared):
    with pytest.raises(FileNotFoundError) as exc:
        resolve_dataset("scifakt")
    message = str(exc.value)
    assert "'scifakt'" in message
    assert "scifact, ood-adi, ood-time, ood-med, ood-cacm, ood-lisa, ood-npl, ood, dl19-rerank" in message


def test_known_ood_name_that_is_not_staged_names_the_folder(shared):
    with pytest.raises(FileNotFoundError, match=r"'ood-npl' needs .*ood/npl \(set LSR_SHARED_DATA\)"):
        resolve_dataset("ood-npl")


def test_missing_split_is_named(shared):
    with pytest.raises(FileNotFoundError, match="train"):
        resolve_dataset("ood-adi", "train")


def test_group_expands_to_all_six_in_order():
    assert list(DATASET_GROUPS) == ["ood"]
    assert expand_datasets(["ood"]) == OOD
    assert expand_datasets(["scifact", "ood", "ood-adi"]) == ["scifact", *OOD]  # repeats dropped
    assert expand_datasets(["ood-time", "ood"]) == ["ood-time", *[d for d in OOD if d != "ood-time"]]


def test_group_name_alone_is_not_one_dataset():
    with pytest.raises(FileNotFoundError, match="group of datasets"):
        resolve_dataset("ood")


def test_cli_refuses_a_bad_name_before_any_work(shared, tmp_path, capsys):
    args = ["eval", "systems", "--systems", "bm25", "--datasets", "ood-adi,ood-nope"]
    assert main([*args, "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "ood-nope" in err and "ood-adi, ood-time" in err
    assert not any(tmp_path.glob("bm25-*"))  # nothing was built


def test_cli_group_runs_every_collection(shared, tmp_path, capsys):
    # only ood/adi is staged here: the group expands to all six and the first missing one is refused
    assert (
        main(["eval", "systems", "--systems", "bm25", "--datasets", "ood", "--cache-dir", str(tmp_path)]) == 2
    )
    assert "ood-time" in capsys.readouterr().err
    out = tmp_path / "rep"
    args = ["eval", "systems", "--systems", "bm25", "--datasets", "ood-adi,scifact", "--report-dir", str(out)]
    assert main([*args, "--cache-dir", str(tmp_path / "cache"), "--quiet"]) == 0
    assert "ood-adi" in (out / "report.md").read_text() and "scifact" in (out / "report.md").read_text()
