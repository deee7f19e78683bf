"""Sharded indexes: build N shard indexes from one encoded corpus, search them as one.

    lsr index --corpus C --encoder bm25 --shards 4 --out I        # by a stable hash of the doc id
    lsr index --vectors V --shards 4 --shard-by range --out I     # contiguous ranges of the corpus

The corpus is encoded once (BM25's impacts therefore come from the whole corpus's df and avgdl, the
statistics one index would use), then each document goes to one shard: ``hash`` puts it in shard
``blake2b(id) mod N`` (stable across runs, machines and Python versions), ``range`` cuts the corpus
order into N contiguous runs. Every shard keeps the whole vocabulary and the quantization scale of the
whole corpus, so its scores are the single index's; the layout and the exact merge are in
:mod:`lsr.index.shards`. :class:`ShardedSearcher` is the ordinary :class:`~lsr.searcher.Searcher`
over a :class:`~lsr.index.shards.ShardedIndex`, whose shards are searched here or, given backends,
elsewhere (``lsr.ray_serve``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lsr.config import Config
from lsr.data.docstore import DOCSTORE_FILE, DocStoreWriter
from lsr.errors import LsrError
from lsr.index import build_index
from lsr.index.builder import quantization_scale
from lsr.index.io import atomic_directory, write_json
from lsr.index.shards import (
    POSITIONS_FILE,
    SHARDED_FILE,
    SHARDED_FORMAT,
    SHARDED_FORMAT_VERSION,
    RemoteShard,
    Scatter,
    ShardedIndex,
    shard_dir_name,
)
from lsr.index.sparse import PTR_DTYPE, SparseBatch
from lsr.pipeline import Corpus, encode_then_build, index_build_options, index_sections
from lsr.searcher import Searcher
from lsr.vectors import Vectors

logger = logging.getLogger(__name__)

SPLITS = ("hash", "range")


class ShardedSearcher(Searcher):
    """A :class:`Searcher` over a sharded index directory: the query is encoded once, every shard
    searched (through ``backends`` when given, e.g. Ray Serve handles; else the shards here), and the
    per-shard top-k merged exactly."""

    def __init__(
        self, path: str | Path, backends: Sequence[RemoteShard] | None = None, scatter: Scatter | None = None
    ):
        super().__init__(ShardedIndex.open(path, backends, scatter=scatter))


def shard_assignment(ids: Sequence[str], n_shards: int, split: str) -> np.ndarray:
    """The shard of each document (int64[n]): ``hash`` = blake2b-64 of the id mod N, ``range`` =
    contiguous runs of the corpus order (sizes differ by at most one)."""
    if split == "range":
        return np.arange(len(ids), dtype=np.int64) * n_shards // max(len(ids), 1)
    if split != "hash":
        raise ValueError(f"shard split {split!r} is not one of {list(SPLITS)}")
    digests = (hashlib.blake2b(i.encode("utf-8"), digest_size=8).digest() for i in ids)
    h = np.fromiter((int.from_bytes(d, "little") for d in digests), dtype=np.uint64, count=len(ids))
    return (h % np.uint64(n_shards)).astype(np.int64)


def take_rows(batch: SparseBatch, rows: np.ndarray) -> SparseBatch:
    """The rows ``rows`` (ascending) of a CSR batch."""
    indptr = np.asarray(batch.indptr)
    starts, ends = indptr[rows], indptr[rows + 1]
    lengths = ends - starts
    out_ptr = np.zeros(len(rows) + 1, dtype=PTR_DTYPE)
    np.cumsum(lengths, out=out_ptr[1:])
    flat = np.repeat(starts - out_ptr[:-1], lengths) + np.arange(int(out_ptr[-1]), dtype=np.int64)
    return SparseBatch(out_ptr, np.asarray(batch.term_ids)[flat], np.asarray(batch.weights)[flat])


def index_corpus_sharded(
    config: Config,
    corpus: Corpus,
    out: str | Path,
    n_shards: int,
    split: str = "hash",
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Encode once, then build the shards (the vectors live in a hidden temporary directory)."""
    return encode_then_build(
        config,
        corpus,
        out,
        overwrite,
        progress,
        lambda vectors: build_sharded(config, vectors, out, n_shards, split, overwrite),
    )


