"""Corpus shapes: JSONL (a file, a BEIR folder, or stdin), CSV/TSV, Parquet, a folder of text files, a
Hugging Face ``save_to_disk`` folder, and documents already in memory.

Every shape streams :class:`~lsr.data.corpus.Doc` records and can be read twice (the inference-free
statistics pass reads the corpus texts again; stdin is spooled to a temporary file for that). The
shape is detected from the suffix or the folder's contents (:func:`detect_format`) unless given
(``--corpus-format``). Column or field names default to ``_id``/``id``/``docid``, ``title`` and
``text``/``contents``/``body``; :class:`Fields` names others (``--id-field``, ``--title-field``,
``--text-field``, several text fields joined by a space). Errors name the file and the line or row.
"""

from __future__ import annotations

import atexit
import csv
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsr.data.corpus import CORPUS_NAMES, Doc, JsonlCorpus, check_id, find_file
from lsr.data.jsonl import decoded_lines, open_binary
from lsr.errors import DataFormatError

FORMATS = ("auto", "beir", "jsonl", "csv", "tsv", "parquet", "txt", "hf")
SHAPES = (
    "a BEIR folder (corpus.jsonl[.gz]), JSONL (.jsonl[.gz], or '-' for stdin), CSV or TSV with a header "
    "row, Parquet, a folder of .txt/.md files, a Hugging Face save_to_disk folder, or an ir_datasets id"
)
ID_NAMES = ("_id", "id", "docid", "doc_id")
TEXT_NAMES = ("text", "contents", "body")
TEXT_SUFFIXES = (".txt", ".md")
_SUFFIXES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


@dataclass(frozen=True)
class Fields:
    """Which record fields (columns) hold the id, the title and the text.

    ``None`` / empty: the first present of :data:`ID_NAMES`, ``title`` if present, the first present of
    :data:`TEXT_NAMES`. Several text fields are joined by a space.
    """

    id: str | None = None
    title: str | None = None
    text: tuple[str, ...] = ()

    @classmethod
    def parse(cls, id_field: str | None, title_field: str | None, text_fields: str | None) -> Fields:
        """From the CLI flags: ``--text-field a,b`` names two text fields."""
        text = tuple(t.strip() for t in text_fields.split(",") if t.strip()) if text_fields else ()
        return cls(id_field or None, title_field or None, text)

    @property
    def default(self) -> bool:
        return self.id is None and self.title is None and not self.text


@dataclass(frozen=True)
class CorpusSource:
    """A corpus as the user named it: a path (``-``: stdin) or ``ir_datasets`` id, the shape, the fields."""

    spec: str
    format: str = "auto"
    fields: Fields = field(default_factory=Fields)

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"corpus format {self.format!r} is not one of {list(FORMATS)}")

    def __str__(self) -> str:
        return self.spec


class Columns:
    """The resolved id, title and text columns of one file, and the mapping of a record to a Doc."""

    def __init__(self, names: Sequence[str], fields: Fields, source: str):
        have = set(names)
        self.id = _pick(fields.id, ID_NAMES, have, "id", source, names)
        self.title = fields.title if fields.title is not None else ("title" if "title" in have else None)
        if self.title is not None and self.title not in have:
            raise DataFormatError(f"{source}: no title field {self.title!r} (fields: {list(names)})")
        if fields.text:
            missing = [t for t in fields.text if t not in have]
            if missing:
                raise DataFormatError(f"{source}: no text field {missing[0]!r} (fields: {list(names)})")
            self.text: tuple[str, ...] = fields.text
        else:
            self.text = (_pick(None, TEXT_NAMES, have, "text", source, names),)

    def doc(self, record: Mapping[str, Any], where: str) -> Doc:
        doc_id = record.get(self.id)
        if isinstance(doc_id, (int, float)) and not isinstance(doc_id, bool):
            doc_id = str(doc_id)
        if not isinstance(doc_id, str):
            raise DataFormatError(f"{where}: id field {self.id!r} must be a string, got {doc_id!r}")
        title = _text(record, self.title, where) if self.title else ""
        text = " ".join(t for t in (_text(record, name, where) for name in self.text) if t)
        return Doc(check_id(doc_id, where), title, text)


def _pick(
    given: str | None, candidates: Sequence[str], have: set[str], what: str, source: str, names: Sequence[str]
) -> str:
    if given is not None:
        if given not in have:
            raise DataFormatError(f"{source}: no {what} field {given!r} (fields: {list(names)})")
        return given
    for name in candidates:
        if name in have:
            return name
    flag = "--id-field" if what == "id" else "--text-field"
    raise DataFormatError(
        f"{source}: no {what} field: expected one of {list(candidates)} (fields: {list(names)}); "
        f"name it with {flag}"
    )


def _text(record: Mapping[str, Any], name: str, where: str) -> str:
    value = record.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataFormatError(f"{where}: field {name!r} must be a string, got {type(value).__name__}")
    return value


