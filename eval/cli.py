"""``lsr eval`` with --systems/--datasets, --matrix or --explain (called from lsr.cli.cmd_eval)."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from lsr.errors import LsrError

logger = logging.getLogger("lsr")


def _base(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """The config file and overrides every system starts from (--config, --set, --k, --mode, ...)."""
    extra = [*args.overrides]
    if args.k is not None:
        extra.append(f"eval.k={args.k}")
    for flag in ("mode", "alpha", "beta"):
        if getattr(args, flag, None) is not None:
            extra.append(f"search.{flag}={getattr(args, flag)}")
    return args.config, extra


def _split_list(value: str | None, flag: str) -> list[str]:
    items = [v.strip() for v in (value or "").split(",") if v.strip()]
    if not items:
        raise LsrError(f"{flag} needs at least one entry")
    return items


def _cache_dir(args: argparse.Namespace) -> Path:
    from lsr.eval.systems import default_cache_dir

    return Path(args.cache_dir) if args.cache_dir else default_cache_dir()


def eval_command(args: argparse.Namespace, make_config: Callable, progress: bool) -> int:
    if args.matrix:
        return _matrix(args, progress)
    if args.explain:
        return _explain(args, make_config)
    return _systems(args, progress)


def _write(report: dict, args: argparse.Namespace) -> None:
    from lsr.eval.report import write_report

    if args.report_dir:
        paths = write_report(report, args.report_dir)
        print(f"report -> {', '.join(str(p) for p in paths)}")
    if args.out:
        from lsr.index.io import write_json

        write_json(Path(args.out), report)
        print(f"report -> {args.out}")


def _systems(args: argparse.Namespace, progress: bool) -> int:
    from lsr.eval.datasets import resolve_dataset
    from lsr.eval.report import build_report, format_table
    from lsr.eval.suite import run_suite
    from lsr.eval.systems import parse_system

    if args.index or args.rerank or args.encoder:
        raise LsrError("--systems replaces --index/--rerank/--encoder: name index directories as systems")
    systems = [parse_system(s) for s in _split_list(args.systems, "--systems")]
    clash = {s.label for s in systems if [t.label for t in systems].count(s.label) > 1}
    systems = [replace(s, label=s.spec) if s.label in clash else s for s in systems]  # e.g. two dirs "bm25"
    labels = [s.label for s in systems]
    if len(set(labels)) != len(labels):
        raise LsrError(f"--systems names a system twice: {labels}")
    names = _split_list(args.datasets or args.dataset, "--datasets")
    datasets = [resolve_dataset(d, args.split or "test") for d in names]
    start = time.perf_counter()
    results = run_suite(systems, datasets, _base(args), _cache_dir(args), progress)
    report = build_report(results, labels, [d.name for d in datasets], args.p_value, args.correction)
    report["seconds"] = round(time.perf_counter() - start, 3)
    print(format_table(report))
    _write(report, args)
    return 0


def _matrix(args: argparse.Namespace, progress: bool) -> int:
    from lsr.eval.matrix import format_matrix, load_matrix, run_matrix, validate
    from lsr.eval.report import build_report

    path = Path(args.matrix)
    if not path.is_file() and not path.is_absolute():
        from lsr.eval.matrix import REPO

        path = REPO / args.matrix if (REPO / args.matrix).is_file() else path
    rows = load_matrix(path)
    validate(rows, path)  # every row, before any work
    chosen = [r for r in rows if args.tier is None or r.tier == args.tier]
    if not chosen:
        raise LsrError(f"{path}: no rows in tier {args.tier!r}")
    start = time.perf_counter()
    checked, results = run_matrix(rows, args.tier, _base(args), _cache_dir(args), progress)
    seconds = time.perf_counter() - start
    print(format_matrix(checked))
    print(f"matrix {path} (tier {args.tier or 'all'}): {len(checked)} rows in {seconds:.1f} s")
    systems = list(dict.fromkeys(r.system for r in results))
    datasets = list(dict.fromkeys(r.dataset for r in results))
    report = build_report(results, systems, datasets, args.p_value, args.correction)
    report.update(
        matrix={"file": str(path), "tier": args.tier, "rows": checked, "seconds": round(seconds, 3)}
    )
    _write(report, args)
    failed = [c for c in checked if c["status"] != "ok"]
    if failed:
        print(f"lsr eval: {len(failed)} matrix row(s) do not reproduce", file=sys.stderr)
        return 1
    return 0


def _explain(args: argparse.Namespace, make_config: Callable) -> int:
    from lsr.eval.datasets import load_eval_dataset
    from lsr.eval.explain import explain_query, explanation_dict, format_explanation

    if not args.index or not args.dataset:
        raise LsrError("--explain QID needs --index and --dataset (the dataset holds the query text)")
    cfg = make_config(args, [f"eval.split={args.split}"] if args.split else [])
    dataset = load_eval_dataset(args.dataset, cfg.eval.split)
    try:
        ex = explain_query(
            args.index, args.explain, dataset.queries, dataset.qrels, k=args.k or 5, mode=cfg.search.mode
        )
    except KeyError as exc:
        raise LsrError(exc.args[0]) from None
    print(format_explanation(ex))
    if args.out:
        from lsr.index.io import write_json

        write_json(Path(args.out), explanation_dict(ex))
        print(f"explanation -> {args.out}")
    return 0
