"""``lsr eval MODE``: the parser and the handler of each mode (lsr.cli composes them).

Modes: ``index`` (one index on one dataset: sparse, hybrid or dense-only), ``rerank`` (the TREC DL
re-rank protocol on a pool), ``systems`` (systems side by side with significance tests), ``matrix``
(the reproduction matrix), ``explain`` (why documents ranked for one query). Every mode builds its
config one way, :func:`config_base`: ``--config``, then ``--set``, then the mode's flags.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from lsr.cli_flags import common_flags, search_mode_flags
from lsr.data.irds import register_local
from lsr.encoders import ENCODER_HELP, encoder_overrides
from lsr.errors import LsrError
from lsr.eval.datasets import expand_datasets, load_eval_dataset, resolve_dataset
from lsr.eval.explain import explain_query, explanation_dict, format_explanation
from lsr.eval.matrix import REPO, format_matrix, load_matrix, run_matrix, validate
from lsr.eval.report import build_report, format_table, write_report
from lsr.eval.rerank import format_rerank_report, rerank_eval
from lsr.eval.runner import DENSE_SYSTEMS, evaluate_dense, evaluate_sparse
from lsr.eval.suite import ConfigBase, run_suite
from lsr.eval.systems import default_cache_dir, parse_system
from lsr.eval.views import dense_report, format_dense_report, format_report, index_report
from lsr.index.io import write_json

# flag -> config key, for the flags a mode has (``None`` values are left to the config)
FLAG_KEYS = {
    "split": "eval.split",
    "k": "eval.k",
    "mode": "search.mode",
    "alpha": "search.alpha",
    "beta": "search.beta",
    "budget": "search.budget",
}


def config_base(args: argparse.Namespace, *extra: str) -> ConfigBase:
    """``--config``, then ``--set``, then ``extra``, then the mode's flags (FLAG_KEYS) that were given."""
    flags = [
        f"{key}={getattr(args, f)}" for f, key in FLAG_KEYS.items() if getattr(args, f, None) is not None
    ]
    return ConfigBase(args.config, (*args.overrides, *extra, *flags))


def eval_command(args: argparse.Namespace, progress: bool) -> int:
    for item in getattr(args, "irds_local", []):
        dataset_id, sep, path = item.partition("=")
        if not sep or not dataset_id or not path:
            raise LsrError(f"--irds-local {item!r} must look like ID=PATH")
        register_local(dataset_id, path)
    return MODES[args.eval_mode](args, progress)


def _write_json(report: dict[str, Any], out: str | None, what: str = "report") -> None:
    if out:
        write_json(Path(out), report)
        print(f"{what} -> {out}")


def _index(args: argparse.Namespace, progress: bool) -> int:
    if not args.index:
        raise LsrError("--index is required")
    if not args.dataset:
        raise LsrError("--dataset is required")
    cfg = config_base(args).load()
    if args.first_stage != "sparse":
        if args.rerank_stage not in (None, "none"):
            raise LsrError(
                f"--rerank-stage re-ranks a sparse first stage, not --first-stage {args.first_stage}"
            )
        report = dense_report(evaluate_dense(args.index, args.dataset, cfg, args.first_stage))
        print(format_dense_report(report))
    else:
        report = index_report(evaluate_sparse(args.index, args.dataset, cfg, args.rerank_stage, progress))
        print(format_report(report))
    _write_json(report, args.out)
    return 0


def _rerank(args: argparse.Namespace, progress: bool) -> int:
    if bool(args.index) == bool(args.encoder):
        raise LsrError("lsr eval rerank needs either --index (built over the dataset's corpus) or --encoder")
    cfg = config_base(args, *(encoder_overrides(args.encoder) if args.encoder else [])).load()
    splits = [args.pool_split] if args.pool_split else None
    report = rerank_eval(
        args.dataset, cfg, args.index, args.run, splits, args.depth, progress, rerank=args.rerank_stage
    )
    print(format_rerank_report(report))
    _write_json(report, args.out)
    return 0


def _split_list(value: str | None, flag: str) -> list[str]:
    items = [v.strip() for v in (value or "").split(",") if v.strip()]
    if not items:
        raise LsrError(f"{flag} needs at least one entry")
    return items


def _cache_dir(args: argparse.Namespace) -> Path:
    return Path(args.cache_dir) if args.cache_dir else default_cache_dir()


