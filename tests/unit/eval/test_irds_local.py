"""A local BEIR folder or zip registered for an ir_datasets id; the offline error names the alternative."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from lsr.data import irds
from lsr.data.corpus import open_corpus
from lsr.errors import DatasetUnavailableError
from lsr.eval.datasets import load_eval_dataset, resolve_dataset

TINY = Path(__file__).resolve().parents[2] / "data" / "beir-tiny"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("LSR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LSR_IRDS_REGISTRY", raising=False)
    monkeypatch.setattr(irds, "_LOCAL", {})


def test_registered_folder_serves_the_id():
    irds.register_local("beir/tiny/test", TINY)
    ds = load_eval_dataset("beir/tiny/test")
    assert ds.queries.keys() == ds.qrels.keys() and set(ds.qrels) == {"q1", "q2"}
    assert [d.id for d in open_corpus("beir/tiny/test")][:2] == ["d1", "d2"]
    assert resolve_dataset("beir/tiny/test").kind == "irds"


def test_zip_and_registry_file(tmp_path):
    archive = tmp_path / "tiny.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in TINY.rglob("*"):
            if p.is_file():
                zf.write(p, Path("tiny") / p.relative_to(TINY))
    irds.register_local("beir/tiny/dev", archive, persist=True)
    saved = json.loads(irds.registry_path().read_text())
    assert saved == {"beir/tiny/dev": str(archive)}
    irds._LOCAL.clear()  # a new process: only the registry file knows the id
    root, split = irds.local_folder("beir/tiny/dev")
    assert split == "dev" and (root / "corpus.jsonl").is_file()
    with pytest.raises(FileNotFoundError, match="not a BEIR folder"):
        irds.register_local("x", tmp_path)


def test_unknown_id_names_the_local_alternative():
    pytest.importorskip("ir_datasets")
    with pytest.raises(DatasetUnavailableError, match="--irds-local"):
        load_eval_dataset("no-such/dataset/test")
    with pytest.raises(FileNotFoundError, match="--irds-local"):
        resolve_dataset("no-such/dataset/test")
