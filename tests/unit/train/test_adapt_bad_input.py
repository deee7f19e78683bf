"""``lsr adapt`` refuses bad input with a clear error before any training: an empty corpus, a
one-document corpus, a corpus in another language, a model folder of the wrong kind (or none), an
existing non-empty --out; and its config refuses settings that would read labels."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from adapt_toy import TOY_SETTINGS, settings_args, toy_docs, write_docs

from lsr.cli import main
from lsr.errors import ConfigError
from lsr.train.adapt_checks import known_word_share, resolve_encoder
from lsr.train.adapt_config import load_adapt_config

SHIPPED = Path(__file__).resolve().parents[3] / "lsr" / "models"

RUSSIAN = [
    "Москва является столицей Российской Федерации и крупнейшим городом страны.",
    "Исследование показало, что витамин D снижает риск рака у взрослых людей.",
    "Кофе и качество сна у взрослых: систематический обзор клинических исследований.",
]
CHINESE = [
    "北京是中华人民共和国的首都，也是全国的政治和文化中心。",
    "研究表明维生素D可以降低成年人患癌症的风险。",
    "咖啡与成年人睡眠质量的关系：一项系统综述。",
]


@pytest.fixture(autouse=True)
def no_training(monkeypatch):
    """Every refusal here must come before any work: preparing data, MLM or training fails the test."""

    def must_not_run(*args, **kwargs):
        raise AssertionError("adapt started working on bad input")

    monkeypatch.setattr("lsr.train.data.prepare_corpus_dataset", must_not_run)
    monkeypatch.setattr("lsr.train.mlm.continued_mlm", must_not_run)
    monkeypatch.setattr("lsr.train.trainer.train", must_not_run)


def _refused(capsys, encoder: str, corpus: Path, out: Path, *extra: str) -> str:
    """Run ``lsr adapt``; it must exit 2; returns its error message."""
    argv = ["adapt", "--encoder", encoder, "--corpus", str(corpus), "--out", str(out), "--quiet"]
    code = main(argv + settings_args() + list(extra))
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("lsr adapt: error: ")
    assert not out.exists() or not any(out.iterdir()) or "already exists" in err
    return err


def _docs(texts: list[str], n: int) -> list[dict[str, str]]:
    return [{"_id": f"d{i}", "title": "", "text": texts[i % len(texts)]} for i in range(n)]


def test_empty_corpus(capsys, train_mlm, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("", encoding="utf-8")
    err = _refused(capsys, f"splade:{train_mlm}", corpus, tmp_path / "out")
    assert "empty (no document)" in err and "at least 10" in err


def test_corpus_of_empty_texts(capsys, train_mlm, tmp_path):
    corpus = write_docs(
        tmp_path / "c.jsonl", [{"_id": f"d{i}", "title": "", "text": "  "} for i in range(20)]
    )
    err = _refused(capsys, f"splade:{train_mlm}", corpus, tmp_path / "out")
    assert "20 documents, all without text" in err


def test_one_document_corpus_names_the_minimum(capsys, train_mlm, tmp_path):
    corpus = write_docs(tmp_path / "c.jsonl", toy_docs(1))
    err = _refused(capsys, f"splade:{train_mlm}", corpus, tmp_path / "out")
    assert "1 document with text is too small" in err and "at least 10" in err


def test_default_minimum_is_50_documents(capsys, train_mlm, tmp_path):
    corpus = write_docs(tmp_path / "c.jsonl", toy_docs(49))
    argv = [
        "adapt",
        "--encoder",
        f"splade:{train_mlm}",
        "--corpus",
        str(corpus),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(argv) == 2
    assert "49 documents with text is too small" in capsys.readouterr().err


@pytest.mark.parametrize("texts", [RUSSIAN, CHINESE], ids=["russian", "chinese"])
def test_corpus_in_another_language(capsys, tmp_path, texts):
    corpus = write_docs(tmp_path / "c.jsonl", _docs(texts, 20))
    err = _refused(capsys, f"splade:{SHIPPED / 'splade'}", corpus, tmp_path / "out")
    assert "another language" in err and "adapt.min_known_words" in err


def test_known_word_share_rule():
    from lsr.encoders.transformer import load_tokenizer

    tokenizer = load_tokenizer(SHIPPED / "splade")
    english = [d["title"] + " " + d["text"] for d in toy_docs(20)]
    shares = {
        name: known_word_share(tokenizer.backend_tokenizer, texts, tokenizer.unk_token_id)
        for name, texts in (("en", english), ("ru", RUSSIAN), ("zh", CHINESE))
    }
    assert shares["en"] > 0.9 and shares["ru"] < 0.2 and shares["zh"] == 0.0
    assert known_word_share(tokenizer.backend_tokenizer, ["", "  ..."], tokenizer.unk_token_id) == 1.0


def test_dense_bert_folder_is_not_splade(capsys, tiny_models, tmp_path):
    dense = tiny_models.make_backbone(tmp_path / "dense")
    corpus = write_docs(tmp_path / "c.jsonl", toy_docs(20))
    err = _refused(capsys, f"splade:{dense}", corpus, tmp_path / "out")
    assert "BertModel" in err and "no masked-language-model head" in err


def test_inference_free_folder_given_as_splade(capsys, tmp_path):
    corpus = write_docs(tmp_path / "c.jsonl", toy_docs(20))
    err = _refused(capsys, f"splade:{SHIPPED / 'inference-free'}", corpus, tmp_path / "out")
    assert "holds a inference-free model" in err and "--encoder inference-free:" in err


def test_missing_folder_wrong_heads_and_bm25(capsys, tmp_path):
    corpus = write_docs(tmp_path / "c.jsonl", toy_docs(20))
    assert "no such model folder" in _refused(capsys, f"splade:{tmp_path / 'nope'}", corpus, tmp_path / "o")
    assert "not a Hugging Face model folder" in _refused(capsys, f"splade:{tmp_path}", corpus, tmp_path / "o")
    assert "bm25 has no model to adapt" in _refused(capsys, "bm25", corpus, tmp_path / "o")
    assert "no uniCOIL token-weight head" in _refused(
        capsys, f"unicoil:{SHIPPED / 'splade'}", corpus, tmp_path / "o"
    )
    assert "holds a unicoil model" in _refused(
        capsys, f"splade:{SHIPPED / 'unicoil'}", corpus, tmp_path / "o"
    )


def test_existing_out_needs_overwrite(capsys, train_mlm, tmp_path):
    corpus = write_docs(tmp_path / "c.jsonl", toy_docs(20))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    err = _refused(capsys, f"splade:{train_mlm}", corpus, out)
    assert "already exists and is not empty" in err and "--overwrite" in err
    assert (out / "keep.txt").read_text() == "mine"


def test_resume_with_nothing_to_resume(capsys, train_mlm, tmp_path):
    corpus = write_docs(tmp_path / "c.jsonl", toy_docs(20))
    err = _refused(capsys, f"splade:{train_mlm}", corpus, tmp_path / "out", "--resume")
    assert "holds no adapt run to resume" in err


def test_resolve_encoder_default_models():
    assert resolve_encoder("splade") == ("splade", (SHIPPED / "splade").resolve())
    # the default inference-free indexes the word-terms uniCOIL's documents: adapting it adapts that uniCOIL
    assert resolve_encoder("inference-free") == ("unicoil", (SHIPPED / "unicoil").resolve())
    kind, path = resolve_encoder(f"inference-free:{SHIPPED / 'inference-free'}")
    assert kind == "inference-free" and path == (SHIPPED / "inference-free").resolve()
    assert resolve_encoder(str(SHIPPED / "splade"))[0] == "splade"  # a bare folder: splade


@pytest.mark.parametrize(
    "override, message",
    [
        ("prepare.use_labels=true", "reads no labels"),
        ("prepare.dev_fraction=0", "select checkpoints"),
        ("adapt.mlm_probability=1.5", "adapt.mlm_probability"),
        ("adapt.nope=1", "unknown key"),
        ("adapt.method=finetune", "adapt.method"),
        ("adapt.select_queries=0", "adapt.select_queries"),
    ],
)
def test_config_refuses(override, message):
    with pytest.raises(ConfigError, match=message):
        load_adapt_config("adapt", [*TOY_SETTINGS, override])


def test_shipped_config_loads_for_both_kinds():
    for kind in ("splade", "inference-free"):
        cfg = load_adapt_config("adapt", [f"model.kind={kind}"])
        assert cfg.train_config().model.kind == kind and not cfg.prepare.use_labels


def test_corpus_digest_of_a_file_and_of_documents(tmp_path):
    import hashlib

    from lsr.data.corpus import Doc
    from lsr.train.adapt_checks import corpus_digest

    corpus = write_docs(tmp_path / "c.jsonl", toy_docs(3))
    digest = corpus_digest(corpus, [])
    assert digest == {
        "file": str(corpus.resolve()),
        "sha256": hashlib.sha256(corpus.read_bytes()).hexdigest(),
    }
    folder = tmp_path / "texts"  # not a BEIR folder: the documents as read are hashed
    folder.mkdir()
    docs = [Doc("a", "", "x y"), Doc("b", "t", "z")]
    by_docs = corpus_digest(folder, docs)
    assert by_docs["file"] == "" and by_docs["sha256"] != corpus_digest(folder, docs[:1])["sha256"]
