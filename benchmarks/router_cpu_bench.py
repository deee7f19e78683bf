"""The sharded router's CPU per query: the search path of ``lsr serve`` (``service.app.search_served``:
encode, search, format the hits) on one index and on 4 shards served by Ray actors (``lsr.ray_serve``),
in this process, measured as this process's CPU time (``time.process_time``: every thread, Ray's
core worker's included) over the same queries.

    python -m benchmarks.router_cpu_bench --corpus ../shared/data/beir/scifact --concurrency 1,8 \\
        --queries 2000 --repeat 3 --out benchmarks/results/router-cpu.json

CPU time, not latency: on a loaded machine the work done per query is what stays comparable. Without
``--ray`` a local Ray (``--num-cpus``) is started here and stopped at the end. The router's HTTP stack
is left out (the single-index server runs the same one): "added" is the sharded path's CPU per query
minus the single index's, the router's share of what sharding costs (the shard actors' CPU is
another process's). Every query's hits are checked equal between the two before anything is timed.
``--profile FILE`` writes a cProfile of the sharded path at the highest concurrency.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.sharded_http_bench import build
from lsr.data.corpus import load_queries
from lsr.index import SearchParams
from lsr.service.app import ServedIndex, load_served_index, request_plan, search_served

SINGLE, SHARDED = "single", "4 shards, Ray"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", required=True, help="a BEIR folder (corpus and test queries)")
    p.add_argument(
        "--ray", default=None, metavar="ADDRESS", help="a running Ray cluster (default: start one)"
    )
    p.add_argument("--num-cpus", type=int, default=2, help="the CPUs of the local Ray started here")
    p.add_argument("--docs", type=int, default=100_000, help="first N documents (all of SciFact: 5,183)")
    p.add_argument("--encoder", default="bm25")
    p.add_argument("--concurrency", default="1,8", help="threads searching side by side")
    p.add_argument("--queries", type=int, default=2000, help="queries per run (the test queries in turn)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--profile", type=Path, default=None, help="a cProfile of the sharded path (pstats)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="router-cpu-"))
    import ray

    try:
        if args.ray is None:
            ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
        one, four = build(args, root)
        served = open_served(args, one, four)
        texts = [t for t in load_queries(args.corpus, "test").values() if t.strip()]
        same = compare(served, texts, args.k)
        runs = measure(args, served, texts)
        result = {"args": {k: str(v) for k, v in vars(args).items()}, "identical_answers": same, "runs": runs}
        result["summary"] = summary(runs)
        print_table(result)
        if args.profile is not None:
            profile(args, served[SHARDED], texts)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"results -> {args.out}")
    finally:
        from lsr.ray_serve import undeploy_sharded

        if ray.is_initialized():
            if (root / "four").is_dir():
                undeploy_sharded(root / "four")
            ray.shutdown()
        shutil.rmtree(root, ignore_errors=True)


def open_served(args: argparse.Namespace, one: Path, four: Path) -> dict[str, ServedIndex]:
    """Both indexes as ``lsr serve`` opens them (the sharded one deployed on Ray Serve, warmed up)."""
    from lsr.ray_serve import deploy_sharded

    single = load_served_index("sf", str(one), 0, warmup=True)
    sharded = load_served_index("sf", str(four), 0, warmup=True, opener=lambda p: deploy_sharded(p, args.ray))
    return {SINGLE: single, SHARDED: sharded}


def answer(served: ServedIndex, text: str, k: int) -> dict[str, Any]:
    """One ``/v1/search`` query's answer body (hits, query terms), as the service's pool computes it."""
    plan = request_plan(k, SearchParams(mode="exact"), "none")
    return search_served(served, [(text, None)], plan, ["title"])[0]


def compare(served: dict[str, ServedIndex], texts: list[str], k: int) -> str:
    """How many queries both answer identically (the whole answer: ids, scores, ranks, no partial)."""
    same = sum(answer(served[SINGLE], t, k) == answer(served[SHARDED], t, k) for t in texts)
    return f"{same}/{len(texts)}"


def run_level(
    served: ServedIndex,
    texts: list[str],
    n: int,
    threads: int,
    k: int,
    profiles: list[cProfile.Profile] | None = None,
) -> dict[str, Any]:
    """``n`` queries on ``threads`` threads side by side; this process's CPU and wall time per query.
    ``profiles``: each thread's cProfile is appended there."""
    queue = iter(range(n))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker() -> None:
        if profiles is not None:
            prof = cProfile.Profile()
            profiles.append(prof)
            prof.enable()
        while True:
            with lock:
                i = next(queue, None)
            if i is None:
                return
            try:
                answer(served, texts[i % len(texts)], k)
            except BaseException as exc:  # reported below, after the run
                errors.append(exc)
                return

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    cpu, wall = time.process_time(), time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if errors:
        raise errors[0]
    return {"cpu_ms_per_query": round(cpu / n * 1e3, 4), "wall_ms_per_query": round(wall / n * 1e3, 4)}


