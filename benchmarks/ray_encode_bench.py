"""Encoding on Ray against the single-process encoder (issue 16's encoding targets: 2 GPUs >= 1.8x one
GPU, one GPU through Ray >= 0.9x the single-process GPU encoder).

    python -m benchmarks.ray_encode_bench --corpus ../shared/data/beir/scifact --docs 200000 \\
        --gpus 1,2 --out benchmarks/results/ray-encode-h200.json

Writes a corpus of ``--docs`` documents (the BEIR corpus repeated, ids suffixed ``#N``), encodes it
with ``lsr encode --encoder ENCODER`` in one process, then with ``lsr encode --ray`` on a local Ray
cluster started with ``--num-gpus G`` for each G of ``--gpus`` and each number of encoder actors per
GPU of ``--actors-per-gpu`` (a fresh head each, ``ray start --block`` stopped by a signal, which stops
that head's processes only; on a machine without GPUs, ``--gpus 0`` runs the CPU actors). Each run is
its own ``lsr encode`` process, timed from start to exit (Python start and model load included, the
same for every row); the vectors' meta gives the encode seconds without that, and the Ray stage's
seconds (from its start to its last block). The Ray outputs are compared
with the single-process one: same ids and rows, term sets and the largest weight difference (bf16 on
GPU: batch composition changes the rounding). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lsr.data.corpus import open_corpus
from lsr.vectors import Vectors

RAY = [sys.executable, "-m", "ray.scripts.scripts"]  # the ray CLI (no console script under pip --target)
# no token authentication on the benchmark's loopback head and its drivers: once any local ray.init has
# written ~/.ray/auth_token, a head started with RAY_AUTH_MODE unset requires it and a driver connecting
# to an address may not send it (Ray 2.60)
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", required=True, help="a BEIR folder or corpus file, repeated to --docs")
    p.add_argument("--docs", type=int, default=200_000)
    p.add_argument("--encoder", default="splade")
    p.add_argument("--gpus", default="1,2", help="Ray clusters to run: GPUs of each (0: CPU actors)")
    p.add_argument(
        "--actors-per-gpu", default="1", help="encoder.transformer.actors_per_gpu values (1,2,4,8)"
    )
    p.add_argument("--shard-docs", type=int, default=10_000, help="encoder.shard_docs: a Ray block")
    p.add_argument("--port", type=int, default=6391)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ray-encode-"))
    try:
        corpus = write_corpus(args.corpus, args.docs, root / "corpus.jsonl")
        rows = [run(args, corpus, root / "single", None)]
        for per_gpu in [int(a) for a in args.actors_per_gpu.split(",")]:
            for gpus in [int(g) for g in args.gpus.split(",")]:
                out = root / f"ray-{gpus}x{per_gpu}"
                rows.append(run(args, corpus, out, gpus, per_gpu))
                rows[-1].update(compare(root / "single", out))
                shutil.rmtree(out)
        result = {"args": {k: str(v) for k, v in vars(args).items()}, "runs": rows}
        result["ratios"] = ratios(rows)
        print_table(result)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"results -> {args.out}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def write_corpus(source: str, n: int, path: Path) -> Path:
    """``n`` documents: the corpus at ``source`` over and over, the k-th copy's ids suffixed ``#k``."""
    docs = list(open_corpus(source))
    with open(path, "w") as f:
        for i in range(n):
            doc = docs[i % len(docs)]
            f.write(json.dumps({"_id": f"{doc.id}#{i // len(docs)}", "title": doc.title, "text": doc.text}))
            f.write("\n")
    return path


def run(
    args: argparse.Namespace, corpus: Path, out: Path, gpus: int | None = None, per_gpu: int = 1
) -> dict[str, Any]:
    """One ``lsr encode`` (on a fresh local Ray head with ``gpus`` GPUs, ``per_gpu`` encoder actors
    each, unless ``gpus`` is None), timed."""
    cmd = [sys.executable, "-m", "lsr.cli", "encode", "--encoder", args.encoder, "--corpus", str(corpus)]
    cmd += ["--out", str(out), "--set", f"encoder.shard_docs={args.shard_docs}", "--quiet"]
    setup = "single process"
    head = None
    if gpus is not None:
        setup = f"Ray, {gpus} GPU x {per_gpu} actors" if gpus else "Ray, CPU actors"
        head = start_ray(args.port, gpus, out.parent / f"ray-tmp-{gpus}x{per_gpu}")
        cmd += ["--ray", f"127.0.0.1:{args.port}", "--set", f"encoder.transformer.actors_per_gpu={per_gpu}"]
    try:
        start = time.perf_counter()
        subprocess.run(cmd, check=True, env=ENV)
        wall = time.perf_counter() - start
    finally:
        if head is not None:
            stop_node(head)
    meta = Vectors(out).meta
    row = {"setup": setup, "gpus": gpus, "per_gpu": per_gpu, "docs": meta["n_docs"], "wall_s": round(wall, 2)}
    row["docs_per_s"] = round(meta["n_docs"] / wall, 1)
    row["meta"] = {k: meta[k] for k in ("encode_seconds", "ray") if k in meta}
    print(f"{setup}: {row['docs']} docs in {wall:.1f} s ({row['docs_per_s']:.0f} docs/s)", flush=True)
    return row


