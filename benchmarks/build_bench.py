"""Where the default index build's time goes, phase by phase, at several thread counts (issue 18).

    python -m benchmarks.build_bench --n-docs 200000 --threads 1,2,16 --repeats 2 \\
        --out benchmarks/results/build-phases.json

The synthetic SPLADE-like collection (benchmarks.synthetic, seed 0) is written as sparse-vector
JSONL once; then, per repeat and thread count (interleaved), a fresh process with
``NUMBA_NUM_THREADS`` set builds it exactly as ``index_bench``'s ``lsr-bmp`` does
(:class:`benchmarks.systems.LsrBlockMax`: JSONL load included, lsr's default index config, uint8
impacts) and then the pruned lists of approx (``--approx-lists``, as a ``lists:N`` setting does).
Each phase is timed by wrapping lsr's functions: wall seconds and the process's CPU seconds (all
threads); a phase whose wall time does not fall with more threads runs serially. Nested phases
are indented under their parent and counted in it too.

Before the timed build a small build loads the numba kernels (from numba's cache; compiled on a
first run), as a process that has built before would have them; ``--cold`` skips it and gives
every process an empty ``NUMBA_CACHE_DIR``, so compilation counts, as on a fresh checkout.
``--hashes`` adds the sha256 of every index file (meta.json without its uid, times and seconds)
to the JSON, to check that two versions of the code build the same bytes.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# (module, attribute, label): the phases, in build order; nesting follows the calls
PHASES = [
    ("lsr.data.sparse_jsonl", "read_sparse_jsonl", "read JSONL"),
    ("lsr.index.builder", "build_index", "build_index"),
    ("lsr.index.builder", "_count_pass", "count pass"),
    ("lsr.index.builder", "bp_order", "BP reordering"),
    ("lsr.index.reorder", "_bisect_wide", "wide levels (one range, threads inside)"),
    ("lsr.index.reorder", "_bisect_level", "levels (ranges in parallel)"),
    ("lsr.index.builder", "_forward_writer", "forward writer setup"),
    ("lsr.index.builder", "_fill_pass", "fill pass"),
    ("lsr.index.builder", "quantize", "quantize"),
    ("lsr.index.builder", "_scatter_postings", "scatter postings"),
    ("lsr.index.rescore", "ForwardWriter.add", "forward rows"),
    ("lsr.index.builder", "_sort_postings", "sort postings"),
    ("lsr.index.rescore", "ForwardWriter.finish", "forward finish"),
    ("lsr.index.builder", "_write_files", "ids.txt, vocab.json"),
    ("lsr.index.io", "seal", "checksums (crc32)"),
    ("lsr.index.blockmax", "build_blockmax", "block-max"),
    ("lsr.index.blockmax", "_count_runs", "count runs"),
    ("lsr.index.blockmax", "_fill_dense", "dense rows"),
    ("lsr.index.blockmax", "_fill_sparse", "sparse runs"),
    ("lsr.index.blockmax", "_write_blockmax", "write"),
    ("lsr.index.approx", "build_approx_lists", "approx lists"),
    ("lsr.index.approx", "pruned_postings", "prune"),
]


class PhaseTimer:
    """Wall and process-CPU seconds of wrapped functions, keyed by their call path."""

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.times: dict[str, list[float]] = {}

    @contextmanager
    def phase(self, label: str) -> Iterator[None]:
        self.stack.append(label)
        entry = self.times.setdefault(" / ".join(self.stack), [0.0, 0.0, 0])  # rows in call order
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            entry[0] += time.perf_counter() - wall
            entry[1] += time.process_time() - cpu
            entry[2] += 1
            self.stack.pop()

    def wrap(self, fn: Callable[..., Any], label: str) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.phase(label):
                return fn(*args, **kwargs)

        return timed

    def install(self) -> None:
        """Wrap every phase where it is looked up (the defining module and its importers)."""
        for module_name, attr, label in PHASES:
            module = importlib.import_module(module_name)
            owner_name, _, name = attr.rpartition(".")
            owner = getattr(module, owner_name) if owner_name else module
            original = getattr(owner, name, None)
            if original is None:
                continue  # a phase this version of the code does not have
            wrapped = self.wrap(original, label)
            setattr(owner, name, wrapped)
            if owner_name:
                continue
            for other in list(sys.modules.values()):
                if getattr(other, "__name__", "").startswith(("lsr.", "benchmarks.")):
                    if getattr(other, name, None) is original:
                        setattr(other, name, wrapped)


def file_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``; meta.json files without their uids, times and seconds."""
    volatile = {"uid", "index_uid", "created", "meta_crc32", "seconds"}

    def clean(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {k: clean(v) for k, v in obj.items() if k not in volatile}
        return obj

    out = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        if path.name == "meta.json":
            data = json.dumps(clean(json.loads(path.read_text(encoding="utf-8"))), sort_keys=True).encode()
        else:
            data = path.read_bytes()
        out[str(path.relative_to(root))] = hashlib.sha256(data).hexdigest()
    return out


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One timed build in this process (NUMBA_NUM_THREADS set by the parent)."""
    import numba

    from benchmarks.systems import CollectionFiles, LsrBlockMax

    files = CollectionFiles("synthetic", Path(spec["docs"]), Path(spec["queries"]))
    workdir = Path(spec["workdir"])
    system = LsrBlockMax({"impact_dtype": "uint8"})
    block_size = system._block_size() or 16  # always set for lsr-bmp
    if not spec["cold"]:  # load the kernels: a small collection and its pruned lists, on one
        threads = numba.get_num_threads()  # thread (BP's level kernel), then on all (its wide one)
        warm = CollectionFiles("warm", Path(spec["queries"]), Path(spec["queries"]))
        for n in dict.fromkeys((1, threads)):
            numba.set_num_threads(n)
            LsrBlockMax({"impact_dtype": "uint8", "reorder": "bp"}).build(warm, workdir / "warm")
            importlib.import_module("lsr.index.approx").build_approx_lists(
                workdir / "warm" / "lsr-index", 10, block_size
            )
    timer = PhaseTimer()
    timer.install()
    start = time.perf_counter()
    stats = system.build(files, workdir / "timed")
    total = time.perf_counter() - start
    index_dir = workdir / "timed" / "lsr-index"
    approx = 0.0
    if spec["approx_lists"]:  # looked up again: the timer wrapped it
        start = time.perf_counter()
        approx_module = importlib.import_module("lsr.index.approx")
        approx_module.build_approx_lists(index_dir, spec["approx_lists"], block_size)
        approx = time.perf_counter() - start
    return {
        "threads": numba.get_num_threads(),
        "threading_layer": numba.threading_layer(),
        "build_seconds": stats.seconds,
        "build_and_load_seconds": total,
        "approx_seconds": approx,
        "phases": timer.times,
        "hashes": file_hashes(index_dir) if spec["hashes"] else None,
    }


def run_child(spec: dict[str, Any], threads: int, cold: bool) -> dict[str, Any]:
    env = {**os.environ, "NUMBA_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory(prefix="build-bench-") as tmp:
        if cold:
            env["NUMBA_CACHE_DIR"] = str(Path(tmp) / "numba-cache")
        spec = {**spec, "workdir": tmp, "cold": cold}
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "benchmarks.build_bench", "--child", json.dumps(spec), str(out)]
        subprocess.run(cmd, env=env, check=True, cwd=Path(__file__).resolve().parents[1])
        return json.loads(out.read_text(encoding="utf-8"))


def prepare(workdir: Path, n_docs: int, seed: int) -> dict[str, str]:
    """The collection's JSONL files in ``workdir`` (reused when made with the same arguments)."""
    from benchmarks.synthetic import SyntheticConfig, generate, write_collection_jsonl

    key = {"n_docs": n_docs, "seed": seed}
    stamp = workdir / "collection.json"
    paths = {"docs": str(workdir / "docs.jsonl"), "queries": str(workdir / "queries.jsonl")}
    if stamp.is_file() and json.loads(stamp.read_text(encoding="utf-8")) == key:
        return paths
    workdir.mkdir(parents=True, exist_ok=True)
    write_collection_jsonl(generate(SyntheticConfig(n_docs=n_docs, n_queries=200, seed=seed)), workdir)
    stamp.write_text(json.dumps(key), encoding="utf-8")
    return paths


def table(runs: list[dict[str, Any]]) -> str:
    """Phases as rows, one wall / CPU column pair per run."""
    paths = list(dict.fromkeys(p for r in runs for p in r["phases"]))
    head = f"{'phase':<52}" + "".join(f" | {r['threads']:>2} thr wall   cpu" for r in runs)
    lines = [head, "-" * len(head)]
    for key in ("build_seconds", "approx_seconds"):
        lines.append(f"{key.replace('_', ' '):<52}" + "".join(f" | {r[key]:>11.2f}       " for r in runs))
    for path in paths:
        parts = path.split(" / ")
        row = f"{'  ' * (len(parts) - 1) + parts[-1]:<52}"
        for r in runs:
            wall, cpu, _ = r["phases"].get(path, [0.0, 0.0, 0])
            row += f" | {wall:>11.2f} {cpu:>5.2f}"
        lines.append(row)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.build_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--n-docs", type=int, default=200_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", default="1,2", help="comma-separated NUMBA_NUM_THREADS values")
    p.add_argument("--repeats", type=int, default=1, help="rounds over the thread counts (interleaved)")
    p.add_argument(
        "--approx-lists", type=int, default=2000, help="N of the pruned lists built after (0: none)"
    )
    p.add_argument("--cold", action="store_true", help="empty numba cache: compilation counts")
    p.add_argument("--hashes", action="store_true", help="sha256 of every index file in the JSON")
    p.add_argument("--workdir", type=Path, default=None, help="where the JSONL collection is kept")
    p.add_argument("--out", type=Path, default=None, help="write every number here as JSON")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        result = child(json.loads(args.child[0]))
        Path(args.child[1]).write_text(json.dumps(result), encoding="utf-8")
        return 0
    workdir = args.workdir or Path(tempfile.gettempdir()) / f"lsr-build-bench-{args.n_docs}-{args.seed}"
    spec = {
        **prepare(workdir, args.n_docs, args.seed),
        "approx_lists": args.approx_lists,
        "hashes": args.hashes,
    }
    threads = [int(t) for t in args.threads.split(",")]
    runs = []
    for _ in range(args.repeats):
        for n in threads:
            runs.append(run_child(spec, n, args.cold))
            print(f"{n} threads: build {runs[-1]['build_seconds']:.2f}s", flush=True)
    print(table(runs))
    if args.out:
        report = {
            "args": {k: str(v) for k, v in vars(args).items()},
            "cpu_count": os.cpu_count(),
            "runs": runs,
        }
        args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
