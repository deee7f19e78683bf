#!/usr/bin/env python3
"""Grid of BM25 tf saturation (k1, b) for a word-terms model's document weights, on the ood suite.

Encodes each collection once with the model as it is (no ``tf`` section in its ``lsr_terms.json``: a
term's weight is its largest token weight), then scores every (k1, b) of the grid exactly (float,
scipy) the way an index of the folder with ``"tf": {"k1", "b", "avgdl"}`` would: documents' weights x
tf (k1 + 1) / (tf + k1 (1 - b + b |d| / avgdl)), queries x idf(t)^p of the collection's postings (p:
the folder's ``lsr_query.json``, or each of ``--powers``). ``avgdl`` is fixed, the reference the
trainer would record: the mean analyzed length of ``--avgdl-corpus`` (the training corpus). The model
is a uniCOIL (a folder with its head file) or a SPLADE of word terms.

    python scripts/word_tf_grid.py lsr/models/unicoil --datasets ../shared/data/ood/adi,...,DEV:dev \
        --avgdl-corpus ../shared/data/beir/scifact --json reports/ood-unicoil/tf-grid.json

Prints nDCG@10 per dataset and setting (k1 0 = no saturation; ``p=...`` first with ``--powers``), best
first by the mean of (the ood collections' mean, the ``:dev`` dataset), the selection rule of
docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from lsr.config import EncoderConfig
from lsr.data.corpus import open_corpus
from lsr.encoders import make_encoder, query_idf
from lsr.encoders.hf import clean_text
from lsr.encoders.transformer import untruncated
from lsr.encoders.unicoil import HEAD_FILE
from lsr.encoders.words import Saturation
from lsr.train.data import doc_text, load_suite
from lsr.train.trainer import ndcg_at_k

K1 = (0.4, 0.5, 0.6, 0.8, 1.0)
B = (0.0, 0.1, 0.2, 0.3, 0.4)


def grid_scores(
    model: str,
    folder: Path,
    split: str,
    avgdl: float,
    k1s: tuple[float, ...] = K1,
    bs: tuple[float, ...] = B,
    counts: bool = False,
    powers: tuple[float, ...] = (),
) -> dict[str, float]:
    """nDCG@10 of each setting on one dataset; with ``counts`` also each setting under the default
    ``inference-free``'s query side (a query's analyzer term counts x the same idf^p, no model), named
    ``counts k1=... b=...``; with ``powers`` each setting at each query idf power, named ``p=...``."""
    suite = load_suite(folder, split)
    encoder = make_encoder(EncoderConfig(name=kind_of(model), model=model))
    docs = encoder.encode(suite.doc_texts)
    queries = encoder.model.encode([q.query for q in suite.queries], encoder.cfg.prune, query=True)
    vocab = {t: i for i, t in enumerate(encoder.vocab)}
    n, width = len(suite.doc_texts), len(vocab)
    d = sp.csr_matrix((docs.weights, docs.term_ids, docs.indptr), shape=(n, width))
    d.sort_indices()
    df = np.bincount(d.indices, minlength=width)
    q = sp.csr_matrix((queries.weights, queries.term_ids, queries.indptr), shape=(len(queries), width))
    counted = count_queries(encoder, [x.query for x in suite.queries], width) if counts else None
    sides = {}
    for p in powers or (query_idf.resolve(-1.0, Path(model)),):
        idf = query_idf.idf_table(df, n, p)
        name = f"p={p:g} " if powers else ""
        sides[name] = q.multiply(idf[None, :]).tocsr()
        if counted is not None:
            sides[f"counts {name}"] = counted.multiply(idf[None, :]).tocsr()
    analyzed = [encoder.words.analyzer(clean_text(t)) for t in suite.doc_texts]
    scores = {}
    for k1 in (0.0, *k1s):
        for b in bs if k1 else (0.0,):
            weighted = saturated(d, analyzed, encoder.vocab, Saturation(k1, b, avgdl)) if k1 else d
            for side, q in sides.items():
                s = (q @ weighted.T).toarray()
                ranked = [[suite.doc_ids[j] for j in np.argsort(-row, kind="stable")[:10]] for row in s]
                scores[f"{side}k1={k1:g} b={b:g}"] = ndcg_at_k(ranked, [x.rels for x in suite.queries], 10)
    return scores


def saturated(d: sp.csr_matrix, analyzed: list[list[str]], terms: list[str], tf: Saturation) -> sp.csr_matrix:
    """``d`` (documents x terms) with each weight times its term's tf factor in its document
    (``analyzed``: each document's analyzer terms), as an index of a folder with that ``tf`` section
    weighs it; a term the text does not hold gets the factor of a count of one."""
    factors = [tf.factors(a) for a in analyzed]
    rows = np.repeat(np.arange(d.shape[0]), np.diff(d.indptr))
    f = np.array([factors[r][0].get(terms[t], factors[r][1]) for r, t in zip(rows, d.indices, strict=True)])
    return sp.csr_matrix((d.data * f, d.indices, d.indptr), shape=d.shape)


def kind_of(model: str) -> str:
    """The encoder of a word-terms folder: ``unicoil`` (it has the uniCOIL head file) or ``splade``."""
    return "unicoil" if (Path(model) / HEAD_FILE).is_file() else "splade"


def count_queries(encoder: Any, texts: list[str], width: int) -> sp.csr_matrix:
    """The default ``inference-free``'s query vectors (before idf): each analyzer term of a query's
    words (split by the model's tokenizer) weighs its count."""
    tokenizer = untruncated(encoder.model.backend)
    rows, cols, vals = [], [], []
    for i, text in enumerate(texts):
        text = clean_text(text)
        words = encoder.words.word_texts(text, tokenizer.encode(text, add_special_tokens=False))
        for tid, c in encoder.words.counts(words).items():
            rows.append(i), cols.append(tid), vals.append(float(c))
    return sp.csr_matrix((vals, (rows, cols)), shape=(len(texts), width))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="a word-terms uniCOIL or SPLADE folder (its lsr_terms.json without tf)")
    ap.add_argument("--datasets", required=True, help="BEIR folders, FOLDER:SPLIT for another split")
    ap.add_argument("--avgdl-corpus", type=Path, required=True, help="the training corpus (a BEIR folder)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--k1", default=",".join(map(str, K1)), help="k1 values, comma-separated")
    ap.add_argument("--b", default=",".join(map(str, B)), help="b values, comma-separated")
    ap.add_argument("--counts", action="store_true", help="also score the inference-free query side")
    ap.add_argument("--powers", default="", help="query idf powers, comma-separated (default: the folder's)")
    args = ap.parse_args(argv)
    k1s, bs = (tuple(float(x) for x in v.split(",")) for v in (args.k1, args.b))
    powers = tuple(float(x) for x in args.powers.split(",") if x)
    probe = make_encoder(EncoderConfig(name=kind_of(args.model), model=args.model))
    if probe.words is None or probe.words.saturation is not None:
        ap.error(f"{args.model}: a word-terms model without a tf section is needed")
    texts = (clean_text(doc_text(d.title, d.text)) for d in open_corpus(args.avgdl_corpus))
    avgdl = float(np.mean([len(probe.words.analyzer(t)) for t in texts]))
    table = grid_table(
        args.datasets,
        lambda folder, split: grid_scores(args.model, folder, split, avgdl, k1s, bs, args.counts, powers),
    )
    report(table, avgdl, args.json)
    return 0


def grid_table(datasets: str, scores: Callable[[Path, str], dict[str, float]]) -> dict[str, dict[str, float]]:
    """``{dataset: scores(folder, split)}`` of ``datasets`` (comma-separated ``FOLDER`` or
    ``FOLDER:SPLIT``, the split test by default; a dataset with a split is named ``NAME:SPLIT``),
    printing each one's first setting as it is scored."""
    table: dict[str, dict[str, float]] = {}
    for spec in datasets.split(","):
        folder, _, split = spec.partition(":")
        name = Path(folder).name + (f":{split}" if split else "")
        table[name] = scores(Path(folder), split or "test")
        first, value = next(iter(table[name].items()))
        print(name, f"{first} {value:.4f}", flush=True)
    return table


def report(table: dict[str, dict[str, float]], avgdl: float, out: Path | None) -> None:
    """Print the settings best first by select = mean(the ood datasets' mean, the ``:SPLIT`` dataset's)
    (the ood mean alone without one), the rule of docs/results.md; write ``out`` (JSON) when given."""
    ood = [k for k in table if ":" not in k]
    dev = [k for k in table if ":" in k]

    def select(s: str) -> float:
        mean = float(np.mean([table[k][s] for k in ood]))
        return (mean + table[dev[0]][s]) / 2 if dev else mean

    print("setting", "select", "ood mean", *table, sep=" | ")
    for s in sorted(table[ood[0]], key=select, reverse=True):
        cells = [f"{table[k][s]:.4f}" for k in table]
        print(s, f"{select(s):.4f}", f"{np.mean([table[k][s] for k in ood]):.4f}", *cells, sep=" | ")
    if out:
        out.write_text(json.dumps({"avgdl": avgdl, "ndcg@10": table}, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