class TableCorpus:
    """A CSV or TSV file whose header row names the columns."""

    def __init__(self, path: Path, delimiter: str, fields: Fields):
        self.path, self.delimiter, self.fields = path, delimiter, fields
        self.name = str(path)
        self.file: Path | None = path

    def __iter__(self) -> Iterator[Doc]:
        csv.field_size_limit(sys.maxsize)
        with open_binary(self.path) as f:  # decoded line by line: a bad byte is named by its line
            reader = csv.DictReader(decoded_lines(f, self.path), delimiter=self.delimiter)
            try:
                names = reader.fieldnames
                if not names:
                    raise DataFormatError(f"{self.path}: empty file, expected a header row naming columns")
                columns = Columns(names, self.fields, f"{self.path} (header)")
                for row in reader:
                    where = f"{self.path}:{reader.line_num}"
                    if None in row or None in row.values():
                        raise DataFormatError(
                            f"{where}: the row has another number of fields than the header ({len(names)})"
                        )
                    yield columns.doc(row, where)
            except csv.Error as exc:
                where = f"{self.path}:{reader.line_num}"
                raise DataFormatError(f"{where}: malformed {self._kind} ({exc})") from None

    @property
    def _kind(self) -> str:
        return "TSV" if self.delimiter == "\t" else "CSV"


def _pyarrow() -> Any:
    try:
        import pyarrow  # the formats extra: Parquet and Hugging Face folders
        import pyarrow.ipc
        import pyarrow.parquet
    except ImportError:
        raise DataFormatError(
            "reading Parquet or a Hugging Face datasets folder needs the pyarrow package: "
            'pip install pyarrow (or pip install -e ".[formats]")'
        ) from None
    return pyarrow


class ArrowCorpus:
    """Record batches from Parquet files or Arrow IPC stream files (a Hugging Face ``save_to_disk``
    folder), rows numbered from 1 across the files."""

    def __init__(self, files: list[Path], kind: str, fields: Fields, name: str):
        self.files, self.kind, self.fields, self.name = files, kind, fields, name
        self.file: Path | None = files[0] if len(files) == 1 else None

    def _batches(self, path: Path) -> Iterator[Any]:
        pa = _pyarrow()
        try:
            if self.kind == "parquet":
                yield from pa.parquet.ParquetFile(path).iter_batches(batch_size=4096)
                return
            with pa.memory_map(str(path)) as source:
                yield from pa.ipc.open_stream(source)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataFormatError(f"{path}: not a readable {self.kind} file ({exc})") from None

    def __iter__(self) -> Iterator[Doc]:
        columns: Columns | None = None
        for path in self.files:
            row = 0
            for batch in self._batches(path):
                if columns is None:
                    columns = Columns(batch.schema.names, self.fields, str(path))
                for record in batch.to_pylist():
                    row += 1
                    yield columns.doc(record, f"{path}: row {row}")