def _write(report: dict, args: argparse.Namespace) -> None:
    if args.report_dir:
        paths = write_report(report, args.report_dir)
        print(f"report -> {', '.join(str(p) for p in paths)}")
    _write_json(report, args.out)


def _systems(args: argparse.Namespace, progress: bool) -> int:
    systems = [parse_system(s) for s in _split_list(args.systems, "--systems")]
    clash = {s.label for s in systems if [t.label for t in systems].count(s.label) > 1}
    systems = [replace(s, label=s.spec) if s.label in clash else s for s in systems]  # e.g. two dirs "bm25"
    labels = [s.label for s in systems]
    if len(set(labels)) != len(labels):
        raise LsrError(f"--systems names a system twice: {labels}")
    # the split picks the qrels of each dataset; it is not a config override here
    names = expand_datasets(_split_list(args.datasets, "--datasets"))
    datasets = [resolve_dataset(d, args.split or "test") for d in names]
    start = time.perf_counter()
    results = run_suite(systems, datasets, config_base(args), _cache_dir(args), progress)
    report = build_report(results, labels, [d.name for d in datasets], args.p_value, args.correction)
    report["seconds"] = round(time.perf_counter() - start, 3)
    print(format_table(report))
    _write(report, args)
    return 0


def _matrix(args: argparse.Namespace, progress: bool) -> int:
    path = Path(args.file)
    if not path.is_file() and not path.is_absolute() and (REPO / args.file).is_file():
        path = REPO / args.file
    rows = load_matrix(path)
    validate(rows, path)  # every row, before any work
    if not [r for r in rows if args.tier is None or r.tier == args.tier]:
        raise LsrError(f"{path}: no rows in tier {args.tier!r}")
    start = time.perf_counter()
    checked, results = run_matrix(rows, args.tier, config_base(args), _cache_dir(args), progress)
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


def _explain(args: argparse.Namespace, progress: bool) -> int:
    cfg = config_base(args).load()
    dataset = load_eval_dataset(args.dataset, cfg.eval.split)
    try:
        ex = explain_query(
            args.index, args.qid, dataset.queries, dataset.qrels, k=args.k, mode=cfg.search.mode
        )
    except KeyError as exc:
        raise LsrError(exc.args[0]) from None
    print(format_explanation(ex))
    _write_json(explanation_dict(ex), args.out, "explanation")
    return 0


MODES = {"index": _index, "rerank": _rerank, "systems": _systems, "matrix": _matrix, "explain": _explain}


# ---- the parser ----------------------------------------------------------------------------------


def _irds_local(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--irds-local",
        action="append",
        default=[],
        metavar="ID=PATH",
        help="serve an ir_datasets id from a local BEIR folder or zip (repeatable); see also "
        "$LSR_IRDS_REGISTRY",
    )


def _report_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--report-dir", metavar="DIR", help="write report.json, report.md and PNG plots here")
    p.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="built indexes (default $LSR_CACHE_DIR/indexes, ~/.cache/lsr/indexes)",
    )
    p.add_argument(
        "--correction",
        choices=("holm", "bonferroni", "none"),
        default="holm",
        help="multiple-comparison correction of the paired t-tests (default holm)",
    )
    p.add_argument("--p-value", type=float, default=0.05, help="significance level after correction (0.05)")
    p.add_argument("--k", type=int, help="depth of each run (eval.k, default 1000)")
    search_mode_flags(p)
    p.add_argument("--out", help="write the JSON report here")


def _add_index_mode(modes: Any) -> None:
    p = modes.add_parser(
        "index",
        help="one index on one dataset: quality, latency, size, sparsity (sparse, hybrid or dense-only)",
    )
    p.add_argument("--index", help="index directory")
    p.add_argument("--dataset", help="BEIR folder, staged name (scifact, ood-adi, ...) or ir_datasets id")
    p.add_argument("--split", help="qrels split of a BEIR folder (eval.split, default test)")
    p.add_argument("--k", type=int, help="depth of the run (eval.k, default 1000)")
    p.add_argument(
        "--rerank-stage",
        choices=("none", "dense", "dense-float"),
        help="evaluate the hybrid: the sparse top search.rerank_depth re-scored by the index's "
        "dense stage (PQ codes; dense-float: the stored float vectors) and fused",
    )
    p.add_argument(
        "--first-stage",
        choices=("sparse", *DENSE_SYSTEMS),
        default="sparse",
        help="dense-pq / dense-float: dense-only retrieval over the index's dense stage (a flat "
        "scan of the PQ codes, or of the float vectors), the baseline beside sparse and hybrid",
    )
    search_mode_flags(p)
    _irds_local(p)
    p.add_argument("--out", help="write the JSON report here")
    common_flags(p)


