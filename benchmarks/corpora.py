"""Benchmark collections, written as sparse-vector JSONL with their exact top-k ground truth.

* ``synthetic``: :mod:`benchmarks.synthetic` (SPLADE-like, seeded);
* ``scifact``: BEIR SciFact encoded with BM25 impacts (``lsr.pipeline.encode_corpus`` to
  JSONL), test queries encoded with the BM25 query encoder over the corpus vocabulary;
* ``dl-pool``: the TREC DL19+DL20 passage pool (24,884 passages, 97 queries), likewise;
* ``scifact-splade`` / ``scifact-unicoil`` / ``dl-pool-splade``: SciFact (test queries) or the DL pool
  (all its queries) encoded with the shipped splade / unicoil model (float weights written with 6
  decimals).

Every collection folder holds ``docs.jsonl``, ``queries.jsonl`` and ``lucene/docs.jsonl``
(the documents with integer weights ``max(1, round(w * levels / max_weight))``, for
Lucene's impact index, which repeats each term ``weight`` times).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks.groundtruth import exact_topk
from benchmarks.systems import CollectionFiles, quantization_levels_scale
from lsr.data.sparse_jsonl import read_sparse_jsonl, write_sparse_jsonl
from lsr.index.sparse import SparseBatch, concat

logger = logging.getLogger(__name__)

# name -> (folder under the data root, query split or None for all queries, encoder)
REAL_COLLECTIONS = {
    "scifact": ("beir/scifact", "test", "bm25"),
    "dl-pool": ("msmarco/dl-pool", None, "bm25"),
    "scifact-splade": ("beir/scifact", "test", "splade"),
    "scifact-unicoil": ("beir/scifact", "test", "unicoil"),
    "dl-pool-splade": ("msmarco/dl-pool", None, "splade"),
}


@dataclass
class PreparedCollection:
    """The files systems read, the exact top-k of every query, and doc id -> position."""

    files: CollectionFiles
    truth: list[NDArray[np.int64]]
    doc_position: dict[str, int]
    query_ids: list[str]
    stats: dict[str, Any] = field(default_factory=dict)


def _stats(docs: SparseBatch, queries: SparseBatch, n_terms: int) -> dict[str, Any]:
    used = int(np.count_nonzero(np.bincount(docs.term_ids, minlength=n_terms)))
    return {
        "n_docs": len(docs),
        "nnz": docs.nnz,
        "doc_nnz_avg": docs.nnz / max(len(docs), 1),
        "n_terms": n_terms,
        "n_terms_used": used,
        "max_weight": float(docs.weights.max(initial=0.0)),
        "n_queries": len(queries),
        "query_nnz_avg": queries.nnz / max(len(queries), 1),
    }


def _finish(
    name: str,
    folder: Path,
    ids: list[str],
    batches: list[SparseBatch],
    vocab: list[str],
    queries: SparseBatch,
    query_ids: list[str],
    k: int,
    lucene_levels: int,
    extra: dict[str, Any],
) -> PreparedCollection:
    """Write Lucene's integer copy, compute the ground truth, describe the collection."""
    docs = batches[0] if len(batches) == 1 else concat(batches)
    stats = {**_stats(docs, queries, len(vocab)), **extra}
    scale = quantization_levels_scale(stats["max_weight"], lucene_levels)
    (folder / "lucene").mkdir(exist_ok=True)
    write_sparse_jsonl(
        folder / "lucene" / "docs.jsonl",
        ids,
        batches,
        vocab,
        decimals=0,
        scale=scale,
        fixed=True,
        overwrite=True,
    )
    start = time.perf_counter()
    truth = exact_topk(docs, queries, len(vocab), k)
    stats["ground_truth_seconds"] = round(time.perf_counter() - start, 3)
    stats["lucene_levels"] = lucene_levels
    files = CollectionFiles(
        name, folder / "docs.jsonl", folder / "queries.jsonl", folder / "lucene", scale, stats
    )
    return PreparedCollection(files, truth, {d: i for i, d in enumerate(ids)}, query_ids, stats)


def prepare_synthetic(
    folder: Path, n_docs: int, n_queries: int, seed: int, k: int, lucene_levels: int
) -> PreparedCollection:
    from benchmarks.synthetic import SyntheticConfig, generate, write_collection_jsonl

    coll = generate(SyntheticConfig(n_docs=n_docs, n_queries=n_queries, seed=seed))
    start = time.perf_counter()
    write_collection_jsonl(coll, folder)
    extra = {
        "generator": coll.config.describe(),
        "generate_seconds": round(coll.seconds, 3),
        "write_jsonl_seconds": round(time.perf_counter() - start, 3),
    }
    return _finish(
        "synthetic",
        folder,
        coll.doc_ids,
        coll.batches,
        coll.vocab,
        coll.queries,
        coll.query_ids,
        k,
        lucene_levels,
        extra,
    )