class TextFolderCorpus:
    """A folder of ``.txt`` / ``.md`` files (searched recursively): one document per file, the id its
    path relative to the folder without the suffix, the text its content, no title."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.name = str(folder)
        self.file: Path | None = None
        self.paths = sorted(p for p in folder.rglob("*") if p.suffix in TEXT_SUFFIXES and p.is_file())
        if not self.paths:
            raise DataFormatError(f"{folder}: no .txt or .md files; a corpus is {SHAPES}")

    def __iter__(self) -> Iterator[Doc]:
        for path in self.paths:
            doc_id = path.relative_to(self.folder).with_suffix("").as_posix()
            try:
                text = path.read_text(encoding="utf-8-sig")
            except UnicodeDecodeError as exc:
                raise DataFormatError(f"{path}: not valid UTF-8 ({exc.reason})") from None
            yield Doc(check_id(doc_id, str(path)), "", text)


def hf_arrow_files(folder: Path) -> list[Path]:
    """The Arrow files of a ``save_to_disk`` folder (a Dataset's ``state.json``; a DatasetDict's split
    named ``corpus``, or its only split)."""
    if (folder / "dataset_dict.json").is_file():
        splits = json.loads((folder / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", [])
        if "corpus" in splits or len(splits) == 1:
            return hf_arrow_files(folder / ("corpus" if "corpus" in splits else splits[0]))
        raise DataFormatError(
            f"{folder}: a dataset dict with splits {splits}; give one split's folder, e.g. "
            f"{folder / splits[0]}"
        )
    state_path = folder / "state.json"
    if not state_path.is_file():
        raise DataFormatError(f"{folder}: not a Hugging Face save_to_disk folder (no state.json)")
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
        files = [folder / f["filename"] for f in state["_data_files"]]
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise DataFormatError(f"{state_path}: not a datasets state file ({exc})") from None
    missing = [str(f) for f in files if not f.is_file()]
    if missing or not files:
        raise DataFormatError(f"{folder}: state.json lists missing Arrow files {missing}")
    return files


class InMemoryCorpus:
    """Documents held in memory (the Python API): dicts, ``(id, text)`` / ``(id, title, text)`` pairs,
    :class:`Doc` records or plain strings (ids ``"0"``, ``"1"``, ...)."""

    def __init__(self, docs: Iterable[Any], fields: Fields = Fields(), name: str = "<memory>"):
        self.name = name
        self.file: Path | None = None
        self.docs = [self._doc(i, d, fields) for i, d in enumerate(docs)]
        seen: set[str] = set()
        for doc in self.docs:
            if doc.id in seen:
                raise DataFormatError(f"{name}: duplicate document id {doc.id!r}")
            seen.add(doc.id)

    def _doc(self, i: int, item: Any, fields: Fields) -> Doc:
        where = f"{self.name}: document {i}"
        if isinstance(item, Doc):
            return item
        if isinstance(item, str):
            return Doc(str(i), "", item)
        if isinstance(item, Mapping):
            return Columns(list(item), fields, where).doc(item, where)
        if isinstance(item, (tuple, list)) and len(item) in (2, 3) and _strings(item[1:]):
            doc_id = str(item[0])
            return Doc(check_id(doc_id, where), *(item[1:] if len(item) == 3 else ("", item[1])))
        raise DataFormatError(
            f"{where}: expected a dict, an (id, text) or (id, title, text) tuple, or a string, "
            f"got {type(item).__name__}"
        )

    def __iter__(self) -> Iterator[Doc]:
        return iter(self.docs)

    def __len__(self) -> int:
        return len(self.docs)


def _strings(values: Sequence[Any]) -> bool:
    return all(isinstance(v, str) for v in values)


def spool_stdin() -> Path:
    """Copy stdin to a temporary file (removed at exit), so the corpus can be read twice."""
    fd, name = tempfile.mkstemp(prefix="lsr-stdin-", suffix=".jsonl")
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(sys.stdin.buffer, out)
    atexit.register(lambda: Path(name).unlink(missing_ok=True))
    return Path(name)


def _suffix(path: Path) -> str:
    """The suffix that names the shape (``.gz`` skipped), lower case."""
    suffixes = [s for s in path.suffixes if s != ".gz"]
    return suffixes[-1].lower() if suffixes else ""


class _Hinted:
    """A corpus whose read errors add a hint (a shape that was guessed, not detected)."""

    def __init__(self, corpus: JsonlCorpus, hint: str):
        self.corpus, self.hint = corpus, hint
        self.name, self.file = corpus.name, corpus.file

    def __iter__(self) -> Iterator[Doc]:
        try:
            yield from self.corpus
        except DataFormatError as exc:
            raise DataFormatError(f"{exc}; {self.hint}, or name one with --corpus-format") from None


def detect_format(path: Path) -> str:
    """The shape of an existing ``path``: by suffix for a file (JSONL when unknown), by contents for a
    folder.

    Raises:
        FileNotFoundError: a folder in none of the shapes (the message lists them).
    """
    if path.is_file():
        return _SUFFIXES.get(_suffix(path), "jsonl")
    if find_file(path, CORPUS_NAMES) is not None:
        return "beir"
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        return "hf"
    if any(path.rglob("*.parquet")):  # e.g. a Hugging Face hub dataset snapshot
        return "parquet"
    if any(p.suffix in TEXT_SUFFIXES for p in path.rglob("*")):
        return "txt"
    raise FileNotFoundError(f"{path}: a folder with no corpus in it; a corpus is {SHAPES}")


def open_source(source: CorpusSource) -> Iterable[Doc]:
    """Open a local corpus (a path that exists, or ``-`` for stdin) in its shape.

    Raises:
        DataFormatError: a shape that does not fit the path (a folder for CSV, stdin not JSONL).
        FileNotFoundError: a folder with no corpus in it.
    """
    path = Path(source.spec)
    fmt = source.format
    if source.spec == "-":
        fmt = "jsonl" if fmt == "auto" else fmt
        if fmt != "jsonl":
            raise DataFormatError(f"a corpus on stdin must be JSONL, not {fmt}")
        return JsonlCorpus(spool_stdin(), source.fields, name="<stdin>")
    guessed = fmt == "auto" and path.is_file() and _suffix(path) not in _SUFFIXES
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt in ("beir", "jsonl"):
        from lsr.data.corpus import require_corpus_file

        corpus = JsonlCorpus(require_corpus_file(path) if path.is_dir() else path, source.fields)
        return (
            _Hinted(corpus, f"read as JSONL (suffix {path.suffix!r}); a corpus is {SHAPES}")
            if guessed
            else corpus
        )
    if fmt in ("csv", "tsv"):
        return TableCorpus(_file(path, fmt), "\t" if fmt == "tsv" else ",", source.fields)
    if fmt == "parquet":
        files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
        return ArrowCorpus(files, "parquet", source.fields, str(path))
    if fmt == "hf":
        return ArrowCorpus(hf_arrow_files(path), "arrow", source.fields, str(path))
    if not path.is_dir():
        raise DataFormatError(f"{path}: corpus format txt needs a folder of .txt/.md files")
    return TextFolderCorpus(path)


def _file(path: Path, fmt: str) -> Path:
    if not path.is_file():
        raise DataFormatError(f"{path}: corpus format {fmt} needs a file")
    return path
