"""A live index from Python and the CLI: add, update, delete and merge documents without a rebuild.

    live = LiveIndex("indexes/scifact")
    live.add_corpus("new-docs.jsonl")          # encoded with the index's own encoder (its meta)
    live.add_vectors({"d9": {"cat": 1.2}})     # pre-encoded: term -> weight
    live.delete(["d3"])
    live.merge()                               # one segment, deleted docs gone
    live.info()                                # segments, live / deleted docs, sizes, encoder

Each call takes the index's write lock, commits one generation and releases the lock (a second
writer gets :class:`lsr.errors.IndexLockedError`); searches go through :class:`lsr.searcher.Searcher`
(which opens the latest committed generation). The on-disk format and the writer live in
:mod:`lsr.index.manifest`, :mod:`lsr.index.writer`, :mod:`lsr.index.segments`.

BM25 and collection statistics: an added segment's impacts use the collection statistics at the
time of the add (df and N summed over every segment with deleted docs still counted, as Lucene
does until a merge, plus the new documents; the total length each segment recorded). Earlier
segments keep their impacts, so BM25 scores drift as the collection grows; a full merge re-encodes
the surviving documents from the docstores with a fresh encoder, so that after it BM25 results
equal a rebuild from those documents. Learned encoders' impacts are per document: a merge copies
them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lsr.config import Config, from_dict
from lsr.data.corpus import Doc
from lsr.errors import (
    DataFormatError,
    IndexLockedError,
    LsrError,
    VocabularyMismatchError,
    disk_full_as_error,
)
from lsr.index import SparseBatch
from lsr.index.docstore import DocStore, DocStoreWriter
from lsr.index.fields import FieldError
from lsr.index.io import directory_bytes
from lsr.index.manifest import WriteLockError
from lsr.index.segments import SegmentedIndex, open_index, segment_summary
from lsr.index.sparse import concat
from lsr.index.writer import Docs, IndexWriter, MergePolicy, VocabularyError, WriteResult

logger = logging.getLogger(__name__)

GROWING_VOCABULARIES = ("bm25", "external")  # encoders whose vocabulary grows with the corpus


def grows_vocabulary(encoder: Mapping[str, Any]) -> bool:
    """Whether an index's vocabulary grows with its documents, from its ``encoder`` meta section: BM25's
    terms, pre-encoded vectors' terms, a uniCOIL's word terms (``terms: words``, lsr.encoders.words)."""
    return encoder.get("name", "external") in GROWING_VOCABULARIES or encoder.get("terms") == "words"


class LiveIndex:
    """Write operations on an index directory (a plain index becomes live on its first write)."""

    def __init__(self, path: str | Path, policy: MergePolicy | None = None):
        self.path = Path(path)
        self.policy = policy or MergePolicy()

    @contextlib.contextmanager
    def writer(self) -> Iterator[IndexWriter]:
        """The index's writer, its lock held for the block; index-level errors become lsr errors."""
        try:
            with disk_full_as_error(self.path), IndexWriter(self.path, self.policy) as w:
                yield w
        except WriteLockError as exc:
            raise IndexLockedError(str(exc)) from None
        except VocabularyError as exc:
            raise VocabularyMismatchError(str(exc)) from None
        except FieldError as exc:
            raise DataFormatError(str(exc)) from None

    # --- reading ----------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Generation, segments (docs, deleted, bytes), live and deleted docs, bytes, encoder."""
        index = open_index(self.path)
        try:
            segments = segment_summary(index) if isinstance(index, SegmentedIndex) else None
            n_deleted = sum(s["n_deleted"] for s in segments) if segments else 0
            return {
                "path": str(self.path),
                "generation": index.generation if isinstance(index, SegmentedIndex) else 0,
                "segments": segments or [{"name": ".", "n_docs": index.n_docs, "n_deleted": 0}],
                "n_docs": index.n_docs - n_deleted,
                "n_deleted": n_deleted,
                "n_terms": index.n_terms,
                "bytes": directory_bytes(self.path),
                "encoder": index.meta.get("encoder", {}).get("name", "unknown"),
            }
        finally:
            if isinstance(index, SegmentedIndex):
                index.close()

    # --- writing ----------------------------------------------------------------------------------

    def add_vectors(
        self, vectors: Mapping[str, Mapping[str, float]], docs: Mapping[str, tuple[str, str]] | None = None
    ) -> WriteResult:
        """Add (or update) pre-encoded documents ``{id: {term: weight}}``; ``docs``: ``{id: (title,
        text)}`` for the docstore. New terms are refused for a fixed (transformer) vocabulary."""
        with self.writer() as w:
            section = w.sections().get("encoder", {})
            encoder = section.get("name", "external")
            _refuse_plus(self.path, encoder)
            if encoder == "bm25":
                raise LsrError(
                    f"{self.path} is a BM25 index: its impacts need the collection statistics, so it takes "
                    "documents as text (add_corpus, lsr add --corpus), not pre-encoded vectors"
                )
            vocab = list(w.vocab)
            ids = list(vectors)
            grow = grows_vocabulary(section)
            batch = _vectors_batch(vectors, vocab, grow)
            stored = None if docs is None else Docs([docs[i][0] for i in ids], [docs[i][1] for i in ids])
            result = w.add(batch, ids, vocab, stored, grow_vocab=grow)
            w.maybe_merge()
            return result

    def add_corpus(self, corpus: str | Path, progress: bool = False) -> WriteResult:
        """Encode a corpus (BEIR folder, JSONL) with the index's own encoder and add it."""
        return self._add(lambda: _open_corpus(corpus), str(corpus), progress)

    def add_documents(self, docs: Sequence[Doc], progress: bool = False) -> WriteResult:
        """Encode documents with the index's own encoder (rebuilt from its meta) and add them; an
        existing id is an update.

        Raises:
            DataFormatError: a document with no text.
            LsrError: an index of pre-encoded vectors (it has no encoder to rebuild).
        """
        return self._add(lambda: list(docs), "the documents", progress)

    def _add(self, load: Callable[[], list[Doc]], where: str, progress: bool) -> WriteResult:
        with self.writer() as w:
            config = index_config(w)  # before reading the documents: an index without an encoder fails fast
            _refuse_plus(self.path, config.encoder.name)
            docs = _nonempty(load(), where)
            tmp = self.path / f".add-{uuid.uuid4().hex[:8]}"
            try:
                batch, ids, vocab, stored, stats = _encode_for(w, config, docs, tmp, progress)
                grow = grows_vocabulary(w.sections().get("encoder", {}))
                result = w.add(batch, ids, vocab, stored, grow_vocab=grow, stats=stats)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            w.maybe_merge()
            return result

    def delete(self, ids: Sequence[str]) -> WriteResult:
        """Delete documents by id; unknown ids are reported in the result and change nothing."""
        with self.writer() as w:
            result = w.delete(ids)
            if result.deleted:
                w.maybe_merge()
            return result

    def merge(self, progress: bool = False) -> WriteResult:
        """Merge every segment into one without deleted docs (BM25: re-encoded from the docstores, so
        that the result equals a rebuild from the surviving documents)."""
        with self.writer() as w:
            if w.sections().get("encoder", {}).get("name") == "bm25":
                return _bm25_full_merge(w, progress)
            return w.merge()


