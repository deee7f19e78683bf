"""Crash safety of a live index under SIGKILL: run N trials of the crash test and print a table.

    python scripts/live_fault.py --trials 100 --out benchmarks/results/live_fault.json

Each trial (tests/unit/index/test_live_crash.py) builds a small index, starts a writer process that
adds, updates, deletes and merges at random (tests/unit/index/live_crash_writer.py), SIGKILLs it
after a random 0.3-2.5 s, and checks that the index opens at the last committed generation (or the
one whose write was in flight, committed just before the kill), that its live ids are exactly those
of the acknowledged writes, and that the next writer removes every stray file. CI runs 6 trials
(``LSR_CRASH_TRIALS``); this script runs as many as asked, with seeds after CI's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST = ROOT / "tests" / "unit" / "index" / "test_live_crash.py"


def run(trials: int, first_seed: int) -> dict[str, int | float]:
    env = {**os.environ, "LSR_CRASH_TRIALS": str(trials), "LSR_CRASH_FIRST": str(first_seed)}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(TEST), "-k", "sigkill"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-500:]
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|error)", tail)}
    if proc.returncode not in (0, 1):
        raise SystemExit(f"pytest could not run the trials:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    if counts.get("failed"):
        print(proc.stdout[-6000:])
    return {
        "trials": trials,
        "passed": counts.get("passed", 0),
        "failed": counts.get("failed", 0) + counts.get("error", 0),
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--first-seed", type=int, default=100, help="seed of the first trial (CI: 0-5)")
    parser.add_argument("--out", help="JSON results file")
    args = parser.parse_args()
    result = run(args.trials, args.first_seed)
    print("| trials | passed | failed | seconds |\n|---:|---:|---:|---:|")
    print(f"| {result['trials']} | {result['passed']} | {result['failed']} | {result['seconds']} |")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    if result["failed"] or result["passed"] != args.trials:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
