"""A random-access document store: ``docstore.jsonl`` plus ``docstore.offsets.npy``.

Line i holds ``{"id", "title", "text"}`` (and ``metadata`` when the document has any) of internal
doc i; ``offsets[i]`` is its byte offset (int64[n_docs + 1]). Used to print titles and serve
documents.
"""

from __future__ import annotations

import json
import mmap
import os
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from lsr.index.io import CorruptArtifactError

DOCSTORE_FILE = "docstore.jsonl"
OFFSETS_FILE = "docstore.offsets.npy"
ORDER_FILE = "doc_order.npy"  # written by the index builder when it reorders documents
STRING_FIELDS = frozenset({"id", "title", "text"})  # a record's fields that are always strings
HEAD_FIELDS = frozenset({"id", "title"})  # the fields written before the text (``DocStore._head``)
TEXT_KEY = b', "text": '

try:  # orjson (the bench extra) parses a record about twice as fast as json (hits read ten a request)
    import orjson

    _fast_loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    _fast_loads = json.loads


class DocStoreWriter:
    def __init__(self, directory: Path):
        self.directory = directory
        self._f = open(directory / DOCSTORE_FILE, "wb")
        self._offsets = [0]

    def add(self, doc_id: str, title: str, text: str, metadata: dict[str, Any] | None = None) -> None:
        record: dict[str, Any] = {"id": doc_id, "title": title, "text": text}
        if metadata:
            record["metadata"] = metadata
        line = json.dumps(record, ensure_ascii=False) + "\n"
        data = line.encode("utf-8")
        self._f.write(data)
        self._offsets.append(self._offsets[-1] + len(data))

    def flush(self) -> None:
        """Make what was added so far durable (an encode checkpoint)."""
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()
        np.save(self.directory / OFFSETS_FILE, np.asarray(self._offsets, dtype=np.int64))

    @staticmethod
    def files(directory: Path) -> dict[str, Path]:
        """The docstore files in ``directory`` (empty if it has none)."""
        paths = {name: directory / name for name in (DOCSTORE_FILE, OFFSETS_FILE)}
        return paths if all(p.is_file() for p in paths.values()) else {}


def _load(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # numpy's header parser raises ValueError, SyntaxError, TokenError, ...
        raise CorruptArtifactError(
            path, f"is not a readable .npy file ({type(exc).__name__}: {exc})"
        ) from None


class DocStore:
    """Documents by internal id. In a reordered index, ``doc_order.npy`` maps internal id i to the
    docstore line ``doc_order[i]`` (the docstore keeps the input order)."""

    def __init__(self, directory: str | Path):
        directory = Path(directory)
        self.offsets = _load(directory / OFFSETS_FILE)
        order = directory / ORDER_FILE
        self.order = _load(order) if order.is_file() else None
        self.path = directory / DOCSTORE_FILE
        self._check(directory)

    def _check(self, directory: Path) -> None:
        """Offsets from 0, non-decreasing, ending at the file's size; the order a permutation."""
        off = np.asarray(self.offsets)
        size = self.path.stat().st_size
        if off.ndim != 1 or len(off) == 0 or off[0] != 0 or off[-1] != size or (np.diff(off) < 0).any():
            raise CorruptArtifactError(directory / OFFSETS_FILE, f"does not index {self.path.name}")
        if self.order is not None and (
            len(self.order) != len(off) - 1
            or not np.array_equal(np.sort(self.order), np.arange(len(self.order)))
        ):
            raise CorruptArtifactError(directory / ORDER_FILE, "is not a permutation of the documents")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def get(self, i: int) -> dict[str, Any]:
        return json.loads(self._line(i))

    def strings(self, i: int, fields: Sequence[str]) -> dict[str, Any]:
        """``{field: value or ""}`` of doc ``i`` for ``fields``: as from :meth:`get`, parsed by orjson
        when installed and every field is one of :data:`STRING_FIELDS` (strings read the same; a
        number might not: orjson reads a huge integer as a float), else (or where orjson refuses the
        record: a NaN in its metadata) by json. Only ids and titles: the record's head alone is
        parsed (:meth:`_head`), not its text."""
        if HEAD_FIELDS.issuperset(fields):
            head = self._head(i)
            if head is not None:
                return {f: head[f] for f in fields}
        line = self._line(i)
        try:
            doc = _fast_loads(line) if STRING_FIELDS.issuperset(fields) else json.loads(line)
        except ValueError:  # orjson refuses what json reads: NaN, Infinity in the metadata
            doc = json.loads(line)
        return {f: doc.get(f, "") for f in fields}

    def _line(self, i: int) -> bytes:
        start, end = self._span(i)
        return self._data[start:end]

    def _span(self, i: int) -> tuple[int, int]:
        """Doc ``i``'s line: its byte range in the file."""
        if not 0 <= i < len(self):
            raise IndexError(f"doc {i} is out of range [0, {len(self)})")
        row = int(self.order[i]) if self.order is not None else i
        start, end = self._bounds[row : row + 2].tolist()
        return start, end

    def _head(self, i: int) -> dict[str, Any] | None:
        """``{"id", "title"}`` of doc ``i`` from the bytes before its text (a hit list needs no more of
        a record that may be long), or None where the line is not laid out as the writer lays it out.
        The writer puts ``"id"``, ``"title"``, ``"text"`` first, in that order; inside a JSON string a
        quote is always escaped, so the first ``, "text": `` of the line ends the title."""
        start, end = self._span(i)
        cut = self._data.find(TEXT_KEY, start, end)
        if cut < 0:
            return None
        try:
            head = _fast_loads(self._data[start:cut] + b"}")
        except ValueError:
            return None
        return head if isinstance(head, dict) and head.keys() == HEAD_FIELDS else None

    @cached_property
    def _bounds(self) -> np.ndarray:
        """The offsets as a plain array over the same memory (a memmap's indexing costs more)."""
        return self.offsets.view(np.ndarray)

    @cached_property
    def _data(self) -> mmap.mmap | bytes:
        """The docstore file, mapped once (a service reads titles for every hit of every request)."""
        with open(self.path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:  # mmap refuses an empty file
                return b""
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