def index_config(w: IndexWriter) -> Config:
    """The resolved config an index was built with (its meta), for encoding added documents."""
    section = w.sections().get("config")
    name = w.sections().get("encoder", {}).get("name")
    if not isinstance(section, dict) or name in (None, "external"):
        raise LsrError(
            f"{w.path} was built from pre-encoded vectors (no encoder to rebuild): add pre-encoded "
            "vectors (LiveIndex.add_vectors, lsr add --vectors) instead of a corpus"
        )
    return from_dict(Config, section, "")


def _vectors_batch(vectors: Mapping[str, Mapping[str, float]], vocab: list[str], grow: bool) -> SparseBatch:
    """Rows over ``vocab`` (extended in place with new terms when ``grow``).

    Raises:
        VocabularyMismatchError: a term outside a fixed vocabulary.
        DataFormatError: a weight that is not a finite number > 0.
    """
    index = {t: i for i, t in enumerate(vocab)}
    rows = []
    for key, vector in vectors.items():
        unknown = [t for t in vector if t not in index]
        if unknown and not grow:
            raise VocabularyMismatchError(
                f"document {key!r} has term(s) {unknown[:3]} outside the index's fixed vocabulary: vectors "
                "from another vocabulary (another encoder?)"
            )
        for t in unknown:
            index[t] = len(vocab)
            vocab.append(t)
        weights = [float(w) for w in vector.values()]
        if not weights:
            raise DataFormatError(f"document {key!r} has an empty vector: nothing to index")
        if not all(np.isfinite(w) and w > 0 for w in weights):
            raise DataFormatError(f"document {key!r}: weights must be finite numbers > 0")
        rows.append(([index[t] for t in vector], weights))
    return SparseBatch.from_rows(rows)