def build_sharded(
    config: Config,
    vectors_path: str | Path,
    out: str | Path,
    n_shards: int,
    split: str = "hash",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Split a vectors directory into ``n_shards`` shard indexes under ``out`` plus ``sharded.json``;
    return the manifest.

    Raises:
        LsrError: fewer documents than shards, or a bad shard count.
    """
    vectors = Vectors(vectors_path)
    if split not in SPLITS:
        raise LsrError(f"--shard-by {split!r} is not one of {list(SPLITS)}")
    if isinstance(n_shards, bool) or not isinstance(n_shards, int) or not 1 <= n_shards <= 999:
        raise LsrError(f"--shards {n_shards!r} must be an integer in [1, 999]")
    if vectors.n_docs < n_shards:
        raise LsrError(f"{vectors.path} has {vectors.n_docs} documents, fewer than {n_shards} shards")
    start = time.perf_counter()
    ids = list(vectors.iter_ids())
    assign = shard_assignment(ids, n_shards, split)
    max_weight = max((float(b.weights.max()) for b in vectors.batches() if b.nnz), default=0.0)
    options = index_build_options(config)
    options = dataclasses.replace(options, scale=quantization_scale(max_weight, options.impact_dtype))
    build_id = uuid.uuid4().hex
    sections = index_sections(config, vectors)
    with atomic_directory(out, overwrite=overwrite) as tmp:
        work = tmp / ".work"
        stores = _split_docstore(vectors, assign, n_shards, work) if config.index.store_docs else None
        entries = []
        for s in range(n_shards):
            rows = np.flatnonzero(assign == s)
            extra = _shard_files(vectors, rows, work / str(s), stores[s] if stores else None)
            shard = {"build_id": build_id, "index": s, "of": n_shards, "split": split}
            meta = build_index(
                functools.partial(_shard_batches, vectors, rows),
                vectors.n_terms,
                [ids[i] for i in rows],
                vectors.vocab_path,
                tmp / shard_dir_name(s),
                options,
                sections={**sections, "shard": shard},
                extra_files=extra,
            )
            entries.append(
                {
                    "name": shard_dir_name(s),
                    "n_docs": meta["n_docs"],
                    "n_postings": meta["n_postings"],
                    "uid": meta["uid"],
                }
            )
        shutil.rmtree(work, ignore_errors=True)
        manifest = {
            "format": SHARDED_FORMAT,
            "format_version": SHARDED_FORMAT_VERSION,
            "build_id": build_id,
            "split": split,
            "n_shards": n_shards,
            "n_docs": vectors.n_docs,
            "encoder": sections.get("encoder"),
            "impacts": {"dtype": options.impact_dtype, "scale": options.scale},
            "build_seconds": round(time.perf_counter() - start, 3),
            "shards": entries,
        }
        write_json(tmp / SHARDED_FILE, manifest)
    logger.info("built %d shards of %d docs -> %s", n_shards, vectors.n_docs, out)
    return manifest


def _shard_batches(vectors: Vectors, rows: np.ndarray) -> Iterator[SparseBatch]:
    """The vectors of the documents ``rows`` (ascending corpus positions), vector shard by vector shard."""
    base = 0
    for batch in vectors.batches():
        lo, hi = np.searchsorted(rows, [base, base + len(batch)])
        if hi > lo:
            yield take_rows(batch, rows[lo:hi] - base)
        base += len(batch)


def _shard_files(vectors: Vectors, rows: np.ndarray, work: Path, store: Path | None) -> dict[str, Path]:
    """The files a shard index copies in: corpus positions, its docstore, the encoder's query files."""
    work.mkdir(parents=True, exist_ok=True)
    np.save(work / POSITIONS_FILE, rows.astype(np.int64), allow_pickle=False)
    files = {POSITIONS_FILE: work / POSITIONS_FILE}
    files.update({name: vectors.path / name for name in vectors.meta.get("files", [])})
    if store is not None:
        files.update(DocStoreWriter.files(store))
    return files


def _split_docstore(vectors: Vectors, assign: np.ndarray, n_shards: int, work: Path) -> list[Path] | None:
    """Each shard's docstore, written in one pass over the vectors' docstore (None without one)."""
    if not DocStoreWriter.files(vectors.path):
        return None
    dirs = [work / f"docs-{s}" for s in range(n_shards)]
    writers = []
    for d in dirs:
        d.mkdir(parents=True)
        writers.append(DocStoreWriter(d))
    with open(vectors.path / DOCSTORE_FILE, encoding="utf-8") as f:
        for row, line in enumerate(f):
            doc = json.loads(line)
            writers[assign[row]].add(doc["id"], doc["title"], doc["text"], doc.get("metadata"))
    for w in writers:
        w.close()
    return dirs
