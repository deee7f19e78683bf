"""The long fuzz run: every reader target (tests/fuzz/fuzz_targets.py) on N seeded mutated inputs.

    python scripts/fuzz_long.py                        # 100,000 inputs per target, every target
    python scripts/fuzz_long.py -n 20000 corpus-jsonl  # some targets
    python scripts/fuzz_long.py --json reports/fuzz_long.json

Prints a table (target, inputs, seconds, inputs/s, bugs) and writes JSON; each bug (an exception other
than our error types) is saved under --crashes as the input bytes, to become a regression case in
tests/fuzz/test_fuzz.py. Exit status 1 when any bug was found.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fuzz"))

from fuzz_targets import Target, all_targets, check


def fuzz(target: Target, work: Path, n: int, seed: int, crashes: Path) -> dict:
    rnd = random.Random(seed)
    bugs: dict[str, int] = {}
    start = time.perf_counter()
    for i in range(n):
        data = target.mutator(target.seed, rnd)
        bug = check(target, work, data)
        if bug is not None:
            frame = traceback.extract_tb(bug.__traceback__)[-1]
            key = f"{type(bug).__name__} at {Path(frame.filename).name}:{frame.lineno}"
            if key not in bugs:
                crashes.mkdir(parents=True, exist_ok=True)
                (crashes / f"{target.name}-{i}.bin").write_bytes(data)
                print(f"  {target.name}: {key}: {bug!r:.200}", flush=True)
            bugs[key] = bugs.get(key, 0) + 1
    seconds = time.perf_counter() - start
    return {
        "target": target.name,
        "inputs": n,
        "seconds": round(seconds, 1),
        "per_s": round(n / seconds),
        "bugs": bugs,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help="target names (default: all)")
    parser.add_argument("-n", type=int, default=100_000, help="inputs per target")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--crashes", type=Path, default=Path("fuzz-crashes"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lsr-fuzz-"))
    targets = all_targets(work)
    unknown = set(args.targets) - set(targets)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}; known: {sorted(targets)}")
    rows = []
    print(f"{'target':<16} {'inputs':>8} {'seconds':>8} {'inputs/s':>9}  bugs", flush=True)
    for name in args.targets or targets:
        row = fuzz(targets[name], work, args.n, args.seed, args.crashes)
        rows.append(row)
        bugs = sum(row["bugs"].values())
        print(f"{name:<16} {row['inputs']:>8} {row['seconds']:>8} {row['per_s']:>9}  {bugs}", flush=True)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 1 if any(r["bugs"] for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
