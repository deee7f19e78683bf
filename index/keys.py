"""The external ids of an index's documents, as :attr:`lsr.index.search.Index.doc_keys` holds them."""

from __future__ import annotations

import operator
from array import array
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from typing import Any, overload

import numpy as np
from numba import njit
from numpy.typing import NDArray


class KeySequence(Sequence[str]):
    """What :class:`DocKeys` and :class:`ChainedKeys` share: they read as a list of strings would
    (``len``, indexes, negative ones too, slices as lists, iteration, ``==`` against any sequence of
    strings, unhashable); a subclass sets ``_n`` and gives :meth:`_key` of a position in range."""

    _n: int

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self._key(j) for j in range(*i.indices(self._n))]
        j = operator.index(i)
        j = j + self._n if j < 0 else j
        if not 0 <= j < self._n:
            raise IndexError(f"doc {i} out of range for {self._n} docs")
        return self._key(j)

    def _key(self, j: int) -> str:
        raise NotImplementedError

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return len(other) == len(self) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable-sequence semantics: unhashable, as a list

    def __repr__(self) -> str:
        head = ", ".join(repr(k) for k in self[:3])
        return f"{type(self).__name__}([{head}{', ...' if len(self) > 3 else ''}], n={len(self)})"


class DocKeys(KeySequence):
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

    def __getitem__(self, i: int | slice) -> str | list[str]:  # type: ignore[override]
        if type(i) is int and 0 <= i < self._n:  # the common case (a hit's id), first
            starts = self._starts
            return self._data[starts[i] : starts[i + 1] - 1].decode("utf-8")
        return super().__getitem__(i)

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
        return super().__eq__(other)

    __hash__ = None  # defining __eq__ drops the inherited one; stated, as the base does

    @property
    def nbytes(self) -> int:
        """Bytes held: the file's and the offsets'."""
        return len(self._data) + self._starts.itemsize * len(self._starts)

    def hashes(self) -> NDArray[np.uint64]:
        """:func:`key_hash` of every id, in order (one pass of a compiled loop over the bytes)."""
        starts = np.frombuffer(self._starts, np.int64 if self._starts.typecode == "q" else np.uint32)
        starts = starts.astype(np.int64)
        return fnv1a_spans(np.frombuffer(self._data, np.uint8), starts[:-1], starts[1:] - 1)


class ChainedKeys(KeySequence):
    """Several id sequences (the segments of a live index, the shards of a sharded one) read as one,
    without a Python object per document: the parts' first positions in an ``array`` and a bisection to
    the part. Reads as a list of strings would, as :class:`DocKeys` does."""

    def __init__(self, parts: Sequence[Sequence[str]]):
        self._parts = list(parts)
        firsts = np.concatenate([[0], np.cumsum([len(p) for p in self._parts], dtype=np.int64)])
        self._firsts = array("q", firsts.astype(np.int64).tobytes())  # one per part, and the total
        self._n = int(firsts[-1])

    def _key(self, j: int) -> str:
        part = bisect_right(self._firsts, j) - 1
        return self._parts[part][j - self._firsts[part]]

    def __iter__(self) -> Iterator[str]:
        for part in self._parts:
            yield from part

    def hashes(self) -> NDArray[np.uint64]:
        """:func:`key_hash` of every id, in order."""
        return np.concatenate([np.empty(0, np.uint64), *(key_hashes(p) for p in self._parts)])


class KeyPositions:
    """The position of each id in an id sequence, as ``{key: i for i, key in enumerate(keys)}`` would
    answer (an id that occurs more than once maps to its last position: in a live index the newest copy
    of a re-added document), without a dict: the ids' 64-bit :func:`key_hash` sorted (8 bytes a
    document) with their positions (4 or 8 bytes). A lookup hashes the id, bisects, and compares the ids
    of the equal hashes with ``keys`` (so a collision costs a comparison, never a wrong answer)."""

    def __init__(self, keys: Sequence[str]):
        hashes = key_hashes(keys)
        order = np.argsort(hashes, kind="stable")  # equal hashes keep ascending positions
        self._keys = keys
        self._hashes = hashes[order]
        self._positions = order.astype(np.int32 if len(keys) < 2**31 else np.int64)

    def __len__(self) -> int:
        return len(self._positions)

    def get(self, key: Any, default: Any = None) -> Any:
        pos = int(self.find([key])[0])
        return default if pos < 0 else pos

    def find(self, keys: Sequence[Any]) -> NDArray[np.int64]:
        """The position of each of ``keys`` (-1: not there, or not a string), hashed in one pass."""
        wanted = [k if isinstance(k, str) else "" for k in keys]
        hashes = key_hashes(wanted)
        firsts = np.searchsorted(self._hashes, hashes, "left").tolist()
        ends = np.searchsorted(self._hashes, hashes, "right").tolist()
        out = np.full(len(wanted), -1, np.int64)
        for i, (a, b) in enumerate(zip(firsts, ends, strict=True)):
            if a < b and isinstance(keys[i], str):
                for pos in self._positions[a:b].tolist():  # equal hashes: compare the ids
                    if self._keys[pos] == wanted[i]:
                        out[i] = pos  # the last equal id wins
        return out

    def __getitem__(self, key: str) -> int:
        pos = self.get(key)
        if pos is None:
            raise KeyError(key)
        return int(pos)

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None

    @property
    def nbytes(self) -> int:
        return self._hashes.nbytes + self._positions.nbytes


_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3


def key_hash(data: bytes) -> int:
    """64-bit FNV-1a of ``data``: the same in every process (unlike ``hash``), the slow reference of
    :func:`_fnv1a_all`."""
    h = _FNV_OFFSET
    for b in data:
        h = ((h ^ b) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return h


def key_hashes(keys: Sequence[str]) -> NDArray[np.uint64]:
    """:func:`key_hash` of each id's UTF-8 bytes, in order."""
    own = getattr(keys, "hashes", None)
    if own is not None:
        return np.asarray(own(), dtype=np.uint64)
    encoded = [k.encode("utf-8") for k in keys]
    lengths = np.fromiter(map(len, encoded), np.int64, len(encoded))
    ends = np.cumsum(lengths)
    return fnv1a_spans(np.frombuffer(b"".join(encoded), np.uint8), ends - lengths, ends)


def fnv1a_spans(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> NDArray[np.uint64]:
    """:func:`_fnv1a_all`; its multiplications wrap modulo 2^64, which numpy warns of where the kernel
    runs as plain Python (``NUMBA_DISABLE_JIT=1``)."""
    with np.errstate(over="ignore"):
        return _fnv1a_all(data, starts, ends)


@njit(cache=True, nogil=True)
def _fnv1a_all(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """FNV-1a of each ``data[starts[i]:ends[i]]``."""
    out = np.empty(len(starts), np.uint64)
    for i in range(len(starts)):
        h = np.uint64(_FNV_OFFSET)
        for j in range(starts[i], ends[i]):
            h = (h ^ np.uint64(data[j])) * np.uint64(_FNV_PRIME)
        out[i] = h
    return out