def _encode_for(
    w: IndexWriter, config: Config, docs: list[Doc], tmp: Path, progress: bool
) -> tuple[SparseBatch, list[str], list[str], Docs | None, dict[str, Any]]:
    """Encode ``docs`` into ``tmp`` with the index's encoder; (batch, ids, vocab, docs, stats)."""
    from lsr.encode import encode_documents
    from lsr.encoders import make_encoder
    from lsr.vectors import Vectors, VectorWriter

    encoder = make_encoder(config.encoder)
    section = w.sections().get("encoder", {})
    _check_terms(w.path, section, encoder.describe())
    if grows_vocabulary(section):
        encoder.seed_vocab(w.vocab)  # type: ignore[attr-defined]
    stats: dict[str, Any] = {}
    with VectorWriter(tmp, config.encoder.shard_docs, store_docs=True, overwrite=True) as writer:
        encode_documents(encoder, docs, writer, progress)
        if config.encoder.name == "bm25":
            stats = _bm25_reweight(w, encoder, writer, progress)
        writer.finish(encoder.vocab, {})
    vectors = Vectors(tmp)
    batch = concat(list(vectors.batches()))
    ids = list(vectors.iter_ids())
    return batch, ids, list(encoder.vocab), _read_docs(tmp, len(ids)), stats


def _check_terms(path: Path, index: Mapping[str, Any], encoder: Mapping[str, Any]) -> None:
    """Refuse to add documents encoded with other terms or weights than the index's: a uniCOIL model
    folder whose ``lsr_terms.json`` appeared, went or changed its analyzer or tf section, a SPLADE one
    whose ``lsr_doc.json`` tf section did, since the index was built."""
    was = (index.get("terms"), index.get("analyzer"))
    now = (encoder.get("terms"), encoder.get("analyzer"))
    if index.get("tf") != encoder.get("tf"):
        raise LsrError(
            f"{path}: its documents were encoded with tf saturation {index.get('tf')}, the model at "
            f"{encoder.get('model')} now saturates with {encoder.get('tf')} (lsr_terms.json or "
            "lsr_doc.json changed?); put the model folder back as it was, or rebuild the index"
        )
    if was != now:
        raise LsrError(
            f"{path}: its documents have terms {was[0] or 'of the model vocabulary'} (analyzer "
            f"{was[1]}), the model at {encoder.get('model')} now writes {now[0] or 'its vocabulary'} "
            f"(analyzer {now[1]}; lsr_terms.json changed?); put the model folder back as it was, or "
            "rebuild the index"
        )


def _refuse_plus(path: Path, encoder: str) -> None:
    """Adds to a ``bm25+MODEL`` index are not implemented (its BM25 part would need the collection
    statistics split from the model's columns); deletes and merges work as for any index."""
    if encoder.startswith("bm25+"):
        raise LsrError(
            f"{path} is a {encoder} index: adding documents to it is not supported yet; rebuild it with "
            "lsr index --overwrite (deletes and merges work)"
        )


def _open_corpus(corpus: str | Path) -> list[Doc]:
    from lsr.data.corpus import open_corpus

    return list(open_corpus(corpus))


def _nonempty(docs: list[Doc], where: str) -> list[Doc]:
    """``docs``; a document with no text at all is refused (nothing to index)."""
    empty = [d.id for d in docs if not d.contents.strip()]
    if empty:
        raise DataFormatError(
            f"{len(empty)} document(s) in {where} have no text (e.g. {empty[:3]}): nothing to index; "
            "give them a title or text, or leave them out"
        )
    return docs


def _read_docs(directory: Path, n: int) -> Docs | None:
    if not DocStoreWriter.files(directory):
        return None
    store = DocStore(directory)
    rows = [store.get(i) for i in range(n)]
    metadata = [r.get("metadata") or {} for r in rows]
    return Docs([r.get("title", "") for r in rows], [r.get("text", "") for r in rows], metadata)