def start_ray(port: int, gpus: int, temp: Path) -> subprocess.Popen:
    """A Ray head with this machine's CPUs and ``gpus`` GPUs, its files under ``temp``."""
    cpus = os.cpu_count() or 2
    args = ["--head", "--port", str(port), "--num-gpus", str(gpus), "--num-cpus", str(cpus)]
    args += ["--include-dashboard=false", "--disable-usage-stats", "--temp-dir", str(temp)]
    temp.mkdir(parents=True, exist_ok=True)
    return start_node(*args, log=temp / "ray-start.log", env=ENV)


def start_node(
    *args: str, log: Path, env: Mapping[str, str] | None = None, timeout_s: float = 180
) -> subprocess.Popen:
    """``ray start ARGS --block`` of this Python (its workers import this checkout's lsr), in a session
    of its own, output to ``log``; returns once the node is up. ``env``: default this process's, without
    usage stats. :func:`stop_node` stops it and the processes it started, leaving any other Ray of this
    machine alone (``ray stop`` would stop them all)."""
    env = env if env is not None else {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    with open(log, "w") as out:
        node = subprocess.Popen(
            [*RAY, "start", *args, "--block"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout_s
    while "will now block" not in log.read_text():
        if node.poll() is not None or time.monotonic() > deadline:
            stop_node(node)
            raise RuntimeError(f"ray start {' '.join(args)} failed:\n{log.read_text()}")
        time.sleep(0.2)
    return node


def stop_node(node: subprocess.Popen) -> None:
    """SIGTERM to the ``ray start --block`` of :func:`start_node`, which stops its node's processes."""
    if node.poll() is None:
        node.terminate()
        try:
            node.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(node.pid, signal.SIGKILL)  # its session: the processes it started
            node.wait(10)


def compare(single: Path, other: Path) -> dict[str, Any]:
    """How the Ray output differs from the single-process one."""
    a, b = Vectors(single), Vectors(other)
    same_ids = list(a.iter_ids()) == list(b.iter_ids())
    same_terms = rows = 0
    max_diff = 0.0
    for x, y in zip(a.batches(), b.batches(), strict=True):
        for i in range(len(x)):
            (tx, wx), (ty, wy) = x.row(i), y.row(i)
            rows += 1
            if np.array_equal(tx, ty):
                same_terms += 1
                max_diff = max(max_diff, float(np.max(np.abs(wx - wy), initial=0.0)))
    return {"same_ids": same_ids, "same_term_sets": f"{same_terms}/{rows}", "max_abs_weight_diff": max_diff}


def ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Each Ray run's docs/s over the single process's; 2 GPUs over 1 GPU at the same actors per GPU."""
    single = rows[0]["docs_per_s"]
    by = {(r["gpus"], r["per_gpu"]): r["docs_per_s"] for r in rows[1:]}
    out = {f"ray {g} GPU x{a} / single": round(v / single, 3) for (g, a), v in by.items()}
    for (g, a), v in by.items():
        if g == 2 and (1, a) in by:
            out[f"ray 2 GPU / 1 GPU, x{a}"] = round(v / by[(1, a)], 3)
    return out


def print_table(result: dict[str, Any]) -> None:
    print(
        "| setup | docs | wall s | docs/s | encode s (meta) | Ray stage s (meta) | same ids | same term sets "
        "| max abs diff |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in result["runs"]:
        stage = r["meta"].get("ray", {}).get("stage_seconds", "-")
        print(
            f"| {r['setup']} | {r['docs']} | {r['wall_s']:.1f} | {r['docs_per_s']:.0f} | "
            f"{r['meta'].get('encode_seconds', '-')} | {stage} | {r.get('same_ids', '-')} | "
            f"{r.get('same_term_sets', '-')} | {r.get('max_abs_weight_diff', '-')} |"
        )
    print("ratios:", result["ratios"])


if __name__ == "__main__":
    main()
