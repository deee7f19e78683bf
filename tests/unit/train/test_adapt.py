"""``lsr adapt`` end to end on CPU with a tiny random BERT and a toy corpus: a model folder that
``lsr index --encoder splade:OUT`` indexes and searches, its record and card, the inference-free kind,
resumption after a crash, and the pieces (masking, dev split cut out of its documents)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from adapt_toy import settings_args, toy_docs, write_docs  # noqa: E402

from lsr.cli import main  # noqa: E402
from lsr.errors import LsrError  # noqa: E402
from lsr.searcher import Plan, Searcher  # noqa: E402
from lsr.train import adapt as adapt_module  # noqa: E402
from lsr.train import trainer as train_loop  # noqa: E402
from lsr.train.data import cut_from_documents, load_prepared, prepare_corpus_dataset  # noqa: E402
from lsr.train.mlm import mask_tokens  # noqa: E402


def _adapt(encoder: str, corpus: Path, out: Path, *extra: str) -> int:
    return main(
        ["adapt", "--encoder", encoder, "--corpus", str(corpus), "--out", str(out), "--quiet"]
        + settings_args()
        + list(extra)
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_docs(tmp_path_factory.mktemp("adapt-corpus") / "corpus.jsonl", toy_docs(30))


@pytest.fixture(scope="module")
def adapted(corpus, train_mlm, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("adapt") / "model"
    assert _adapt(f"splade:{train_mlm}", corpus, out) == 0
    return out


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForMaskedLM

    return AutoModelForMaskedLM.from_pretrained(str(folder)).float().state_dict()


def test_adapted_folder_record_and_card(adapted, corpus, train_mlm):
    record = json.loads((adapted / "lsr_adapt.json").read_text())
    assert record["kept_start"] is False
    assert record["kind"] == "splade" and record["adapted_from"] == str(train_mlm.resolve())
    assert record["corpus_sha256"] == hashlib.sha256(corpus.read_bytes()).hexdigest()
    assert record["corpus_docs"] == record["docs_used"] == 30
    assert record["steps"] == 6 and record["labels_used"] is False
    assert record["mlm"]["steps"] == 4 and record["teachers"] == ["bm25"]
    mlm_dev, before = record["mlm"]["dev"]["ndcg@10"], record["dev"]["before"]["ndcg@10"]
    assert record["mlm"]["kept"] is (mlm_dev >= before)
    assert set(record["seconds"]) >= {"prepare", "mlm", "dev_before", "train", "total"}
    for when in ("before", "after"):
        assert 0.0 <= record["dev"][when]["ndcg@10"] <= 1.0 and record["dev"][when]["doc_nnz"] > 0
    assert record["pseudo_queries"]["dev"] > 0 and record["pseudo_queries"]["title"] > 0
    card = (adapted / "README.md").read_text()
    assert "lsr adapt" in card and str(corpus) in card and "--encoder splade:FOLDER" in card
    trained = json.loads((adapted / "lsr_train.json").read_text())
    assert trained["kind"] == "splade" and trained["init"] == str(train_mlm.resolve()) and trained["adapted"]
    assert not Path(f"{adapted}.work").exists()  # removed after success (adapt.keep_work false)


def test_adapted_weights_moved(adapted, train_mlm):
    start, after = _weights(train_mlm), _weights(adapted)
    moved = [k for k in start if not torch.allclose(start[k], after[k], atol=1e-3)]
    assert any("encoder.layer" in k for k in moved)


def test_continued_mlm_trains_the_encoder_and_keeps_the_head(train_mlm, tmp_path):
    from lsr.train.adapt_config import AdaptSettings
    from lsr.train.mlm import continued_mlm

    settings = AdaptSettings(mlm_steps=5, mlm_batch_size=4, mlm_max_length=32, mlm_lr=1e-3)
    texts = [d["title"] + " " + d["text"] for d in toy_docs(12)]
    summary = continued_mlm(train_mlm, texts, tmp_path / "mlm", settings, torch.device("cpu"), seed=0)
    assert summary["steps"] == 5 and summary["frozen_parameters"] > 0
    start, after = _weights(train_mlm), _weights(tmp_path / "mlm")
    head = [k for k in start if "decoder" in k or k.endswith("predictions.bias") or "word_embeddings" in k]
    assert head and all(torch.equal(start[k], after[k]) for k in head)
    assert not torch.equal(
        start["bert.encoder.layer.0.attention.self.query.weight"],
        after["bert.encoder.layer.0.attention.self.query.weight"],
    )


def test_lsr_index_loads_and_searches_the_adapted_model(adapted, corpus, tmp_path):
    index = tmp_path / "index"
    args = ["index", "--corpus", str(corpus), "--encoder", f"splade:{adapted}", "--out", str(index)]
    assert main([*args, "--quiet"]) == 0
    searcher = Searcher(index)
    doc = toy_docs(30)[7]
    hits = searcher.hits(searcher.search(doc["title"] + " " + doc["text"], Plan(k=5)))
    assert len(hits) == 5 and hits[0].score > 0
    assert json.loads((index / "meta.json").read_text())["encoder"]["name"] == "splade"


def test_adapt_inference_free(corpus, train_mlm, tmp_path):
    out = tmp_path / "if"
    assert _adapt(f"inference-free:{train_mlm}", corpus, out, "--set", "adapt.mlm_steps=0") == 0
    record = json.loads((out / "lsr_adapt.json").read_text())
    assert record["kind"] == "inference-free" and record["mlm"] is None
    assert (out / "idf.json").is_file()
    index = tmp_path / "index"
    args = ["index", "--corpus", str(corpus), "--encoder", f"inference-free:{out}", "--out", str(index)]
    assert main([*args, "--set", "encoder.inference_free.query_weights=model", "--quiet"]) == 0
    # an inference-free folder cannot be adapted as splade (its record says inference-free)
    assert _adapt(f"splade:{out}", corpus, tmp_path / "again") == 2


def test_the_start_models_query_idf_carries_over(corpus, train_mlm, tmp_path):
    """A shipped model's lsr_query.json (its selected encoder.query_idf) and lsr_doc.json (documents' tf)
    go with its adapted copy."""
    import shutil

    start = tmp_path / "start"
    shutil.copytree(train_mlm, start)
    (start / "lsr_query.json").write_text(json.dumps({"query_idf": 0.25}))
    tf = {"k1": 1.0, "b": 0.5, "avgdl": 20.0}
    (start / "lsr_doc.json").write_text(json.dumps({"tf": tf}))
    out = tmp_path / "adapted"
    assert _adapt(f"splade:{start}", corpus, out, "--set", "adapt.keep_start_if_worse=false") == 0
    assert json.loads((out / "lsr_adapt.json").read_text())["kept_start"] is False
    assert json.loads((out / "lsr_query.json").read_text())["query_idf"] == 0.25
    index = tmp_path / "index"
    assert (
        main(["index", "--corpus", str(corpus), "--encoder", f"splade:{out}", "--out", str(index), "--quiet"])
        == 0
    )
    meta = json.loads((index / "meta.json").read_text())["encoder"]
    assert meta["query_idf"] == 0.25 and meta["tf"] == tf


@pytest.mark.parametrize("words", [False, True])
def test_adapt_unicoil(corpus, tiny_models, tmp_path, words):
    from safetensors.torch import save_file

    from lsr.encoders.words import analyzer_section, write_terms_file

    start = tiny_models.make_backbone(tmp_path / "start")  # a tiny random BertModel + a uniCOIL head
    torch.manual_seed(0)
    head = {"tok_proj.weight": torch.randn(1, 32) * 0.1, "tok_proj.bias": torch.full((1,), 0.5)}
    save_file(head, str(start / "unicoil_head.safetensors"))
    if words:  # a uniCOIL of word terms (the shipped default is one) stays one
        write_terms_file(start, analyzer_section())
    out = tmp_path / "unicoil"
    assert _adapt(f"unicoil:{start}", corpus, out) == 0
    record = json.loads((out / "lsr_adapt.json").read_text())
    assert record["kind"] == "unicoil" and record["mlm"] is None  # no MLM head: no MLM phase
    assert (out / "unicoil_head.safetensors").is_file()
    assert (out / "lsr_terms.json").is_file() == words
    index = tmp_path / "index"
    args = ["index", "--corpus", str(corpus), "--encoder", f"unicoil:{out}", "--out", str(index)]
    assert main([*args, "--quiet"]) == 0
    assert ("terms" in json.loads((index / "meta.json").read_text())["encoder"]) == words


def test_start_model_kept_when_the_dev_split_drops(corpus, train_mlm, tmp_path, monkeypatch):
    real = adapt_module._dev_before

    def unbeatable(*args):
        return {**real(*args), "ndcg@10": 1.5}  # above any nDCG the adapted model can reach

    monkeypatch.setattr(adapt_module, "_dev_before", unbeatable)
    out = tmp_path / "kept"
    assert _adapt(f"splade:{train_mlm}", corpus, out, "--set", "adapt.keep_start_if_worse=true") == 0
    record = json.loads((out / "lsr_adapt.json").read_text())
    assert record["kept_start"] is True and record["dev"]["after"]["ndcg@10"] < 1.5
    start, published = _weights(train_mlm), _weights(out)
    assert all(torch.equal(start[k], published[k]) for k in start)
    assert "start model is kept" in (out / "README.md").read_text()
    # with the setting off (the toy settings), the adapted weights are published whatever the dev says
    off = tmp_path / "adapted"
    assert _adapt(f"splade:{train_mlm}", corpus, off) == 0
    assert json.loads((off / "lsr_adapt.json").read_text())["kept_start"] is False
    assert any(not torch.equal(start[k], v) for k, v in _weights(off).items())


def test_mlm_phase_dropped_when_the_dev_split_drops(corpus, train_mlm, tmp_path, monkeypatch):
    real, inits = adapt_module._dev_of, []

    def mlm_looks_worse(cfg, work, data, state, key, init):
        result = real(cfg, work, data, state, key, init)
        return {**result, "ndcg@10": -1.0} if key == "dev_after_mlm" else result

    def record_init(train_cfg, *args):
        inits.append(train_cfg.model.init)
        return real_train(train_cfg, *args)

    real_train = adapt_module._train
    monkeypatch.setattr(adapt_module, "_dev_of", mlm_looks_worse)
    monkeypatch.setattr(adapt_module, "_train", record_init)
    out = tmp_path / "m"
    assert _adapt(f"splade:{train_mlm}", corpus, out) == 0
    record = json.loads((out / "lsr_adapt.json").read_text())
    assert record["mlm"]["kept"] is False and inits == [str(train_mlm.resolve())]
    assert "dropped" in (out / "README.md").read_text()


def test_resume_after_a_crash(corpus, train_mlm, tmp_path, monkeypatch, capsys):
    out, work = tmp_path / "model", tmp_path / "work"
    real_micro_batch = train_loop._micro_batch

    def crash_at_step_4(run):
        if run.step == 4:
            raise RuntimeError("simulated crash")
        return real_micro_batch(run)

    monkeypatch.setattr(train_loop, "_micro_batch", crash_at_step_4)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _adapt(f"splade:{train_mlm}", corpus, out, "--work", str(work))
    assert not out.exists() and (work / "run" / "checkpoint" / "state.json").is_file()
    monkeypatch.setattr(train_loop, "_micro_batch", real_micro_batch)

    # without --resume the work directory is refused; with --resume, prepare and MLM are not redone
    assert _adapt(f"splade:{train_mlm}", corpus, out, "--work", str(work)) == 2
    assert "--resume" in capsys.readouterr().err

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished step ran again")

    monkeypatch.setattr("lsr.train.data.prepare_corpus_dataset", must_not_run)
    monkeypatch.setattr("lsr.train.mlm.continued_mlm", must_not_run)
    resume = ["--work", str(work), "--resume", "--set", "adapt.keep_work=true"]
    assert _adapt(f"splade:{train_mlm}", corpus, out, *resume) == 0
    log = [json.loads(x) for x in (work / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["event"] == "eval"] == [3, 6]  # step 3 kept, not redone
    record = json.loads((out / "lsr_adapt.json").read_text())
    assert record["steps"] == 6 and record["best_step"] in (3, 6)


def test_resume_refuses_another_corpus(corpus, train_mlm, tmp_path, monkeypatch):
    work = tmp_path / "work"
    monkeypatch.setattr(train_loop, "_micro_batch", lambda run: (_ for _ in ()).throw(RuntimeError("crash")))
    with pytest.raises(RuntimeError):
        _adapt(f"splade:{train_mlm}", corpus, tmp_path / "m", "--work", str(work))
    other = write_docs(tmp_path / "other.jsonl", toy_docs(30, seed=1))
    with pytest.raises(LsrError, match="other inputs"):
        adapt_module._open_work(work, adapt_module.check_inputs(_config(train_mlm), str(other)), True, False)


def _config(model: Path):
    from adapt_toy import TOY_SETTINGS

    from lsr.train.adapt_config import load_adapt_config

    return load_adapt_config("adapt", [*TOY_SETTINGS, "model.kind=splade", f"model.init={model}"])


# --- the pieces -----------------------------------------------------------------------------------------


def test_mask_tokens_masks_only_maskable_tokens():
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 100, (64, 40))
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[:, 0] = maskable[:, -5:] = False  # [CLS], [SEP] and padding
    inputs, labels = mask_tokens(ids, maskable, mask_id=4, vocab_size=100, probability=0.15, generator=gen)
    chosen = labels != -100
    assert not chosen[~maskable].any() and torch.equal(labels[chosen], ids[chosen])
    assert 0.12 < chosen.sum() / maskable.sum() < 0.18
    masked = (inputs == 4) & chosen
    assert 0.75 < masked.sum() / chosen.sum() < 0.85
    assert torch.equal(inputs[~chosen], ids[~chosen])


def test_mask_tokens_always_chooses_one():
    ids = torch.tensor([[2, 11, 3]])
    maskable = torch.tensor([[False, True, False]])
    _, labels = mask_tokens(ids, maskable, 4, 20, 1e-9, torch.Generator().manual_seed(0))
    assert labels.tolist() == [[-100, 11, -100]]


def test_cut_from_documents():
    docs = {"a": "Cats Sat. the cat sat on the mat today .", "b": "only this"}
    queries = [("title:a", "Cats Sat.", "title", "a"), ("span:b", "only this", "span", "b")]
    kept = cut_from_documents(queries, docs)
    assert kept == queries[:1] and docs == {"a": "the cat sat on the mat today .", "b": "only this"}


def test_prepare_corpus_dataset_holds_out_documents(corpus, tmp_path):
    from adapt_toy import TOY_SETTINGS

    from lsr.train.adapt_config import load_adapt_config

    cfg = load_adapt_config("adapt", TOY_SETTINGS).prepare
    meta = prepare_corpus_dataset(cfg, corpus, tmp_path / "p")
    data = load_prepared(tmp_path / "p")
    dev_docs = {d for q in data.dev for d in q.rels}
    train_pos = {e.cands[0] for e in data.train}
    assert data.dev and data.train and meta["qrels"] is None
    assert not dev_docs & train_pos
    texts = dict(zip(data.doc_ids, data.doc_texts, strict=True))
    assert all(q.query not in texts[next(iter(q.rels))] for q in data.dev)
    assert meta["counts"]["corpus_docs"] == 30 and meta["counts"]["dev_queries"] == len(data.dev)


def test_a_corpus_without_sentence_breaks_is_refused_before_any_work(tmp_path, monkeypatch):
    """Every text one unpunctuated sentence (as in the NPL collection): each dev pseudo-query would be
    its whole document, so none is left to select the checkpoint; said before mining or training."""
    from adapt_toy import TOY_SETTINGS

    from lsr.train.adapt_config import load_adapt_config

    words = "ionospheric measurements of electron density at low latitudes during solar flares".split()
    docs = [{"_id": f"n{i}", "title": "", "text": " ".join(words[i % 5 :] + [f"w{i}"])} for i in range(40)]
    corpus = write_docs(tmp_path / "c.jsonl", docs)
    monkeypatch.setattr("lsr.train.data._Scorers", None)  # mining must not start
    cfg = load_adapt_config("adapt", TOY_SETTINGS).prepare
    with pytest.raises(LsrError, match="no dev pseudo-query is left"):
        prepare_corpus_dataset(cfg, corpus, tmp_path / "p")
    assert not (tmp_path / "p").exists()