def _bm25_reweight(w: IndexWriter, encoder: Any, writer: Any, progress: bool) -> dict[str, Any]:
    """Rewrite the new term frequencies as BM25 impacts with the collection's statistics (the live
    index's, deleted docs included, plus the new docs'); return the new segment's own statistics."""
    from lsr.encoders import CorpusStats

    new = encoder.statistics(writer.batches())
    n_terms = len(new.df)
    df = np.zeros(n_terms, np.int64)
    n_docs = total_len = 0
    for seg, entry in zip(w.segments, w.manifest.segments, strict=True):
        df[: seg.n_terms] += np.diff(np.asarray(seg.term_ptr))
        n_docs += seg.n_docs - int(seg.meta.get("stats", {}).get("empty_docs", 0))
        total_len += _segment_total_len(w, seg, entry)
    combined = CorpusStats(n_docs + new.n_docs, df + new.df, total_len + new.total_len)
    done = encoder.finish(combined)
    writer.rewrite_shards(done.reweight, progress)
    return {"total_len": int(new.total_len), "bm25_n_docs": int(combined.n_docs)}


def _segment_total_len(w: IndexWriter, seg: Any, entry: Any) -> int:
    """A segment's summed document length: recorded when the live index wrote it; for the plain index
    it started from, counted once from its docstore (and recorded with the next commit)."""
    if "total_len" in entry.stats:
        return int(entry.stats["total_len"])
    if not DocStoreWriter.files(seg.path):
        raise LsrError(
            f"{w.path}: BM25 documents can be added only to an index with a docstore (index.store_docs), "
            "which gives the collection statistics; rebuild it with the docstore"
        )
    from lsr.encoders.bm25 import make_analyzer

    cfg = index_config(w).encoder.bm25
    analyzer = make_analyzer(cfg)
    store = DocStore(seg.path)
    total = 0
    for i in range(seg.n_docs):
        doc = store.get(i)
        text = f"{doc['title']} {doc['text']}" if doc.get("title") else doc.get("text", "")
        total += len(analyzer(text))
    entry.stats["total_len"] = total
    return total


def _bm25_full_merge(w: IndexWriter, progress: bool) -> WriteResult:
    """Every segment into one, re-encoded from the docstores with a fresh BM25 encoder."""
    from lsr.pipeline import index_corpus

    config = index_config(w)
    names = [e.name for e in w.manifest.segments]
    with tempfile.TemporaryDirectory(dir=w.path, prefix=".merge-") as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        n = _write_surviving(w, corpus)
        entry = w.write_segment(lambda out: index_corpus(config, corpus, out, progress=progress), {})
    result = w.replace(0, len(w.segments), entry, names)
    logger.info("BM25 full merge: %d documents re-encoded into one segment", n)
    return result


def _write_surviving(w: IndexWriter, out: Path) -> int:
    """The live documents, segment by segment in internal id order, as BEIR corpus JSONL."""
    n = 0
    with open(out, "w", encoding="utf-8") as f:
        for seg, deleted in zip(w.segments, w.deleted, strict=True):
            if not DocStoreWriter.files(seg.path):
                raise LsrError(f"{seg.path} has no docstore: a BM25 merge re-encodes the documents' texts")
            store = DocStore(seg.path)
            for local in np.flatnonzero(~deleted).tolist():
                doc = store.get(local)
                record = {"_id": doc["id"], "title": doc["title"], "text": doc["text"]}
                if doc.get("metadata"):
                    record["metadata"] = doc["metadata"]
                f.write(json.dumps(record) + "\n")
                n += 1
    return n


def read_ids(path: str | Path) -> list[str]:
    """Doc ids to delete: one per line (blank lines skipped), or a JSON list."""
    text = Path(path).read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        ids = json.loads(text)
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise DataFormatError(f"{path}: a JSON ids file must hold a list of strings")
        return ids
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_sparse_vectors(path: str | Path) -> tuple[dict[str, dict[str, float]], dict[str, tuple[str, str]]]:
    """Pre-encoded documents from sparse-vector JSONL (``{"id", "vector", "contents"?}``)."""
    from lsr.data.sparse_jsonl import iter_sparse_jsonl

    vectors: dict[str, dict[str, float]] = {}
    docs: dict[str, tuple[str, str]] = {}
    for doc_id, vector, contents in iter_sparse_jsonl(path):
        vectors[doc_id] = dict(vector)
        docs[doc_id] = ("", contents or "")
    return vectors, docs
