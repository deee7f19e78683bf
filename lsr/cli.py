"""The ``lsr`` command line: encode, index, search, eval.

Every subcommand takes ``--config`` (a YAML file or the name of a shipped
config, e.g. ``bm25``) and repeatable ``--set section.key=value`` overrides;
tuning values live in the config, flags name inputs and outputs. This module is
the composition root: the only place in ``lsr`` that imports ``lsr.eval``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from lsr import __version__
from lsr.cli_flags import CORPUS_HELP, common_flags, corpus_shape_flags, corpus_source, search_mode_flags
from lsr.config import Config, load_config
from lsr.data.formats import CorpusSource
from lsr.encoders import ENCODER_HELP, encoder_overrides
from lsr.errors import LsrError
from lsr.eval.cli import add_eval_modes, eval_command
from lsr.index.io import ArtifactError
from lsr.train.config import load_train_config

if TYPE_CHECKING:
    from lsr.live import LiveIndex

logger = logging.getLogger("lsr")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lsr", description="Learned sparse retrieval: encode, index, search and evaluate."
    )
    parser.add_argument("--version", action="version", version=f"lsr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_encode_parser(sub)
    _add_index_parser(sub)

    _add_search_parser(sub)

    _add_eval_parser(sub)

    _add_tune_fusion_parser(sub)
    _add_export_st_parser(sub)
    _add_export_parser(sub)

    _add_serve_parser(sub)
    _add_train_parsers(sub)
    _add_live_parsers(sub)
    _add_verify_parser(sub)
    _add_adapt_parser(sub)
    return parser


def _add_live_parsers(sub: argparse._SubParsersAction) -> None:
    """``lsr add``, ``delete``, ``merge``, ``info``: a live index (see lsr.live)."""
    p = sub.add_parser("add", help="add or update documents in an index (encoded with its own encoder)")
    p.add_argument("--index", required=True, help="index directory")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--corpus", help="BEIR folder or corpus .jsonl[.gz]; an existing id is an update")
    src.add_argument("--vectors", help="pre-encoded sparse-vector JSONL ({id, vector: {term: weight}})")
    common_flags(p)
    p = sub.add_parser("delete", help="delete documents from an index by id")
    p.add_argument("--index", required=True, help="index directory")
    p.add_argument("--ids", required=True, help="file of doc ids: one per line, or a JSON list")
    common_flags(p)
    p = sub.add_parser("merge", help="merge an index's segments into one, without deleted documents")
    p.add_argument("--index", required=True, help="index directory")
    common_flags(p)
    p = sub.add_parser("info", help="segments, live and deleted documents, sizes and encoder of an index")
    p.add_argument("--index", required=True, help="index directory")
    p.add_argument("--json", action="store_true", help="print the info as JSON")
    common_flags(p)


def _add_verify_parser(sub: argparse._SubParsersAction) -> None:
    what = (
        "check every file of an index (plain or live), vectors directory or dense stage against its "
        "recorded checksums, then its structure; exit code 1 if anything is damaged"
    )
    p = sub.add_parser("verify", help=what, description=what)
    p.add_argument("path", help="an index, live index, vectors or dense-stage directory")
    common_flags(p)


def cmd_verify(args: argparse.Namespace) -> int:
    from lsr.verify import format_report, verify

    report = verify(args.path)
    for line in format_report(report):
        print(line)
    return 0 if report.ok else 1


def _live(args: argparse.Namespace) -> LiveIndex:
    from lsr.index.writer import MergePolicy
    from lsr.live import LiveIndex

    cfg = _config(args, [])
    return LiveIndex(args.index, MergePolicy(cfg.index.max_segments, cfg.index.max_deleted))


def cmd_add(args: argparse.Namespace) -> int:
    from lsr.live import read_sparse_vectors

    live = _live(args)
    if args.vectors:
        result = live.add_vectors(*read_sparse_vectors(args.vectors))
    else:
        result = live.add_corpus(args.corpus, _progress(args))
    updated = (
        f"; {len(result.updated)} existing id(s) updated (old versions deleted)" if result.updated else ""
    )
    print(f"added {len(result.added)} new doc(s){updated} -> {args.index} (generation {result.generation})")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from lsr.live import read_ids

    result = _live(args).delete(read_ids(args.ids))
    print(f"deleted {len(result.deleted)} doc(s) -> {args.index} (generation {result.generation})")
    if result.unknown:
        print(f"{len(result.unknown)} id(s) not in the index, nothing done for them: {result.unknown[:10]}")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    result = _live(args).merge(_progress(args))
    print(f"merged {len(result.merged)} segment(s) into one -> {args.index} (generation {result.generation})")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import json

    info = _live(args).info()
    if (Path(args.index) / "meta.json").is_file():  # a plain (one-segment) index: what its meta says
        details = index_info(args.index)
        info["details"] = {k: v for k, v in details.items() if k not in info}
        info["model"] = details["encoder"].get("model") or None
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(
        f"{info['path']}: generation {info['generation']}, {len(info['segments'])} segment(s), "
        f"{info['n_docs']} live docs, {info['n_deleted']} deleted, {info['n_terms']} terms, "
        f"{info['bytes'] / 1e6:.2f} MB, encoder {info['encoder']}"
        + (f" ({info['model']})" if info.get("model") else "")
    )
    for seg in info["segments"]:
        size = f", {seg['bytes'] / 1e6:.2f} MB" if "bytes" in seg else ""
        print(f"  {seg['name']}: {seg['n_docs']} docs, {seg['n_deleted']} deleted{size}")
    for key, value in info.get("details", {}).items():
        print(f"  {key:<12} {json.dumps(value) if isinstance(value, dict) else value}")
    return 0


def _add_search_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search an index with a text query or a queries file")
    p.add_argument("--index", required=True, help="index directory")
    p.add_argument("query", nargs="?", help="a free-text query: prints rank, id, score and title")
    p.add_argument(
        "--queries", help="BEIR folder, queries .jsonl/.tsv, sparse-vector JSONL, or ir_datasets id"
    )
    p.add_argument("--split", help="with a BEIR folder: only the queries judged in qrels/<split>.tsv")
    p.add_argument(
        "--k", type=int, help="results per query (search.k; default 10 for a text query, 1000 for --queries)"
    )
    p.add_argument("--threads", type=int, help="threads for batch search (search.threads; 0: all cores)")
    p.add_argument(
        "--from",
        dest="offset",
        type=int,
        default=0,
        metavar="N",
        help="paging: skip the first N results (ranks N+1..N+k; order score, then doc id)",
    )
    p.add_argument(
        "--filter",
        metavar="JSON",
        help='metadata filter (index.fields), e.g. \'{"range": {"year": {"gte": 2000}}}\'; or @FILE',
    )
    search_mode_flags(p)
    p.add_argument(
        "--stats",
        metavar="S.json",
        help="with --queries: also time each query alone on one "
        "thread (after warm-up, index load excluded) and write mean/p50/p99 ms and queries/s",
    )
    p.add_argument(
        "--rerank",
        choices=("none", "dense"),
        help="search.rerank: dense re-scores the sparse top --depth with the index's dense stage "
        "(PQ codes) and fuses the scores with the weight stored by lsr tune-fusion",
    )
    p.add_argument("--depth", type=int, help="search.rerank_depth: sparse candidates re-scored (100)")
    p.add_argument("--out", help="run file to write (with --queries)")
    p.add_argument(
        "--format",
        choices=("trec", "json", "tsv"),
        default="trec",
        help="run file format: trec (qid Q0 doc rank score tag; default), json ({qid: {doc: score}}), "
        "tsv (qid, doc, rank, score)",
    )
    p.add_argument("--run-tag", default="lsr", help="the TREC run's last column (default lsr)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    common_flags(p)


def _add_tune_fusion_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune-fusion",
        help="tune the dense re-rank fusion weight on a dev/train split and "
        "store it in the index's dense meta",
    )
    p.add_argument("--index", required=True, help="index directory with a dense stage")
    p.add_argument("--dataset", required=True, help="BEIR folder (or ir_datasets id) with the tuning split")
    p.add_argument("--split", default="train", help="qrels split to tune on (default train; never test)")
    p.add_argument(
        "--methods",
        default="convex-minmax,convex-zscore",
        help="fusion methods to try (comma-separated: convex-minmax, convex-zscore, rrf); the "
        "best becomes the default, each one's best weight is stored",
    )
    p.add_argument("--depth", type=int, help="search.rerank_depth: sparse candidates re-scored (100)")
    p.add_argument("--dry-run", action="store_true", help="print the grid, store nothing")
    common_flags(p)


def _add_serve_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve indexes over HTTP (REST search service; the `serve` extra)",
        description="Run the REST search service (FastAPI + uvicorn). Endpoints: POST "
        "/v1/search, POST /v1/search/batch, GET /v1/docs/{id}, GET /v1/indexes, POST "
        "/v1/indexes/{name}/reload, GET /healthz, /readyz, /metrics; schema at /docs.",
    )
    _add_serve_where_args(p)
    _add_serve_limit_args(p)
    _add_serve_access_args(p)
    _add_serve_config_args(p)


def _add_serve_where_args(p: argparse.ArgumentParser) -> None:
    """What to serve and where: indexes, address, workers, threads."""
    p.add_argument(
        "--index",
        dest="indexes",
        action="append",
        metavar="[NAME=]DIR",
        help="an index to serve (repeatable; replaces service.indexes); NAME defaults to the directory "
        "name; the first is the default of requests that name no index",
    )
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8000; 0: any free port)")
    p.add_argument(
        "--health-port",
        type=int,
        metavar="PORT",
        help="also answer GET /healthz and /readyz on PORT from a thread of their own, so probes never "
        "queue behind a flooded request loop (/healthz there is 503 once that loop has not run for "
        "service.health_stale_s, 2 s); point Kubernetes-style probes here (default 0: off; one worker)",
    )
    p.add_argument(
        "--workers",
        type=int,
        help="uvicorn worker processes, each with its own "
        "memory-mapped copy of the indexes (pages are shared); default 1",
    )
    p.add_argument(
        "--threads", type=int, help="search threads per worker (0: the cores it may use, e.g. under taskset)"
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="serve sharded indexes (lsr index --shards) from Ray Serve: one deployment per shard on the "
        "cluster at ADDRESS (HOST:PORT; alone: a local Ray), this process routes and merges (service.ray)",
    )
    p.add_argument(
        "--replicas",
        type=int,
        help="with --ray: replicas of each shard, taken in turn; a dead one's calls go to the others "
        "(service.ray_replicas; default 1)",
    )


def _add_serve_limit_args(p: argparse.ArgumentParser) -> None:
    """Request limits: timeout, k, query size, batch size, body size."""
    p.add_argument("--timeout", type=float, help="per-request timeout in seconds (503 past it)")
    p.add_argument("--max-k", type=int, help="largest k a request may ask for (1000)")
    p.add_argument("--max-query-chars", type=int, help="longest text query (characters)")
    p.add_argument("--max-query-tokens", type=int, help="longest text query (whitespace tokens)")
    p.add_argument("--max-batch", type=int, help="most queries in one batch request")
    p.add_argument("--max-body-bytes", type=int, help="largest request body (1 MiB)")
    p.add_argument(
        "--max-in-flight",
        type=int,
        help="searches admitted at once; more are answered 503 with Retry-After (0: 4 x threads)",
    )


def _add_serve_access_args(p: argparse.ArgumentParser) -> None:
    """Access: the API key and CORS origins."""
    p.add_argument(
        "--api-key-file",
        metavar="FILE",
        help="require this key (file content) in X-API-Key on /v1 routes; the file is re-read when it "
        "changes (rotation without a restart); without it, the key comes from the --api-key-env variable",
    )
    p.add_argument(
        "--index-root",
        dest="index_roots",
        action="append",
        metavar="DIR",
        help="a folder POST /v1/indexes/NAME/reload may open an index from (repeatable; default: the "
        "folders holding the served indexes); paths resolving outside every root are refused with 403",
    )
    p.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="environment variable holding the API key (default LSR_API_KEY; unset: no key)",
    )
    p.add_argument(
        "--cors-origin",
        dest="cors_origins",
        action="append",
        metavar="ORIGIN",
        help="allow browser requests from this origin (repeatable; default: CORS off)",
    )


def _add_serve_config_args(p: argparse.ArgumentParser) -> None:
    """Logging, the config file and ``--set`` overrides."""
    p.add_argument("--no-access-log", action="store_true", help="no JSON log line per request")
    p.add_argument("--quiet", action="store_true", help="warnings and errors only")
    p.add_argument(
        "--config",
        metavar="FILE|NAME",
        help="YAML config whose service section holds the settings; the flags above override it",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set service.max_k=100 (repeatable)",
    )


def _config(args: argparse.Namespace, extra: list[str]) -> Config:
    for flag in ("mode", "alpha", "beta", "budget"):
        if getattr(args, flag, None) is not None:
            extra = [*extra, f"search.{flag}={getattr(args, flag)}"]
    return load_config(args.config, [*args.overrides, *extra])


def _filter_arg(value: str | None) -> object:
    """A ``--filter`` value: JSON, or ``@FILE`` holding JSON (None: no filter)."""
    import json

    if value is None:
        return None
    text = Path(value[1:]).read_text(encoding="utf-8") if value.startswith("@") else value
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise LsrError(f"--filter is not valid JSON ({exc}): {text[:80]!r}") from None


def _progress(args: argparse.Namespace) -> bool:
    return not args.quiet and sys.stderr.isatty()


def _add_encode_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("encode", help="encode a corpus into sparse vectors")
    p.add_argument(
        "--encoder",
        required=True,
        metavar="ENCODER",
        help=f"{ENCODER_HELP}. Sets encoder.name (and encoder.model)",
    )
    p.add_argument("--corpus", required=True, help=CORPUS_HELP)
    corpus_shape_flags(p)
    p.add_argument("--out", required=True, help="output: a vectors directory (npy) or a .jsonl file")
    p.add_argument(
        "--format",
        choices=("npy", "jsonl"),
        default="npy",
        help="npy: sharded CSR directory (default); jsonl: {id, vector: {term: weight}} lines",
    )
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    _add_ray_flag(p)
    common_flags(p)


def _add_ray_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="encode on a Ray cluster (HOST:PORT of its head; alone: a local Ray): blocks of "
        "encoder.shard_docs docs on encoder actors, one per GPU (else per CPU), resumable (the ray extra)",
    )


def _add_index_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "index",
        help="build an inverted index from vectors, or from a corpus",
        description="Build an index (posting lists plus block-max data; see the index.* "
        "config keys: impact_dtype, block_size, reorder, blockmax).",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--vectors", help="a vectors directory from `lsr encode`, or sparse-vector JSONL")
    src.add_argument("--corpus", help=f"a corpus to encode then index (needs --encoder): {CORPUS_HELP}")
    src.add_argument(
        "--ciff", help="a CIFF file (from PISA, Anserini or lsr export): its tfs are the impacts"
    )
    src.add_argument(
        "--blockmax-for",
        metavar="INDEX",
        help="(re)build only the block-max data of an existing index (index.block_size)",
    )
    src.add_argument(
        "--dense-for",
        metavar="INDEX",
        help="add (or with --overwrite replace) the dense stage of an existing index, from its "
        "docstore (with --dense MODEL, --pq M, --opq, --keep-float)",
    )
    p.add_argument("--encoder", metavar="ENCODER", help=f"encoder for --corpus: {ENCODER_HELP}")
    corpus_shape_flags(p)
    p.add_argument(
        "--dense",
        nargs="?",
        const="",
        metavar="MODEL",
        help="also build the dense re-rank stage: a bi-encoder folder or hub name (dense.model; "
        "default all-MiniLM-L6-v2 from the dense extra), PQ-compressed with faiss",
    )
    p.add_argument(
        "--pq",
        type=int,
        metavar="M",
        help="PQ sub-quantizers = bytes per document (dense.pq_m, "
        "default 48); must divide the model's dimension",
    )
    p.add_argument("--opq", action="store_true", help="learn an OPQ rotation before PQ (dense.opq)")
    p.add_argument(
        "--keep-float",
        action="store_true",
        help="also store the float32 dense vectors (dense.keep_float; float baselines)",
    )
    p.add_argument("--out", help="index directory to create (with --vectors or --corpus)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --out; the old index stays until the new one is complete",
    )
    _add_scale_flags(p)
    _add_ray_flag(p)
    common_flags(p)


def _add_scale_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--shards",
        type=int,
        metavar="N",
        help="with --vectors or --corpus: build N shard indexes plus sharded.json (searched and served "
        "as one index, the same top-k; BM25 shards use the whole corpus's statistics)",
    )
    p.add_argument(
        "--shard-by",
        choices=("hash", "range"),
        default="hash",
        help="with --shards: a stable hash of the doc id (default) or contiguous ranges of the corpus",
    )


def cmd_encode(args: argparse.Namespace) -> int:
    from lsr.pipeline import encode_corpus  # lazy: +0.2 s (tqdm.auto, asyncio) for every other command

    cfg = _config(args, encoder_overrides(args.encoder))
    corpus = corpus_source(args)
    if args.ray is not None:
        from lsr.ray_encode import encode_corpus_ray

        if args.format != "npy":
            raise LsrError("--ray writes a vectors directory (--format npy)")
        meta = encode_corpus_ray(cfg, corpus, Path(args.out), args.ray, args.overwrite)
    else:
        meta = encode_corpus(cfg, corpus, args.out, args.format, args.overwrite, _progress(args))
    empty = f", {meta['empty_docs']} empty" if meta.get("empty_docs") else ""
    print(
        f"encoded {meta['n_docs']} docs ({meta['doc_nnz_avg']:.1f} terms/doc{empty}, "
        f"vocabulary {meta['n_terms']}) -> {args.out}"
    )
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    if args.corpus and not args.encoder:
        raise LsrError("--corpus needs --encoder (e.g. --encoder bm25)")
    cfg = _config(args, (encoder_overrides(args.encoder) if args.encoder else []) + _dense_overrides(args))
    if args.ray is None:
        return _index(cfg, args)
    if not args.corpus or not args.out or args.dense is not None:
        raise LsrError("--ray encodes a --corpus (with --out, without --dense)")
    from lsr.ray_encode import encode_corpus_ray

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    vectors = out.parent / f".{out.name}.vectors"
    try:
        encode_corpus_ray(cfg, corpus_source(args), vectors, args.ray, overwrite=True)
        return _index(cfg, argparse.Namespace(**{**vars(args), "corpus": None, "vectors": str(vectors)}))
    finally:
        shutil.rmtree(vectors, ignore_errors=True)


def _index(cfg: Config, args: argparse.Namespace) -> int:
    from lsr.pipeline import build_index_from_ciff, build_index_from_vectors, index_corpus  # lazy

    if args.dense_for:
        return _build_dense(cfg, args.dense_for, None, args.overwrite, _progress(args))
    if (args.pq is not None or args.opq or args.keep_float) and args.dense is None:
        raise LsrError("--pq, --opq and --keep-float apply to the dense stage: add --dense [MODEL]")
    if args.blockmax_for:
        from lsr.index.blockmax import build_blockmax

        bm = build_blockmax(args.blockmax_for, cfg.index.block_size)
        print(
            f"block-max data: {bm['n_blocks']} blocks of {bm['block_size']} docs, {bm['n_dense_terms']} "
            f"dense terms, {bm['n_sparse_runs']} sparse runs -> {args.blockmax_for}/blockmax"
        )
        return 0
    if not args.out:
        raise LsrError("--out is required with --vectors, --corpus or --ciff")
    if args.shards is not None:
        return _build_sharded(cfg, args)
    if args.corpus:
        meta = index_corpus(cfg, corpus_source(args), args.out, args.overwrite, _progress(args))
    elif args.ciff:
        meta = build_index_from_ciff(cfg, args.ciff, args.out, args.overwrite, _progress(args))
    else:
        meta = build_index_from_vectors(cfg, args.vectors, args.out, args.overwrite, _progress(args))
    print(
        f"indexed {meta['n_docs']} docs, {meta['n_terms']} terms, {meta['n_postings']} postings "
        f"({meta['impacts']['dtype']} impacts) -> {args.out}"
    )
    if args.dense is not None:
        # stdin was read once: the dense stage takes the texts from the docstore instead
        corpus = corpus_source(args) if args.corpus and args.corpus != "-" else None
        return _build_dense(cfg, args.out, corpus, True, _progress(args))
    return 0


def _build_sharded(cfg: Config, args: argparse.Namespace) -> int:
    from lsr.sharded import build_sharded, index_corpus_sharded

    if args.ciff or args.dense is not None:
        raise LsrError("--shards builds from --vectors or --corpus, without --dense")
    if args.corpus:
        manifest = index_corpus_sharded(
            cfg, corpus_source(args), args.out, args.shards, args.shard_by, args.overwrite, _progress(args)
        )
    else:
        manifest = build_sharded(cfg, args.vectors, args.out, args.shards, args.shard_by, args.overwrite)
    sizes = ", ".join(str(e["n_docs"]) for e in manifest["shards"])
    n, shards = manifest["n_docs"], manifest["n_shards"]
    print(f"indexed {n} docs into {shards} shards ({sizes} docs) -> {args.out}")
    return 0


def _dense_overrides(args: argparse.Namespace) -> list[str]:
    extra = [f"dense.model={args.dense}"] if args.dense else []
    extra += [f"dense.pq_m={args.pq}"] if args.pq is not None else []
    extra += ["dense.opq=true"] if args.opq else []
    return extra + (["dense.keep_float=true"] if args.keep_float else [])


def _build_dense(
    cfg: Config, index_dir: str, corpus: CorpusSource | None, overwrite: bool, progress: bool
) -> int:
    from lsr.dense.stage import build_dense_stage

    d = cfg.dense
    meta = build_dense_stage(
        index_dir,
        corpus,
        d.model or None,
        d.pq_m,
        d.opq,
        d.keep_float,
        progress,
        batch_size=d.batch_size,
        max_length=d.max_length,
        overwrite=overwrite,
    )
    notes = "".join(f"; note: {n}" for n in meta["notes"])
    print(
        f"dense stage: {meta['n_docs']} docs, {meta['model']['name']} (dim {meta['dim']}), PQ M = "
        f"{meta['m']} x {meta['nbits']} bits{' + OPQ' if meta['opq'] else ''} = {meta['m']} bytes/doc"
        f"{', float vectors kept' if meta['keep_float'] else ''}{notes} -> {index_dir}/dense"
    )
    return 0


def _add_export_parser(sub: argparse._SubParsersAction) -> None:
    from lsr.export import EXPORT_FORMATS

    p = sub.add_parser(
        "export",
        help="write an index in another engine's format (anserini, seismic, ciff, bmp)",
        description="anserini: JSONL for Anserini's JsonVectorCollection (-impact -pretokenized), integer "
        "weights; seismic: JSONL with float weights (impact x scale); ciff: the Common Index File Format "
        "(PISA, Anserini; lsr index --ciff reads it back), integer weights; bmp: a BMP index file "
        "(pip install bmp), built by BMP's ciff2bmp. Integer weights: uint8/uint16 impacts as they are, "
        "float32 impacts "
        "need --quantize.",
    )
    p.add_argument("--index", required=True, help="index directory")
    p.add_argument("--to", required=True, choices=EXPORT_FORMATS, help="the format to write")
    p.add_argument("--out", required=True, help="file to write")
    p.add_argument(
        "--quantize",
        type=float,
        metavar="FACTOR",
        help="anserini, ciff, bmp: integer weights round(weight x FACTOR), zeros dropped (needed for float32 "
        "impacts, e.g. 100; uint8/uint16 impacts are written as they are without it)",
    )
    p.add_argument("--bmp-block-size", type=int, default=32, help="bmp: documents per block (32)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)


def cmd_export(args: argparse.Namespace) -> int:
    from lsr.export import export_index

    done = export_index(args.index, args.to, args.out, args.quantize, args.overwrite, args.bmp_block_size)
    print(
        f"{done['docs']} docs, {done['postings']} postings, weights {done['weights']} "
        f"-> {args.out} ({args.to})"
    )
    return 0


def _add_export_st_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export-st",
        help="write a model folder as a sentence-transformers SparseEncoder folder",
        description="A model with idf.json (inference-free) becomes a Router: SparseStaticEmbedding "
        "queries weighted by idf.json, MLMTransformer + SpladePooling documents; others MLMTransformer + "
        "SpladePooling. sentence-transformers' SparseEncoder(OUT) then loads it with the right query side.",
    )
    p.add_argument(
        "--model", required=True, help="model folder, or splade / inference-free (the shipped ones)"
    )
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument("--pooling", choices=("max", "sum"), default="max", help="SpladePooling strategy (max)")
    p.add_argument("--max-seq-length", type=int, default=512, help="MLMTransformer max_seq_length (512)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)


def cmd_export_st(args: argparse.Namespace) -> int:
    from lsr.encoders import default_model
    from lsr.encoders.st import export_st_folder

    default = default_model(args.model) if args.model in ("splade", "inference-free") else None
    model = Path(default or args.model)
    kind = export_st_folder(model, Path(args.out), args.pooling, args.max_seq_length, args.overwrite)
    print(f"{kind} model {model} -> {args.out} (sentence-transformers SparseEncoder folder)")
    return 0


def index_info(index: str | Path) -> dict:
    """A summary of an index folder from its meta files, without loading the arrays."""
    from lsr.index.builder import INDEX_FORMAT, INDEX_FORMAT_VERSION
    from lsr.index.io import read_meta

    path = Path(index)
    meta = read_meta(path, INDEX_FORMAT, (INDEX_FORMAT_VERSION,))
    encoder = meta.get("encoder", {})
    stages = {name: (path / name / "meta.json").is_file() for name in ("blockmax", "dense")}
    return {
        "path": str(path),
        "created": meta.get("created"),
        "lsr_version": meta.get("lsr_version"),
        "n_docs": meta["n_docs"],
        "n_terms": meta["n_terms"],
        "n_postings": meta["n_postings"],
        "doc_nnz_avg": round(meta.get("stats", {}).get("doc_nnz_avg", 0.0), 2),
        "impacts": meta.get("impacts"),
        "encoder": {k: v for k, v in encoder.items() if k in ("name", "model", "query_model")},
        "source": meta.get("source", {}).get("corpus"),
        "docstore": "docstore.jsonl" in meta.get("files", []),
        **stages,
        "bytes": sum(f.stat().st_size for f in path.rglob("*") if f.is_file()),
    }


def cmd_search(args: argparse.Namespace) -> int:
    # handlers import their stack on first use, so `lsr --help` loads neither numba nor torch
    from lsr.searcher import Plan, Searcher

    if bool(args.query) == bool(args.queries):
        raise LsrError("give either a query text or --queries FILE")
    extra = [f"search.k={args.k}"] if args.k is not None else []
    extra += [f"search.threads={args.threads}"] if args.threads is not None else []
    extra += [f"search.rerank={args.rerank}"] if args.rerank else []
    extra += [f"search.rerank_depth={args.depth}"] if args.depth is not None else []
    cfg = _config(args, extra)
    searcher = Searcher(args.index)
    plan = Plan.from_config(cfg.search, offset=args.offset, filter=_filter_arg(args.filter))
    searcher.check(plan)  # fail before any work
    if args.query:
        k = args.k or 10  # one text query: the whole sparse top max(k, depth) is re-scored
        text_plan = dataclasses.replace(plan, k=k, depth=max(k, plan.depth))
        for hit in searcher.hits(searcher.search(args.query, text_plan), offset=plan.offset):
            print(f"{hit.rank:>4}  {hit.doc_id:<20} {hit.score:10.4f}  {hit.title[:80]}")
        return 0
    return _search_queries(args, cfg, searcher, plan)


def _search_queries(args: argparse.Namespace, cfg: Config, searcher, plan) -> int:
    from lsr.data.queries_input import load_query_input
    from lsr.data.trec import write_run
    from lsr.searcher import Queries, warn_empty

    if not args.out:
        raise LsrError("--queries needs --out RUN.trec")
    if not args.run_tag or any(c.isspace() for c in args.run_tag):
        raise LsrError(f"--run-tag {args.run_tag!r} must be non-empty without whitespace")
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    qids, texts, sparse = load_query_input(searcher, args.queries, args.split)
    queries = searcher.encode(Queries(texts, sparse), dataclasses.replace(plan, rerank="none"))
    warn_empty(qids, queries)
    start = time.perf_counter()
    run = searcher.to_run(qids, searcher.search_batch(queries, plan, _progress(args)))
    elapsed = time.perf_counter() - start
    write_run(run, out, args.run_tag, args.format)
    print(f"searched {len(run)} queries (k={plan.k}, mode {plan.mode}) -> {out}")
    if args.stats:
        _write_stats(args.stats, searcher, queries.sparse, plan, elapsed)
    return 0


def _write_stats(path: str, searcher, encoded, plan, run_seconds: float) -> None:
    from lsr.index.io import write_json

    stats = {
        "index": str(searcher.index.path),
        "k": plan.k,
        "mode": plan.mode,
        "alpha": plan.alpha,
        "beta": plan.beta,
        "budget": plan.budget,
        "latency_ms": searcher.latency(encoded, plan),
        "batch": searcher.batch_throughput(encoded, plan),
        "run": {"seconds": run_seconds, "qps": len(encoded) / max(run_seconds, 1e-9)},
        "query_nnz_avg": encoded.nnz / max(len(encoded), 1),
    }
    write_json(Path(path), stats)
    lat = stats["latency_ms"]
    if lat:
        print(
            f"latency per query (1 thread): mean {lat['mean']:.3f} ms, p50 {lat['p50']:.3f} ms, "
            f"p99 {lat['p99']:.3f} ms; {stats['batch']['qps']:.0f} queries/s in batch -> {path}"
        )


def _add_eval_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate: one index (index), the TREC DL re-rank protocol (rerank), systems side by "
        "side with significance tests (systems), the reproduction matrix (matrix), why documents "
        "ranked (explain)",
        description="Quality, latency, size and sparsity on the serving code path; see lsr eval MODE --help.",
    )
    add_eval_modes(p)


def cmd_eval(args: argparse.Namespace) -> int:
    return eval_command(args, _progress(args))


def cmd_tune_fusion(args: argparse.Namespace) -> int:
    from lsr.dense.tune import tune_fusion
    from lsr.eval.hybrid import tuning_set
    from lsr.searcher import Plan, Searcher

    cfg = _config(args, [f"search.rerank_depth={args.depth}"] if args.depth is not None else [])
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    searcher = Searcher(args.index)
    searcher.require_dense()
    data = tuning_set(args.dataset, args.split, cfg)
    res = tune_fusion(searcher, data, Plan.from_config(cfg.search), methods, store=not args.dry_run)
    on = res["tuned_on"]
    for method, grid in res["grid"].items():
        print(f"{method:<14} " + " ".join(f"{w}:{v:.4f}" for w, v in grid.items()))
    print(
        f"sparse alone {on['metric']} {res['sparse']:.4f}; best {res['method']} weight "
        f"{res['weight']:.2f} -> {on['metric']} {on['value']:.4f} on {on['split']} ({on['n_queries']} "
        f"queries, top {on['depth']})" + ("" if args.dry_run else f"; stored in {args.index}/dense/meta.json")
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise LsrError(
            f"lsr serve needs the serve extra ({exc.name} is missing): pip install -e '.[serve]'"
        ) from None
    from lsr.service.app import index_summary, serve
    from lsr.service.settings import api_key, check_indexes

    settings = check_indexes(dataclasses.replace(_config(args, []).service, **_serve_flags(args)))
    for name, path in settings.indexes.items():  # fail fast, before any worker starts
        meta = index_summary(path)
        logger.info(
            "serving index %r: %s (%d docs, encoder %s)",
            name,
            path,
            meta["n_docs"],
            meta.get("encoder", {}).get("name"),
        )
    key = api_key(settings)
    logger.info("API key %s", "required on /v1 routes" if key else "not required (no key configured)")
    serve(settings, log_level="warning" if args.quiet else "info")
    return 0


def _serve_flags(args: argparse.Namespace) -> dict:
    """The service settings given as ``lsr serve`` flags (they override the config's service section)."""
    from lsr.service.settings import parse_index_specs

    flags = {
        "host": args.host,
        "port": args.port,
        "health_port": args.health_port,
        "workers": args.workers,
        "search_threads": args.threads,
        "timeout_s": args.timeout,
        "max_k": args.max_k,
        "max_query_chars": args.max_query_chars,
        "max_query_tokens": args.max_query_tokens,
        "max_batch": args.max_batch,
        "max_body_bytes": args.max_body_bytes,
        "max_in_flight": args.max_in_flight,
        "api_key_file": args.api_key_file,
        "api_key_env": args.api_key_env,
        "indexes": parse_index_specs(args.indexes) if args.indexes else None,
        "cors_origins": tuple(args.cors_origins) if args.cors_origins else None,
        "index_roots": tuple(args.index_roots) if args.index_roots else None,
        "log_requests": False if args.no_access_log else None,
        "ray": args.ray,
        "ray_replicas": args.replicas,
    }
    return {key: value for key, value in flags.items() if value is not None}


def _add_train_parsers(sub: argparse._SubParsersAction) -> None:
    for name, what in (
        ("train", "train a sparse encoder from a prepared dataset (lsr.train)"),
        (
            "train-prepare",
            "build a prepared training dataset: pairs, dev split, "
            "pseudo-queries, mined negatives, teacher scores",
        ),
    ):
        p = sub.add_parser(name, help=what, description=what)
        p.add_argument(
            "--config",
            metavar="FILE|NAME",
            required=True,
            help="training YAML (e.g. configs/train-toy.yaml, or a shipped name: train-toy)",
        )
        p.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="SECTION.KEY=VALUE",
            help="override one config value, e.g. --set train.steps=500 (repeatable)",
        )
        p.add_argument("--quiet", action="store_true", help="no progress bars, warnings and errors only")
        if name == "train":
            p.add_argument(
                "--out",
                help="run directory (default artifacts/train/<name>): best/, "
                "checkpoint/, train_log.jsonl, summary.json",
            )
            p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
        else:
            p.add_argument("--out", help="prepared dataset directory (default: data.prepared)")
            p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def cmd_train(args: argparse.Namespace) -> int:
    cfg = load_train_config(args.config, args.overrides)  # all checks before torch or a model loads
    from lsr.train.trainer import train  # here: torch adds about 2.5 s to every lsr command's start

    out = args.out or f"artifacts/train/{cfg.name}"
    summary = train(cfg, out, resume=args.resume, progress=_progress(args))
    best = summary["best"]
    print(
        f"trained {cfg.name}: {summary['steps']} steps in {summary['seconds']:.0f}s; best dev nDCG@10 "
        f"{best.get('ndcg@10', 0):.4f} at step {best.get('step')} (doc nnz {best.get('doc_nnz', 0):.1f}, "
        f"query nnz {best.get('query_nnz', 0):.1f}) -> {summary['model']}"
    )
    return 0


