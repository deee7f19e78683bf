"""The shipped uniCOIL (lsr/models/unicoil, trained with lsr train on all-MiniLM-L6-v2): a bare
``--encoder unicoil`` indexes and searches with it, and its vectors hold only the BM25 analyzer's terms
of the text's own words."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lsr.cli import main
from lsr.encoders import default_model

pytest.importorskip("torch")
pytest.importorskip("transformers")

DOCS = {
    "p1": "The capital of France is Paris, on the Seine.",
    "p2": "Paris Hilton is an American media personality.",
    "p3": "Berlin is the capital and largest city of Germany.",
    "p4": "Cooking pasta takes about ten minutes in boiling water.",
}


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    if default_model("unicoil") is None:
        pytest.fail("lsr/models/unicoil is missing: it ships with the package")
    folder = tmp_path_factory.mktemp("unicoil")
    corpus = folder / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": k, "text": v}) + "\n" for k, v in DOCS.items()))
    out = folder / "idx"
    assert main(["index", "--corpus", str(corpus), "--encoder", "unicoil", "--out", str(out), "--quiet"]) == 0
    return out


def test_bare_unicoil_uses_the_shipped_model_and_ranks(index, capsys):
    meta = json.loads((index / "meta.json").read_text())
    assert Path(meta["encoder"]["model"]).resolve() == default_model("unicoil")
    capsys.readouterr()
    assert main(["search", "--index", str(index), "what is the capital of france", "--k", "3"]) == 0
    first = capsys.readouterr().out.strip().splitlines()[0]
    assert "p1" in first


def test_no_expansion_only_the_analyzed_words(index):
    from lsr.config import BM25Config
    from lsr.encoders.bm25 import make_analyzer
    from lsr.searcher import Searcher

    meta = json.loads((index / "meta.json").read_text())
    assert meta["encoder"]["terms"] == "words"
    vocab = json.loads((index / "vocab.json").read_text())
    corpus_terms = {t for text in DOCS.values() for t in make_analyzer(BM25Config())(text)}
    assert set(vocab) <= corpus_terms  # the documents' analyzed words, nothing added
    terms, weights = Searcher(index).encode_texts(["capital of france"]).row(0)
    assert len(terms) > 0 and np.all(weights > 0)
    # the query's own analyzed words ("of" is a stopword), nothing added
    assert {vocab[t] for t in terms} <= set(make_analyzer(BM25Config())("capital of france"))
