"""scripts/interpolate_models.py (WiSE-FT): endpoints equal the inputs, the midpoint is the mean, and
the result loads as a SPLADE encoder; mismatched models are refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "interpolate_models.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def _weights(folder: Path) -> dict:
    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def test_interpolation_endpoints_and_midpoint(tiny_models, tmp_path):
    base = tiny_models.make_mlm(tmp_path / "base", seed=1)
    tuned = tiny_models.make_mlm(tmp_path / "tuned", seed=2)
    wb, wt = _weights(base), _weights(tuned)
    for alpha in ("0", "0.5", "1"):
        out = tmp_path / f"a{alpha}"
        res = _run("--base", str(base), "--tuned", str(tuned), "--alpha", alpha, "--out", str(out))
        assert res.returncode == 0, res.stderr
        got = _weights(out)
        assert set(got) == set(wt) and all(t.dtype == torch.float16 for t in got.values())
        a = float(alpha)
        for name, t in got.items():
            want = (a * wt[name].float() + (1 - a) * wb[name].float()).half()
            assert torch.equal(t, want), name
    from lsr.config import load_config
    from lsr.encoders import make_encoder

    cfg = load_config(None, ["encoder.name=splade", f"encoder.model={tmp_path / 'a0.5'}"])
    enc = make_encoder(cfg.encoder)
    assert len(enc.encode(["vitamin d"])) == 1


def test_mismatched_models_and_bad_alpha_are_refused(tiny_models, tmp_path):
    base = tiny_models.make_mlm(tmp_path / "base", seed=1)
    other = tiny_models.make_mlm(tmp_path / "other", seed=1, vocab=[*tiny_models.VOCAB, "extra", "tokens"])
    res = _run("--base", str(base), "--tuned", str(base), "--alpha", "1.5", "--out", str(tmp_path / "x"))
    assert res.returncode != 0 and "--alpha 1.5" in res.stderr and not (tmp_path / "x").exists()
    res = _run("--base", str(base), "--tuned", str(other), "--alpha", "0.5", "--out", str(tmp_path / "y"))
    assert res.returncode != 0 and "shapes differ" in res.stderr
    assert not (tmp_path / "y").exists() and not (tmp_path / ".y.tmp").exists()
