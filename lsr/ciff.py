"""CIFF, the Common Index File Format (Lin et al., SIGIR 2020), that PISA, Anserini and JASS exchange
indexes in: written from an lsr index and read into one, with the protobuf wire format coded here (no
protobuf dependency).

A CIFF file is a sequence of varint-length-delimited protobuf messages: one ``Header``, then
``num_postings_lists`` ``PostingsList`` messages (term, df, cf, postings of gap-encoded docids and tfs),
then ``num_docs`` ``DocRecord`` messages (docid, collection docid, length). For learned sparse indexes
the tf is the integer impact.

Writing (:func:`write_ciff`, behind ``lsr export --to ciff|bmp``) encodes the postings with a numba
kernel and the list heads and doc records as numpy varints (joined by a numba kernel), a chunk at a
time; the bytes are those of the
message-by-message Python writer it replaced (``benchmarks/export_bench.py`` keeps that one as the
reference, and times both). Reading (:func:`read_ciff`, ``lsr index --ciff``) is two numba passes over
the file's bytes (count, then fill); a malformed file is named with what is wrong and at which byte.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from lsr.errors import DataFormatError

# field numbers of ciff.proto (io.osirrc.ciff)
HEADER = {"version": 1, "num_postings_lists": 2, "num_docs": 3, "total_postings_lists": 4, "total_docs": 5}
HEADER_TERMS, HEADER_AVG_LENGTH, HEADER_DESCRIPTION = 6, 7, 8
INT32_MAX = 2**31 - 1


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _int_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value) if value else b""  # proto3 leaves zeros out


def _bytes_field(number: int, data: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _delimited(message: bytes) -> bytes:
    return _varint(len(message)) + message


@dataclass
class CiffHeader:
    num_postings_lists: int
    num_docs: int
    total_terms: int
    average_doclength: float
    description: str = ""
    version: int = 1

    def encode(self) -> bytes:
        values = {
            "version": self.version,
            "num_postings_lists": self.num_postings_lists,
            "num_docs": self.num_docs,
            "total_postings_lists": self.num_postings_lists,
            "total_docs": self.num_docs,
        }
        body = b"".join(_int_field(HEADER[name], value) for name, value in values.items())
        body += _int_field(HEADER_TERMS, self.total_terms)
        body += _varint(HEADER_AVG_LENGTH << 3 | 1) + struct.pack("<d", self.average_doclength)
        return body + (
            _bytes_field(HEADER_DESCRIPTION, self.description.encode()) if self.description else b""
        )


# --- vectorized writing: postings by a numba kernel; list heads and doc records with numpy, every message
# of a kind at once, as "pieces" (a flat uint8 array and n + 1 row offsets)

Piece = tuple[np.ndarray, np.ndarray]
_CHUNK_POSTINGS = 10_000_000  # postings encoded at once (at most 14 bytes each)
_CHUNK_DOCS = 1_000_000


def _varints(values: np.ndarray, present: np.ndarray | None = None) -> Piece:
    """Each value's varint (``values`` >= 0, < 2^63); an empty row where ``present`` is false."""
    v = np.asarray(values).astype(np.uint64)
    shifts = np.arange(10, dtype=np.uint64) * np.uint64(7)
    count = 1 + (v[:, None] >= (np.uint64(1) << shifts[1:])[None, :]).sum(axis=1)  # 2^7, 2^14, ...
    if present is not None:
        count = np.where(present, count, 0)
    width = int(count.max()) if count.size else 1
    groups = ((v[:, None] >> shifts[:width]) & np.uint64(0x7F)).astype(np.uint8)
    col = np.arange(width)[None, :]
    groups |= ((col < count[:, None] - 1) * 0x80).astype(np.uint8)  # continuation bit on all but the last
    return groups[col < count[:, None]], _offsets(count)


