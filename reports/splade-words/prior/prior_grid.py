"""Probe (not part of lsr): a lexical prior on the default splade's document side.

Every term a document's text holds gets ``eta`` x a BM25 tf saturation (k1p, bp) added to its weight,
the model's own weight keeping the folder's tf saturation (k1 0.5, b 0.4); expansion terms are left as
they are; queries are the model's, x idf(t)^p of the collection. Exact float scoring, nDCG@10, best
first by select = mean(ood mean, SciFact dev), the rule of docs/results.md.

    python reports/splade-words/prior/prior_grid.py lsr/models/splade OUT.json \
        OOD/adi,OOD/time,OOD/med,OOD/cacm,OOD/lisa,OOD/npl,SCIFACT_DEV:dev

SCIFACT_DEV: SciFact's corpus with the 162 held-out train queries as qrels/dev.tsv (docs/results.md).
"""

import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "scripts"))

import numpy as np
import scipy.sparse as sp
from word_tf_grid import grid_table, report, saturated  # scripts/ (put on the path above)

from lsr.config import EncoderConfig
from lsr.encoders import make_encoder, query_idf
from lsr.encoders.hf import clean_text
from lsr.encoders.words import Saturation
from lsr.train.data import load_suite
from lsr.train.trainer import ndcg_at_k

ETAS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
PRIOR_TF = ((0.5, 0.4), (1.2, 0.75), (2.0, 0.75))
POWERS = (0.75, 1.0)


def untf_copy(model: Path) -> tuple[Path, dict[str, float]]:
    """A copy of ``model`` whose lsr_terms.json has no tf section, and that section."""
    copy = Path(tempfile.mkdtemp()) / "model"
    shutil.copytree(model, copy)
    terms = json.loads((copy / "lsr_terms.json").read_text())
    tf = terms.pop("tf")
    (copy / "lsr_terms.json").write_text(json.dumps(terms))
    return copy, tf


def saturation(analyzed: list[list[str]], vocab: dict[str, int], tf: Saturation) -> sp.csr_matrix:
    """[docs, terms]: each term a text holds, its saturation factor."""
    rows, cols, vals = [], [], []
    for i, terms in enumerate(analyzed):
        for term, factor in tf.factors(terms)[0].items():
            if term in vocab:
                rows.append(i), cols.append(vocab[term]), vals.append(factor)
    return sp.csr_matrix((vals, (rows, cols)), shape=(len(analyzed), len(vocab)))


def grid(model: Path, tf: dict[str, float], folder: Path, split: str) -> dict[str, float]:
    suite = load_suite(folder, split)
    enc = make_encoder(EncoderConfig(name="splade", model=str(model)))
    docs = enc.encode(suite.doc_texts)
    queries = enc.model.encode([q.query for q in suite.queries], enc.cfg.prune, query=True)
    vocab = {t: i for i, t in enumerate(enc.vocab)}
    n, width = len(suite.doc_texts), len(vocab)
    raw = sp.csr_matrix((docs.weights, docs.term_ids, docs.indptr), shape=(n, width))
    q = sp.csr_matrix((queries.weights, queries.term_ids, queries.indptr), shape=(len(queries), width))
    df = np.bincount(raw.indices, minlength=width)
    analyzed = [enc.words.analyzer(clean_text(t)) for t in suite.doc_texts]
    model_part = saturated(raw, analyzed, enc.vocab, Saturation(tf["k1"], tf["b"], tf["avgdl"]))
    rels = [x.rels for x in suite.queries]
    out = {}
    for k1p, bp in PRIOR_TF:
        prior = saturation(analyzed, vocab, Saturation(k1p, bp, tf["avgdl"]))
        for eta in ETAS:
            d = (model_part + eta * prior).tocsr()
            for p in POWERS:
                scores = (q.multiply(query_idf.idf_table(df, n, p)[None, :]).tocsr() @ d.T).toarray()
                ranked = [[suite.doc_ids[j] for j in np.argsort(-s, kind="stable")[:10]] for s in scores]
                out[f"prior k1 {k1p:g} b {bp:g} eta {eta:g} idf {p:g}"] = ndcg_at_k(ranked, rels, 10)
    return out


def main() -> int:
    model, tf = untf_copy(Path(sys.argv[1]))
    table = grid_table(sys.argv[3], lambda folder, split: grid(model, tf, folder, split))
    report(table, tf["avgdl"], Path(sys.argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
