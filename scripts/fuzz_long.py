"""The long fuzz run: every reader target (tests/fuzz/fuzz_targets.py) on N seeded mutated inputs.

    python scripts/fuzz_long.py                        # 100,000 inputs per target, every target
    python scripts/fuzz_long.py -n 20000 corpus-jsonl  # some targets
    python scripts/fuzz_long.py --jobs 16 --json benchmarks/results/fuzz_long.json  # 16 processes

Prints a table (target, inputs, process-seconds, inputs/s per process, slowest input, bugs, hangs) and
writes JSON. With ``--jobs J`` each target's N inputs are split over J processes, job j drawing from
``random.Random(seed + j * 1_000_000)`` (job 0 is the one-process run), and the counts are merged.
Each bug (an exception other than our error types) and each hang (an input read for more than
``--hang-s``) is saved under --crashes as the input bytes, to become a regression case in
tests/fuzz/test_fuzz.py. Exit status 1 when any bug or hang was found.

The inputs are written under a work folder on /dev/shm when there is one (tmpfs: a fuzz input costs no
disk write, which on a busy disk was most of a small target's time).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fuzz"))

from fuzz_targets import Target, all_targets, check


class Hang(Exception):
    """An input still being read after ``--hang-s`` seconds."""


def _alarm(signum: int, frame: object) -> None:
    raise Hang("still reading")


def fuzz(target: Target, work: Path, n: int, seed: int, crashes: Path, hang_s: float, tag: str = "") -> dict:
    rnd = random.Random(seed)
    bugs: dict[str, int] = {}
    slowest = 0.0
    signal.signal(signal.SIGALRM, _alarm)
    start = time.perf_counter()
    for i in range(n):
        data = target.mutator(target.seed, rnd)
        t0 = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, hang_s)
        try:
            bug = check(target, work, data)
        except Hang as exc:  # raised outside check's own try (between its statements)
            bug = exc
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        slowest = max(slowest, time.perf_counter() - t0)
        if bug is not None:
            if isinstance(bug, Hang):
                key = f"hang over {hang_s:g}s"
            else:
                frame = traceback.extract_tb(bug.__traceback__)[-1]
                key = f"{type(bug).__name__} at {Path(frame.filename).name}:{frame.lineno}"
            if key not in bugs:
                crashes.mkdir(parents=True, exist_ok=True)
                (crashes / f"{target.name}{tag}-{i}.bin").write_bytes(data)
                print(f"  {target.name}{tag} input {i}: {key}: {bug!r:.200}", flush=True)
            bugs[key] = bugs.get(key, 0) + 1
    seconds = time.perf_counter() - start
    return {"target": target.name, "inputs": n, "seconds": seconds, "slowest_s": slowest, "bugs": bugs}


def work_root(where: Path | None) -> Path:
    shm = Path("/dev/shm")
    base = where if where is not None else shm if shm.is_dir() and shm.stat().st_mode & 0o002 else None
    return Path(tempfile.mkdtemp(prefix="lsr-fuzz-", dir=base))


_TARGETS: dict[str, Target] = {}
_WORK: Path | None = None


def _init(work: Path) -> None:
    """One work folder (and one copy of the tiny artifacts) per process, made once."""
    global _WORK
    _WORK = Path(tempfile.mkdtemp(dir=work))
    _TARGETS.update(all_targets(_WORK))


def _task(args: tuple[str, int, int, int, str, float]) -> dict:
    name, job, n, seed, crashes, hang_s = args
    assert _WORK is not None
    return fuzz(_TARGETS[name], _WORK, n, seed + job * 1_000_000, Path(crashes), hang_s, f"-j{job}")


def split(n: int, jobs: int) -> list[int]:
    return [n // jobs + (j < n % jobs) for j in range(jobs)]


def merge(rows: list[dict]) -> dict[str, Any]:
    bugs: dict[str, int] = {}
    for row in rows:
        for key, count in row["bugs"].items():
            bugs[key] = bugs.get(key, 0) + count
    inputs, seconds = sum(r["inputs"] for r in rows), sum(r["seconds"] for r in rows)
    return {
        "target": rows[0]["target"],
        "inputs": inputs,
        "jobs": len(rows),
        "process_seconds": round(seconds, 1),
        "per_s": round(inputs / max(seconds, 1e-9)),
        "slowest_input_s": round(max(r["slowest_s"] for r in rows), 3),
        "bugs": {k: v for k, v in bugs.items() if not k.startswith("hang")},
        "hangs": sum(v for k, v in bugs.items() if k.startswith("hang")),
    }


def print_row(row: dict[str, Any]) -> None:
    cells = (row["inputs"], row["process_seconds"], row["per_s"], row["slowest_input_s"])
    widths = (8, 8, 9, 8)
    bugs = sum(row["bugs"].values())
    line = " ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True))
    print(f"{row['target']:<16} {line}  {bugs:>4}  {row['hangs']:>5}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help="target names (default: all)")
    parser.add_argument("-n", type=int, default=100_000, help="inputs per target")
    parser.add_argument(
        "--jobs", type=int, default=1, help="processes; each target's inputs are split over them"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hang-s", type=float, default=10.0, help="an input read longer than this is a hang")
    parser.add_argument("--work", type=Path, help="where the inputs are written (default: /dev/shm or /tmp)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--crashes", type=Path, default=Path("fuzz-crashes"))
    args = parser.parse_args()
    root = work_root(args.work)
    try:
        return run(args, parser, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser, root: Path) -> int:
    known = sorted(all_targets(root / "probe"))
    unknown = set(args.targets) - set(known)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}; known: {known}")
    names = args.targets or known
    tasks = [
        (name, job, n, args.seed, str(args.crashes), args.hang_s)
        for name in names
        for job, n in enumerate(split(args.n, args.jobs))
    ]
    start = time.perf_counter()
    done: dict[str, list[dict]] = {name: [] for name in names}
    rows: list[dict] = []
    print(
        f"{'target':<16} {'inputs':>8} {'proc-s':>8} {'inputs/s':>9} {'slowest':>8}  bugs  hangs", flush=True
    )
    # spawned, not forked: building the probe targets above ran numba's parallel kernels, whose GNU
    # OpenMP threads make a fork() kill the child ("fork() called from a process already using GNU
    # OpenMP"); each job builds its own targets anyway (_init)
    with multiprocessing.get_context("spawn").Pool(args.jobs, _init, (root,)) as pool:
        for part in pool.imap(_task, tasks):
            done[part["target"]].append(part)
            if len(done[part["target"]]) < args.jobs:
                continue
            row = merge(done[part["target"]])
            rows.append(row)
            print_row(row)
            if args.json:
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(
                    json.dumps({"jobs": args.jobs, "seed": args.seed, "rows": rows}, indent=2) + "\n"
                )
    wall = time.perf_counter() - start
    print(f"{sum(r['inputs'] for r in rows)} inputs in {wall:.0f} s wall ({args.jobs} jobs)")
    return 1 if any(r["bugs"] or r["hangs"] for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
