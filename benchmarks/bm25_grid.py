"""The grid that chose the default BM25 (analyzer, k1, b): SciFact **train** queries plus the six ood
collections, never SciFact test.

    python -m benchmarks.bm25_grid --out benchmarks/results/bm25-grid.json

Each analyzer (stemmer x stopword list x shortest token kept) analyzes every collection once; each
(k1, b) then scores every judged query exhaustively with float BM25 (Lucene's IDF and form, as
``lsr.encoders.bm25``) and nDCG@10 is computed with ``lsr.eval.metrics`` on the top 100. The
criterion is the mean nDCG@10 over the seven sets (each set weighs one); the JSON holds every cell.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from lsr.analysis import Analyzer
from lsr.data.corpus import load_queries, open_corpus
from lsr.data.trec import read_qrels
from lsr.eval.datasets import shared_data
from lsr.eval.metrics import evaluate_run

OOD = ("adi", "time", "med", "cacm", "lisa", "npl")
SETS = {"scifact-train": ("beir/scifact", "train"), **{f"ood-{n}": (f"ood/{n}", "test") for n in OOD}}
STEMMERS = ("porter", "english")
STOPWORDS = ("lucene", "nltk")
MIN_LENGTHS = (1, 2)
K1 = (0.9, 1.2, 1.5, 1.8)
B = (0.4, 0.6, 0.75, 0.9)


def load_set(folder: Path, split: str) -> tuple[list[str], list[str], list[str], list[str], dict]:
    """Doc ids, doc texts (title + text), judged query ids, their texts and the qrels."""
    docs = list(open_corpus(folder))
    qrels = read_qrels(folder / "qrels" / f"{split}.tsv")
    queries = load_queries(folder, split)
    qids = [q for q in queries if q in qrels]
    return [d.id for d in docs], [d.contents for d in docs], qids, [queries[q] for q in qids], qrels


def count_matrix(texts: list[str], analyzer: Analyzer, vocab: dict[str, int], grow: bool) -> sp.csr_matrix:
    """Rows of term counts; a term outside ``vocab`` is added when ``grow``, else dropped."""
    indptr, ids, counts = [0], [], []
    for text in texts:
        c = Counter(analyzer(text))
        for term, n in c.items():
            if term not in vocab and grow:
                vocab[term] = len(vocab)
            if term in vocab:
                ids.append(vocab[term])
                counts.append(n)
        indptr.append(len(ids))
    return sp.csr_matrix((np.array(counts, np.float64), ids, indptr), shape=(len(texts), max(len(vocab), 1)))


def bm25_matrix(tf: sp.csr_matrix, k1: float, b: float) -> sp.csr_matrix:
    """Lucene BM25 impacts of a doc x term count matrix (documents without terms do not count in N)."""
    dl = np.asarray(tf.sum(axis=1)).ravel()
    n = int(np.count_nonzero(dl))
    avgdl = dl.sum() / max(n, 1)
    df = np.bincount(tf.indices, minlength=tf.shape[1])
    idf = np.log1p((n - df + 0.5) / (df + 0.5))
    rows = np.repeat(np.arange(tf.shape[0]), np.diff(tf.indptr))
    norm = k1 * (1.0 - b + b * dl[rows] / avgdl)
    w = idf[tf.indices] * tf.data / (tf.data + norm)
    return sp.csr_matrix((w, tf.indices, tf.indptr), shape=tf.shape)


def ndcg10(scores: np.ndarray, qids: list[str], doc_ids: list[str], qrels: dict, k: int = 100) -> float:
    run = {}
    for i, q in enumerate(qids):
        row = scores[i]
        top = np.argsort(-row, kind="stable")[:k]
        run[q] = {doc_ids[j]: float(row[j]) for j in top if row[j] > 0}
    return evaluate_run(qrels, run, ["ndcg@10"])["ndcg@10"]


def grid(root: Path, analyzers: list[tuple[str, str, int]], k1s: list[float], bs: list[float]) -> list[dict]:
    data = {name: load_set(root / rel, split) for name, (rel, split) in SETS.items()}
    cells = []
    for stemmer, stop, shortest in analyzers:
        analyzer = Analyzer(stemmer=stemmer, stopwords=stop, min_length=shortest)
        mats = {}
        for name, (doc_ids, texts, qids, qtexts, qrels) in data.items():
            vocab: dict[str, int] = {}
            tf = count_matrix(texts, analyzer, vocab, grow=True)
            mats[name] = (tf, count_matrix(qtexts, analyzer, vocab, grow=False), doc_ids, qids, qrels)
        for k1, b in product(k1s, bs):
            per = {}
            for name, (tf, q, doc_ids, qids, qrels) in mats.items():
                scores = (q @ bm25_matrix(tf, k1, b).T).toarray()
                per[name] = round(ndcg10(scores, qids, doc_ids, qrels), 4)
            cell = {"stemmer": stemmer, "stopwords": stop, "min_length": shortest, "k1": k1, "b": b}
            cells.append({**cell, "ndcg@10": per, "mean": round(float(np.mean(list(per.values()))), 4)})
            print(json.dumps(cells[-1]), flush=True)
    return cells


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="benchmarks/results/bm25-grid.json")
    p.add_argument("--stemmers", default=",".join(STEMMERS))
    p.add_argument("--stopwords", default=",".join(STOPWORDS))
    p.add_argument("--min-lengths", default=",".join(map(str, MIN_LENGTHS)))
    p.add_argument("--k1", default=",".join(map(str, K1)))
    p.add_argument("--b", default=",".join(map(str, B)))
    args = p.parse_args()
    analyzers = list(
        product(args.stemmers.split(","), args.stopwords.split(","), map(int, args.min_lengths.split(",")))
    )
    start = time.perf_counter()
    cells = grid(shared_data(), analyzers, _floats(args.k1), _floats(args.b))
    best = max(cells, key=lambda c: c["mean"])
    out: dict[str, Any] = {"criterion": "mean nDCG@10 over " + ", ".join(SETS), "best": best, "cells": cells}
    out["seconds"] = round(time.perf_counter() - start, 1)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print("best:", json.dumps(best))


if __name__ == "__main__":
    main()
