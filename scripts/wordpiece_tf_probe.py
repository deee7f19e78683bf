#!/usr/bin/env python3
"""Probe: BM25 tf saturation on a wordpiece SPLADE's document vectors, on the ood suite (nothing shipped).

Each collection is encoded with the model (``lsr`` encoder, as an index would); a document token's
count is its number of occurrences in the tokenized whole text, |d| the number of tokens. Each setting
multiplies the document weights by ``c (k1 + 1) / (c + k1 (1 - b + b |d| / avgdl))`` with c = max(count,
1) (``all``: expansion terms, count 0, as if counted once) or only where count > 0 (``input``), avgdl the
collection's mean; queries: the model's weights x idf(t)^p (p: the folder's ``lsr_query.json``). Exact
float scoring; nDCG@10 per collection, settings best first by the ood mean.

    python scripts/wordpiece_tf_probe.py splade --ood ../shared/data/ood
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from lsr.config import EncoderConfig
from lsr.encoders import default_model, make_encoder, query_idf
from lsr.encoders.hf import clean_text
from lsr.train.data import load_suite
from lsr.train.trainer import ndcg_at_k

COLLECTIONS = ("adi", "time", "med", "cacm", "lisa", "npl")


def scores(encoder, folder: Path, power: float) -> dict[str, float]:
    suite = load_suite(folder, "test")
    docs = encoder.encode(suite.doc_texts)
    queries = encoder.model.encode([q.query for q in suite.queries], encoder.cfg.prune, query=True)
    tokenizer = encoder.model.tokenizer
    counts = [
        Counter(tokenizer(clean_text(t), add_special_tokens=False)["input_ids"]) for t in suite.doc_texts
    ]
    n, width = len(suite.doc_texts), len(encoder.vocab)
    d = sp.csr_matrix((docs.weights, docs.term_ids, docs.indptr), shape=(n, width))
    d.sort_indices()
    rows = np.repeat(np.arange(n), np.diff(d.indptr))
    count = np.array([counts[r].get(t, 0) for r, t in zip(rows, d.indices, strict=True)], float)
    length = np.array([sum(c.values()) for c in counts], float)
    ratio = length[rows] / length.mean()
    idf = query_idf.idf_table(np.bincount(d.indices, minlength=width), n, power)
    q = sp.csr_matrix((queries.weights, queries.term_ids, queries.indptr), shape=(len(queries), width))
    q = q.multiply(idf[None, :]).tocsr()
    rels = [x.rels for x in suite.queries]

    def ndcg(factor: np.ndarray) -> float:
        s = (q @ sp.csr_matrix((d.data * factor, d.indices, d.indptr), shape=d.shape).T).toarray()
        return ndcg_at_k(
            [[suite.doc_ids[j] for j in np.argsort(-row, kind="stable")[:10]] for row in s], rels, 10
        )

    out = {"none": ndcg(np.ones_like(count))}
    c = np.maximum(count, 1.0)
    for k1 in (0.5, 1.0, 2.0):
        for b in (0.0, 0.2, 0.4):
            f = c * (k1 + 1) / (c + k1 * (1 - b + b * ratio))
            out[f"k1={k1:g} b={b:g} all"] = ndcg(f)
            out[f"k1={k1:g} b={b:g} input"] = ndcg(np.where(count > 0, f, 1.0))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("encoder", help="splade or inference-free documents of the default model, or NAME:FOLDER")
    ap.add_argument("--ood", type=Path, default=Path("../shared/data/ood"))
    args = ap.parse_args(argv)
    name, _, folder = args.encoder.partition(":")
    model = Path(folder) if folder else default_model(name)
    encoder = make_encoder(EncoderConfig(name="splade", model=str(model)))
    power = query_idf.resolve(-1.0, model)
    table = {c: scores(encoder, args.ood / c, power) for c in COLLECTIONS}
    for s in sorted(table["adi"], key=lambda s: -np.mean([table[c][s] for c in COLLECTIONS])):
        cells = " | ".join(f"{table[c][s]:.4f}" for c in COLLECTIONS)
        print(f"{s} | {np.mean([table[c][s] for c in COLLECTIONS]):.4f} | {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