def _const(byte: int, n: int, present: np.ndarray | None = None) -> Piece:
    """One byte (a field key) per row; none where ``present`` is false."""
    count = np.ones(n, np.int64) if present is None else present.astype(np.int64)
    return np.full(int(count.sum()), byte, np.uint8), _offsets(count)


def _strings(strings: Sequence[str]) -> Piece:
    encoded = [x.encode("utf-8") for x in strings]
    return np.frombuffer(b"".join(encoded), np.uint8), _offsets(np.fromiter(map(len, encoded), np.int64))


def _offsets(lengths: np.ndarray) -> np.ndarray:
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def _sizes(piece: Piece) -> np.ndarray:
    return np.diff(piece[1])


@numba.njit(cache=True, nogil=True)
def _concat_two(
    a: np.ndarray, a_off: np.ndarray, b: np.ndarray, b_off: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    out = np.empty(len(a) + len(b), np.uint8)
    offsets = np.zeros(len(a_off), np.int64)
    pos = 0
    for i in range(len(a_off) - 1):
        for j in range(a_off[i], a_off[i + 1]):
            out[pos] = a[j]
            pos += 1
        for j in range(b_off[i], b_off[i + 1]):
            out[pos] = b[j]
            pos += 1
        offsets[i + 1] = pos
    return out, offsets


def _concat_rows(pieces: list[Piece]) -> Piece:
    """Row i of the result: row i of every piece, in order."""
    data, offsets = pieces[0]
    for more, more_offsets in pieces[1:]:
        data, offsets = _concat_two(data, offsets, more, more_offsets)
    return data, offsets


def _delimited_rows(body: Piece) -> Piece:
    """Each row as a length-delimited message: its length as a varint, then the row."""
    return _concat_rows([_varints(_sizes(body)), body])


def _field(number: int, wire: int, values: Piece) -> list[Piece]:
    n = len(values[1]) - 1
    return [_const(number << 3 | wire, n, _sizes(values) > 0), values]


@numba.njit(cache=True, nogil=True)
def _put_varint(out: np.ndarray, pos: int, value: int) -> int:
    while value >= 0x80:
        out[pos] = (value & 0x7F) | 0x80
        value >>= 7
        pos += 1
    out[pos] = value
    return pos + 1


@numba.njit(cache=True, nogil=True)
def _varint_size(value: int) -> int:
    size = 1
    while value >= 0x80:
        value >>= 7
        size += 1
    return size


@numba.njit(cache=True, nogil=True)
def _postings_kernel(docs: np.ndarray, tfs: np.ndarray, ptr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out = np.empty(len(docs) * 14, np.uint8)  # a posting is at most 14 bytes (5-byte gap and tf varints)
    offsets = np.zeros(len(ptr), np.int64)
    pos = 0
    for t in range(len(ptr) - 1):
        previous = 0
        for i in range(ptr[t], ptr[t + 1]):
            gap, tf = docs[i] - previous, tfs[i]
            previous = docs[i]
            size = 1 + _varint_size(tf) + (1 + _varint_size(gap) if gap > 0 else 0)
            out[pos], out[pos + 1] = 4 << 3 | 2, size  # field 4, length-delimited; size <= 12
            pos += 2
            if gap > 0:  # proto3 leaves a zero out
                out[pos] = 1 << 3
                pos = _put_varint(out, pos + 1, gap)
            out[pos] = 2 << 3
            pos = _put_varint(out, pos + 1, tf)
        offsets[t + 1] = pos
    return out[:pos], offsets


def encode_postings(docs: np.ndarray, tfs: np.ndarray, ptr: np.ndarray) -> Piece:
    """Every list's postings (PostingsList field 4, ``Posting {docid gap, tf}``), one row per list: list
    ``t`` is ``docs[ptr[t]:ptr[t + 1]]``, ascending, with ``tfs`` >= 1 (a numba kernel).

    Raises:
        ValueError: a list not ascending, a tf below 1, or a value past 32 bits.
    """
    docs, tfs, ptr = (np.ascontiguousarray(a, dtype=np.int64) for a in (docs, tfs, ptr))
    if tfs.size and (tfs.min() < 1 or tfs.max() > INT32_MAX or docs.min() < 0 or docs.max() > INT32_MAX):
        raise ValueError("CIFF postings need 0 <= docid and 1 <= tf, both below 2^31")
    steps = np.diff(docs)
    starts = ptr[1:-1]
    steps[starts[(starts > 0) & (starts < len(docs))] - 1] = 1  # a new list may start lower
    if (steps <= 0).any():
        raise ValueError("CIFF postings must be ascending by document within a list")
    return _postings_kernel(docs, tfs, ptr)


def encode_postings_lists(terms: list[str], dfs: np.ndarray, cfs: np.ndarray, postings: Piece) -> Piece:
    """Length-delimited PostingsList messages, one row per list; ``postings``: one row per list (its
    postings' bytes), as :func:`encode_postings` gives them regrouped."""
    n = len(terms)
    body = _concat_rows(
        [_const(1 << 3 | 2, n), _delimited_rows(_strings(terms))]  # the term, even when empty
        + [*_field(2, 0, _varints(dfs, dfs > 0)), *_field(3, 0, _varints(cfs, cfs > 0)), postings]
    )
    return _delimited_rows(body)


def encode_doc_records(keys: Sequence[str], lengths: np.ndarray, first: int = 0) -> Piece:
    """Length-delimited DocRecord messages ``{docid, collection_docid, doclength}``, docids from ``first``."""
    n = len(keys)
    docids = np.arange(first, first + n)
    body = _concat_rows(
        [*_field(1, 0, _varints(docids, docids > 0)), _const(2 << 3 | 2, n), _delimited_rows(_strings(keys))]
        + _field(3, 0, _varints(lengths, lengths > 0))
    )
    return _delimited_rows(body)


def _as_int64(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


def write_ciff(
    out: str | Path,
    vocab: list[str],
    term_ptr: np.ndarray,
    doc_ids: np.ndarray,
    tfs: np.ndarray,
    doc_keys: Sequence[str],
    description: str = "",
    to_int: Callable[[np.ndarray], np.ndarray] = _as_int64,
) -> dict[str, int]:
    """Write term-major postings as CIFF: list ``t`` is ``doc_ids[term_ptr[t]:term_ptr[t + 1]]`` (ascending)
    with tfs ``to_int(tfs[...])`` (integers; postings below 1 are left out, and lists left empty). Document
    lengths are the sums of their tfs. Two passes over chunks of lists (totals for the header, then the
    bytes), so with memory-mapped inputs memory stays that of a chunk plus the terms and documents; written
    through a temporary file, fsync and a rename (complete or not at all)."""
    term_ptr = _as_int64(term_ptr)
    per_term, cf, lengths = _totals(term_ptr, tfs, doc_ids, len(doc_keys), to_int)
    used = per_term > 0
    header = CiffHeader(
        int(used.sum()),
        len(doc_keys),
        int(cf.sum()),
        float(lengths.mean()) if len(doc_keys) else 0.0,
        description,
    )
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(_delimited(header.encode()))
            for a, b in _chunks(term_ptr, _CHUNK_POSTINGS):
                lo, hi = int(term_ptr[a]), int(term_ptr[b])
                t = to_int(tfs[lo:hi])
                keep = t >= 1
                lists = np.flatnonzero(used[a:b]) + a
                postings = encode_postings(
                    _as_int64(doc_ids[lo:hi])[keep], t[keep], _offsets(per_term[lists])
                )
                terms = [vocab[i] for i in lists.tolist()]
                f.write(encode_postings_lists(terms, per_term[lists], cf[lists], postings)[0].tobytes())
            for d in range(0, len(doc_keys), _CHUNK_DOCS):
                end = d + _CHUNK_DOCS
                f.write(encode_doc_records(doc_keys[d:end], lengths[d:end], d)[0].tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return {"postings_lists": int(used.sum()), "docs": len(doc_keys), "postings": int(per_term.sum())}


def _totals(
    term_ptr: np.ndarray,
    tfs: np.ndarray,
    doc_ids: np.ndarray,
    n_docs: int,
    to_int: Callable[[np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per list the postings kept (tf >= 1) and their tf sum (cf), per document its length; a chunk at a
    time."""
    n_terms = len(term_ptr) - 1
    per_term, cf = np.zeros(n_terms, np.int64), np.zeros(n_terms, np.int64)
    lengths = np.zeros(n_docs, np.int64)
    for a, b in _chunks(term_ptr, _CHUNK_POSTINGS):
        lo, hi = int(term_ptr[a]), int(term_ptr[b])
        t = to_int(tfs[lo:hi])
        kept = np.where(t >= 1, t, 0)
        ends = term_ptr[a + 1 : b + 1] - lo
        counts, sums = _offsets(kept > 0), _offsets(kept)  # cumulative, exact in int64
        per_term[a:b] = counts[ends] - counts[ends - np.diff(term_ptr[a : b + 1])]
        cf[a:b] = sums[ends] - sums[ends - np.diff(term_ptr[a : b + 1])]
        lengths += np.bincount(_as_int64(doc_ids[lo:hi]), weights=kept, minlength=n_docs).astype(np.int64)
    return per_term, cf, lengths


def _chunks(ptr: np.ndarray, size: int) -> Iterator[tuple[int, int]]:
    """Runs of lists ``[a, b)`` of about ``size`` postings (a longer list alone)."""
    a, n = 0, len(ptr) - 1
    while a < n:
        b = max(a + 1, int(np.searchsorted(ptr, ptr[a] + size, side="right")) - 1)
        yield a, min(b, n)
        a = min(b, n)


# --- reading: numba kernels over the file's bytes; errors come back as codes, raised here by name ---

_ERRORS = {
    1: "a varint runs past the end of its message",
    2: "a message is longer than what is left of the file",
    3: "an unsupported protobuf wire type",
    4: "the file ends before the postings lists the header announces",
    5: "a posting's docid gaps run past 2^63",
}


@numba.njit(cache=True, nogil=True)
def _get_varint(data: np.ndarray, pos: int, end: int) -> tuple[int, int]:
    """(value, next position); next position -1 when the varint runs past ``end``."""
    value, shift = 0, 0
    while pos < end:
        byte = int(data[pos])
        pos += 1
        if shift < 63:
            value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    return 0, -1


@numba.njit(cache=True, nogil=True)
def _skip(data: np.ndarray, pos: int, end: int, wire: int) -> int:
    """Past a field of ``wire`` type we do not read; -1 truncated, -3 an unsupported wire type."""
    if wire == 0:
        _, pos = _get_varint(data, pos, end)
        return pos
    if wire == 1 or wire == 5:
        pos += 8 if wire == 1 else 4
        return pos if pos <= end else -1
    if wire == 2:
        size, pos = _get_varint(data, pos, end)
        return pos + size if pos >= 0 and pos + size <= end else -1
    return -3


@numba.njit(cache=True, nogil=True)
def _postings_lists_kernel(data, pos, n_lists, fill, term_span, docs, tfs, ptr):  # noqa: C901
    """Parse ``n_lists`` delimited PostingsList messages from ``pos``: with ``fill``, each list's term
    (byte span), docids (gaps summed) and tfs into the arrays; without, only count the postings.
    Returns (postings, position after the lists, error code, error position)."""
    n = 0
    for t in range(n_lists):
        if pos >= len(data):
            return n, pos, 4, pos
        size, body = _get_varint(data, pos, len(data))
        if body < 0:
            return n, pos, 1, pos
        end = body + size
        if end > len(data):
            return n, pos, 2, pos
        at, docid = body, 0
        while at < end:
            key, at = _get_varint(data, at, end)
            if at < 0:
                return n, body, 1, body
            number, wire = key >> 3, key & 7
            if number == 1 and wire == 2:
                length, at = _get_varint(data, at, end)
                if at < 0 or at + length > end:
                    return n, body, 1, body
                if fill:
                    term_span[t, 0], term_span[t, 1] = at, at + length
                at += length
            elif number == 4 and wire == 2:
                length, at = _get_varint(data, at, end)
                if at < 0 or at + length > end:
                    return n, body, 1, body
                stop, gap, tf = at + length, 0, 0
                while at < stop:
                    inner, at = _get_varint(data, at, stop)
                    if at < 0:
                        return n, body, 1, body
                    if inner == 8:
                        gap, at = _get_varint(data, at, stop)
                    elif inner == 16:
                        tf, at = _get_varint(data, at, stop)
                    else:
                        at = _skip(data, at, stop, inner & 7)
                    if at < 0:
                        return n, body, -at, body
                docid += gap
                if docid < 0:
                    return n, body, 5, body
                if fill:
                    docs[n], tfs[n] = docid, tf
                n += 1
            else:
                at = _skip(data, at, end, wire)
                if at < 0:
                    return n, body, -at, body
        if fill:
            ptr[t + 1] = n
        pos = end
    return n, pos, 0, 0


@numba.njit(cache=True, nogil=True)
def _doc_records_kernel(data, pos, fill, docids, key_span, lengths):
    """Every DocRecord from ``pos`` to the end: docid, collection docid (byte span), doclength; without
    ``fill`` only count them. Returns (records, error code, error position)."""
    n = 0
    while pos < len(data):
        size, body = _get_varint(data, pos, len(data))
        if body < 0:
            return n, 1, pos
        end = body + size
        if end > len(data):
            return n, 2, pos
        at, docid, start, stop, length = body, 0, body, body, 0
        while at < end:
            key, at = _get_varint(data, at, end)
            if at < 0:
                return n, 1, body
            if key == 8:
                docid, at = _get_varint(data, at, end)
            elif key == 18:
                size, at = _get_varint(data, at, end)
                if at < 0 or at + size > end:
                    return n, 1, body
                start, stop = at, at + size
                at = stop
            elif key == 24:
                length, at = _get_varint(data, at, end)
            else:
                at = _skip(data, at, end, key & 7)
            if at < 0:
                return n, -at if at < -1 else 1, body
        if fill:
            docids[n], key_span[n, 0], key_span[n, 1], lengths[n] = docid, start, stop, length
        n += 1
        pos = end
    return n, 0, 0


@dataclass
class CiffIndex:
    """A CIFF file read whole: terms, postings (term-major: list ``t`` is ``docs[term_ptr[t]:term_ptr[t+1]]``
    with ``tfs``), the documents' collection ids."""

    terms: list[str]
    term_ptr: np.ndarray
    docs: np.ndarray
    tfs: np.ndarray
    doc_ids: list[str]

    @property
    def num_docs(self) -> int:
        return len(self.doc_ids)

    @property
    def postings(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per term, ``(docids, tfs)``."""
        p = self.term_ptr.tolist()
        return [(self.docs[a:b], self.tfs[a:b]) for a, b in zip(p[:-1], p[1:], strict=True)]


def _check(path: Path, code: int, where: int) -> None:
    if code:
        raise DataFormatError(
            f"{path}: {_ERRORS[code]} (at byte {where}); is it a CIFF file (PISA, Anserini, lsr)?"
        )


def _header(data: np.ndarray, path: Path) -> tuple[dict[int, int | bytes], int]:
    size, body = _get_varint(data, 0, len(data))
    if body < 0 or not len(data):
        raise DataFormatError(
            f"{path}: the file ends before the header (a CIFF file from PISA, Anserini, lsr?)"
        )
    if body + size > len(data):
        _check(path, 2, 0)
    return dict(_fields(data[body : body + size].tobytes())), body + size


def _decode(data: np.ndarray, spans: np.ndarray) -> list[str]:
    blob = data.tobytes()
    return [blob[a:b].decode("utf-8") for a, b in spans.tolist()]


def read_ciff(path: str | Path) -> CiffIndex:
    """Read a CIFF file (PISA, Anserini, ciff-toolkit, ``lsr export``): numba kernels, two passes (count,
    then fill).

    Raises:
        DataFormatError: a malformed file (the message names it, what is wrong and where).
    """
    path = Path(path)
    data = np.fromfile(path, dtype=np.uint8)
    header, pos = _header(data, path)
    n_lists, n_docs = int(header.get(2, 0)), int(header.get(3, 0))
    empty = np.zeros(0, np.int64)
    n, _, code, where = _postings_lists_kernel(
        data, pos, n_lists, False, np.zeros((0, 2), np.int64), empty, empty, empty
    )
    _check(path, code, where)
    spans, docs, tfs = np.zeros((n_lists, 2), np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)
    ptr = np.zeros(n_lists + 1, np.int64)
    _, pos, code, where = _postings_lists_kernel(data, pos, n_lists, True, spans, docs, tfs, ptr)
    _check(path, code, where)
    count, code, where = _doc_records_kernel(data, pos, False, empty, np.zeros((0, 2), np.int64), empty)
    _check(path, code, where)
    if count != n_docs:
        raise DataFormatError(f"{path}: header says {n_docs} documents, the file has {count} doc records")
    docids, key_spans, lengths = (
        np.zeros(count, np.int64),
        np.zeros((count, 2), np.int64),
        np.zeros(count, np.int64),
    )
    _doc_records_kernel(data, pos, True, docids, key_spans, lengths)
    if count and (docids.min() < 0 or docids.max() >= n_docs or len(np.unique(docids)) != count):
        raise DataFormatError(f"{path}: doc records must number the documents 0..{n_docs - 1}, once each")
    keys = [""] * n_docs
    for d, key in zip(docids.tolist(), _decode(data, key_spans), strict=True):
        keys[d] = key
    return CiffIndex(_decode(data, spans), ptr, docs, tfs, keys)


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """The header's ``(field number, value)``: an int for varints and fixed64, bytes for length-delimited."""
    array = np.frombuffer(data, np.uint8)
    pos = 0
    while pos < len(data):
        key, pos = _get_varint(array, pos, len(data))
        if pos < 0:
            raise DataFormatError("truncated varint in the CIFF header")
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _get_varint(array, pos, len(data))
            if pos < 0:
                raise DataFormatError("truncated varint in the CIFF header")
            yield number, value
        elif wire == 2:
            size, pos = _get_varint(array, pos, len(data))
            yield number, data[pos : pos + size]
            pos += size
        elif wire == 1:
            yield number, int.from_bytes(data[pos : pos + 8], "little")
            pos += 8
        else:
            raise DataFormatError(f"unsupported protobuf wire type {wire} in the CIFF header")


def ciff_rows(ciff: CiffIndex) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Each document's ``(collection id, term ids ascending, tfs)``, from the term-major postings."""
    terms = np.repeat(np.arange(len(ciff.terms), dtype=np.int64), np.diff(ciff.term_ptr))
    docs, tfs = ciff.docs, ciff.tfs
    if docs.size and (docs.min() < 0 or docs.max() >= ciff.num_docs):
        raise DataFormatError(f"a posting names document {int(docs.max())}, the header has {ciff.num_docs}")
    order = np.lexsort((terms, docs))
    terms, docs, tfs = terms[order], docs[order], tfs[order]
    bounds = np.searchsorted(docs, np.arange(ciff.num_docs + 1))
    for d in range(ciff.num_docs):
        a, b = bounds[d], bounds[d + 1]
        keep = tfs[a:b] > 0
        yield ciff.doc_ids[d], terms[a:b][keep], tfs[a:b][keep].astype(np.float64)