def cmd_train_prepare(args: argparse.Namespace) -> int:
    cfg = load_train_config(args.config, args.overrides)
    out = args.out or cfg.data.prepared
    if not out:
        raise LsrError("give --out, or set data.prepared in the config")
    from lsr.train.data import prepare_dataset  # here: searcher, pipeline and encoders add 0.1 s to a start

    meta = prepare_dataset(cfg.prepare, out, args.overwrite, _progress(args))
    c = meta["counts"]
    print(
        f"prepared {c['train_examples']} examples ({c['train_queries']} labelled queries, "
        f"{c.get('pseudo_titles', 0)} + {c.get('pseudo_spans', 0)} pseudo-queries; skipped "
        f"{c['skipped_no_positive']} without positive), {c['dev_queries']} dev queries, teachers "
        f"{meta['teachers']} in {meta['seconds']:.0f}s -> {out}"
    )
    return 0


def _add_adapt_parser(sub: argparse._SubParsersAction) -> None:
    what = (
        "adapt a sparse model to a corpus without labels: a SPLADE folder's tf saturation and query "
        "IDF power chosen on pseudo-queries cut from the corpus (adapt.method select, the default for "
        "splade), or pseudo-queries with BM25 negatives and dense + BM25 teacher scores, optional "
        "continued MLM and a short training run (adapt.method train) (lsr.train.adapt)"
    )
    p = sub.add_parser("adapt", help=what, description=what + "; config: configs/adapt.yaml")
    p.add_argument(
        "--encoder",
        required=True,
        metavar="KIND[:FOLDER]",
        help="the model to adapt: splade[:FOLDER], inference-free[:FOLDER] or unicoil:FOLDER (a bare "
        "kind: the default model; a bare folder: splade)",
    )
    p.add_argument("--corpus", required=True, help="BEIR folder, corpus .jsonl[.gz], or ir_datasets id")
    p.add_argument("--out", required=True, help="the adapted model folder to write")
    p.add_argument(
        "--work",
        help="work directory (prepared data, MLM model, checkpoints; default OUT.work beside --out); "
        "removed after success unless adapt.keep_work",
    )
    p.add_argument("--resume", action="store_true", help="continue a crashed run from its work directory")
    p.add_argument(
        "--overwrite", action="store_true", help="replace --out, and start over in a used work directory"
    )
    common_flags(p)


