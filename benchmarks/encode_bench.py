"""The encoder benchmark (issue 3): corpus encoding docs/s and peak memory, query encoding queries/s.

Examples::

    python -m benchmarks.encode_bench --model models/splade-tiny --out encode.json
    python -m benchmarks.encode_bench --docs 1000 --variants fast,straightforward

Corpus encoding (SciFact, title + text, max length 512 by default), each variant in its
own process so that its peak RSS is its own:

* ``fast``: ``lsr encode`` as shipped (``lsr.pipeline.encode_corpus``: length-sorted
  batches, tiled projection + max, vectors written to a vectors directory);
* ``fast-bf16``: the same with ``encoder.transformer.dtype=bfloat16`` (CPU AMX/AVX512-BF16);
* ``sorted-full-logits``: length-sorted batches, but full logits then max (shows what
  sorting alone buys);
* ``straightforward``: what naver/splade does: corpus order, 32 docs per batch padded
  to the longest, ``[batch, tokens, vocab]`` float32 logits, ``log1p(relu(.)) * mask``, max.

Query encoding: inference-free (tokenizer + table, pinned to one core) and SPLADE
(the model, all cores; batches of ``--query-batch`` and one query at a time).

Prints a table and writes JSON with every number, the settings, the machine and its
load average (this is a shared machine: other processes slow everything down).
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("LSR_SHARED_DATA", REPO.parent / "shared" / "data"))
VARIANTS = ("fast", "fast-bf16", "sorted-full-logits", "straightforward")
STRAIGHTFORWARD_BATCH = 32

logger = logging.getLogger("benchmarks.encode_bench")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        return platform.processor()


def available_cpus() -> int:
    from lsr.encoders.transformer import available_cpus as cpus

    return cpus()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.encode_bench",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", type=Path, default=REPO / "models" / "splade-tiny", help="SPLADE model folder")
    p.add_argument("--corpus", type=Path, default=DEFAULT_DATA / "beir" / "scifact", help="BEIR folder")
    p.add_argument("--docs", type=int, default=0, help="encode only the first N documents (0: all)")
    p.add_argument(
        "--variants",
        default="fast,straightforward",
        help=f"comma-separated corpus variants, from {','.join(VARIANTS)}",
    )
    p.add_argument("--max-length", type=int, default=512, help="tokens per document")
    p.add_argument("--query-batch", type=int, default=256, help="queries per SPLADE encode call")
    p.add_argument("--min-queries", type=int, default=50_000, help="inference-free: queries to time at least")
    p.add_argument("--out", type=Path, help="write the JSON report here")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run one variant, print JSON
    return p


# --- one corpus variant, in its own process --------------------------------------------------------


def read_docs(corpus: Path, n: int) -> list[tuple[str, str]]:
    with gzip.open(corpus / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        docs = [json.loads(line) for line in f]
    docs = docs[:n] if n else docs
    return [(d["_id"], f"{d['title']} {d['text']}" if d.get("title") else d["text"]) for d in docs]


def run_fast(args: argparse.Namespace, dtype: str) -> dict[str, Any]:
    """``lsr encode`` through the pipeline, on a corpus file holding the first ``--docs`` documents."""
    from lsr.config import load_config
    from lsr.pipeline import encode_corpus
    from lsr.vectors import Vectors

    with tempfile.TemporaryDirectory(prefix="lsr-encode-bench-") as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        src_path = args.corpus / "corpus.jsonl.gz"
        with gzip.open(src_path, "rt", encoding="utf-8") as src, open(corpus, "w", encoding="utf-8") as dst:
            for i, line in enumerate(src):
                if args.docs and i >= args.docs:
                    break
                dst.write(line)
        cfg = load_config(
            None,
            [
                "encoder.name=splade",
                f"encoder.model={json.dumps(str(args.model))}",
                f"encoder.transformer.max_length={args.max_length}",
                f"encoder.transformer.dtype={dtype}",
                "index.store_docs=false",
            ],
        )
        from lsr.encoders.splade import SpladeModel

        SpladeModel(args.model, cfg.encoder.transformer).encode(["warm up"], cfg.encoder.prune)
        start = time.perf_counter()
        meta = encode_corpus(cfg, corpus, Path(tmp) / "vectors")
        seconds = time.perf_counter() - start  # model load included (about 1 s)
        vectors = Vectors(Path(tmp) / "vectors")
        rows = [b.row(i) for b in vectors.batches() for i in range(len(b))][:200]
        sample = [dict(zip(t.tolist(), w.tolist(), strict=True)) for t, w in rows]
    return {
        "n_docs": meta["n_docs"],
        "seconds": seconds,
        "doc_nnz_avg": meta["doc_nnz_avg"],
        "sample": sample,
    }


def run_full_logits(args: argparse.Namespace, sort: bool) -> dict[str, Any]:
    """Full ``[batch, tokens, vocab]`` logits, then max (naver/splade's SPLADE forward)."""
    import torch
    import transformers

    torch.set_num_threads(available_cpus())
    docs = read_docs(args.corpus, args.docs)
    tok = transformers.AutoTokenizer.from_pretrained(str(args.model))
    model = transformers.AutoModelForMaskedLM.from_pretrained(str(args.model)).eval()
    texts = [text for _, text in docs]
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i])) if sort else list(range(len(texts)))
    nnz, sample = 0, {}
    start = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, len(order), STRAIGHTFORWARD_BATCH):
            idx = order[s : s + STRAIGHTFORWARD_BATCH]
            enc = tok(
                [texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=args.max_length,
                return_tensors="pt",
            )
            logits = model(**enc).logits
            mask = enc["attention_mask"].unsqueeze(-1)
            vecs = torch.max(torch.log1p(torch.relu(logits)) * mask, dim=1).values
            for row, i in enumerate(idx):
                nzr = torch.nonzero(vecs[row]).flatten()
                nnz += len(nzr)
                if i < 200:
                    sample[i] = {int(t): float(vecs[row, t]) for t in nzr}
    seconds = time.perf_counter() - start
    return {
        "n_docs": len(texts),
        "seconds": seconds,
        "doc_nnz_avg": nnz / max(len(texts), 1),
        "sample": [sample[i] for i in sorted(sample)],
    }


def worker(args: argparse.Namespace) -> None:
    logging.disable(logging.WARNING)
    variant = args.worker
    if variant == "fast":
        result = run_fast(args, "float32")
    elif variant == "fast-bf16":
        result = run_fast(args, "bfloat16")
    else:
        result = run_full_logits(args, sort=variant == "sorted-full-logits")
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def run_variant(args: argparse.Namespace, variant: str) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.encode_bench",
        "--worker",
        variant,
        "--model",
        str(args.model),
        "--corpus",
        str(args.corpus),
        "--docs",
        str(args.docs),
        "--max-length",
        str(args.max_length),
    ]
    logger.info("corpus encoding: %s", variant)
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        raise RuntimeError(f"variant {variant} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- query encoding -----------------------------------------------------------------------------------


def read_queries(corpus: Path) -> list[str]:
    with gzip.open(corpus / "queries.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def bench_inference_free(args: argparse.Namespace, queries: list[str]) -> dict[str, Any]:
    """Tokenizer + IDF table on one core (pinned; the Rust tokenizer gets one thread)."""
    code = f"""
import json, os, sys, time
os.sched_setaffinity(0, {{0}})
import numpy as np
from lsr.encoders.inference_free import InferenceFreeQueryEncoder
from lsr.encoders.hf import vocab_digest
d = sys.argv[1]
meta = json.load(open(os.path.join(d, "meta.json")))
vocab = json.load(open(os.path.join(d, "vocab.json")))
enc = InferenceFreeQueryEncoder(meta, {{t: i for i, t in enumerate(vocab)}}, d)
queries = json.load(open(os.path.join(d, "queries.json")))
reps = max(1, -(-{args.min_queries} // len(queries)))
batch = queries * reps
enc.encode(queries[:100])
t = time.perf_counter(); b = enc.encode(batch); batched = time.perf_counter() - t
t = time.perf_counter()
for q in queries: enc.encode([q])
single = time.perf_counter() - t
print(json.dumps({{"queries": len(batch), "qps_batch": len(batch) / batched, "qps_one_at_a_time":
    len(queries) / single, "query_nnz_avg": b.nnz / len(batch), "torch_loaded": "torch" in sys.modules}}))
"""
    import numpy as np

    from lsr.config import load_config
    from lsr.encoders.inference_free import TABLE_FILE, TOKENIZER_FILE, idf_table, token_stats
    from lsr.encoders.transformer import load_tokenizer, tokenizer_vocab

    tok = load_tokenizer(args.model)
    vocab = tokenizer_vocab(tok, tok.backend_tokenizer.get_vocab_size())
    texts = (t for _, t in read_docs(args.corpus, 0))
    stats = token_stats(tok.backend_tokenizer, texts, len(vocab))
    with tempfile.TemporaryDirectory(prefix="lsr-if-bench-") as d:
        np.save(Path(d) / TABLE_FILE, idf_table(stats))
        (Path(d) / TOKENIZER_FILE).write_bytes((args.model / TOKENIZER_FILE).read_bytes())
        cfg = load_config().encoder
        meta = {
            "name": "inference-free",
            "transformer": {"query_max_length": cfg.transformer.query_max_length},
            "inference_free": {"table": TABLE_FILE, "tokenizer": TOKENIZER_FILE},
        }
        (Path(d) / "meta.json").write_text(json.dumps(meta))
        (Path(d) / "vocab.json").write_text(json.dumps(vocab))
        (Path(d) / "queries.json").write_text(json.dumps(queries))
        env = {**os.environ, "RAYON_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        out = subprocess.run([sys.executable, "-c", code, d], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_splade_queries(args: argparse.Namespace, queries: list[str]) -> dict[str, Any]:
    from lsr.config import load_config
    from lsr.encoders.splade import SpladeModel

    cfg = load_config().encoder
    model = SpladeModel(args.model, cfg.transformer)
    model.encode(queries[:32], cfg.prune, query=True)
    start = time.perf_counter()
    nnz = 0
    for s in range(0, len(queries), args.query_batch):
        nnz += model.encode(queries[s : s + args.query_batch], cfg.prune, query=True).nnz
    batched = time.perf_counter() - start
    sample = queries[:200]
    start = time.perf_counter()
    for q in sample:
        model.encode([q], cfg.prune, query=True)
    single = time.perf_counter() - start
    return {
        "queries": len(queries),
        "qps_batch": len(queries) / batched,
        "qps_one_at_a_time": len(sample) / single,
        "query_nnz_avg": nnz / len(queries),
    }


# --- report ---------------------------------------------------------------------------------------------


def max_weight_diff(a: list[dict], b: list[dict]) -> float:
    diff = 0.0
    for x, y in zip(a, b, strict=False):
        for t in set(x) | set(y):
            diff = max(diff, abs(x.get(t, 0.0) - y.get(t, 0.0)))
    return diff


def format_table(report: dict[str, Any]) -> str:
    corpus = report["corpus_encoding"]
    base = corpus.get("straightforward", {}).get("docs_per_s")
    lines = [
        f"corpus encoding: {report['settings']['n_docs']} docs of {report['settings']['corpus']}, "
        f"max length {report['settings']['max_length']}, {report['machine']['cpus']} CPUs "
        f"({report['machine']['cpu']})",
        f"{'variant':<20}{'docs/s':>9}{'x straightforward':>19}{'peak RSS MiB':>14}{'doc nnz':>9}"
        f"{'max |dw| vs fast':>18}",
    ]
    for name, r in corpus.items():
        speedup = f"{r['docs_per_s'] / base:.2f}" if base else "-"
        lines.append(
            f"{name:<20}{r['docs_per_s']:>9.1f}{speedup:>19}{r['peak_rss_mib']:>14.0f}"
            f"{r['doc_nnz_avg']:>9.1f}{r.get('max_abs_weight_diff_vs_fast', 0.0):>18.2e}"
        )
    q = report["query_encoding"]
    lines += ["", f"{'query encoding':<34}{'queries/s batch':>16}{'one at a time':>15}{'query nnz':>11}"]
    for name, r in q.items():
        lines.append(
            f"{name:<34}{r['qps_batch']:>16.0f}{r['qps_one_at_a_time']:>15.0f}{r['query_nnz_avg']:>11.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variant(s) {sorted(unknown)}; known: {list(VARIANTS)}")
    load_start = os.getloadavg()
    corpus: dict[str, Any] = {}
    for variant in variants:
        r = run_variant(args, variant)
        r["docs_per_s"] = r["n_docs"] / r["seconds"]
        corpus[variant] = r
    if "fast" in corpus:
        for r in corpus.values():
            r["max_abs_weight_diff_vs_fast"] = max_weight_diff(r["sample"], corpus["fast"]["sample"])
    for r in corpus.values():
        r.pop("sample", None)
    queries = read_queries(args.corpus)
    logger.info("query encoding")
    query = {
        "inference-free (1 core)": bench_inference_free(args, queries),
        f"splade ({available_cpus()} cores)": bench_splade_queries(args, queries),
    }
    report = {
        "settings": {
            "model": str(args.model),
            "corpus": str(args.corpus),
            "n_docs": next((r["n_docs"] for r in corpus.values()), 0),
            "max_length": args.max_length,
            "straightforward_batch": STRAIGHTFORWARD_BATCH,
            "query_batch": args.query_batch,
        },
        "corpus_encoding": corpus,
        "query_encoding": query,
        "machine": {
            "cpus": available_cpus(),
            "cpu": cpu_model(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_start": load_start,
            "loadavg_end": os.getloadavg(),
        },
    }
    print(format_table(report))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"report -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