def prepare_bm25(
    name: str, folder: Path, data_root: Path, k: int, lucene_levels: int, n_queries: int | None = None
) -> PreparedCollection:
    """Encode a staged BEIR-format collection with BM25 into JSONL documents and queries."""
    from lsr.config import load_config
    from lsr.data.corpus import load_queries
    from lsr.encoders.bm25 import BM25QueryEncoder
    from lsr.pipeline import encode_corpus

    sub, split, _ = REAL_COLLECTIONS[name]
    source = data_root / sub
    config = load_config(None)
    start = time.perf_counter()
    encode_corpus(config, source, folder / "docs.jsonl", fmt="jsonl", overwrite=True)
    ids, docs, vocab = read_sparse_jsonl(folder / "docs.jsonl")
    texts = load_queries(source, split)
    qids = [q for q in texts if texts[q].strip()][:n_queries]
    queries = BM25QueryEncoder(config.encoder.bm25, vocab).encode([texts[q] for q in qids])
    keep = [i for i in range(len(qids)) if queries.row_nnz()[i] > 0]
    qids = [qids[i] for i in keep]
    queries = SparseBatch.from_rows(queries.row(i) for i in keep)
    vocab_list = list(vocab)
    write_sparse_jsonl(folder / "queries.jsonl", qids, [queries], vocab_list, 5, fixed=True, overwrite=True)
    _, queries, _ = read_sparse_jsonl(folder / "queries.jsonl", dict(vocab), grow_vocab=False)
    extra = {
        "encoder": "bm25",
        "bm25": {"k1": config.encoder.bm25.k1, "b": config.encoder.bm25.b},
        "source": str(source),
        "split": split,
        "encode_seconds": round(time.perf_counter() - start, 3),
    }
    return _finish(name, folder, ids, [docs], vocab_list, queries, qids, k, lucene_levels, extra)


def prepare_learned(
    name: str, folder: Path, data_root: Path, k: int, lucene_levels: int, n_queries: int | None = None
) -> PreparedCollection:
    """Encode a staged BEIR collection and its queries with its shipped learned model (splade or
    unicoil, :data:`REAL_COLLECTIONS`)."""
    from lsr.config import load_config
    from lsr.data.corpus import load_queries
    from lsr.encoders import encoder_overrides, load_query_encoder
    from lsr.pipeline import encode_corpus
    from lsr.vectors import Vectors

    sub, split, model = REAL_COLLECTIONS[name]
    source = data_root / sub
    config = load_config(None, encoder_overrides(model))
    start = time.perf_counter()
    meta = encode_corpus(config, source, folder / "vectors", overwrite=True)
    vectors = Vectors(folder / "vectors")
    full_vocab = vectors.vocab()
    write_sparse_jsonl(
        folder / "docs.jsonl", vectors.iter_ids(), vectors.batches(), full_vocab, overwrite=True
    )
    ids, docs, vocab = read_sparse_jsonl(folder / "docs.jsonl")
    texts = load_queries(source, split)
    qids = [q for q in texts if texts[q].strip()][:n_queries]
    encoder = load_query_encoder(meta["encoder"], {t: i for i, t in enumerate(full_vocab)})
    encoded = encoder.encode([texts[q] for q in qids])
    write_sparse_jsonl(folder / "queries.jsonl", qids, [encoded], full_vocab, overwrite=True)
    query_ids, queries, _ = read_sparse_jsonl(folder / "queries.jsonl", dict(vocab), grow_vocab=False)
    keep = [i for i in range(len(queries)) if queries.row_nnz()[i] > 0]
    queries = SparseBatch.from_rows(queries.row(i) for i in keep)
    query_ids = [query_ids[i] for i in keep]
    vocab_list = list(vocab)
    write_sparse_jsonl(folder / "queries.jsonl", query_ids, [queries], vocab_list, overwrite=True)
    extra = {
        "encoder": meta["encoder"].get("name"),
        "source": str(source),
        "split": split,
        "encode_seconds": round(time.perf_counter() - start, 3),
    }
    return _finish(name, folder, ids, [docs], vocab_list, queries, query_ids, k, lucene_levels, extra)


def prepare_real(
    name: str, folder: Path, data_root: Path, k: int, lucene_levels: int, n_queries: int | None = None
) -> PreparedCollection:
    """Prepare real collection ``name`` with its encoder: BM25 (:func:`prepare_bm25`) or a shipped
    learned model (:func:`prepare_learned`).

    Raises:
        ValueError: ``name`` is not in :data:`REAL_COLLECTIONS`.
    """
    if name not in REAL_COLLECTIONS:
        raise ValueError(f"unknown real collection {name!r} (known: {sorted(REAL_COLLECTIONS)})")
    prepare = prepare_bm25 if REAL_COLLECTIONS[name][2] == "bm25" else prepare_learned
    return prepare(name, folder, data_root, k, lucene_levels, n_queries)


_SAVED = "prepared.json"


def save_prepared(coll: PreparedCollection, folder: Path, key: dict[str, Any]) -> None:
    """Save what :func:`load_prepared` needs to skip preparation next time (same ``key``)."""
    lengths = np.array([len(t) for t in coll.truth], dtype=np.int64)
    flat = np.concatenate(coll.truth) if coll.truth else np.zeros(0, np.int64)
    np.savez(folder / "truth.npz", lengths=lengths, docs=flat)
    ids = sorted(coll.doc_position, key=coll.doc_position.__getitem__)
    (folder / "doc_ids.txt").write_text("\n".join(ids) + "\n", encoding="utf-8")
    meta = {"key": key, "files": coll.files.to_json(), "query_ids": coll.query_ids, "stats": coll.stats}
    (folder / _SAVED).write_text(json.dumps(meta), encoding="utf-8")


def load_prepared(folder: Path, key: dict[str, Any]) -> PreparedCollection | None:
    """The collection prepared earlier in ``folder`` with the same ``key``, or None."""
    path = folder / _SAVED
    if not path.is_file():
        return None
    meta = json.loads(path.read_text(encoding="utf-8"))
    if meta.get("key") != key:
        return None
    saved = np.load(folder / "truth.npz")
    truth = np.split(saved["docs"], np.cumsum(saved["lengths"])[:-1]) if len(saved["lengths"]) else []
    ids = (folder / "doc_ids.txt").read_text(encoding="utf-8").splitlines()
    logger.info("reusing the collection prepared in %s", folder)
    return PreparedCollection(
        CollectionFiles.from_json(meta["files"]),
        list(truth),
        {d: i for i, d in enumerate(ids)},
        meta["query_ids"],
        meta["stats"],
    )