def cmd_adapt(args: argparse.Namespace) -> int:
    from lsr.train.adapt_checks import resolve_encoder, start_model_overrides
    from lsr.train.adapt_config import load_adapt_config

    kind, start = resolve_encoder(args.encoder)  # the model folder's kind, before any config or model
    forced = [f"model.kind={kind}", f"model.init={json.dumps(str(start))}"]
    forced.append(f"prepare.dataset={json.dumps(str(args.corpus))}")
    cfg = load_adapt_config(args.config or "adapt", [*start_model_overrides(start), *args.overrides, *forced])
    from lsr.train.adapt import adapt  # here: torch adds about 2.5 s to every lsr command's start

    rec = adapt(cfg, args.corpus, args.out, args.work, args.overwrite, args.resume, _progress(args))
    before, after = rec["dev"]["before"], rec["dev"]["after"]
    if rec["method"] == "select":
        chosen = rec["select"]["chosen"]
        how = f"tf {chosen['tf'] or 'none'}, query_idf {chosen['query_idf']:g}; pseudo-query"
    else:
        how = f"doc nnz {before.get('doc_nnz', 0):.1f} -> {after.get('doc_nnz', 0):.1f}; dev"
    print(
        f"adapted {kind} {start.name} to {rec['docs_used']} documents in {rec['seconds']['total']:.0f}s "
        f"({how} nDCG@10 {before.get('ndcg@10', 0):.4f} -> {after.get('ndcg@10', 0):.4f}) -> {args.out}"
    )
    return 0


COMMANDS = {
    "encode": cmd_encode,
    "index": cmd_index,
    "search": cmd_search,
    "eval": cmd_eval,
    "serve": cmd_serve,
}
COMMANDS.update({"train": cmd_train, "train-prepare": cmd_train_prepare})
COMMANDS["tune-fusion"] = cmd_tune_fusion
COMMANDS.update({"add": cmd_add, "delete": cmd_delete, "merge": cmd_merge, "info": cmd_info})
COMMANDS["export-st"] = cmd_export_st
COMMANDS["export"] = cmd_export
COMMANDS["adapt"] = cmd_adapt
COMMANDS["verify"] = cmd_verify


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
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
