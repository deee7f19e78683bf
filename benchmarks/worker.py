"""Run one system of the index benchmark in its own process: build, then time every setting.

``python -m benchmarks.worker SPEC.json OUT.json``. The parent
(:mod:`benchmarks.index_bench`) writes the spec and kills the process when
it exceeds its time budget; this process rewrites ``OUT.json`` after the build and
after every setting, so whatever finished survives a kill.

Timing protocol, per setting:
    1. warm-up (:func:`warm_up`): every query once and at least ``warmup`` searches in all
       (numba compilation, the JVM's JIT, caches), then one batch; at most half the budget;
    2. latency: every query once on this thread, timed one by one with
       ``time.perf_counter`` (stops early past ``search_budget_s``); mean, p50, p99;
    3. throughput: all queries (fewer if the latency run says they would not fit in the
       budget) in one ``search_batch`` call with ``threads`` threads, repeated until
       ``MIN_BATCH_S`` has passed -> queries/s.
Both timed runs also record CPU time / wall time of the process, which shows when other
processes on the machine took cores away (``latency_cpu_per_wall`` below 1,
``batch_cpu_per_wall`` below ``threads``).
Load, build and query preparation are outside the timed regions, and Python's cyclic
garbage collector is off inside them (as in ``timeit``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.systems import CollectionFiles, Query, Setting, System, make_system
from lsr.timing import latency_summary

logger = logging.getLogger(__name__)

MIN_BATCH_S = 1.0  # the throughput batch is repeated until it has run this long


def load_queries(path: Path) -> list[Query]:
    """``(query id, {term: weight})`` per line of a sparse-vector JSONL file."""
    loads: Callable[[bytes], Any]
    try:
        import orjson

        loads = orjson.loads
    except ImportError:  # the bench extra's; a bare host (the GPU machine's CPUs) has only json
        loads = json.loads

    out = []
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                obj = loads(line)
                out.append((str(obj["id"]), {t: float(w) for t, w in obj["vector"].items() if w > 0}))
    return out


def _latency(
    system: System, setting: Setting, n: int, k: int, budget_s: float, repeats: int = 1
) -> tuple[list[float], list[list[str]]]:
    """Each query's latency: the fastest of ``repeats`` runs (a shared machine's preemptions are not
    search time; 1 on a quiet machine)."""
    times: list[float] = []
    ids: list[list[str]] = []
    clock = time.perf_counter
    began = clock()
    for i in range(n):
        best = float("inf")
        for _ in range(repeats):
            t0 = clock()
            result = system.search_one(i, k, setting)
            best = min(best, clock() - t0)
        times.append(best)
        ids.append(system.ids_one(result))
        if clock() - began > budget_s:
            logger.warning(
                "%s %s: latency run stopped after %d of %d queries (budget %.0fs)",
                system.name,
                setting.label,
                i + 1,
                n,
                budget_s,
            )
            break
    return times, ids


def _batch_size(mean_s: float, n: int, threads: int, budget_s: float) -> int:
    """How many queries one batch may take to stay within ``budget_s`` at ``mean_s`` per query."""
    if mean_s <= 0 or mean_s * n / threads <= budget_s:
        return n
    return min(n, max(threads, int(budget_s * threads / mean_s)))


def warm_up(
    system: System, setting: Setting, n: int, k: int, threads: int, min_searches: int, budget_s: float
) -> int:
    """At least one pass over the queries and ``min_searches`` searches (cycling), then one batch.

    The JVM needs a few hundred searches before its JIT settles; numba compiles on the
    first call. Returns the number of single searches run.
    """
    clock = time.perf_counter
    began = clock()
    done = 0
    while done < max(min_searches, n) and clock() - began < budget_s:
        system.search_one(done % n, k, setting)
        done += 1
    mean_s = (clock() - began) / max(done, 1)
    system.search_batch(range(_batch_size(mean_s, n, threads, budget_s)), k, threads, setting)
    return done


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Collect, then keep Python's cyclic GC off (as ``timeit`` does): its pauses are not search time."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def time_setting(
    system: System,
    setting: Setting,
    n: int,
    k: int,
    threads: int,
    warmup: int,
    budget_s: float,
    repeats: int = 1,
) -> dict[str, Any]:
    """Warm up, then time one setting; returns the numbers and the result lists."""
    warmed = warm_up(system, setting, n, k, threads, warmup, budget_s / 2)
    with _no_gc(), _CpuClock() as latency_clock:
        times, single_ids = _latency(system, setting, n, k, budget_s, repeats)
    ms = np.asarray(times) * 1e3
    lat = latency_summary(ms)
    n_batch = _batch_size(float(np.mean(times)), n, threads, budget_s)
    rounds = 0
    with _no_gc(), _CpuClock() as batch_clock:
        while True:  # repeat short batches so that the clock and the CPU ratio mean something
            native = system.search_batch(range(n_batch), k, threads, setting)
            rounds += 1
            if time.perf_counter() - batch_clock.started >= min(MIN_BATCH_S, budget_s) or n_batch < n:
                break
    batch_s = batch_clock.wall / rounds
    return {
        "setting": setting.label,
        "params": setting.params,
        "warmup_searches": warmed,
        "n_timed": len(times),
        "mean_ms": lat["mean"],
        "p50_ms": lat["p50"],
        "p99_ms": lat["p99"],
        "max_ms": float(ms.max()),
        "latency_cpu_per_wall": latency_clock.ratio,
        "n_batch": n_batch,
        "batch_rounds": rounds,
        "batch_seconds": batch_s,
        "qps": n_batch / batch_s if batch_s > 0 else None,
        "batch_cpu_per_wall": batch_clock.ratio,
        "threads": threads,
        "ids_single": single_ids,
        "ids_batch": system.ids_batch(native),
    }


class _CpuClock:
    """Wall time and this process's CPU time (all threads) over a block.

    ``ratio`` = CPU / wall: about 1 for the latency run and about ``threads`` for the batch
    when the process had the cores to itself; less means other processes took them.
    """

    def __enter__(self) -> _CpuClock:
        self._cpu = _process_cpu()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.started
        self.ratio = (_process_cpu() - self._cpu) / self.wall if self.wall > 0 else None


def _process_cpu() -> float:
    t = os.times()
    return t.user + t.system


def _write(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj), encoding="utf-8")
    os.replace(tmp, path)


def run(spec: dict[str, Any], out: Path) -> dict[str, Any]:
    """Build and time one system as ``spec`` says; results go to ``out`` as they come."""
    files = CollectionFiles.from_json(spec["collection"])
    workdir = Path(spec["workdir"])
    workdir.mkdir(parents=True, exist_ok=True)
    system = make_system(spec["system"], spec.get("options", {}))
    report: dict[str, Any] = {"system": spec["system"], "status": "building", "settings": []}
    _write(out, report)
    build = system.build(files, workdir)
    report.update(
        status="searching",
        build_seconds=build.seconds,
        index_bytes=build.index_bytes,
        build_detail=build.detail,
    )
    _write(out, report)
    queries = load_queries(files.queries_jsonl)
    system.prepare(queries)
    reference = system.reference_ids(len(queries), spec["k"])
    if reference is not None:
        report["ids_reference"] = reference
    gc.collect()
    gc.freeze()  # the index, ids and queries live to the end: keep them out of every GC pass
    for setting in system.settings():
        prepared = system.setup(setting)
        result = time_setting(
            system,
            setting,
            len(queries),
            spec["k"],
            spec["threads"],
            spec["warmup"],
            spec["search_budget_s"],
            spec.get("latency_repeats", 1),
        )
        report["settings"].append({**result, **prepared})
        _write(out, report)
        logger.info(
            "%s %s: mean %.3f ms, p99 %.3f ms, %.0f q/s",
            spec["system"],
            setting.label,
            result["mean_ms"],
            result["p99_ms"],
            result["qps"] or 0,
        )
    system.close()
    report["status"] = "done"
    _write(out, report)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.worker",
        description="Build and time one benchmark system (run by index_bench).",
    )
    parser.add_argument("spec", type=Path, help="the JSON spec written by index_bench")
    parser.add_argument("out", type=Path, help="where to write the results (rewritten as they come)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    spec = json.loads(args.spec.read_text(encoding="utf-8"))
    out = args.out
    try:
        run(spec, out)
    except Exception as exc:  # report the failure to the parent through OUT.json
        report = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else {"settings": []}
        report.update(
            system=spec.get("system"),
            status="error",
            error=f"{type(exc).__name__}: {exc}",
            traceback=traceback.format_exc(),
        )
        _write(out, report)
        logger.exception("system %s failed", spec.get("system"))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
