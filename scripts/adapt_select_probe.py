#!/usr/bin/env python3
"""How well ``lsr adapt``'s method select chooses, per collection, against the collection's qrels.

For each BEIR folder given: the documents are encoded once (cached under ``--cache``) and the folder's
test queries too; ``--seeds`` sets of ``--queries`` pseudo-queries are cut from the documents
(``adapt_select.window_queries``, one seed each) and every setting of ``adapt_select.grid`` is scored on
each set exactly as ``lsr adapt`` scores it (``score_settings``), and on the qrels (exact float
scoring, nDCG@10). Prints, for each collection and on their mean, the real nDCG@10 change over the start
setting of: the setting chosen on one set (the mean over sets, and the worst and best set), the one
chosen on all sets pooled, and the oracle (the best by the qrels). Writes every score to ``--json``.

    python scripts/adapt_select_probe.py lsr/models/splade ../shared/data/ood/{adi,time,med,cacm,lisa,npl} \
        --queries 1000 --seeds 5 --cache /tmp/vec --json /tmp/adapt-select-probe.json

The qrels are read only here, to measure the choice; ``lsr adapt`` never reads them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from wordpiece_tf_probe import encoded  # scripts/, beside this one (run as a script)

from lsr.config import EncoderConfig
from lsr.encoders import make_encoder
from lsr.encoders.query_idf import idf_table
from lsr.train.adapt_select import Encoded, Setting, grid, score_settings, start_setting, window_queries
from lsr.train.data import load_suite
from lsr.train.trainer import ndcg_at_k


def _real(docs: Encoded, queries: sp.csr_matrix, suite, settings: list[Setting]) -> list[float]:
    """Each setting's nDCG@10 on the suite's qrels (exact float scores, ties by document position)."""
    n = docs.matrix.shape[0]
    df = np.bincount(docs.matrix.indices, minlength=docs.matrix.shape[1])
    rels = [q.rels for q in suite.queries]
    out = []
    for s in settings:
        q = queries.multiply(idf_table(df, n, s.power)[None, :]).tocsr()
        scores = (q @ docs.with_tf(s.tf).T).toarray()
        ranked = [[suite.doc_ids[j] for j in np.argsort(-row, kind="stable")[:10]] for row in scores]
        out.append(ndcg_at_k(ranked, rels, 10))
    return out


def probe(model: Path, folder: Path, n_queries: int, seeds: int, cache: Path | None) -> dict:
    encoder = make_encoder(EncoderConfig(name="splade", model=str(model)))
    encoder.model.saturate(None)
    suite = load_suite(folder, "test")
    d, queries = encoded(encoder, suite, cache)  # the model saturates nothing: the grid's weights
    docs = Encoded(d, encoder.model, suite.doc_texts)
    settings = grid(start_setting(model), float(docs.lengths.mean()))
    pseudo = []
    for seed in range(seeds):
        cut = window_queries(suite.doc_texts, n_queries, seed)
        rest = Encoded.encode(encoder, [c[2] for c in cut])
        b = encoder.model.encode([c[1] for c in cut], encoder.cfg.prune, query=True)
        q = sp.csr_matrix((b.weights, b.term_ids, b.indptr), shape=(len(cut), d.shape[1]))
        pseudo.append(score_settings(docs, q, np.array([c[0] for c in cut]), rest, settings))
    labels = [s.label() for s in settings]
    return {"settings": labels, "pseudo": pseudo, "real": _real(docs, queries, suite, settings)}


def chosen_gain(scores: list[float], real: list[float]) -> float:
    """The real change over the start (index 0) of the setting ``scores`` choose (the start on a tie)."""
    return real[int(np.argmax(scores))] - real[0]


def summary(results: dict[str, dict]) -> None:
    rows = {"one set (mean over sets)": [], "one set, worst": [], "one set, best": []}
    rows |= {"all sets pooled": [], "oracle": []}
    for r in results.values():
        each = [chosen_gain(p, r["real"]) for p in r["pseudo"]]
        rows["one set (mean over sets)"].append(np.mean(each))
        rows["one set, worst"].append(min(each))
        rows["one set, best"].append(max(each))
        rows["all sets pooled"].append(chosen_gain(list(np.mean(r["pseudo"], axis=0)), r["real"]))
        rows["oracle"].append(max(r["real"]) - r["real"][0])
    print("| rule | " + " | ".join(results) + " | mean |")
    print("|---" * (len(results) + 2) + "|")
    for name, gains in rows.items():
        print(f"| {name} | " + " | ".join(f"{g:+.4f}" for g in gains) + f" | {np.mean(gains):+.4f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path, help="a SPLADE model folder")
    ap.add_argument("folders", type=Path, nargs="+", help="BEIR folders with test qrels")
    ap.add_argument("--queries", type=int, default=1000, help="pseudo-queries per set")
    ap.add_argument("--seeds", type=int, default=5, help="sets of pseudo-queries (seeds 0..N-1)")
    ap.add_argument("--cache", type=Path, default=None, help="folder caching the encoded collections")
    ap.add_argument("--json", type=Path, default=None, help="write every score here")
    args = ap.parse_args()
    results = {}
    for folder in args.folders:
        results[folder.name] = probe(args.model, folder, args.queries, args.seeds, args.cache)
        print(f"{folder.name}: {len(results[folder.name]['real'])} settings x {args.seeds} sets", flush=True)
    summary(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