def _add_rerank_mode(modes: Any) -> None:
    p = modes.add_parser(
        "rerank",
        help="the TREC DL re-rank protocol: re-score the top --depth of a first-stage run on "
        "every split of a pool (graded nDCG@10, binary metrics at grade >= 2)",
    )
    p.add_argument(
        "--dataset", required=True, help="a pool folder: corpus, queries, qrels/<split>.tsv, runs/"
    )
    p.add_argument(
        "--run",
        default="bm25",
        help="the first-stage run: a run name in DATASET/runs (bm25, tasb, ...) or a TREC run file "
        "({split} is filled in); default bm25",
    )
    p.add_argument("--index", help="an index built over the dataset's corpus")
    p.add_argument(
        "--encoder",
        metavar="ENCODER",
        help=f"index the corpus first, in a temporary directory ({ENCODER_HELP})",
    )
    p.add_argument(
        "--split", dest="pool_split", help="only this split (default: every split of DATASET/qrels)"
    )
    p.add_argument("--depth", type=int, default=100, help="candidates re-scored per query (100)")
    p.add_argument(
        "--rerank-stage",
        choices=("none", "dense", "dense-float"),
        help="fuse the re-ranked sparse scores with the dense stage's",
    )
    p.add_argument("--out", help="write the JSON report here")
    common_flags(p)


def _add_systems_mode(modes: Any) -> None:
    p = modes.add_parser(
        "systems",
        help="systems side by side on datasets, with paired significance tests; missing indexes "
        "are built into the cache",
    )
    p.add_argument(
        "--systems",
        required=True,
        metavar="S1,S2,...",
        help="index directories, bm25, splade, inference-free, unicoil, NAME:MODEL_FOLDER, "
        "hybrid[:MODEL_FOLDER] (SPLADE + dense re-rank), dense[:DENSE_MODEL] (dense only: flat scan of "
        "the float vectors, default all-MiniLM-L6-v2), pyserini-bm25 (Lucene reference), "
        "run:FILE (a TREC run; {split} is filled in). Missing indexes are built into the cache "
        "(--cache-dir), keyed by a content hash of corpus, config and model weights",
    )
    p.add_argument(
        "--datasets",
        required=True,
        metavar="D1,D2,...",
        help="BEIR folders, staged BEIR names (scifact), the staged out-of-domain collections "
        "(ood-adi, ood-time, ood-med, ood-cacm, ood-lisa, ood-npl; the group 'ood' names all six), "
        "ir_datasets ids, or dl19-rerank / dl20-rerank (TREC DL: re-rank the shipped BM25 top-100 "
        "of the DL pool)",
    )
    p.add_argument("--split", help="qrels split of the BEIR datasets (default test)")
    _report_flags(p)
    _irds_local(p)
    common_flags(p)


def _add_matrix_mode(modes: Any) -> None:
    p = modes.add_parser("matrix", help="run the reproduction matrix; exit 1 when a row does not reproduce")
    p.add_argument(
        "file", nargs="?", default="eval/matrix.yaml", help="matrix file (default eval/matrix.yaml)"
    )
    p.add_argument("--tier", choices=("ci", "gpu", "long"), help="only the rows of this tier")
    _report_flags(p)
    common_flags(p)


def _add_explain_mode(modes: Any) -> None:
    p = modes.add_parser(
        "explain",
        help="one query's terms and weights, and each matching term's contribution to the top documents",
    )
    p.add_argument("qid", help="query id (the dataset holds its text)")
    p.add_argument("--index", required=True, help="index directory")
    p.add_argument("--dataset", required=True, help="BEIR folder or ir_datasets id")
    p.add_argument("--split", help="qrels split (eval.split, default test)")
    p.add_argument("--k", type=int, default=5, help="documents explained (5)")
    p.add_argument("--mode", choices=("exact", "safe", "approx"), help="search.mode")
    p.add_argument("--out", help="write the explanation as JSON here")
    common_flags(p)


def add_eval_modes(p: argparse.ArgumentParser) -> None:
    """The modes of ``lsr eval`` under parser ``p``."""
    modes = p.add_subparsers(dest="eval_mode", required=True, metavar="MODE")
    for add in (_add_index_mode, _add_rerank_mode, _add_systems_mode, _add_matrix_mode, _add_explain_mode):
        add(modes)
