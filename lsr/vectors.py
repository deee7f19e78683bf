"""Encoded corpora on disk: sharded CSR ``.npy`` files with ids, vocabulary and meta.

Layout (format ``lsr-vectors`` version 1):
    meta.json                       counts, shards, encoder section, resolved config
    shard-00000.indptr.npy          int64[n + 1]
    shard-00000.term_ids.npy        int32[nnz]
    shard-00000.weights.npy         float32[nnz]
    ids.txt                         external doc id per line, in doc order
    vocab.json                      term string by term id
    docstore.jsonl (+ offsets)      optional: titles and texts, for display

The sparse-vector JSONL ``{"id", "vector": {term: weight}}`` (pyserini's
JsonVectorCollection, Seismic) is for import and export only.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lsr import __version__
from lsr.data.docstore import DocStoreWriter
from lsr.errors import DataFormatError
from lsr.index.io import ArtifactError, atomic_directory, read_meta, write_meta
from lsr.index.sparse import PTR_DTYPE, TERM_DTYPE, WEIGHT_DTYPE, SparseBatch

logger = logging.getLogger(__name__)

VECTORS_FORMAT = "lsr-vectors"
VECTORS_FORMAT_VERSION = 1
_PARTS = ("indptr", "term_ids", "weights")


def shard_name(i: int) -> str:
    return f"shard-{i:05d}"


def save_shard(directory: Path, name: str, batch: SparseBatch) -> None:
    for part in _PARTS:
        np.save(directory / f"{name}.{part}.npy", getattr(batch, part), allow_pickle=False)


def load_shard(directory: Path, name: str, mmap: bool = True) -> SparseBatch:
    mode = "r" if mmap else None
    try:
        arrays = [np.load(directory / f"{name}.{part}.npy", mmap_mode=mode) for part in _PARTS]
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{directory}: shard {name} is missing or corrupt ({exc}); re-encode") from None
    return SparseBatch(*arrays)


class VectorWriter:
    """Write an encoded corpus shard by shard into a temporary directory, then publish it.

    Use as a context manager; nothing appears at ``out`` unless the block completes.
    """

    def __init__(self, out: str | Path, shard_docs: int = 100_000, store_docs: bool = False,
                 overwrite: bool = False):
        self.out = Path(out)
        self.shard_docs = shard_docs
        self.store_docs = store_docs
        self.overwrite = overwrite
        self.shards: list[dict[str, Any]] = []
        self.n_docs = 0
        self._rows: list[tuple[np.ndarray, np.ndarray]] = []

    def __enter__(self) -> VectorWriter:
        self._ctx = atomic_directory(self.out, overwrite=self.overwrite)
        self.dir = self._ctx.__enter__()
        self._ids = open(self.dir / "ids.txt", "w", encoding="utf-8")
        self._docstore = DocStoreWriter(self.dir) if self.store_docs else None
        return self

    def __exit__(self, exc_type, exc, tb) -> bool | None:
        self._ids.close()
        if self._docstore is not None:
            self._docstore.close()
        return self._ctx.__exit__(exc_type, exc, tb)

    def add(self, doc_id: str, term_ids: np.ndarray, weights: np.ndarray, title: str = "",
            text: str = "") -> None:
        """Append one document (term ids strictly ascending, weights > 0)."""
        self._ids.write(doc_id + "\n")
        if self._docstore is not None:
            self._docstore.add(doc_id, title, text)
        self._rows.append((term_ids, weights))
        self.n_docs += 1
        if len(self._rows) >= self.shard_docs:
            self._flush()

    def _flush(self) -> None:
        if not self._rows:
            return
        lengths = np.fromiter((len(t) for t, _ in self._rows), dtype=PTR_DTYPE, count=len(self._rows))
        indptr = np.zeros(len(self._rows) + 1, dtype=PTR_DTYPE)
        np.cumsum(lengths, out=indptr[1:])
        batch = SparseBatch(
            indptr,
            np.concatenate([t for t, _ in self._rows]).astype(TERM_DTYPE, copy=False),
            np.concatenate([w for _, w in self._rows]).astype(WEIGHT_DTYPE, copy=False),
        )
        name = shard_name(len(self.shards))
        save_shard(self.dir, name, batch)
        self.shards.append({"name": name, "n_docs": len(batch), "nnz": batch.nnz})
        self._rows = []

    def iter_shards(self) -> Iterator[tuple[str, SparseBatch]]:
        """The shards written so far (for encoders that rewrite weights in a second pass)."""
        self._flush()
        for shard in self.shards:
            yield shard["name"], load_shard(self.dir, shard["name"], mmap=False)

    def replace_shard(self, name: str, batch: SparseBatch) -> None:
        save_shard(self.dir, name, batch)

    def finish(self, vocab: Sequence[str], sections: dict[str, Any]) -> dict[str, Any]:
        """Write vocab and meta; call last, inside the ``with`` block."""
        self._flush()
        self._ids.close()
        check_unique_ids(self.dir / "ids.txt")
        (self.dir / "vocab.json").write_text(json.dumps(list(vocab), ensure_ascii=False), encoding="utf-8")
        nnz = sum(s["nnz"] for s in self.shards)
        meta = {
            "format": VECTORS_FORMAT,
            "format_version": VECTORS_FORMAT_VERSION,
            "lsr_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "n_docs": self.n_docs,
            "n_terms": len(vocab),
            "nnz": nnz,
            "doc_nnz_avg": nnz / max(self.n_docs, 1),
            "shards": self.shards,
            "docstore": self.store_docs,
            **sections,
        }
        write_meta(self.dir, meta)
        return meta


def check_unique_ids(ids_path: Path) -> None:
    """Refuse duplicate doc ids, naming them; memory is 8 bytes per id, not a set of strings."""
    with open(ids_path, encoding="utf-8") as f:
        hashes = np.fromiter(
            (int.from_bytes(hashlib.blake2b(line.encode(), digest_size=8).digest(), "little") for line in f),
            dtype=np.uint64,
        )
    if len(hashes) == len(np.unique(hashes)):
        return
    values, counts = np.unique(hashes, return_counts=True)
    suspects = set(values[counts > 1].tolist())
    seen: dict[str, int] = {}
    dups: list[str] = []
    with open(ids_path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            h = int.from_bytes(hashlib.blake2b(line.encode(), digest_size=8).digest(), "little")
            doc_id = line.rstrip("\n")
            if h in suspects:
                if doc_id in seen:
                    dups.append(f"{doc_id!r} (docs {seen[doc_id]} and {line_no})")
                seen.setdefault(doc_id, line_no)
    if dups:
        more = f" and {len(dups) - 5} more" if len(dups) > 5 else ""
        raise DataFormatError(f"duplicate doc ids: {', '.join(dups[:5])}{more}")


class Vectors:
    """A read-only encoded corpus directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.meta = read_meta(self.path, VECTORS_FORMAT, (VECTORS_FORMAT_VERSION,))
        self.n_docs: int = self.meta["n_docs"]
        self.n_terms: int = self.meta["n_terms"]

    def batches(self) -> Iterator[SparseBatch]:
        for shard in self.meta["shards"]:
            yield load_shard(self.path, shard["name"])

    @property
    def ids_path(self) -> Path:
        return self.path / "ids.txt"

    @property
    def vocab_path(self) -> Path:
        return self.path / "vocab.json"

    def vocab(self) -> list[str]:
        return json.loads(self.vocab_path.read_text(encoding="utf-8"))

    def iter_ids(self) -> Iterator[str]:
        with open(self.ids_path, encoding="utf-8") as f:
            for line in f:
                yield line.rstrip("\n")
