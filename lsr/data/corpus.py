"""Corpora and queries from BEIR folders, JSONL/TSV files and ``ir_datasets`` ids.

A corpus is streamed: :func:`open_corpus` returns a re-iterable object whose
``__iter__`` reads the source again, so a two-pass encoder (BM25 needs
document frequencies first) never holds the corpus in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsr.data.jsonl import iter_jsonl, iter_lines, require_str
from lsr.errors import DataFormatError

if TYPE_CHECKING:
    from lsr.data.formats import CorpusSource, Fields

logger = logging.getLogger(__name__)

CORPUS_NAMES = ("corpus.jsonl", "corpus.jsonl.gz")
QUERY_NAMES = ("queries.jsonl", "queries.jsonl.gz")


@dataclass(frozen=True)
class Doc:
    """One document: external id, title (may be empty) and body text."""

    id: str
    title: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def contents(self) -> str:
        """Title and text joined, the "flat" BEIR convention (Anserini, bm25s)."""
        return f"{self.title} {self.text}" if self.title else self.text


@dataclass(frozen=True)
class Query:
    id: str
    text: str


def check_id(doc_id: str, where: str) -> str:
    """Reject ids that a TREC run (whitespace separated) or ids.txt could not hold."""
    if not doc_id or any(c.isspace() for c in doc_id):
        raise DataFormatError(f"{where}: id {doc_id!r} is empty or contains whitespace")
    return doc_id


def find_file(folder: Path, names: Iterable[str]) -> Path | None:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


def require_corpus_file(folder: Path) -> Path:
    """The ``corpus.jsonl[.gz]`` of ``folder``; FileNotFoundError naming the folder when it has none."""
    found = find_file(folder, CORPUS_NAMES)
    if found is None:
        raise FileNotFoundError(f"{folder} has no {' or '.join(CORPUS_NAMES)}")
    return found


class JsonlCorpus:
    """A BEIR-style ``corpus.jsonl[.gz]``: ``{"_id"|"id", "title", "text"|"contents"}`` per line, or the
    fields ``fields`` names (:class:`lsr.data.formats.Fields`); ``name`` labels errors (``<stdin>``)."""

    def __init__(self, path: Path, fields: Fields | None = None, name: str | None = None):
        self.path = path
        self.fields = fields
        self.name = name or str(path)
        self.file: Path | None = path if name is None else None  # what a resumable encode keys on

    def __iter__(self) -> Iterator[Doc]:
        if self.fields is not None and not self.fields.default:
            yield from self._with_fields(self.fields)
            return
        for line_no, obj in iter_jsonl(self.path, self.name):
            where = f"{self.name}:{line_no}"
            id_key = "_id" if "_id" in obj else "id"
            doc_id = check_id(require_str(obj, id_key, where), where)
            text_key = "contents" if "contents" in obj and "text" not in obj else "text"
            text = require_str(obj, text_key, where)
            title = obj.get("title")
            if title is None:
                title = ""
            elif not isinstance(title, str):
                raise DataFormatError(f"{where}: field 'title' must be a string")
            metadata = obj.get("metadata") or {}
            if not isinstance(metadata, dict):
                raise DataFormatError(f"{where}: field 'metadata' must be an object")
            yield Doc(doc_id, title, text, metadata)

    def _with_fields(self, fields: Fields) -> Iterator[Doc]:
        from lsr.data.formats import Columns

        for line_no, obj in iter_jsonl(self.path, self.name):
            where = f"{self.name}:{line_no}"
            yield Columns(list(obj), fields, where).doc(obj, where)


def open_corpus(spec: str | Path | CorpusSource | Iterable[Doc]) -> Iterable[Doc]:
    """Open a corpus: a path in any shape :mod:`lsr.data.formats` reads (a BEIR folder, JSONL, CSV, TSV,
    Parquet, a folder of text files, a Hugging Face ``save_to_disk`` folder; ``-``: JSONL on stdin), a
    :class:`~lsr.data.formats.CorpusSource` (shape and field names given), an ``ir_datasets`` id, or a
    corpus already open (returned as it is).

    Raises:
        FileNotFoundError: a BEIR folder without ``corpus.jsonl[.gz]``.
        DataFormatError: a file or folder in no readable shape (the message lists the shapes).
        DatasetUnavailableError: not a local path and not loadable with ``ir_datasets``.
    """
    from lsr.data.formats import CorpusSource

    if not isinstance(spec, (str, Path, CorpusSource)):
        return spec
    source = spec if isinstance(spec, CorpusSource) else CorpusSource(str(spec))
    path = Path(source.spec)
    if source.spec == "-" or path.exists():
        from lsr.data.formats import open_source

        return open_source(source)
    if source.format != "auto":
        raise FileNotFoundError(f"corpus {source.spec} not found")
    from lsr.data.irds import IrdsDataset

    return IrdsDataset(source.spec).corpus()


def corpus_file(corpus: object) -> Path | None:
    """The one local file an open corpus reads (what a resumable encode keys on), else None."""
    return getattr(corpus, "file", None)


def _iter_query_file(path: Path) -> Iterator[Query]:
    if path.name.endswith((".tsv", ".tsv.gz", ".txt")):
        for line_no, line in enumerate(iter_lines(path), start=1):
            if not line.strip():
                continue
            parts = line.rstrip("\r\n").split("\t", 1)
            if len(parts) != 2:
                raise DataFormatError(f"{path}:{line_no}: expected 'query_id<TAB>text'")
            yield Query(check_id(parts[0], f"{path}:{line_no}"), parts[1])
        return
    for line_no, obj in iter_jsonl(path):
        where = f"{path}:{line_no}"
        id_key = "_id" if "_id" in obj else "id"
        yield Query(check_id(require_str(obj, id_key, where), where), require_str(obj, "text", where))


def load_queries(spec: str | Path, split: str | None = None) -> dict[str, str]:
    """Load queries as an ordered ``{query_id: text}`` dict.

    Args:
        spec: a BEIR folder, a queries file (``.jsonl[.gz]`` or ``id<TAB>text``
            ``.tsv``), or an ``ir_datasets`` id.
        split: for a BEIR folder, keep only the queries judged in
            ``qrels/<split>.tsv`` (BEIR's queries file holds every split).
    """
    path = Path(spec)
    if path.is_dir():
        found = find_file(path, QUERY_NAMES)
        if found is None:
            raise FileNotFoundError(f"{path} has no {' or '.join(QUERY_NAMES)}")
        queries = _collect_queries(_iter_query_file(found), found)
        if split is None:
            return queries
        from lsr.data.trec import read_qrels

        judged = read_qrels(qrels_path(path, split))
        return {qid: text for qid, text in queries.items() if qid in judged}
    if split is not None:
        raise ValueError(f"a split ({split!r}) applies to a BEIR folder only, not to {str(spec)!r}")
    if path.is_file():
        return _collect_queries(_iter_query_file(path), path)
    from lsr.data.irds import IrdsDataset

    return IrdsDataset(str(spec)).queries()


def _collect_queries(queries: Iterable[Query], source: Path | str) -> dict[str, str]:
    out: dict[str, str] = {}
    for q in queries:
        if q.id in out:
            raise DataFormatError(f"{source}: duplicate query id {q.id!r}")
        out[q.id] = q.text
    return out


def qrels_path(folder: Path, split: str) -> Path:
    """``folder/qrels/<split>.tsv``, with an error that lists the splits that exist."""
    path = folder / "qrels" / f"{split}.tsv"
    if not path.is_file():
        have = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
        raise FileNotFoundError(f"no qrels for split {split!r} in {folder} (available: {have})")
    return path
