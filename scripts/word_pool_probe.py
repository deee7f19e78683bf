#!/usr/bin/env python3
"""Probe: a wordpiece uniCOIL's token weights pooled to the BM25 analyzer's terms, on the ood suite.

For each text the model's per-token weights (``ReLU(head(h_t))``) are grouped by the tokenizer's words;
each word's weight (``max`` or ``sum`` over its pieces, or its ``first`` piece's) goes to the analyzer's
terms of that word (lowercase, Lucene stopwords, Porter: the default BM25's terms), a repeated term
keeping its largest weight. Queries and documents alike; scored with idf(t)^p of the collection's
postings, as ``encoder.query_idf`` does. ``wp`` is the model on its own wordpieces (what an index of it
holds today). Nothing is trained: the probe asks whether word-level terms would help such a model.

    python scripts/word_pool_probe.py MODEL_FOLDER --ood ../shared/data/ood > probe.txt

Prints nDCG@10 per collection and pooling / power, then the means (reports/ood-unicoil).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from lsr.analysis import Analyzer
from lsr.encoders.hf import clean_text
from lsr.train.config import ModelConfig
from lsr.train.data import load_suite
from lsr.train.model import SparseEncoderModel, build_model
from lsr.train.trainer import ndcg_at_k

COLLECTIONS = ("adi", "time", "med", "cacm", "lisa", "npl")
POOLINGS = ("wp", "max", "sum", "first")
POWERS = (0.5, 1.0, 1.5)


def token_weights(
    model: SparseEncoderModel, texts: list[str], max_len: int
) -> list[tuple[object, np.ndarray]]:
    """Each text's encoding (ids, word ids, offsets) and its per-token weights."""
    backend = model.tokenizer.backend_tokenizer
    backend.no_padding()
    backend.enable_truncation(max_len)
    enc = backend.encode_batch(texts)
    width = -(-max(len(e.ids) for e in enc) // 8) * 8
    ids = torch.full((len(enc), width), model.pad_id, dtype=torch.long)
    mask = torch.zeros((len(enc), width), dtype=torch.bool)
    for i, e in enumerate(enc):
        ids[i, : len(e.ids)] = torch.tensor(e.ids)
        mask[i, : len(e.ids)] = True
    w = model.unicoil_token_weights(ids.to(model.device), mask.to(model.device))
    return list(zip(enc, w.cpu().numpy(), strict=True))


def pooled(text: str, enc: object, w: np.ndarray, analyzer: Analyzer) -> dict[str, dict]:
    """{pooling: {term: weight}} of one text."""
    wp: dict[int, float] = {}
    words: dict[int, list[tuple[int, int, float]]] = defaultdict(list)
    for j, (tid, wid, (start, end)) in enumerate(zip(enc.ids, enc.word_ids, enc.offsets, strict=True)):
        if wid is not None:
            wp[tid] = max(wp.get(tid, 0.0), float(w[j]))
            words[wid].append((start, end, float(w[j])))
    out: dict[str, dict] = {"wp": wp, "max": {}, "sum": {}, "first": {}}
    for pieces in words.values():
        weights = [p[2] for p in pieces]
        for term in analyzer(text[pieces[0][0] : pieces[-1][1]]):
            out["max"][term] = max(out["max"].get(term, 0.0), max(weights))
            out["sum"][term] = out["sum"].get(term, 0.0) + max(weights)
            out["first"][term] = max(out["first"].get(term, 0.0), weights[0])
    return out


def encode(model: SparseEncoderModel, texts: list[str], max_len: int, analyzer: Analyzer) -> list[dict]:
    cleaned = [clean_text(t) for t in texts]
    out = []
    for s in range(0, len(cleaned), 64):
        part = cleaned[s : s + 64]
        out += [
            pooled(t, e, w, analyzer)
            for t, (e, w) in zip(part, token_weights(model, part, max_len), strict=True)
        ]
    return out


def rank(
    docs: list[dict], queries: list[dict], key: str, power: float, doc_ids: list[str]
) -> list[list[str]]:
    """Top 10 per query by sum over shared terms of query weight x idf^power x document weight."""
    postings: dict[object, list[tuple[int, float]]] = defaultdict(list)
    for i, d in enumerate(docs):
        for t, w in d[key].items():
            if w > 0:
                postings[t].append((i, w))
    n = len(docs)
    ranked = []
    for q in queries:
        scores = np.zeros(n)
        for t, qw in q[key].items():
            if t in postings and qw > 0:
                df = len(postings[t])
                idf = np.log1p((n - df + 0.5) / (df + 0.5)) ** power
                for i, w in postings[t]:
                    scores[i] += qw * idf * w
        ranked.append([doc_ids[i] for i in np.argsort(-scores, kind="stable")[:10]])
    return ranked


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a uniCOIL model folder")
    ap.add_argument("--ood", type=Path, default=Path("../shared/data/ood"))
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--collections", default=",".join(COLLECTIONS))
    args = ap.parse_args(argv)
    torch.set_grad_enabled(False)
    model = build_model(ModelConfig(kind="unicoil", init=args.model))
    model = model.to(torch.device("cuda" if torch.cuda.is_available() else "cpu")).eval()
    analyzer = Analyzer()
    table: dict[tuple[str, float], dict[str, float]] = defaultdict(dict)
    names = args.collections.split(",")
    for name in names:
        t0 = time.time()
        suite = load_suite(str(args.ood / name), "test")
        docs = encode(model, suite.doc_texts, args.max_length, analyzer)
        queries = encode(model, [q.query for q in suite.queries], args.max_length, analyzer)
        rels = [q.rels for q in suite.queries]
        for key in POOLINGS:
            for p in POWERS:
                table[(key, p)][name] = ndcg_at_k(rank(docs, queries, key, p, suite.doc_ids), rels, 10)
        cells = " ".join(f"{k}/{p}={v[name]:.4f}" for (k, p), v in table.items())
        print(name, f"{time.time() - t0:.0f}s", cells, flush=True)
    print("MEAN over", names)
    for key, row in table.items():
        print(key, round(float(np.mean([row[n] for n in names])), 4))
    return 0


if __name__ == "__main__":
    sys.exit(main())
