"""The pretrained splade-tiny (``python scripts/fetch_models.py``): recorded outputs, the CLI end to end,
and (slow) its SciFact quality. Skipped when ``models/splade-tiny`` is missing (set LSR_MODELS to look
elsewhere); CI fetches it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lsr.cli import main

pytest.importorskip("torch")
pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parents[2]
MODEL = Path(os.environ.get("LSR_MODELS", REPO / "models")) / "splade-tiny"
BEIR_TINY = REPO / "tests" / "data" / "beir-tiny"

SENTENCE = "Vitamin D supplementation lowers the risk of cancer in older adults."
# Recorded once from the unmodified BertForMaskedLM (full logits, log1p(relu), max over tokens),
# transformers 5.23 / torch 2.13 CPU; the tiled implementation gives the same to 4 decimals.
TOP_TERMS = [
    ("vitamin", 2.4334),
    ("d", 2.1614),
    ("supplement", 1.8803),
    ("tumor", 1.5833),
    ("adults", 1.5282),
    ("cancer", 1.5231),
    ("##ation", 1.5171),
    ("older", 1.5099),
    ("risk", 1.5042),
    ("adult", 1.3641),
    ("risks", 1.2218),
    ("old", 1.2191),
]
N_TERMS, WEIGHT_SUM = 35, 29.6833


@pytest.fixture(scope="module")
def splade_tiny() -> Path:
    if not (MODEL / "model.safetensors").is_file():
        pytest.skip(f"{MODEL} is missing: python scripts/fetch_models.py")
    return MODEL


def test_fixed_sentence_matches_the_recorded_output(splade_tiny):
    from lsr.config import load_config
    from lsr.encoders.splade import SpladeModel

    cfg = load_config().encoder
    for impl in ("fast", "reference"):
        model = SpladeModel(splade_tiny, cfg.transformer, impl=impl)
        terms, weights = model.encode([SENTENCE], cfg.prune).row(0)
        assert len(terms) == N_TERMS and float(weights.sum()) == pytest.approx(WEIGHT_SUM, abs=2e-3)
        pairs = zip(terms.tolist(), weights.tolist(), strict=True)
        top = sorted(pairs, key=lambda tw: -tw[1])[: len(TOP_TERMS)]
        assert [model.vocab[t] for t, _ in top] == [t for t, _ in TOP_TERMS]
        assert [w for _, w in top] == pytest.approx([w for _, w in TOP_TERMS], abs=2e-4)


@pytest.fixture(scope="module")
def indexes(splade_tiny, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("splade-tiny")
    out = {}
    for name, spec in (("splade", str(splade_tiny)), ("inference-free", f"inference-free:{splade_tiny}")):
        out[name] = tmp / name
        assert (
            main(["index", "--corpus", str(BEIR_TINY), "--encoder", spec, "--out", str(out[name]), "--quiet"])
            == 0
        )
    return out


@pytest.mark.parametrize("name", ["splade", "inference-free"])
def test_cli_index_search_eval(indexes, name, tmp_path, capsys):
    index = indexes[name]
    meta = json.loads((index / "meta.json").read_text())
    assert meta["encoder"]["name"] == name and meta["n_terms"] == 30522
    assert meta["encoder"]["model"] == str(MODEL.resolve())
    capsys.readouterr()
    assert main(["search", "--index", str(index), "a dog and a cat", "--k", "3"]) == 0
    assert capsys.readouterr().out.split()[1] == "d2"
    report = tmp_path / "r.json"
    assert (
        main(
            [
                "eval",
                "index",
                "--index",
                str(index),
                "--dataset",
                str(BEIR_TINY),
                "--k",
                "10",
                "--out",
                str(report),
                "--quiet",
            ]
        )
        == 0
    )
    data = json.loads(report.read_text())
    assert data["metrics"]["ndcg@10"] > 0.5 and data["query_nnz_avg"] > 1


def test_inference_free_queries_load_no_torch(indexes):
    code = (
        "import sys; from lsr.searcher import Searcher; "
        f"s = Searcher({str(indexes['inference-free'])!r}); q = s.encode_texts(['dogs chase cats']); "
        "print(q.nnz, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["3", "False"], out.stderr


@pytest.mark.slow
def test_scifact_quality(splade_tiny, scifact, tmp_path):
    """The issue's target: nDCG@10 0.64 +/- 0.01 (published: about 0.644). About 3 minutes on 2 cores."""
    index, report = tmp_path / "sf", tmp_path / "sf.json"
    assert (
        main(
            ["index", "--corpus", str(scifact), "--encoder", str(splade_tiny), "--out", str(index), "--quiet"]
        )
        == 0
    )
    assert (
        main(
            [
                "eval",
                "index",
                "--index",
                str(index),
                "--dataset",
                str(scifact),
                "--split",
                "test",
                "--out",
                str(report),
                "--quiet",
            ]
        )
        == 0
    )
    metrics = json.loads(report.read_text())["metrics"]
    assert 0.63 <= metrics["ndcg@10"] <= 0.65
