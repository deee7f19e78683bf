"""The MLM warm-up of a fresh head (lsr.train.mlm.warm_fresh_head, scripts/mlm_warmup.py) on a tiny
random BertModel: the held-out MLM loss falls, frozen parameters stay bit-identical, the bias shift
hits its SPLADE nnz target without moving the MLM loss, and a training run from the warmed folder
records the warm-up."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from lsr.cli import main  # noqa: E402
from lsr.errors import ConfigError  # noqa: E402
from lsr.train.adapt_config import AdaptSettings  # noqa: E402
from lsr.train.mlm import (  # noqa: E402
    WARMUP_FILE,
    _TokenizedTexts,
    heldout_loss,
    mean_nnz,
    pooled_logits,
    warm_fresh_head,
)
from lsr.train.model import load_mlm  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
TOY = str(REPO / "configs" / "train-toy.yaml")
CPU = torch.device("cpu")
WORDS = "the a and of in on with cat cats sat mat dog dogs bird fish vitamin d cancer risk coffee".split()


def _texts(n: int, seed: int = 0) -> list[str]:
    """Texts with structure to learn: word pairs that always follow each other."""
    rng = random.Random(seed)
    pairs = [("vitamin", "d"), ("cancer", "risk"), ("cat", "sat"), ("coffee", "and"), ("bird", "fish")]
    return [" ".join(w for _ in range(6) for w in rng.choice(pairs)) for _ in range(n)]


def _settings(steps: int = 40) -> AdaptSettings:
    return AdaptSettings(
        mlm_steps=steps, mlm_batch_size=8, mlm_max_length=32, mlm_lr=1e-2, mlm_freeze_head=False
    )


def _state(folder: Path) -> dict[str, torch.Tensor]:
    model, _, _ = load_mlm(folder)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def backbone(tiny_models, tmp_path_factory) -> Path:
    return tiny_models.make_backbone(tmp_path_factory.mktemp("mlm-warmup") / "bare", seed=5)


@pytest.fixture(scope="module")
def warmed(backbone, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("mlm-warmup") / "warm"
    record = warm_fresh_head(backbone, _texts(80), out, _settings(), CPU, seed=3, held_out=16, target_nnz=5)
    return out, record


def test_warmup_lowers_the_heldout_loss_and_records_it(warmed):
    out, record = warmed
    assert record["heldout_loss_after"] < record["heldout_loss_before"] - 0.5
    assert record["steps"] == 40 and record["texts"] == 64 and record["trained"] == "head"
    assert json.loads((out / WARMUP_FILE).read_text()) == record


def test_warmup_trains_only_the_head_transform_and_bias(backbone, warmed):
    torch.manual_seed(0)  # the fresh head's transform is random: compare what is not the head
    start, after = _state(backbone), _state(warmed[0])
    head = {k for k in start if k.startswith("cls.")}
    frozen = [k for k in start if k not in head]
    assert any("word_embeddings" in k for k in frozen) and any("encoder.layer" in k for k in frozen)
    assert all(torch.equal(start[k], after[k]) for k in frozen)
    assert torch.equal(
        after["cls.predictions.decoder.weight"], after["bert.embeddings.word_embeddings.weight"]
    )
    assert after["cls.predictions.bias"].abs().sum() > 0  # the fresh bias was 0


def test_train_trunk_moves_the_layers_at_their_own_rate_not_the_embeddings(backbone, tmp_path):
    start, key = _state(backbone), "bert.encoder.layer.0.attention.self.query.weight"
    moved = {}
    for trunk_lr in (1e-2, 1e-6):  # Adam moves a weight by about lr per step
        out = tmp_path / f"trunk-{trunk_lr}"
        record = warm_fresh_head(
            backbone,
            _texts(40),
            out,
            _settings(5),
            CPU,
            seed=3,
            held_out=8,
            train_trunk=True,
            trunk_lr=trunk_lr,
        )
        assert record["trained"] == "head+trunk" and record["trunk_lr"] == trunk_lr
        after = _state(out)
        emb = "bert.embeddings.word_embeddings.weight"
        assert torch.equal(start[emb], after[emb])
        moved[trunk_lr] = float((start[key] - after[key]).abs().max())
    assert moved[1e-2] > 1e-3 and 0 < moved[1e-6] < 1e-5


def test_bias_shift_hits_the_nnz_target_and_keeps_the_mlm_loss(backbone, warmed):
    out, record = warmed
    model, tokenizer, _ = load_mlm(out)
    order = __import__("numpy").random.default_rng(3).permutation(80)  # warm_fresh_head's held-out sample
    held = _TokenizedTexts(tokenizer, [_texts(80)[i] for i in order[:16]], 32)
    pooled = pooled_logits(model, held, CPU, 8)
    assert record["heldout_nnz"] == mean_nnz(pooled, 0.0)  # the saved folder has the shifted bias
    assert 5 <= record["heldout_nnz"] < 6 and record["heldout_nnz_unshifted"] != record["heldout_nnz"]
    loss = heldout_loss(model, tokenizer, held, _settings(), CPU, seed=3)
    with torch.no_grad():
        model.get_output_embeddings().bias -= record["bias_offset"]
    assert heldout_loss(model, tokenizer, held, _settings(), CPU, seed=3) == pytest.approx(loss, abs=1e-3)
    assert loss == pytest.approx(record["heldout_loss_after"], abs=1e-3)


def test_warmup_refuses_a_model_with_a_head_and_bad_settings(train_mlm, backbone, tmp_path):
    with pytest.raises(ConfigError, match="has an MLM head already"):
        warm_fresh_head(train_mlm, _texts(20), tmp_path / "x", _settings(1), CPU, seed=0)
    with pytest.raises(ConfigError, match="held_out = 20"):
        warm_fresh_head(backbone, _texts(20), tmp_path / "x", _settings(1), CPU, seed=0, held_out=20)
    with pytest.raises(ConfigError, match="target_nnz = 999"):
        warm_fresh_head(
            backbone, _texts(20), tmp_path / "x", _settings(1), CPU, seed=0, held_out=4, target_nnz=999
        )
    assert not (tmp_path / "x").exists()


def test_training_from_the_warmed_folder_records_the_warmup(warmed, train_tiny, tmp_path):
    prep, run = tmp_path / "prep", tmp_path / "run"
    base = ["--config", TOY, "--quiet"]
    assert main(["train-prepare", *base, "--set", f"prepare.dataset={train_tiny}", "--out", str(prep)]) == 0
    sets = ["--set", f"data.prepared={prep}", "--set", f"model.init={warmed[0]}", "--set", "train.steps=4"]
    assert main(["train", *base, *sets, "--out", str(run)]) == 0
    trained = json.loads((run / "best" / "lsr_train.json").read_text())
    assert trained["init_mlm_warmup"] == warmed[1] and trained["fresh_head"] is False


def test_script_prints_terms_before_and_after(backbone, train_tiny, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("mlm_warmup", REPO / "scripts" / "mlm_warmup.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    prep = tmp_path / "prep"
    assert (
        main(
            [
                "train-prepare",
                "--config",
                TOY,
                "--quiet",
                "--set",
                f"prepare.dataset={train_tiny}",
                "--out",
                str(prep),
            ]
        )
        == 0
    )
    out = tmp_path / "warm"
    args = [
        "--init",
        str(backbone),
        "--prepared",
        str(prep),
        "--out",
        str(out),
        "--steps",
        "3",
        "--batch-size",
        "4",
    ]
    assert (
        script.main([*args, "--held-out", "4", "--target-nnz", "10", "--show", "2", "--device", "cpu"]) == 0
    )
    printed = capsys.readouterr().out
    assert printed.count("[before] nnz") == 2 and printed.count("[after] nnz") == 2
    record = json.loads((out / WARMUP_FILE).read_text())
    assert (
        record["steps"] == 3 and record["text_source"] == f"{prep} (documents)" and record["target_nnz"] == 10
    )
