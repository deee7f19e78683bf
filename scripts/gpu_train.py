#!/usr/bin/env python3
"""Run training configs one after another on the GPU machine, from an editable install of the checkout.

The GPU machine has the training dependencies (torch, transformers, tokenizers, safetensors, numpy,
numba, pyyaml, tqdm) and no network: install the checkout itself into the Python that has torch (its
``pip`` may be another Python's, hence ``python -m pip``), without dependencies and with the machine's
own setuptools (build isolation would download one), then run:

    python -m pip install --no-deps --no-build-isolation -e .
    python scripts/gpu_train.py --out "$OUT" \\
        --run configs/train-splade-scifact.yaml \\
        --run "configs/train-if-scifact.yaml::name=if-plain::model.query_weights=binary" \\
        --set train.steps=1500

Training needs none of the eval-only dependencies (ranx, PyStemmer, ir_datasets):
tests/unit/train/test_gpu_script.py runs this script with those imports blocked.

Each ``--run`` is a config file, optionally followed by ``::key=value`` overrides (``name=...`` renames
the run); ``--set`` applies to every run. Runs train in ``--work`` (default /tmp/lsr-gpu-runs, outside
$OUT); $OUT receives, per run, ``NAME.tar.gz`` (best/ model folder, train_log.jsonl, summary.json,
config.json; split into ``NAME.tar.gz.partNN`` of 15 MB when larger) and one ``runs.json`` with every
summary. A failing run is recorded in runs.json and the next one starts.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import tarfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch

import lsr
import lsr.index
from lsr.encoders.inference_free import table_from_json
from lsr.encoders.transformer import pick_device
from lsr.train import trainer
from lsr.train.config import TrainConfig, load_train_config
from lsr.train.data import load_prepared, load_suite
from lsr.train.model import build_model

PART_BYTES = 15 * 2**20


def _split(path: Path) -> list[Path]:
    if path.stat().st_size <= PART_BYTES:
        return [path]
    parts = []
    with open(path, "rb") as f:
        i = 0
        while chunk := f.read(PART_BYTES):
            part = path.with_name(f"{path.name}.part{i:02d}")
            part.write_bytes(chunk)
            parts.append(part)
            i += 1
    path.unlink()
    return parts


def package_run(run_dir: Path, out: Path, name: str) -> list[str]:
    """``out/NAME.tar.gz`` with the best model folder and the logs (split when over 15 MB)."""
    tar_path = out / f"{name}.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for item in ("best", "train_log.jsonl", "summary.json", "config.json"):
            if (run_dir / item).exists():
                tar.add(run_dir / item, arcname=f"{name}/{item}")
    return [p.name for p in _split(tar_path)]


def evaluate_test(cfg: TrainConfig, model_dir: Path, folder: Path, split: str) -> dict[str, Any]:
    """nDCG@10, nnz and FLOPS of a saved best model on a held-out split (reporting only)."""
    data = load_prepared(cfg.data.prepared)
    model = build_model(dataclasses.replace(cfg.model, init=str(model_dir)), data.doc_texts)
    if cfg.model.kind == "inference-free" and (model_dir / "idf.json").is_file():  # the (learned) table
        backend = model.tokenizer.backend_tokenizer
        vocab = [backend.id_to_token(i) or f"[unused-id-{i}]" for i in range(model.vocab_size)]
        model.table.data = torch.as_tensor(table_from_json(model_dir / "idf.json", vocab))
    model = model.to(pick_device(cfg.train.device, key="train.device"))
    suite = load_suite(folder, split)
    return {"split": split, "n_queries": len(suite.queries), **trainer.evaluate_suite(model, suite, cfg)}


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", action="append", default=[], metavar="CONFIG[::key=value...]")
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override for every run",
    )
    ap.add_argument("--out", required=True, help="where the packaged results go ($OUT)")
    ap.add_argument("--work", default="/tmp/lsr-gpu-runs", help="training directories (not returned)")
    ap.add_argument("--resume", action="store_true", help="resume runs whose work directory has a checkpoint")
    ap.add_argument("--check", action="store_true", help="print where lsr is imported from and exit")
    ap.add_argument(
        "--test-dataset",
        metavar="BEIR_DIR",
        help="after each run, score its best model on "
        "this BEIR folder's --test-split (exact float dot products over the prepared corpus; "
        "never used for selection) and add test nDCG@10 to the summary",
    )
    ap.add_argument("--test-split", default="test")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stdout
    )
    modules = {"lsr": lsr.__file__, "lsr.index": lsr.index.__file__, "trainer": trainer.__file__}
    print(json.dumps(modules), flush=True)
    if args.check:
        return 0
    print(
        f"torch {torch.__version__}, cuda {torch.cuda.is_available()}"
        + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ""),
        flush=True,
    )
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for spec in args.run:
        results.append(run_one(spec, args, out, work))
        (out / "runs.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print_table(results)
    return 0 if all(r["ok"] for r in results) else 1


def run_one(spec: str, args: argparse.Namespace, out: Path, work: Path) -> dict[str, Any]:
    """Train one ``CONFIG[::key=value...]``, score it on the test split if asked, package it into
    ``out``; its runs.json entry (a failure is recorded, not raised)."""
    config, *extra = spec.split("::")
    name_over = [e for e in extra if e.startswith("name=")]
    t0 = time.perf_counter()
    try:
        cfg = load_train_config(config, [*args.overrides, *extra])
        name = cfg.name if not name_over else name_over[-1].split("=", 1)[1]
        run_dir = work / name
        resume = args.resume and (run_dir / "checkpoint" / "state.json").is_file()
        summary = trainer.train(cfg, run_dir, resume=resume)
        if args.test_dataset:
            summary["test"] = evaluate_test(cfg, run_dir / "best", Path(args.test_dataset), args.test_split)
            print(f"== {name}: {args.test_split} {summary['test']}", flush=True)
        files = package_run(run_dir, out, name)
        print(
            f"== {name}: best dev nDCG@10 {summary['best'].get('ndcg@10', 0):.4f} at step "
            f"{summary['best'].get('step')} in {summary['seconds']:.0f}s -> {files}",
            flush=True,
        )
        return {"run": spec, "name": name, "ok": True, "files": files, **summary}
    except Exception as exc:
        traceback.print_exc()
        return {
            "run": spec,
            "ok": False,
            "error": f"{type(exc).__name__}: {exc}",
            "seconds": round(time.perf_counter() - t0, 1),
        }


def print_table(results: list[dict[str, Any]]) -> None:
    """One line per run: steps, time, best dev numbers (and test nDCG@10), or the error."""
    for r in results:
        if not r["ok"]:
            print(f"{r['run']}: FAILED {r['error']}")
            continue
        b = r["best"]
        print(
            f"{r['name']:<28} steps {r['steps']:>5}  {r['seconds']:>6.0f}s  "
            f"dev nDCG@10 {b.get('ndcg@10', 0):.4f}"
            f"  doc nnz {b.get('doc_nnz', 0):6.1f}  query nnz {b.get('query_nnz', 0):5.1f}"
            f"  FLOPS {b.get('flops', 0):7.3f}"
            + (f"  {r['test']['split']} nDCG@10 {r['test']['ndcg@10']:.4f}" if r.get("test") else "")
        )


if __name__ == "__main__":
    sys.exit(main())
