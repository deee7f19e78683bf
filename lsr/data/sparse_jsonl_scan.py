"""A numba scanner for the usual shape of sparse-vector JSONL records, in bytes.

:func:`scan_records` turns a run of whole lines into the same
:data:`~lsr.data.sparse_jsonl_chunk.ParsedChunk` that parsing every record with ``orjson`` gives,
without making a Python object per term and weight (at a million documents of ~120 terms that
work, not the JSON, was most of the read). It reads the records of the form every writer of this
format writes: one object a line, keys ``id`` (a string, or an integer) and ``vector`` (an object
of term strings to numbers), in any order and with any JSON whitespace, and other keys whose
values are strings, numbers, ``true``, ``false`` or ``null`` (such as ``contents``), skipped.

Anything else is not guessed at: a string with a backslash escape in an id or a term, a number
with more than 15 significant digits or a decimal exponent beyond +-22 (where a float64 product
of two exact values is no longer correctly rounded, Clinger's fast path), a duplicate key or term,
a nested value in a skipped field, bytes that are not UTF-8 anywhere, or any syntax error: the
scanner returns None and the caller parses the lines with the JSON parser, so every result (errors
included) is the parser's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numba
import numpy as np
from numpy.typing import NDArray

from lsr.data.sparse_jsonl_chunk import ParsedChunk, kept_lengths

_POW10 = np.array([10.0**e for e in range(23)], dtype=np.float64)
_MAX_DIGITS = 15  # < 2**53: the mantissa is exact in a float64
_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_ID, _VECTOR, _CONTENTS, _TRUE, _FALSE, _NULL = (
    np.frombuffer(w, dtype=np.uint8) for w in (b"id", b"vector", b"contents", b"true", b"false", b"null")
)


@numba.njit(cache=True, nogil=True)
def _is_ws(c):
    return c == 32 or c == 9 or c == 13  # a line's JSON whitespace: its newline ends it


@numba.njit(cache=True, nogil=True)
def _is_digit(c):
    return 48 <= c <= 57


@numba.njit(cache=True, nogil=True)
def _skip_ws(buf, i):
    """Past the whitespace at ``i`` (a line's newline is not whitespace: it stops this)."""
    while _is_ws(buf[i]):
        i += 1
    return i


@numba.njit(cache=True, nogil=True)
def _number(buf, i):  # noqa: C901
    """``(just past the JSON number at i, its float64)``, correctly rounded; ``(-1, 0)`` when it is not a
    number or not on the fast path (more than 15 significant digits, a decimal exponent beyond +-22).
    Reads no further than the first byte that cannot continue a number (at worst the line's newline)."""
    negative = buf[i] == 45
    if negative:
        i += 1
    if not _is_digit(buf[i]):
        return -1, 0.0
    mantissa = np.int64(0)
    digits = 0
    exponent = 0
    if buf[i] == 48:  # a leading zero is the whole integer part
        i += 1
    else:
        while _is_digit(buf[i]):
            mantissa = mantissa * 10 + np.int64(buf[i] - 48)
            digits += 1
            i += 1
    if buf[i] == 46:  # '.'
        i += 1
        if not _is_digit(buf[i]):
            return -1, 0.0
        while _is_digit(buf[i]):
            if mantissa != 0 or buf[i] != 48:  # leading zeros of a fraction are not significant
                mantissa = mantissa * 10 + np.int64(buf[i] - 48)
                digits += 1
            exponent -= 1
            i += 1
    if buf[i] == 101 or buf[i] == 69:  # 'e' / 'E'
        i += 1
        sign = -1 if buf[i] == 45 else 1
        if buf[i] == 43 or buf[i] == 45:
            i += 1
        if not _is_digit(buf[i]):
            return -1, 0.0
        written = 0
        while _is_digit(buf[i]):
            written = min(written * 10 + np.int64(buf[i] - 48), 10_000)
            i += 1
        exponent += sign * written
    if digits > _MAX_DIGITS:
        return -1, 0.0
    if mantissa == 0:
        value = 0.0
    elif exponent > 22 or exponent < -22:
        return -1, 0.0
    elif exponent >= 0:
        value = np.float64(mantissa) * _POW10[exponent]
    else:
        value = np.float64(mantissa) / _POW10[-exponent]
    return i, -value if negative else value


@numba.njit(cache=True, nogil=True)
def _string_end(buf, i, end, escapes):
    """Just past the JSON string whose quote is at ``i``; -1 when it is not one, or holds an escape
    and ``escapes`` is false (an escape is checked: one of \\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)."""
    i += 1
    while i < end:
        c = buf[i]
        if c == 34:
            return i + 1
        if c < 32:
            return -1
        if c == 92:
            if not escapes:
                return -1
            e = buf[i + 1] if i + 1 < end else 0
            if e == 117:  # \uXXXX
                for j in range(i + 2, i + 6):
                    h = buf[j] if j < end else 0
                    if not (_is_digit(h) or 65 <= h <= 70 or 97 <= h <= 102):
                        return -1
                i += 6
                continue
            if (
                e != 34
                and e != 92
                and e != 47
                and e != 98
                and e != 102
                and e != 110
                and e != 114
                and e != 116
            ):
                return -1
            i += 2
            continue
        i += 1
    return -1


@numba.njit(cache=True, nogil=True)
def _literal_end(buf, i, end, word):
    """Just past ``word`` (bytes) at ``i``; -1 when it is not there."""
    if i + len(word) > end:
        return -1
    for j in range(len(word)):
        if buf[i + j] != word[j]:
            return -1
    return i + len(word)


@numba.njit(cache=True, nogil=True)
def _skipped_value_end(buf, i, end):
    """Just past a skipped field's value (a string, number, true, false or null); -1 for anything else."""
    c = buf[i]
    if c == 34:
        return _string_end(buf, i, end, True)
    if c == 45 or _is_digit(c):
        return _number(buf, i)[0]
    if c == 116:
        return _literal_end(buf, i, end, _TRUE)
    if c == 102:
        return _literal_end(buf, i, end, _FALSE)
    if c == 110:
        return _literal_end(buf, i, end, _NULL)
    return -1


@numba.njit(cache=True, nogil=True)
def _id_end(buf, i, end):
    """``(start, stop, just past)`` of the id value at ``i``: a string without escapes (its text), or a
    JSON integer whose Python ``str`` is its text (so not -0); ``(0, 0, -1)`` for anything else."""
    if buf[i] == 34:
        stop = _string_end(buf, i, end, False)
        return i + 1, stop - 1, stop
    j = i + 1 if buf[i] == 45 else i
    if buf[j] == 48:
        j += 1
        if j - i == 2:  # -0
            return 0, 0, -1
    elif _is_digit(buf[j]):
        while _is_digit(buf[j]):
            j += 1
    else:
        return 0, 0, -1
    if buf[j] == 46 or buf[j] == 101 or buf[j] == 69:
        return 0, 0, -1
    return i, j, j


@numba.njit(cache=True, nogil=True)
def _replaced(slots, hashes, n_terms, need):
    """The term slots with at least ``2 * need`` places (every term placed again), or ``slots``."""
    size = len(slots)
    while size < 2 * need:
        size *= 2
    if size == len(slots):
        return slots
    out = np.full(size, -1, dtype=np.int32)
    mask = np.uint64(size - 1)
    for t in range(n_terms):
        s = hashes[t] & mask
        while out[s] != -1:
            s = (s + np.uint64(1)) & mask
        out[s] = t
    return out


@numba.njit(cache=True, nogil=True)
def _vector(buf, i, end, row, arrays, postings, n_terms, used):  # noqa: C901, PLR0915
    """Reads the vector object at ``i`` (its ``{``) as row ``row``'s postings: ``(just past it,
    postings, terms, text bytes used)``, -1 first when it is not of the scanner's shape; ``arrays`` as
    :func:`_scan` makes them. The per-posting path, so one loop with the term's hash and lookup
    written in: a numba call with a loop in it is not inlined, and costs more than the work here."""
    local, weights, slots, hashes, offsets, text, last_row = arrays
    mask = np.uint64(len(slots) - 1)
    i = _skip_ws(buf, i + 1)
    if buf[i] == 125:  # '}': an empty vector
        return i + 1, postings, n_terms, used
    while True:
        if buf[i] != 34:
            return -1, postings, n_terms, used
        i += 1
        start = i
        h = _FNV_OFFSET
        while i < end and buf[i] != 34:
            if buf[i] == 92 or buf[i] < 32:
                return -1, postings, n_terms, used
            h = (h ^ np.uint64(buf[i])) * _FNV_PRIME
            i += 1
        if i == end:
            return -1, postings, n_terms, used
        size = i - start
        s = h & mask
        while True:  # the term's index, a new one when its slot is empty
            t = slots[s]
            if t == -1:
                t = n_terms
                for j in range(size):
                    text[used + j] = buf[start + j]
                used += size
                slots[s], hashes[t], offsets[t + 1], last_row[t] = t, h, used, -1
                n_terms += 1
                break
            if hashes[t] == h and offsets[t + 1] - offsets[t] == size:
                a = offsets[t]
                j = 0
                while j < size and text[a + j] == buf[start + j]:
                    j += 1
                if j == size:
                    break
            s = (s + np.uint64(1)) & mask
        i += 1
        while _is_ws(buf[i]):
            i += 1
        if buf[i] != 58:  # ':'
            return -1, postings, n_terms, used
        i += 1
        while _is_ws(buf[i]):
            i += 1
        i, value = _number(buf, i)
        if i < 0 or last_row[t] == row:  # a term twice in one vector: JSON keeps the last, so defer
            return -1, postings, n_terms, used
        last_row[t] = row
        local[postings] = t
        weights[postings] = value
        postings += 1
        while _is_ws(buf[i]):
            i += 1
        if buf[i] == 125:
            break
        if buf[i] != 44:  # ','
            return -1, postings, n_terms, used
        i += 1
        while _is_ws(buf[i]):
            i += 1
    return i + 1, postings, n_terms, used


@numba.njit(cache=True, nogil=True)
def _record(buf, i, end, row, spans, arrays, postings, n_terms, used):
    """The object at ``i`` (its ``{``) as row ``row``: ``(read, postings, terms, text bytes used)``;
    ``read`` is false when the line is not of the scanner's shape (module docstring)."""
    i = _skip_ws(buf, i + 1)
    have_id = have_vector = False
    while True:
        key_end = _string_end(buf, i, end, False) if buf[i] == 34 else -1
        if key_end < 0:
            return False, postings, n_terms, used
        is_id = key_end - i == 4 and _literal_end(buf, i + 1, end, _ID) == key_end - 1
        is_vector = key_end - i == 8 and _literal_end(buf, i + 1, end, _VECTOR) == key_end - 1
        is_contents = key_end - i == 10 and _literal_end(buf, i + 1, end, _CONTENTS) == key_end - 1
        i = _skip_ws(buf, key_end)
        if buf[i] != 58:  # ':'
            return False, postings, n_terms, used
        i = _skip_ws(buf, i + 1)
        # a key twice (JSON keeps the last), or a vector that is not an object
        if (is_id and have_id) or (is_vector and (have_vector or buf[i] != 123)):
            return False, postings, n_terms, used
        if is_id:
            spans[4 * row], spans[4 * row + 1], i = _id_end(buf, i, end)
        elif is_vector:
            i, postings, n_terms, used = _vector(buf, i, end, row, arrays, postings, n_terms, used)
        else:
            start = i
            i = _skipped_value_end(buf, i, end)
            if is_contents:  # the text of a string (escapes and all); the last one counts, as in JSON
                text = buf[start] == 34 and i > 0
                spans[4 * row + 2], spans[4 * row + 3] = (start + 1, i - 1) if text else (-1, -1)
        have_id |= is_id
        have_vector |= is_vector
        i = _skip_ws(buf, i) if i >= 0 else end
        if buf[i] != 44:  # ','
            break
        i = _skip_ws(buf, i + 1)
    read = buf[i] == 125 and have_id and have_vector and _skip_ws(buf, i + 1) == end
    return read, postings, n_terms, used


@numba.njit(cache=True, nogil=True)
def _scan(buf, spans, lengths, local, weights, hashes, offsets, text, last_row):
    """Every line of ``buf`` (whose last byte is a sentinel newline) as a record: ``(read, rows,
    postings, terms)``, the rest written into the arrays (:func:`scan_records` makes them, sized for
    a posting and a new term at each colon); ``read`` is false when a line is not of the scanner's
    shape. ``slots`` (a term index or -1) grows to keep half of its places free."""
    slots = np.full(1024, -1, dtype=np.int32)
    rows = pos = postings = n_terms = used = 0
    read = True
    while read and pos < len(buf) - 1:
        end = pos
        colons = 0
        while buf[end] != 10:
            colons += buf[end] == 58
            end += 1
        i = _skip_ws(buf, pos)
        pos = end + 1
        if i == end:
            continue  # a blank line
        slots = _replaced(slots, hashes, n_terms, n_terms + colons)
        arrays = (local, weights, slots, hashes, offsets, text, last_row)
        before = postings
        read = buf[i] == 123  # '{'
        if read:
            read, postings, n_terms, used = _record(buf, i, end, rows, spans, arrays, postings, n_terms, used)
        lengths[rows] = postings - before
        rows += 1
    return read, rows, postings, n_terms


@dataclass(frozen=True)
class Scanned:
    """The records of a buffer of lines, as :func:`scan` reads them: per row its postings (``local``
    indices into ``terms``, float64 ``weights`` as written, zeros and negatives included), and the
    spans of its id and its ``contents`` string (-1 when it has none) in ``buf``."""

    buf: NDArray[np.uint8]
    spans: NDArray[np.int64]  # per row: id start, id stop, contents start, contents stop
    terms: list[str]  # in order of first occurrence
    local: NDArray[np.int32]
    weights: NDArray[np.float64]
    lengths: NDArray[np.int64]

    def ids(self) -> list[str]:
        """Each row's id (the text of an integer id, as Python's ``str`` of it)."""
        view = self.buf.data
        return [str(view[s:e], "utf-8") for s, e in self.spans[:, :2].tolist()]

    def contents(self) -> list[str]:
        """Each row's ``contents`` string (its escapes decoded), or "" when it has none."""
        view = self.buf.data
        out = []
        for s, e in self.spans[:, 2:].tolist():
            raw = bytes(view[s:e]) if s >= 0 else b""
            out.append(json.loads(b'"' + raw + b'"') if b"\\" in raw else raw.decode("utf-8"))
        return out


def scan(buf: NDArray[np.uint8]) -> Scanned | None:
    """The records on the lines of ``buf[:-1]``, or None when a line is not of the shape this scanner
    reads (module docstring). ``buf[-1]`` must be a newline (a sentinel: the scanner reads to a
    line's end without a bound test)."""
    if len(buf) == 0 or buf[-1] != 10:
        raise ValueError("the scanner needs a buffer that ends with a sentinel newline")
    if bool((buf >= 0x80).any()):  # not ASCII: the JSON parser refuses bytes that are not UTF-8, anywhere
        try:
            str(buf.data, "utf-8")
        except UnicodeDecodeError:
            return None
    max_rows, max_postings = int(np.count_nonzero(buf == 10)), int(np.count_nonzero(buf == 58))
    spans = np.full(4 * max_rows, -1, dtype=np.int64)
    lengths = np.empty(max_rows, dtype=np.int64)
    local = np.empty(max_postings, dtype=np.int32)
    weights = np.empty(max_postings, dtype=np.float64)
    hashes = np.empty(max_postings, dtype=np.uint64)  # per term, in order of first occurrence
    offsets = np.zeros(max_postings + 1, dtype=np.int64)  # term t is text[offsets[t]:offsets[t + 1]]
    text = np.empty(len(buf), dtype=np.uint8)
    last_row = np.empty(max_postings, dtype=np.int64)  # the last row that had term t
    read, rows, postings, n_terms = _scan(
        buf, spans, lengths, local, weights, hashes, offsets, text, last_row
    )
    if not read:
        return None
    bounds = offsets[: n_terms + 1].tolist()
    term_text = text[: bounds[-1]].tobytes()
    terms = [str(term_text[a:b], "utf-8") for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return Scanned(
        buf, spans[: 4 * rows].reshape(-1, 4), terms, local[:postings], weights[:postings], lengths[:rows]
    )


def scan_records(buf: NDArray[np.uint8]) -> ParsedChunk | None:
    """:func:`scan`'s records as :func:`lsr.data.sparse_jsonl_chunk.parse_lines` gives them (postings
    with a weight > 0, as float32), or None where :func:`scan` gives None."""
    scanned = scan(buf)
    if scanned is None:
        return None
    ids = scanned.ids()
    lengths, local, weights = scanned.lengths, scanned.local, scanned.weights
    keep = weights > 0
    if not keep.all():
        lengths, local, weights = kept_lengths(lengths, keep), local[keep], weights[keep]
    return ids, scanned.terms, local, weights.astype(np.float32), lengths