def measure(
    args: argparse.Namespace, served: dict[str, ServedIndex], texts: list[str]
) -> list[dict[str, Any]]:
    runs = []
    for setup in served:  # warm-up: every shard's first calls
        run_level(served[setup], texts, 200, 4, args.k)
    for c in [int(x) for x in args.concurrency.split(",")]:
        for rep in range(args.repeat):
            order = list(served) if rep % 2 == 0 else list(served)[::-1]
            for setup in order:
                calls = shard_calls(served[setup])
                load = os.getloadavg()[0]
                row = {"concurrency": c, "repeat": rep, "setup": setup}
                row.update(run_level(served[setup], texts, args.queries, c, args.k))
                row["loadavg_1m"] = round(load, 2)
                if setup == SHARDED:
                    row["shard_calls_per_query"] = round(
                        (shard_calls(served[setup]) - calls) / args.queries, 3
                    )
                runs.append(row)
                print(_line(row), flush=True)
    return runs


def shard_calls(served: ServedIndex) -> int:
    return sum(b.calls for b in getattr(served.index, "backends", ()))


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per concurrency: the median CPU ms per query of each setup, and the sharded minus the single
    one in each repeat (the router's added CPU per query)."""
    out: dict[str, Any] = {}
    for c in sorted({r["concurrency"] for r in runs}):
        by = {
            s: sorted(
                (r for r in runs if r["concurrency"] == c and r["setup"] == s), key=lambda r: r["repeat"]
            )
            for s in (SINGLE, SHARDED)
        }
        level: dict[str, Any] = {
            s: float(np.median([r["cpu_ms_per_query"] for r in rows])) for s, rows in by.items()
        }
        level["added_cpu_ms_per_query"] = [
            round(b["cpu_ms_per_query"] - a["cpu_ms_per_query"], 4)
            for a, b in zip(by[SINGLE], by[SHARDED], strict=True)
        ]
        level["shard_calls_per_query"] = float(np.median([r["shard_calls_per_query"] for r in by[SHARDED]]))
        out[str(c)] = level
    return out


def profile(args: argparse.Namespace, served: ServedIndex, texts: list[str]) -> None:
    """A cProfile of the search threads and the router's shard-call loop, at the highest concurrency."""
    import pstats

    from lsr.ray_serve import router_loop

    c = max(int(x) for x in args.concurrency.split(","))
    loop, on_loop = router_loop(), cProfile.Profile()
    loop.call_soon_threadsafe(on_loop.enable)
    profiles = [on_loop]
    run_level(served, texts, args.queries, c, args.k, profiles)
    done = threading.Event()

    def stop() -> None:
        on_loop.disable()
        done.set()

    loop.call_soon_threadsafe(stop)
    done.wait(10)
    stats = pstats.Stats(profiles[0])
    for prof in profiles[1:]:
        stats.add(prof)
    stats.dump_stats(args.profile)
    print(f"profile (concurrency {c}, search threads and the router loop) -> {args.profile}")


def _line(r: dict[str, Any]) -> str:
    calls = f" {r['shard_calls_per_query']:.2f} calls/q" if "shard_calls_per_query" in r else ""
    return (
        f"c={r['concurrency']} #{r['repeat']} {r['setup']:14} CPU {r['cpu_ms_per_query']:.3f} ms/q "
        f"wall {r['wall_ms_per_query']:.3f} ms/q load {r['loadavg_1m']:.1f}{calls}"
    )


def print_table(result: dict[str, Any]) -> None:
    print(f"identical answers (single vs sharded): {result['identical_answers']}")
    print("| concurrency | single CPU ms/q | sharded CPU ms/q | added CPU ms/q (each run) | shard calls/q |")
    print("|---|---|---|---|---|")
    for c, s in result["summary"].items():
        added = ", ".join(f"{x:+.3f}" for x in s["added_cpu_ms_per_query"])
        print(f"| {c} | {s[SINGLE]:.3f} | {s[SHARDED]:.3f} | {added} | {s['shard_calls_per_query']:.2f} |")


if __name__ == "__main__":
    main()
