#!/usr/bin/env python3
"""Grid of BM25 tf saturation (k1, b) on a wordpiece SPLADE's document vectors (ood suite + SciFact dev).

Each dataset is encoded once with the model folder as it is (no ``tf`` in its ``lsr_doc.json``), its
vectors cached under ``--cache``; every setting is then scored exactly (float, scipy) as an index of the
folder with ``lsr_doc.json`` = ``{"tf": {"k1", "b", "avgdl"}}`` would: each document term the text holds
(count c > 0 in the model's tokenization of the whole text, specials left out: the encoder's
``token_counts``) weighs ``c (k1 + 1) / (c + k1 (1 - b + b |d| / avgdl))`` more (``Saturation``);
expansion terms keep their weights; queries: the model's weights x idf(t)^p (p: the folder's
``lsr_query.json``). ``avgdl`` is fixed, the mean length of ``--avgdl-corpus`` (the training corpus).

    python scripts/wordpiece_tf_probe.py lsr/models/splade --avgdl-corpus ../shared/data/beir/scifact \
        --datasets OOD/adi,OOD/time,OOD/med,OOD/cacm,OOD/lisa,OOD/npl,SCIFACT_DEV:dev --cache /tmp/vec

Prints nDCG@10 per dataset and setting, best first by the mean of (the ood collections' mean, the
``:dev`` dataset), the selection rule of docs/results.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from word_tf_grid import grid_table, report  # scripts/, beside this one (run as a script)

from lsr.config import EncoderConfig
from lsr.data.corpus import open_corpus
from lsr.encoders import make_encoder, query_idf
from lsr.encoders.transformer import token_counts, untruncated
from lsr.encoders.words import Saturation
from lsr.train.adapt_select import Encoded
from lsr.train.data import doc_text, load_suite
from lsr.train.trainer import ndcg_at_k

K1 = (0.5, 1.0, 2.0)
B = (0.2, 0.4, 0.6)


def encoded(encoder, suite, cache: Path | None) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(documents, queries) as CSR over the vocabulary, from ``cache`` when there."""
    path = cache / f"{suite.name}-{len(suite.queries)}.npz" if cache else None
    if path is not None and path.is_file():
        z = np.load(path)
        return sp.csr_matrix((z["dd"], z["di"], z["dp"]), shape=tuple(z["ds"])), sp.csr_matrix(
            (z["qd"], z["qi"], z["qp"]), shape=tuple(z["qs"])
        )
    width = len(encoder.vocab)
    docs = encoder.encode(suite.doc_texts)
    queries = encoder.model.encode([q.query for q in suite.queries], encoder.cfg.prune, query=True)
    d = sp.csr_matrix((docs.weights, docs.term_ids, docs.indptr), shape=(len(suite.doc_texts), width))
    q = sp.csr_matrix((queries.weights, queries.term_ids, queries.indptr), shape=(len(queries), width))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            path,
            dd=d.data,
            di=d.indices,
            dp=d.indptr,
            ds=d.shape,
            qd=q.data,
            qi=q.indices,
            qp=q.indptr,
            qs=q.shape,
        )
    return d, q


def grid_scores(encoder, folder: Path, split: str, avgdl: float, power: float, cache: Path | None):
    """nDCG@10 of each setting on one dataset."""
    suite = load_suite(folder, split)
    d, q = encoded(encoder, suite, cache)
    docs = Encoded(d, encoder.model, suite.doc_texts)  # each weight's token count, as the encoder's
    n = d.shape[0]
    idf = query_idf.idf_table(np.bincount(d.indices, minlength=d.shape[1]), n, power)
    q = q.multiply(idf[None, :]).tocsr()
    rels = [x.rels for x in suite.queries]

    def ndcg(weights: sp.csr_matrix) -> float:
        s = (q @ weights.T).toarray()
        return ndcg_at_k(
            [[suite.doc_ids[j] for j in np.argsort(-row, kind="stable")[:10]] for row in s], rels, 10
        )

    out = {"none": ndcg(docs.with_tf(None))}
    for k1 in K1:
        for b in B:
            out[f"k1={k1:g} b={b:g}"] = ndcg(docs.with_tf(Saturation(k1, b, avgdl)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a wordpiece SPLADE folder without a tf section")
    ap.add_argument("--datasets", required=True, help="BEIR folders, FOLDER:SPLIT for another split")
    ap.add_argument("--avgdl-corpus", type=Path, required=True, help="the training corpus (a BEIR folder)")
    ap.add_argument("--cache", type=Path, help="a folder for the encoded vectors, reused across runs")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    encoder = make_encoder(EncoderConfig(name="splade", model=args.model))
    if encoder.doc_tf is not None:
        ap.error(f"{args.model}: a SPLADE folder without a tf section (lsr_doc.json) is needed")
    model = encoder.model
    texts = [doc_text(d.title, d.text) for d in open_corpus(args.avgdl_corpus)]
    avgdl = float(np.mean([x[2] for x in token_counts(untruncated(model.backend), texts, model.special_ids)]))
    print(f"avgdl {avgdl:.4f}", flush=True)
    power = query_idf.resolve(-1.0, Path(args.model))
    table = grid_table(
        args.datasets, lambda folder, split: grid_scores(encoder, folder, split, avgdl, power, args.cache)
    )
    report(table, avgdl, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
