"""Our BM25 against bm25s, in one run, on SciFact test and the six ood collections.

    python -m benchmarks.bm25_compare --out benchmarks/results/bm25-compare.json

Rows: ``default`` (``lsr index --encoder bm25``: lsr/config.py's BM25Config), ``lucene``
(``--config bm25-lucene``, Anserini's BEIR flat BM25), ``old`` (the default before the change: the
Lucene preset with uint8 impacts and Snowball's Porter stemming words of one and two characters
too, ``s`` -> an empty term, ``us`` -> ``u``) and ``bm25s`` (bm25s defaults: k1 1.5, b 0.75,
Snowball English stemmer, English stopwords, tokens of two or more characters; title + text). Ours
go through the same pipeline as ``lsr index`` and the eval runner; every run is scored by
``lsr.eval.metrics`` (trec_eval's tie order) on the top 1000.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from lsr.data.corpus import load_queries, open_corpus
from lsr.data.trec import read_qrels
from lsr.eval.datasets import resolve_dataset
from lsr.eval.metrics import evaluate_run
from lsr.eval.suite import ConfigBase, evaluate_pair
from lsr.eval.systems import parse_system

DATASETS = ("scifact", "ood-adi", "ood-time", "ood-med", "ood-cacm", "ood-lisa", "ood-npl")
# row -> (shipped config, overrides); the old default stored uint8 impacts
OURS: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "old": ("bm25-lucene", ("index.impact_dtype=uint8", "encoder.bm25.porter_min_stem=1")),
    "default": (None, ()),
    "lucene": ("bm25-lucene", ()),
}
METRICS = ("ndcg@10", "recall@100")


def ours(row: str, dataset: str, cache: Path) -> dict[str, float]:
    """nDCG@10 and R@100 of one of our BM25 rows, built as ``lsr index`` builds it (own cache per row)."""
    config, overrides = OURS[row]
    base = ConfigBase(config, (*overrides, "eval.k=1000", "eval.metrics=[ndcg@10,recall@100]"))
    ev = evaluate_pair(parse_system("bm25"), resolve_dataset(dataset), base, cache / row)
    return {m: round(ev.metrics[m], 4) for m in METRICS}


def bm25s_row(dataset: str) -> dict[str, float]:
    """bm25s with its defaults on title + text, top 1000 (fewer for a smaller corpus)."""
    import bm25s  # type: ignore[import-untyped]
    import Stemmer

    folder = resolve_dataset(dataset).path
    assert folder is not None
    docs = list(open_corpus(folder))
    qrels = read_qrels(folder / "qrels" / "test.tsv")
    queries = {q: t for q, t in load_queries(folder, "test").items() if q in qrels}
    stemmer = Stemmer.Stemmer("english")
    model = bm25s.BM25()
    model.index(
        bm25s.tokenize([d.contents for d in docs], stopwords="en", stemmer=stemmer, show_progress=False)
    )
    tokens = bm25s.tokenize(list(queries.values()), stopwords="en", stemmer=stemmer, show_progress=False)
    ids, scores = model.retrieve(tokens, k=min(1000, len(docs)), show_progress=False, n_threads=1)
    run = {
        q: {docs[j].id: float(s) for j, s in zip(ids[i], scores[i], strict=True) if s > 0}
        for i, q in enumerate(queries)
    }
    return {m: round(v, 4) for m, v in evaluate_run(qrels, run, METRICS).items()}


def table(results: dict[str, dict[str, dict[str, float]]], metric: str) -> str:
    rows = list(results)
    lines = [f"| collection | {' | '.join(rows)} |", "|---" * (len(rows) + 1) + "|"]
    for d in DATASETS:
        lines.append(f"| {d} | " + " | ".join(f"{results[r][d][metric]:.4f}" for r in rows) + " |")
    means = [sum(results[r][d][metric] for d in DATASETS) / len(DATASETS) for r in rows]
    lines.append("| mean | " + " | ".join(f"{m:.4f}" for m in means) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="benchmarks/results/bm25-compare.json")
    p.add_argument("--cache-dir", help="index cache (default: a temporary folder)")
    args = p.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(args.cache_dir or tmp)
        results: dict[str, Any] = {row: {d: ours(row, d, cache) for d in DATASETS} for row in OURS}
        results["bm25s"] = {d: bm25s_row(d) for d in DATASETS}
    for metric in METRICS:
        print(f"\n{metric}\n" + table(results, metric))
    out: dict[str, Any] = {"datasets": DATASETS, "metrics": METRICS, "results": results}
    out["seconds"] = round(time.perf_counter() - start, 1)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
