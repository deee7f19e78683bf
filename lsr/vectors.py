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

The :class:`VectorWriter` is the only writer of encoded vectors: the encoders return
batches and the pipeline writes them here (and rewrites them, for BM25's impacts).

Resumable writes (``VectorWriter(..., resume_key=KEY)``, used by the transformer
encoders): the work happens in ``.NAME.partial`` beside ``out``, and after every
shard a ``progress.json`` records the complete shards, the doc count and the byte
length of ``ids.txt``. A crash keeps that folder; the next writer with the same key
drops whatever follows the last complete shard and carries on from there (the
encoder skips ``writer.n_docs`` documents). A different key discards the folder.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm.auto import tqdm

from lsr import __version__
from lsr.data.docstore import DocStoreWriter
from lsr.errors import DataFormatError
from lsr.index.io import ArtifactError, atomic_directory, publish_directory, read_meta, write_json, write_meta
from lsr.index.sparse import PTR_DTYPE, TERM_DTYPE, WEIGHT_DTYPE, SparseBatch

logger = logging.getLogger(__name__)

VECTORS_FORMAT = "lsr-vectors"
VECTORS_FORMAT_VERSION = 1
_PARTS = ("indptr", "term_ids", "weights")
PROGRESS_FILE = "progress.json"


def shard_name(i: int) -> str:
    return f"shard-{i:05d}"


def save_shard(directory: Path, name: str, batch: SparseBatch) -> None:
    for part in _PARTS:
        np.save(directory / f"{name}.{part}.npy", getattr(batch, part), allow_pickle=False)


def load_shard(directory: Path, name: str, mmap: bool = True) -> SparseBatch:
    mode: Literal["r"] | None = "r" if mmap else None
    try:
        arrays = [np.load(directory / f"{name}.{part}.npy", mmap_mode=mode) for part in _PARTS]
    except Exception as exc:  # numpy's header parser raises ValueError, SyntaxError, TokenError, ...
        raise ArtifactError(f"{directory}: shard {name} is missing or corrupt ({exc}); re-encode") from None
    return SparseBatch(*arrays)


class VectorWriter:
    """Write an encoded corpus shard by shard into a temporary directory, then publish it.

    Use as a context manager; nothing appears at ``out`` unless the block completes.
    With ``resume_key`` the temporary directory survives a crash and a later writer
    with the same key resumes it (see the module docstring); ``n_docs`` then starts
    at the number of documents already written.
    """

    def __init__(
        self,
        out: str | Path,
        shard_docs: int = 100_000,
        store_docs: bool = False,
        overwrite: bool = False,
        resume_key: str | None = None,
    ):
        self.out = Path(out)
        self.shard_docs = shard_docs
        self.store_docs = store_docs
        self.overwrite = overwrite
        self.resume_key = resume_key
        self.shards: list[dict[str, Any]] = []
        self.files: list[str] = []
        self.n_docs = 0
        self.n_empty = 0
        self.resumed_from = 0
        self.last_id: str | None = None
        self._ctx: AbstractContextManager[Path] | None = None
        self._docstore: DocStoreWriter | None = None
        self._rows: list[tuple[np.ndarray, np.ndarray]] = []

    def __enter__(self) -> VectorWriter:
        if self.resume_key is None:
            self._ctx = atomic_directory(self.out, overwrite=self.overwrite)
            self.dir = self._ctx.__enter__()
            self._ids = open(self.dir / "ids.txt", "w", encoding="utf-8")
            self._docstore = DocStoreWriter(self.dir) if self.store_docs else None
            return self
        if self.out.exists() and not self.overwrite:
            raise FileExistsError(f"{self.out} already exists; pass --overwrite to replace it")
        self._ctx = None
        self.dir = partial_dir(self.out)
        kept_docs = self._resume() if (self.dir / PROGRESS_FILE).is_file() else None
        if kept_docs is None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir.mkdir(parents=True)
        self._ids = open(self.dir / "ids.txt", "a", encoding="utf-8")
        if self.store_docs:
            store = _CheckpointDocStore(self.dir)
            if kept_docs is not None:
                store.restore(kept_docs, self.n_docs)
            self._docstore = store
        return self

    def __exit__(self, exc_type, exc, tb) -> bool | None:
        try:
            self._ids.close()
            if self._docstore is not None:
                self._docstore.close()
        except OSError as close_exc:  # e.g. the disk filled while flushing: clean up below, then raise
            if exc_type is None:
                exc_type, exc, tb = type(close_exc), close_exc, close_exc.__traceback__
        result = self._exit(exc_type, exc, tb)
        if exc is not None and exc_type is not None and not result and exc is not sys.exc_info()[1]:
            raise exc
        return result

    def _exit(self, exc_type, exc, tb) -> bool | None:
        if self._ctx is not None:
            return self._ctx.__exit__(exc_type, exc, tb)
        if exc_type is not None:
            if self.shards:
                logger.warning(
                    "encoding stopped after doc %d; the %d docs of complete shards are kept in "
                    "%s: run the same command again to resume (or delete that folder)",
                    self.n_docs,
                    sum(s["n_docs"] for s in self.shards),
                    self.dir,
                )
            else:
                shutil.rmtree(self.dir, ignore_errors=True)
            return None
        (self.dir / PROGRESS_FILE).unlink(missing_ok=True)
        publish_directory(self.dir, self.out)
        return None

    def _resume(self) -> Path | None:
        """Restore the state of the last complete shard; return the kept docstore (or None: start over)."""
        try:
            record = json.loads((self.dir / PROGRESS_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            record = {}
        if record.get("key") != self.resume_key or record.get("docstore") != self.store_docs:
            logger.warning("discarding %s: an interrupted encode of another corpus or config", self.dir)
            return None
        names = {s["name"] for s in record["shards"]}
        for path in self.dir.glob("shard-*.npy"):
            if path.name.split(".")[0] not in names:
                path.unlink()
        os.truncate(self.dir / "ids.txt", record["ids_bytes"])
        kept = self.dir / "docstore.resume.jsonl"
        if self.store_docs:
            os.replace(self.dir / "docstore.jsonl", kept)
        self.shards, self.n_docs, self.n_empty = record["shards"], record["n_docs"], record["n_empty"]
        self.resumed_from, self.last_id = self.n_docs, record["last_id"]
        logger.info(
            "resuming the interrupted encode in %s after doc %d (%d shards)",
            self.dir,
            self.n_docs,
            len(self.shards),
        )
        return kept

    def add(
        self,
        doc_id: str,
        term_ids: np.ndarray,
        weights: np.ndarray,
        title: str = "",
        text: str = "",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Append one document (term ids strictly ascending, weights > 0)."""
        self._ids.write(doc_id + "\n")
        if self._docstore is not None:
            self._docstore.add(doc_id, title, text, metadata)
        self._rows.append((term_ids, weights))
        self.n_docs += 1
        self.n_empty += len(term_ids) == 0
        self.last_id = doc_id
        if len(self._rows) >= self.shard_docs:
            self._flush()

    def add_file(self, name: str, data: bytes) -> None:
        """An extra file for the query side (a tokenizer, a weight table); it travels into the index."""
        if "/" in name or name in ("meta.json", "ids.txt", "vocab.json") or name.startswith(("shard-", ".")):
            raise ValueError(f"{name!r} is not a valid extra file name")
        (self.dir / name).write_bytes(data)
        if name not in self.files:
            self.files.append(name)

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
        if self.resume_key is not None:
            self._checkpoint()

    def _checkpoint(self) -> None:
        self._ids.flush()
        os.fsync(self._ids.fileno())
        if self._docstore is not None:
            self._docstore.flush()
        write_json(
            self.dir / PROGRESS_FILE,
            {
                "key": self.resume_key,
                "docstore": self.store_docs,
                "n_docs": self.n_docs,
                "n_empty": self.n_empty,
                "last_id": self.last_id,
                "shards": self.shards,
                "ids_bytes": self._ids.tell(),
            },
        )

    def batches(self) -> Iterator[SparseBatch]:
        """The rows written so far, shard by shard (pending rows are written as a shard first)."""
        self._flush()
        for shard in self.shards:
            yield load_shard(self.dir, shard["name"])

    def rewrite_shards(self, transform: Callable[[SparseBatch], SparseBatch], progress: bool = False) -> None:
        """Replace every shard by ``transform(shard)``: new weights, the same rows and terms.

        Raises:
            ValueError: a resumable writer (a crash would leave old and new weights mixed), or a
                transform that changes the rows or terms.
        """
        if self.resume_key is not None:
            raise ValueError("a resumable encode cannot rewrite its shards")
        self._flush()
        for shard in tqdm(self.shards, desc="rewrite", unit="shard", disable=not progress):
            old = load_shard(self.dir, shard["name"], mmap=False)
            new = transform(old)
            if not (np.array_equal(new.indptr, old.indptr) and np.array_equal(new.term_ids, old.term_ids)):
                raise ValueError(f"{shard['name']}: a shard rewrite must keep its rows and terms")
            save_shard(self.dir, shard["name"], new)

    def finish(self, vocab: Sequence[str], sections: dict[str, Any]) -> dict[str, Any]:
        """Write vocab and meta; call last, inside the ``with`` block."""
        self._flush()
        self._ids.close()
        if self._docstore is not None:  # closing writes its offsets: before the checksums
            self._docstore.close()
            self._docstore = None
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
            "empty_docs": self.n_empty,
            "shards": self.shards,
            "docstore": self.store_docs,
            **({"files": sorted(self.files)} if self.files else {}),
            **({"resumed_from_doc": self.resumed_from} if self.resumed_from else {}),
            **sections,
        }
        meta = write_meta(self.dir, meta, skip=(PROGRESS_FILE,))
        return meta


def partial_dir(out: Path) -> Path:
    """Where a resumable encode of ``out`` works (and what survives a crash)."""
    return out.parent / f".{out.name}.partial"


class _CheckpointDocStore(DocStoreWriter):
    """A docstore writer that can be refilled from a kept one (a resumed encode)."""

    def restore(self, kept: Path, n_docs: int) -> None:
        """Re-add the first ``n_docs`` documents of a kept docstore file, then delete it."""
        with open(kept, encoding="utf-8") as f:
            for _ in range(n_docs):
                doc = json.loads(f.readline())
                self.add(doc["id"], doc["title"], doc["text"])
        kept.unlink()


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


_FIELDS = {"n_docs": int, "n_terms": int, "shards": list}  # what Vectors relies on in meta.json


class Vectors:
    """A read-only encoded corpus directory."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.meta = read_meta(self.path, VECTORS_FORMAT, (VECTORS_FORMAT_VERSION,), _FIELDS)
        for shard in self.meta["shards"]:
            if not isinstance(shard, dict) or not isinstance(shard.get("name"), str) or "/" in shard["name"]:
                raise ArtifactError(
                    f"{self.path}/meta.json: shard entry {str(shard)[:80]} is corrupt; re-encode"
                )
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
