"""The 20-step CPU smoke run through the CLI on a tiny random model: logs, sharded fp16 model folders
that `lsr index` loads and searches, exact resumption, refused resumptions, configs rejected before a
model loads."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from lsr.cli import main  # noqa: E402
from lsr.train import model as train_model  # noqa: E402
from lsr.train import trainer as train_loop  # noqa: E402

TOY = str(Path(__file__).resolve().parents[3] / "configs" / "train-toy.yaml")


def _train(prepared: Path, mlm: Path, out: Path, *extra: str) -> int:
    return main(
        [
            "train",
            "--config",
            TOY,
            "--set",
            f"data.prepared={prepared}",
            "--set",
            f"model.init={mlm}",
            "--out",
            str(out),
            "--quiet",
            *extra,
        ]
    )


def _log(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, train_tiny) -> Path:
    out = tmp_path_factory.mktemp("prep") / "p"
    assert (
        main(
            [
                "train-prepare",
                "--config",
                TOY,
                "--set",
                f"prepare.dataset={train_tiny}",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    return out


@pytest.fixture(scope="module")
def toy_run(prepared, train_mlm, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "toy"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_model, "MAX_SHARD", "20KB")  # the tiny model is 50 KB: force several shards
        assert _train(prepared, train_mlm, run) == 0
    return run


def test_smoke_run_logs_and_summary(toy_run):
    log = _log(toy_run)
    train = [r for r in log if r["event"] == "train"]
    evals = [r for r in log if r["event"] == "eval"]
    assert [r["step"] for r in train] == [5, 10, 15, 20] and [r["step"] for r in evals] == [10, 20]
    for r in train:
        assert all(
            math.isfinite(r[k]) for k in ("loss", "nll", "kl", "margin_mse", "flops_doc", "flops_query")
        )
        assert r["doc_nnz"] > 0 and r["query_nnz"] > 0
    assert train[-1]["nll"] < train[0]["nll"]  # the ranking loss goes down
    summary = json.loads((toy_run / "summary.json").read_text())
    assert summary["steps"] == 20 and summary["gpu_minutes"] == 0.0
    assert 0 <= summary["best"]["ndcg@10"] <= 1 and summary["best"]["step"] in (10, 20)
    assert summary["best"]["ndcg@10"] == max(e["ndcg@10"] for e in evals)


def test_best_model_is_sharded_fp16_with_card(toy_run):
    from safetensors import safe_open

    best = toy_run / "best"
    index = json.loads((best / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) >= 2
    for name in shards:
        assert (best / name).stat().st_size < 16 * 2**20
        with safe_open(str(best / name), "pt") as f:
            assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    card = (best / "README.md").read_text()
    summary = json.loads((toy_run / "summary.json").read_text())
    assert f"{summary['best']['ndcg@10']:.4f}" in card and "kl x 1.0" in card
    assert (best / "tokenizer.json").is_file()


def test_lsr_indexes_and_searches_with_the_trained_model(toy_run, train_tiny, tmp_path, capsys):
    idx = tmp_path / "idx"
    assert (
        main(
            [
                "index",
                "--corpus",
                str(train_tiny),
                "--encoder",
                f"splade:{toy_run / 'best'}",
                "--out",
                str(idx),
                "--quiet",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["search", "--index", str(idx), "vitamin d cancer", "--k", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].split()[0] == "1"
    # the model the encoder loads computes what the trainer computed (float32 load of the fp16 weights)
    from lsr.config import EncoderConfig
    from lsr.encoders.splade import SpladeEncoder
    from lsr.train.config import ModelConfig

    enc = SpladeEncoder(EncoderConfig(name="splade", model=str(toy_run / "best")))
    assert enc.model.weight.dtype == torch.float32
    mine = train_model.build_model(ModelConfig(kind="splade", init=str(toy_run / "best"))).eval()
    text = "coffee and sleep quality in adults"
    with torch.no_grad():
        dense = mine.encode_docs([text], 512)[0]
    batch = enc.encode([text])
    terms, weights = batch.row(0)
    assert np.array_equal(terms, torch.nonzero(dense > 0).flatten().numpy())
    assert np.allclose(weights, dense[dense > 0].numpy(), atol=1e-4)


def test_inference_free_run_loads_and_matches_query_encoder(
    prepared, train_mlm, train_tiny, tmp_path, capsys
):
    run = tmp_path / "if"
    assert (
        _train(
            prepared,
            train_mlm,
            run,
            "--set",
            "model.kind=inference-free",
            "--set",
            "model.learn_query_weights=true",
            "--set",
            "train.steps=6",
            "--set",
            "train.eval_every=3",
        )
        == 0
    )
    best = run / "best"
    table = json.loads((best / "idf.json").read_text())
    assert table and all(v > 0 for v in table.values()) and "[CLS]" not in table
    idx = tmp_path / "idx"
    assert (
        main(
            [
                "index",
                "--corpus",
                str(train_tiny),
                "--encoder",
                f"inference-free:{best}",
                "--set",
                "encoder.inference_free.query_weights=model",
                "--out",
                str(idx),
                "--quiet",
            ]
        )
        == 0
    )
    from lsr.searcher import Searcher
    from lsr.train.config import ModelConfig

    searcher = Searcher(idx)
    text = "vitamin d lowers cancer risk"
    q = searcher.encode_texts([text])
    m = train_model.SparseEncoderModel(
        *train_model.load_mlm(best)[:2],
        ModelConfig(kind="inference-free"),
        np.load(idx / "query_weights.npy"),
    )
    with torch.no_grad():
        dense = m.encode_queries([text], 64)[0]
    terms, weights = q.row(0)
    assert np.array_equal(terms, torch.nonzero(dense > 0).flatten().numpy())
    assert np.allclose(weights, dense[dense > 0].numpy(), atol=1e-5)
    capsys.readouterr()
    assert main(["search", "--index", str(idx), text, "--k", "2"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2


def test_resume_continues_exactly(prepared, train_mlm, toy_run, tmp_path, monkeypatch):
    run = tmp_path / "crash"
    real = train_loop._save_checkpoint

    def crash_after_first(*args, **kwargs):
        real(*args, **kwargs)
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(train_loop, "_save_checkpoint", crash_after_first)
    monkeypatch.setattr(train_model, "MAX_SHARD", "20KB")
    with pytest.raises(RuntimeError, match="simulated crash"):
        _train(prepared, train_mlm, run)
    assert json.loads((run / "checkpoint" / "state.json").read_text())["step"] == 10
    monkeypatch.setattr(train_loop, "_save_checkpoint", real)
    assert _train(prepared, train_mlm, run, "--resume") == 0
    # the same batches, negatives, dropout masks and schedule as the uninterrupted run (float sums may
    # differ in the last digits: other tests change torch's thread count)
    for r, r2 in zip(_log(toy_run), _log(run), strict=True):
        assert r.keys() == r2.keys() and r["step"] == r2["step"]
        for k in r:
            if k not in ("event", "seconds"):
                assert r2[k] == pytest.approx(r[k], rel=1e-4, abs=1e-6), (r["step"], k)
    a = torch.load(toy_run / "checkpoint" / "state.pt", weights_only=True)["model"]
    b = torch.load(run / "checkpoint" / "state.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_resume_refuses_other_model_or_config(prepared, train_mlm, toy_run, tiny_models, tmp_path, capsys):
    other = tiny_models.make_mlm(tmp_path / "other-mlm", seed=9)
    capsys.readouterr()
    assert _train(prepared, other, toy_run, "--resume") == 2
    err = capsys.readouterr().err
    assert "refusing to resume" in err and "another model" in err and "init" in err
    assert _train(prepared, train_mlm, toy_run, "--resume", "--set", "model.kind=inference-free") == 2
    assert "another model" in capsys.readouterr().err
    assert _train(prepared, train_mlm, toy_run, "--resume", "--set", "loss.kl=0.5") == 2
    assert "loss.kl" in capsys.readouterr().err
    assert _train(prepared, train_mlm, toy_run) == 2  # no --resume: an existing run is never overwritten
    assert "--resume" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("optim.lrr=0.1", "lrr"),
        ("optim.lr=-1", "optim.lr"),
        ("loss.flops_doc=-0.1", "loss.flops_doc"),
        ("train.negatives=9", "train.negatives"),
        ("distill.weights.nope=1", "nope"),
        ("model.kind=colbert", "model.kind"),
        ("prepare.train_split=test", "test"),
        ("data.sources=[qrels,tweets]", "data.sources"),
    ],
)
def test_bad_configs_fail_before_any_model_loads(override, named, tmp_path, capsys):
    code = main(
        [
            "train",
            "--config",
            TOY,
            "--set",
            "model.init=/no/such/model",
            "--set",
            f"data.prepared={tmp_path}",
            "--set",
            override,
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and named in err and "/no/such/model" not in err
    assert not (tmp_path / "o").exists()


def test_sources_filter_trains_on_pseudo_queries_only(prepared, train_mlm, tmp_path, caplog):
    import gzip
    import logging

    rows = [json.loads(x) for x in gzip.open(prepared / "train.jsonl.gz", "rt")]
    pseudo = sum(r["source"] in ("title", "span") for r in rows)
    assert 0 < pseudo < len(rows), "the toy dataset mixes labelled and pseudo-queries"
    caplog.set_level(logging.INFO, logger="lsr.train.trainer")
    args = ("--set", "train.steps=2", "--set", "train.eval_every=2")
    assert _train(prepared, train_mlm, tmp_path / "pseudo", "--set", "data.sources=[title,span]", *args) == 0
    kept = [r.getMessage() for r in caplog.records if r.getMessage().startswith("data.sources")]
    assert kept == [f"data.sources ['title', 'span']: {pseudo} of {len(rows)} training examples"]


def test_unicoil_run_selects_on_suites_and_loads_as_unicoil_encoder(
    prepared, train_mlm, train_tiny, tmp_path, capsys
):
    run = tmp_path / "unicoil"
    assert (
        _train(
            prepared,
            train_mlm,
            run,
            "--set",
            "model.kind=unicoil",
            "--set",
            f"data.suites=[{train_tiny}]",
            "--set",
            "train.steps=6",
            "--set",
            "train.eval_every=3",
        )
        == 0
    )
    evals = [r for r in _log(run) if r["event"] == "eval"]
    assert [r["step"] for r in evals] == [3, 6]
    for r in evals:  # the suite is scored and the selection mixes it with dev
        assert 0 <= r["suite/train-tiny"] <= 1
        assert r["select"] == pytest.approx((r["ndcg@10"] + r["suite_mean"]) / 2)
    best_step = max(evals, key=lambda r: r["select"])["step"]  # ties keep the first
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best"]["step"] == best_step and summary["kind"] == "unicoil"
    best = run / "best"
    assert (best / "unicoil_head.safetensors").is_file()
    assert "--encoder unicoil:FOLDER" in (best / "README.md").read_text()
    idx = tmp_path / "idx"
    assert (
        main(
            [
                "index",
                "--corpus",
                str(train_tiny),
                "--encoder",
                f"unicoil:{best}",
                "--out",
                str(idx),
                "--quiet",
            ]
        )
        == 0
    )
    from lsr.searcher import Searcher
    from lsr.train.config import ModelConfig

    text = "vitamin d lowers cancer risk"
    q = Searcher(idx).encode_texts([text])
    m = train_model.build_model(ModelConfig(kind="unicoil", init=str(best)))
    with torch.no_grad():
        dense = m.encode_queries([text], 64)[0]
    terms, weights = q.row(0)
    # no expansion: only the query's own tokens carry weight, as the trainer's model computes them
    assert set(terms.tolist()) <= set(m.tokenize([text], 64)[0][0].tolist())
    assert np.array_equal(terms, torch.nonzero(dense > 0).flatten().numpy())
    assert np.allclose(weights, dense[dense > 0].numpy(), rtol=1e-2, atol=1e-2)
    capsys.readouterr()
    assert main(["search", "--index", str(idx), text, "--k", "2"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2


def test_unicoil_fresh_head_starts_as_a_bag_of_words(train_mlm):
    from lsr.train.config import ModelConfig

    m = train_model.build_model(ModelConfig(kind="unicoil", init=str(train_mlm)))
    assert m.fresh_head
    with torch.no_grad():
        vec = m.encode_docs(["vitamin d vitamin"], 32)[0]
    ids = {i for i in m.tokenize(["vitamin d vitamin"], 32, special=False)[0][0].tolist() if i}
    assert set(torch.nonzero(vec).flatten().tolist()) == ids
    assert torch.allclose(vec[sorted(ids)], torch.ones(len(ids)))


def test_texts_longer_than_the_model_are_truncated_to_its_positions(train_mlm):
    from lsr.train.config import ModelConfig

    m = train_model.build_model(ModelConfig(kind="splade", init=str(train_mlm)))
    ids, _ = m.tokenize(["vitamin " * 400], 512)
    assert ids.shape[1] <= m.max_positions < 512
    with torch.no_grad():
        assert m.encode_docs(["vitamin " * 400], 512).shape == (1, m.vocab_size)


def test_df_flops_run_trains_and_resumes_with_its_estimate(prepared, train_mlm, tmp_path):
    run = tmp_path / "df"
    extra = ("--set", "loss.doc_regularizer=df", "--set", "train.eval_every=3")
    assert _train(prepared, train_mlm, run, "--set", "train.steps=3", *extra) == 0
    state = torch.load(run / "checkpoint" / "state.pt", weights_only=True)
    assert state["df"].shape[0] > 50 and 0 < float(state["df"].max()) <= 1
    assert _train(prepared, train_mlm, run, "--set", "train.steps=6", *extra, "--resume") == 0
    logs = [r for r in _log(run) if r["event"] == "train"]
    assert logs[-1]["step"] == 6 and math.isfinite(logs[-1]["loss"])
    assert "DF-FLOPS" in (run / "best" / "README.md").read_text()


def test_unicoil_run_with_query_idf_indexes_queries_as_the_trainer_scored_them(
    prepared,
    train_mlm,
    train_tiny,
    tmp_path,
):
    from lsr.encoders import query_idf
    from lsr.searcher import Searcher
    from lsr.train.config import ModelConfig

    run = tmp_path / "qidf"
    overrides = ["model.kind=unicoil", "model.query_idf=1", f"data.suites=[{train_tiny}]", "train.steps=4"]
    assert _train(prepared, train_mlm, run, *[a for o in overrides for a in ("--set", o)]) == 0
    assert any(r["event"] == "eval" for r in _log(run))
    best = run / "best"
    assert json.loads((best / "lsr_query.json").read_text()) == {"query_idf": 1}
    idx = tmp_path / "idx"
    assert (
        main(["index", "--corpus", str(train_tiny), "--encoder", f"unicoil:{best}", "--out", str(idx)]) == 0
    )
    searcher = Searcher(idx)
    m = train_model.build_model(ModelConfig(kind="unicoil", init=str(best)))
    text = "vitamin d lowers cancer risk"
    with torch.no_grad():
        dense = m.encode_queries([text], 64)[0].numpy()
    idf = query_idf.idf_table(searcher.index.doc_freq(), searcher.index.n_docs, 1.0)
    terms, weights = searcher.encode_texts([text]).row(0)
    assert len(terms) > 0
    assert np.allclose(weights, dense[terms] * idf[terms], rtol=1e-2, atol=1e-2)


def test_unicoil_words_run_scores_terms_and_resumes(prepared, train_mlm, train_tiny, tmp_path):
    """model.terms: words with query_idf and DF-FLOPS (whose estimate is over the training corpus's
    terms): trains, evaluates each suite over its own terms, resumes, and saves lsr_terms.json."""
    run = tmp_path / "words"
    overrides = [
        "model.kind=unicoil",
        "model.terms=words",
        "model.query_idf=1",
        "loss.doc_regularizer=df",
        f"data.suites=[{train_tiny}]",
        "train.eval_every=3",
    ]
    args = [a for o in overrides for a in ("--set", o)]
    assert _train(prepared, train_mlm, run, *args, "--set", "train.steps=3") == 0
    n_terms = torch.load(run / "checkpoint" / "state.pt", weights_only=True)["df"].shape[0]
    from lsr.train.config import ModelConfig

    model = train_model.build_model(ModelConfig(kind="unicoil", init=str(train_mlm), terms="words"))
    texts = train_loop.load_prepared(prepared).doc_texts
    assert n_terms == len(model.word_document_frequencies(texts, 512)) > 20
    assert _train(prepared, train_mlm, run, *args, "--set", "train.steps=6", "--resume") == 0
    evals = [r for r in _log(run) if r["event"] == "eval"]
    assert [r["step"] for r in evals] == [3, 6]
    assert all(0 <= r["suite/train-tiny"] <= 1 and r["doc_nnz"] > 0 for r in evals)
    best = run / "best"
    assert json.loads((best / "lsr_terms.json").read_text())["terms"] == "words"
    assert "* terms: the default BM25 analyzer's terms of the words" in (best / "README.md").read_text()
    assert json.loads((best / "lsr_query.json").read_text()) == {"query_idf": 1}


def test_unicoil_words_run_with_tf_saturation_trains_and_saves_it(prepared, train_mlm, train_tiny, tmp_path):
    """model.tf_k1 / tf_b: documents' weights saturate in training (the loss backpropagates through the
    factors), and the saved folder's lsr_terms.json holds k1, b and the training corpus's mean length."""
    from lsr.encoders.hf import clean_text
    from lsr.encoders.words import analyzer_section, make_word_analyzer

    run = tmp_path / "words-tf"
    overrides = ["model.kind=unicoil", "model.terms=words", "model.tf_k1=0.8", "model.tf_b=0.3"]
    overrides += [f"data.suites=[{train_tiny}]", "train.eval_every=2", "train.steps=2"]
    assert _train(prepared, train_mlm, run, *[a for o in overrides for a in ("--set", o)]) == 0
    saved = json.loads((run / "best" / "lsr_terms.json").read_text())["tf"]
    analyzer = make_word_analyzer(analyzer_section())
    texts = train_loop.load_prepared(prepared).doc_texts
    assert (saved["k1"], saved["b"]) == (0.8, 0.3)
    assert saved["avgdl"] == pytest.approx(np.mean([len(analyzer(clean_text(t))) for t in texts]))
    assert "tf saturation, k1 0.8, b 0.3" in (run / "best" / "README.md").read_text()
    assert all(0 <= r["suite/train-tiny"] <= 1 for r in _log(run) if r["event"] == "eval")
