"""The external ids of an index's documents, as :attr:`lsr.index.search.Index.doc_keys` holds them."""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from typing import Any, overload

import numpy as np


class DocKeys(Sequence[str]):
    """``ids.txt`` (one id a line, UTF-8) kept as its bytes and one offset a line, each id decoded when
    read: about 13 bytes a document in memory instead of a list of strings (about 60-80 bytes an id),
    which for a memory-mapped index was most of the memory a warm search holds outside the mapped files
    (benchmarks/memory_bench.py). Reads as a list of strings would: ``len``, indexes (negative ones
    too), slices (lists), iteration, ``==`` against any sequence of strings.

    Raises:
        UnicodeDecodeError: ``data`` is not UTF-8.
    """

    def __init__(self, data: bytes):
        data.decode("utf-8")  # raises on bad bytes; the str is dropped
        self._data = data if not data or data.endswith(b"\n") else data + b"\n"  # a last line unended
        ends = np.flatnonzero(np.frombuffer(self._data, np.uint8) == ord("\n"))
        wide = len(self._data) >= 2**32
        starts = np.concatenate([[0], ends + 1]).astype(np.int64 if wide else np.uint32)
        # an array.array: indexing it gives a Python int at once (a hit's id costs ~0.5 us, not ~2)
        self._starts = array("q" if wide else "I", starts.tobytes())
        self._n = len(starts) - 1

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: int | slice) -> str | list[str]:
        if type(i) is int and 0 <= i < self._n:  # the common case (a hit's id), first
            starts = self._starts
            return self._data[starts[i] : starts[i + 1] - 1].decode("utf-8")
        if isinstance(i, slice):
            return [self._key(j) for j in range(*i.indices(len(self)))]
        n = len(self)
        j = int(i) + n if i < 0 else int(i)
        if not 0 <= j < n:
            raise IndexError(f"doc {i} out of range for {n} docs")
        return self._key(j)

    def _key(self, j: int) -> str:
        starts = self._starts
        return self._data[starts[j] : starts[j + 1] - 1].decode("utf-8")

    def __iter__(self) -> Iterator[str]:
        starts = self._starts
        data = self._data
        for a, b in zip(starts[:-1], starts[1:], strict=True):
            yield data[a : b - 1].decode("utf-8")

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, DocKeys):
            return self._data == other._data
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable-sequence semantics: unhashable, as a list

    def __repr__(self) -> str:
        head = ", ".join(repr(k) for k in self[:3])
        return f"DocKeys([{head}{', ...' if len(self) > 3 else ''}], n={len(self)})"

    @property
    def nbytes(self) -> int:
        """Bytes held: the file's and the offsets'."""
        return len(self._data) + self._starts.itemsize * len(self._starts)
