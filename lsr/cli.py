"""The ``lsr`` command line: encode, index, search, eval.

Every subcommand takes ``--config`` (a YAML file or the name of a shipped
config, e.g. ``bm25``) and repeatable ``--set section.key=value`` overrides;
tuning values live in the config, flags name inputs and outputs. This module is
the composition root: the only place in ``lsr`` that imports ``lsr.eval``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from lsr import __version__
from lsr.config import Config, load_config
from lsr.encoders import ENCODER_HELP, encoder_overrides
from lsr.errors import LsrError
from lsr.index.io import ArtifactError

logger = logging.getLogger("lsr")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE|NAME",
                   help="YAML config file, or a shipped config name (bm25, toy); defaults otherwise")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one config value, e.g. --set encoder.bm25.k1=1.2 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bars, warnings and errors only")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lsr", description="Learned sparse retrieval: encode, index, "
                                     "search and evaluate.")
    parser.add_argument("--version", action="version", version=f"lsr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("encode", help="encode a corpus into sparse vectors")
    p.add_argument("--encoder", required=True, metavar="ENCODER",
                   help=f"{ENCODER_HELP}. Sets encoder.name (and encoder.model)")
    p.add_argument("--corpus", required=True, help="BEIR folder, corpus .jsonl[.gz], or ir_datasets id")
    p.add_argument("--out", required=True, help="output: a vectors directory (npy) or a .jsonl file")
    p.add_argument("--format", choices=("npy", "jsonl"), default="npy",
                   help="npy: sharded CSR directory (default); jsonl: {id, vector: {term: weight}} lines")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    _common(p)

    p = sub.add_parser("index", help="build an inverted index from vectors, or from a corpus",
                       description="Build an index (posting lists plus block-max data; see the index.* "
                       "config keys: impact_dtype, block_size, reorder, blockmax).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--vectors", help="a vectors directory from `lsr encode`, or sparse-vector JSONL")
    src.add_argument("--corpus", help="a corpus to encode then index (needs --encoder)")
    src.add_argument("--blockmax-for", metavar="INDEX",
                     help="(re)build only the block-max data of an existing index (index.block_size)")
    p.add_argument("--encoder", metavar="ENCODER", help=f"encoder for --corpus: {ENCODER_HELP}")
    p.add_argument("--out", help="index directory to create (with --vectors or --corpus)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out; the old index stays until the new one is complete")
    _common(p)

    p = sub.add_parser("search", help="search an index with a text query or a queries file")
    p.add_argument("--index", required=True, help="index directory")
    p.add_argument("query", nargs="?", help="a free-text query: prints rank, id, score and title")
    p.add_argument("--queries", help="BEIR folder, queries .jsonl/.tsv, sparse-vector JSONL, or "
                   "ir_datasets id")
    p.add_argument("--split", help="with a BEIR folder: only the queries judged in qrels/<split>.tsv")
    p.add_argument("--k", type=int, help="results per query (search.k; default 10 for a text query, "
                   "1000 for --queries)")
    p.add_argument("--threads", type=int, help="threads for batch search (search.threads; 0: all cores)")
    _search_mode_flags(p)
    p.add_argument("--stats", metavar="S.json", help="with --queries: also time each query alone on one "
                   "thread (after warm-up, index load excluded) and write mean/p50/p99 ms and queries/s")
    p.add_argument("--out", help="TREC run file to write (with --queries)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    _common(p)

    p = sub.add_parser("eval", help="evaluate an index on a dataset: quality, latency, size, sparsity")
    p.add_argument("--index", help="index directory (required unless --rerank with --encoder)")
    p.add_argument("--dataset", required=True, help="BEIR folder or ir_datasets id")
    p.add_argument("--rerank", metavar="RUN",
                   help="re-rank protocol (TREC DL): re-score the top --k (default 100) of RUN, a run "
                   "name in DATASET/runs (bm25, tasb, ...) or a TREC run file, on every split of "
                   "DATASET/qrels (or --split); e.g. --rerank bm25 --dataset ../shared/data/msmarco/dl-pool")
    p.add_argument("--encoder", metavar="ENCODER",
                   help=f"with --rerank and no --index: index DATASET's corpus with this encoder first, "
                   f"in a temporary directory ({ENCODER_HELP})")
    p.add_argument("--split", help="qrels split of a BEIR folder (eval.split, default test)")
    p.add_argument("--k", type=int, help="depth of the run (eval.k, default 1000)")
    _search_mode_flags(p)
    p.add_argument("--out", help="write the JSON report here")
    _common(p)
    return parser


def _search_mode_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=("exact", "safe", "approx"),
                   help="search.mode: exact scores every posting; safe uses block-max pruning with "
                   "identical results; approx prunes further with --alpha/--beta")
    p.add_argument("--alpha", type=float, help="search.alpha in (0, 1], approx: stop when the k-th score "
                   "exceeds alpha x the best block bound left")
    p.add_argument("--beta", type=float, help="search.beta in (0, 1], approx: keep this fraction of each "
                   "query's terms, heaviest first")


def _config(args: argparse.Namespace, extra: list[str]) -> Config:
    for flag in ("mode", "alpha", "beta"):
        if getattr(args, flag, None) is not None:
            extra = [*extra, f"search.{flag}={getattr(args, flag)}"]
    return load_config(args.config, [*args.overrides, *extra])


def _progress(args: argparse.Namespace) -> bool:
    return not args.quiet and sys.stderr.isatty()


def cmd_encode(args: argparse.Namespace) -> int:
    from lsr.pipeline import encode_corpus

    cfg = _config(args, encoder_overrides(args.encoder))
    meta = encode_corpus(cfg, args.corpus, args.out, args.format, args.overwrite, _progress(args))
    empty = f", {meta['empty_docs']} empty" if meta.get("empty_docs") else ""
    print(f"encoded {meta['n_docs']} docs ({meta['doc_nnz_avg']:.1f} terms/doc{empty}, "
          f"vocabulary {meta['n_terms']}) -> {args.out}")
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from lsr.pipeline import build_index_from_vectors, index_corpus

    if args.corpus and not args.encoder:
        raise LsrError("--corpus needs --encoder (e.g. --encoder bm25)")
    cfg = _config(args, encoder_overrides(args.encoder) if args.encoder else [])
    if args.blockmax_for:
        from lsr.index.blockmax import build_blockmax

        bm = build_blockmax(args.blockmax_for, cfg.index.block_size)
        print(f"block-max data: {bm['n_blocks']} blocks of {bm['block_size']} docs, {bm['n_dense_terms']} "
              f"dense terms, {bm['n_sparse_runs']} sparse runs -> {args.blockmax_for}/blockmax")
        return 0
    if not args.out:
        raise LsrError("--out is required with --vectors or --corpus")
    if args.corpus:
        meta = index_corpus(cfg, args.corpus, args.out, args.overwrite, _progress(args))
    else:
        meta = build_index_from_vectors(cfg, args.vectors, args.out, args.overwrite, _progress(args))
    print(f"indexed {meta['n_docs']} docs, {meta['n_terms']} terms, {meta['n_postings']} postings "
          f"({meta['impacts']['dtype']} impacts) -> {args.out}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    from lsr.searcher import Searcher, search_params

    if bool(args.query) == bool(args.queries):
        raise LsrError("give either a query text or --queries FILE")
    extra = [f"search.k={args.k}"] if args.k is not None else []
    extra += [f"search.threads={args.threads}"] if args.threads is not None else []
    cfg = _config(args, extra)
    searcher = Searcher(args.index)
    params = search_params(cfg.search)
    if args.query:
        for hit in searcher.search(args.query, k=args.k or 10, params=params):
            print(f"{hit.rank:>4}  {hit.doc_id:<20} {hit.score:10.4f}  {hit.title[:80]}")
        return 0
    if not args.out:
        raise LsrError("--queries needs --out RUN.trec")
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    from lsr.data.queries_input import load_query_input
    from lsr.data.trec import write_run

    qids, encoded = load_query_input(searcher, args.queries, args.split)
    start = time.perf_counter()
    run = searcher.run(qids, encoded, cfg.search.k, cfg.search.threads, cfg.search.batch_size,
                       _progress(args), params)
    elapsed = time.perf_counter() - start
    write_run(run, out)
    print(f"searched {len(run)} queries (k={cfg.search.k}, mode {params.mode}) -> {out}")
    if args.stats:
        _write_stats(args.stats, searcher, encoded, cfg, params, elapsed)
    return 0


def _write_stats(path: str, searcher, encoded, cfg: Config, params, run_seconds: float) -> None:
    from lsr.index.io import write_json

    stats = {
        "index": str(searcher.index.path),
        "k": cfg.search.k,
        "mode": params.mode, "alpha": params.alpha, "beta": params.beta,
        "latency_ms": searcher.latency(encoded, cfg.search.k, params),
        "batch": searcher.batch_throughput(encoded, cfg.search.k, cfg.search.threads, params),
        "run": {"seconds": run_seconds, "qps": len(encoded) / max(run_seconds, 1e-9)},
        "query_nnz_avg": encoded.nnz / max(len(encoded), 1),
    }
    write_json(Path(path), stats)
    lat = stats["latency_ms"]
    if lat:
        print(f"latency per query (1 thread): mean {lat['mean']:.3f} ms, p50 {lat['p50']:.3f} ms, "
              f"p99 {lat['p99']:.3f} ms; {stats['batch']['qps']:.0f} queries/s in batch -> {path}")


def cmd_eval(args: argparse.Namespace) -> int:
    from lsr.eval.harness import evaluate_index, format_report
    from lsr.index.io import write_json

    if args.rerank:
        return _rerank(args)
    if not args.index:
        raise LsrError("--index is required (or --rerank RUN with --encoder ENCODER)")
    extra = [f"eval.split={args.split}"] if args.split else []
    extra += [f"eval.k={args.k}"] if args.k is not None else []
    cfg = _config(args, extra)
    report = evaluate_index(args.index, args.dataset, cfg, _progress(args))
    print(format_report(report))
    if args.out:
        write_json(Path(args.out), report)
        print(f"report -> {args.out}")
    return 0


def _rerank(args: argparse.Namespace) -> int:
    from lsr.eval.rerank import format_rerank_report, rerank_eval
    from lsr.index.io import write_json

    if bool(args.index) == bool(args.encoder):
        raise LsrError("--rerank needs either --index (built over the dataset's corpus) or --encoder")
    cfg = _config(args, encoder_overrides(args.encoder) if args.encoder else [])
    report = rerank_eval(args.dataset, cfg, args.index, args.rerank, [args.split] if args.split else None,
                         args.k or 100, _progress(args))
    print(format_rerank_report(report))
    if args.out:
        write_json(Path(args.out), report)
        print(f"report -> {args.out}")
    return 0


COMMANDS = {"encode": cmd_encode, "index": cmd_index, "search": cmd_search, "eval": cmd_eval}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return COMMANDS[args.command](args)
    except (LsrError, ArtifactError, FileExistsError, FileNotFoundError, ValueError) as exc:
        print(f"lsr {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `lsr search ... | head`: the reader left, which is not an error
        sys.stdout = open(os.devnull, "w")
        return 0


if __name__ == "__main__":
    sys.exit(main())
