#!/usr/bin/env python3
"""Collect the runs of ``scripts/gpu_sweep.sh``: every evaluation of every run into ``OUT/all_runs.json``
(with its config, last training line and SciFact test numbers), a one-line summary per run on stdout,
and, if asked, one run's best model folder packed into ``OUT`` (split into 15 MB parts for the transfer).

    python scripts/gpu_collect.py OUT WORK [RUN_NAME | best | best-other | top:N | none]

``best``: the run with the highest ``select`` (mean of SciFact dev and the suites' mean nDCG@10);
``best-other``: the same among kinds not packed yet by an earlier call on this machine; ``top:N``: the N
runs with the highest ``select``. Needs only the standard library.
"""

from __future__ import annotations

import ast
import json
import sys
import tarfile
from pathlib import Path
from typing import Any

PART = 15 * 2**20
SUITES = ("adi", "time", "med", "cacm", "lisa", "npl")
PACKED = Path("/tmp/lsr-gpu-packed-kinds.txt")


def read_run(run_dir: Path, logs: Path) -> dict[str, Any]:
    """Evaluations, config, last training line and the SciFact test result of one run directory."""
    rows = [json.loads(x) for x in (run_dir / "train_log.jsonl").read_text().splitlines()]
    evals = [r for r in rows if r["event"] == "eval"]
    trains = [r for r in rows if r["event"] == "train"]
    config = json.loads((run_dir / "config.json").read_text()) if (run_dir / "config.json").is_file() else {}
    test = None
    log = logs / f"{run_dir.name}.log"
    if log.is_file():
        for line in log.read_text().splitlines():
            if line.startswith(f"== {run_dir.name}: test "):
                test = ast.literal_eval(line.split(": test ", 1)[1])
    return {
        "best": max(evals, key=lambda r: r.get("select", r.get("ndcg@10", 0))) if evals else None,
        "evals": evals,
        "last_train": trains[-1] if trains else None,
        "config": config,
        "test": test,
        "has_best": (run_dir / "best").is_dir(),
    }


def summary_line(name: str, run: dict[str, Any]) -> str:
    b = run["best"] or {}
    suites = " ".join(f"{s} {b.get('suite/' + s, 0):.3f}" for s in SUITES)
    return (
        f"{name:<12} step {b.get('step')} select {b.get('select', 0):.4f} dev {b.get('ndcg@10', 0):.4f} "
        f"ood {b.get('suite_mean', 0):.4f} nnz {b.get('doc_nnz', 0):.0f}/{b.get('query_nnz', 0):.1f} "
        f"flops {b.get('flops', 0):.2f} | {suites}"
    )


def pack(src: Path, out: Path, name: str) -> list[Path]:
    tar_path = out / f"{name}.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(src, arcname=name)
    data = tar_path.read_bytes()
    if len(data) <= PART:
        return [tar_path]
    tar_path.unlink()
    parts = []
    for i in range(0, len(data), PART):
        parts.append(out / f"{name}.tar.gz.part{i // PART:02d}")
        parts[-1].write_bytes(data[i : i + PART])
    return parts


def main(argv: list[str]) -> int:
    out, work = Path(argv[1]), Path(argv[2])
    want = argv[3] if len(argv) > 3 else "none"
    out.mkdir(parents=True, exist_ok=True)
    runs = {
        d.name: read_run(d, work / "logs")
        for d in sorted(work.iterdir())
        if (d / "train_log.jsonl").is_file()
    }
    (out / "all_runs.json").write_text(json.dumps(runs, indent=1) + "\n")
    for name, run in sorted(runs.items(), key=lambda kv: -(kv[1]["best"] or {}).get("select", 0)):
        print(summary_line(name, run))
    if want == "none":
        return 0
    kind = {n: r["config"].get("model", {}).get("kind", "?") for n, r in runs.items()}
    if want.startswith("top:"):
        ranked = sorted(
            (n for n, r in runs.items() if r["has_best"]), key=lambda n: -runs[n]["best"]["select"]
        )
        for name in ranked[: int(want[4:])]:
            print("packed", name, [p.name for p in pack(work / name / "best", out, name)])
        return 0
    if want in ("best", "best-other"):
        done = set(PACKED.read_text().split()) if PACKED.is_file() else set()
        pool = [n for n, r in runs.items() if r["has_best"] and (want == "best" or kind[n] not in done)]
        want = max(pool, key=lambda n: runs[n]["best"].get("select", 0))
    with open(PACKED, "a") as f:
        f.write(kind[want] + "\n")
    print("packed", want, [p.name for p in pack(work / want / "best", out, want)])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
