"""The sparse-vector JSONL interchange format: ``{"id": ..., "vector": {"term": weight, ...}}``.

pyserini's JsonVectorCollection and Seismic read the same records (pyserini also
accepts a ``contents`` field, kept here as the document text). One codec for lsr
(``lsr encode --format jsonl``, ``lsr index --vectors FILE``, pre-encoded queries) and the
benchmarks:

* :func:`iter_sparse_jsonl` streams validated records ``(id, {term: weight}, contents)``;
  :func:`iter_sparse_rows` the same records with term ids (in order of first occurrence), read
  by a numba scanner where the records have the usual shape (``lsr index --vectors FILE``);
* :func:`read_sparse_jsonl` reads a whole trusted file into one CSR batch, fast
  (``orjson`` when installed, no per-weight checks, pieces of the file parsed in parallel
  worker processes, :mod:`lsr.data.sparse_jsonl_chunk`; new terms get ids chunk by chunk,
  sorted within a chunk);
* :func:`write_sparse_jsonl` writes CSR batches through a numba kernel that formats
  whole chunks into bytes (a million documents of ~120 terms take seconds). A weight
  is rounded to ``decimals`` digits and written as Python's ``json`` writes that float
  (``0.5``, ``2.0``, ``1e-05``), or with ``fixed=True`` in plain fixed point with exactly
  ``decimals`` digits and at least one unit (``decimals=0``: integers >= 1, the form
  Lucene impact indexes need). :func:`fixed_point` and :func:`round_weights` give the
  exact values a reader gets back.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import multiprocessing
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from itertools import islice, repeat
from pathlib import Path
from typing import Any

import numba
import numpy as np
from numpy.typing import NDArray

from lsr.data.corpus import check_id
from lsr.data.jsonl import iter_jsonl, jsonl_objects, open_binary, require_str
from lsr.data.sparse_jsonl_chunk import ParsedChunk, kept_lengths, parse_chunk
from lsr.data.sparse_jsonl_scan import scan
from lsr.errors import DataFormatError
from lsr.index.sparse import PTR_DTYPE, TERM_DTYPE, WEIGHT_DTYPE, SparseBatch

logger = logging.getLogger(__name__)

_MAX_DECIMALS = 9
_WRITE_CHUNK_ROWS = 50_000
_READ_CHUNK_ROWS = 50_000  # new terms get ids chunk by chunk (sorted within a chunk)
_READ_PIECE_ROWS = 6_250  # a worker's share of a chunk; divides _READ_CHUNK_ROWS


def is_sparse_jsonl(path: str | Path) -> bool:
    """True if the first record of a JSONL file has a ``vector`` mapping."""
    path = Path(path)
    if not path.is_file() or not path.name.endswith((".jsonl", ".jsonl.gz", ".json")):
        return False
    for _, obj in iter_jsonl(path):
        return isinstance(obj.get("vector"), dict)
    return False


def parse_vector(obj: dict[str, Any], where: str) -> dict[str, float]:
    """Validate a record's ``vector``: term -> finite weight >= 0 (zeros are dropped)."""
    vector = obj.get("vector")
    if not isinstance(vector, dict):
        raise DataFormatError(f"{where}: missing or non-object field 'vector'")
    out: dict[str, float] = {}
    for term, weight in vector.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise DataFormatError(f"{where}: weight of term {term!r} is {weight!r}, not a number")
        try:
            finite = math.isfinite(weight)
        except OverflowError:  # an integer too large for a float
            finite = False
        if not finite or weight < 0:
            raise DataFormatError(f"{where}: weight of term {term!r} is {weight!r}; must be finite and >= 0")
        if weight > 0:
            out[term] = float(weight)
    return out


def iter_sparse_jsonl(path: str | Path) -> Iterator[tuple[str, dict[str, float], str]]:
    """Yield ``(id, {term: weight}, contents)`` per record."""
    yield from _validated(iter_jsonl(path), str(path))


def _validated(
    objects: Iterable[tuple[int, dict[str, Any]]], label: str
) -> Iterator[tuple[str, dict[str, float], str]]:
    for line_no, obj in objects:
        where = f"{label}:{line_no}"
        key = "id" if "id" in obj else "_id"
        doc_id = check_id(require_str(obj, key, where), where)
        contents = obj.get("contents") or ""
        yield doc_id, parse_vector(obj, where), contents if isinstance(contents, str) else ""


SparseRow = tuple[str, NDArray[np.int64], NDArray[np.float64], str]  # id, term ids, weights > 0, contents
_ROWS_CHUNK_BYTES = 1 << 24


def iter_sparse_rows(path: str | Path, vocab: dict[str, int]) -> Iterator[SparseRow]:
    """:func:`iter_sparse_jsonl`'s records with their terms as ids in ``vocab`` (a new term gets the
    next id, in order of first occurrence), each row's postings by term id, the same checks and
    errors. The file is read in chunks of lines by the scanner (:mod:`lsr.data.sparse_jsonl_scan`),
    without a Python object per posting (``.gz`` decompressed on the way); a chunk it defers, or one
    whose ids or weights a check would refuse, goes record by record through
    :func:`iter_sparse_jsonl`'s path."""
    path = Path(path)
    line_no = 1
    for buf in _line_chunks(path, _ROWS_CHUNK_BYTES):
        rows = _scanned_rows(buf, vocab)
        if rows is not None:
            yield from rows
        else:
            lines = io.BytesIO(buf[:-1].tobytes())
            yield from _term_id_rows(_validated(jsonl_objects(lines, str(path), line_no), str(path)), vocab)
        line_no += int(np.count_nonzero(buf[:-1] == 10))


def _line_chunks(path: Path, size: int) -> Iterator[NDArray[np.uint8]]:
    """Whole lines of the file (decompressed), about ``size`` bytes at a time, each chunk with a
    sentinel newline."""
    rest = b""
    with open_binary(path) as f:
        while block := f.read(size):
            data = rest + block
            cut = data.rfind(b"\n") + 1
            if cut == 0:  # a line longer than a chunk: read on
                rest = data
                continue
            rest = data[cut:]
            yield np.frombuffer(data[:cut] + b"\n", dtype=np.uint8)
    if rest:
        yield np.frombuffer(rest + b"\n", dtype=np.uint8)


def _scanned_rows(buf: NDArray[np.uint8], vocab: dict[str, int]) -> list[SparseRow] | None:
    """The chunk's rows through the scanner, or None where the record-by-record path must decide."""
    scanned = scan(buf)
    if scanned is None or bool((scanned.weights < 0).any()):
        return None
    ids, contents = scanned.ids(), scanned.contents()
    try:
        for doc_id in ids:
            check_id(doc_id, "")
    except DataFormatError:
        return None  # the record-by-record path raises it, naming the line
    keep = scanned.weights > 0
    local, weights = scanned.local[keep], scanned.weights[keep]
    lengths = kept_lengths(scanned.lengths, keep)
    ends = np.cumsum(lengths)
    seen, first = np.unique(local, return_index=True)
    mapping = np.full(len(scanned.terms), -1, dtype=np.int64)
    for t in seen[np.argsort(first)].tolist():  # vocabulary ids in order of first occurrence
        mapping[t] = vocab.setdefault(scanned.terms[t], len(vocab))
    term_ids = mapping[local]
    starts = ends - lengths
    _sort_rows(np.concatenate(([0], ends)), term_ids, weights)
    return [
        (doc_id, term_ids[s:e], weights[s:e], text)
        for doc_id, s, e, text in zip(ids, starts.tolist(), ends.tolist(), contents, strict=True)
    ]


def _term_id_rows(
    records: Iterable[tuple[str, dict[str, float], str]], vocab: dict[str, int]
) -> Iterator[SparseRow]:
    for doc_id, vector, contents in records:
        ids = np.fromiter((vocab.setdefault(t, len(vocab)) for t in vector), np.int64, len(vector))
        order = np.argsort(ids)
        yield doc_id, ids[order], np.fromiter(vector.values(), np.float64, len(vector))[order], contents


# --- reading a whole file into CSR -------------------------------------------------------------


def read_sparse_jsonl(
    path: str | Path,
    vocab: dict[str, int] | None = None,
    grow_vocab: bool = True,
    workers: int = 1,
) -> tuple[list[str], SparseBatch, dict[str, int]]:
    """Read sparse-vector JSONL into ``(ids, CSR batch, vocabulary)``.

    Args:
        vocab: term -> id to start from (a document vocabulary when reading queries).
        grow_vocab: add unseen terms to ``vocab`` (in sorted order, chunk by chunk of
            ``_READ_CHUNK_ROWS`` records); when false they are dropped.
        workers: processes parsing pieces of ``_READ_PIECE_ROWS`` records in parallel (default 1:
            parsed in this process, as is a file of one piece). The result does not depend on it.
            More workers are spawned: a calling script needs the ``if __name__ == "__main__"``
            guard of multiprocessing, which is why one is the default.
    """
    vocab = {} if vocab is None else vocab
    pieces = _piece_spans(Path(path))
    n_workers = min(workers, len(pieces))
    ids: list[str] = []
    parts: list[Postings] = []
    starts, ends = [p[0] for p in pieces], [p[1] for p in pieces]
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(n_workers, spawn) if n_workers > 1 else contextlib.nullcontext() as pool:
        parsed: Iterable[ParsedChunk] = (pool.map if pool else map)(
            parse_chunk, repeat(str(path)), starts, ends
        )
        chunk: list[ParsedChunk] = []
        for piece, (_, _, last) in zip(parsed, pieces, strict=True):
            ids += piece[0]
            chunk.append(piece)
            if last:  # a chunk's pieces share its new terms
                parts += _chunk_postings(chunk, vocab, grow_vocab)
                chunk = []
    if not parts:
        return ids, SparseBatch.empty(), vocab
    indptr = np.zeros(len(ids) + 1, dtype=PTR_DTYPE)
    np.cumsum(np.concatenate([part[2] for part in parts]), out=indptr[1:])
    term_ids = np.concatenate([part[0] for part in parts])
    weights = np.concatenate([part[1] for part in parts])
    _sort_rows(indptr, term_ids, weights)
    return ids, SparseBatch(indptr, term_ids, weights), vocab


def _piece_spans(path: Path) -> list[tuple[int, int, bool]]:
    """``(start byte, end byte, ends a chunk)`` of consecutive runs of ``_READ_PIECE_ROWS`` records
    (non-blank lines); every ``_READ_CHUNK_ROWS`` records (and the last record) end a chunk."""
    spans = []
    start = pos = records = 0
    with open(path, "rb") as f:
        for line in f:
            pos += len(line)
            if line.strip():
                records += 1
                if records % _READ_PIECE_ROWS == 0:
                    spans.append((start, pos, records % _READ_CHUNK_ROWS == 0))
                    start = pos
    if records % _READ_PIECE_ROWS:
        spans.append((start, pos, True))
    elif spans:
        spans[-1] = (*spans[-1][:2], True)
    return spans


Postings = tuple[NDArray[np.int32], NDArray[np.float32], NDArray[np.int64]]  # terms, weights, row lengths


def _chunk_postings(pieces: list[ParsedChunk], vocab: dict[str, int], grow: bool) -> list[Postings]:
    """The parsed pieces of one chunk over ``vocab`` (rows not yet sorted by term id).

    The chunk's new terms get the next ids in sorted order (deterministic); when ``grow`` is false,
    unknown terms are dropped. Zero weights were dropped by the parser (as lsr and Seismic do).
    """
    if grow:
        for term in sorted(set().union(*(piece[1] for piece in pieces)).difference(vocab)):
            vocab[term] = len(vocab)
    return [_piece_postings(piece, vocab) for piece in pieces]


def _piece_postings(piece: ParsedChunk, vocab: dict[str, int]) -> Postings:
    """One parsed piece's term ids in ``vocab``, weights and row lengths (terms not in ``vocab`` dropped)."""
    _, terms, local, weights, lengths = piece
    mapping = np.fromiter(map(vocab.get, terms, repeat(-1)), dtype=TERM_DTYPE, count=len(terms))
    term_ids = mapping[local]
    known = term_ids >= 0
    if not known.all():
        lengths = kept_lengths(lengths, known)
        term_ids, weights = term_ids[known], weights[known]
    return term_ids, weights.astype(WEIGHT_DTYPE, copy=False), lengths


@numba.njit(cache=True, nogil=True, parallel=True)
def _sort_rows(indptr, term_ids, weights):
    """Sort each row's postings by term id in place (the ids of a row are distinct), rows in parallel."""
    for r in numba.prange(indptr.shape[0] - 1):
        s, e = indptr[r], indptr[r + 1]
        if e - s < 2:
            continue
        order = np.argsort(term_ids[s:e])
        term_ids[s:e] = term_ids[s:e][order]
        weights[s:e] = weights[s:e][order]


# --- writing CSR batches ------------------------------------------------------------------------


def fixed_point(
    weights: NDArray, decimals: int, scale: float = 1.0, at_least_one: bool = True
) -> NDArray[np.int64]:
    """Weights times ``scale`` as integers in units of ``10**-decimals`` (at least 1 unless told otherwise).

    For float32 weights and ``scale=1`` the product is exact in float64, so the rounding (half to
    even) is that of Python's ``round(weight, decimals)``.
    """
    if not 0 <= decimals <= _MAX_DECIMALS:
        raise ValueError(f"decimals must lie in [0, {_MAX_DECIMALS}], got {decimals}")
    q = np.rint(weights.astype(np.float64) * (scale * 10.0**decimals))
    if q.size and q.max() >= 2.0**62:
        raise ValueError(f"weights up to {weights.max()} are too large to write with {decimals} decimals")
    return (np.maximum(q, 1) if at_least_one else q).astype(np.int64)


def round_weights(weights: NDArray, decimals: int) -> NDArray[np.float32]:
    """The float32 weights a reader gets back after writing ``weights`` with ``decimals`` digits."""
    return (fixed_point(weights, decimals) / 10.0**decimals).astype(WEIGHT_DTYPE)


def _string_table(strings: Sequence[str]) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """JSON-encode each string (quotes included) into one byte blob with offsets."""
    encoded = [json.dumps(s, ensure_ascii=False).encode("utf-8") for s in strings]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    blob = np.frombuffer(b"".join(encoded), dtype=np.uint8) if encoded else np.zeros(0, np.uint8)
    return blob, offsets


@numba.njit(cache=True, nogil=True)
def _put(buf: NDArray, pos: int, text: NDArray) -> int:
    for i in range(len(text)):
        buf[pos + i] = text[i]
    return pos + len(text)


@numba.njit(cache=True, nogil=True)
def _put_fixed(buf: NDArray, pos: int, value: int, decimals: int, digits: NDArray) -> int:
    """Write ``value / 10**decimals`` in plain decimal notation (``decimals`` digits after the point)."""
    n = 0
    v = value
    while True:  # digits of value, least significant first
        digits[n] = 48 + v % 10
        v //= 10
        n += 1
        if v == 0:
            break
    while n <= decimals:  # at least one digit before the point
        digits[n] = 48
        n += 1
    for i in range(n - 1, -1, -1):
        if i == decimals - 1:
            buf[pos] = 46  # '.'
            pos += 1
        buf[pos] = digits[i]
        pos += 1
    return pos


@numba.njit(cache=True, nogil=True)
def _put_json_float(buf: NDArray, pos: int, value: int, decimals: int, digits: NDArray) -> int:
    """Write ``value / 10**decimals`` as Python's ``repr`` of that float, for ``0 <= value < 2**50``:
    plain with at least one digit after the point (``2.0``, ``0.5``), scientific below 1e-4
    (``1e-05``, ``1.5e-06``)."""
    n = 0
    v = value
    while v > 0 or n <= decimals:  # digits, least significant first, at least one before the point
        digits[n] = 48 + v % 10
        v //= 10
        n += 1
    zeros = 0  # trailing zero digits: never written
    while zeros < n and digits[zeros] == 48:
        zeros += 1
    top = n - 1  # the leading digit
    while top > 0 and digits[top] == 48:
        top -= 1
    if value == 0 or top - decimals >= -4:
        for i in range(n - 1, decimals - 1, -1):
            buf[pos] = digits[i]
            pos += 1
        buf[pos] = 46  # '.'
        pos += 1
        if zeros >= decimals:
            buf[pos] = 48
            return pos + 1
        for i in range(decimals - 1, zeros - 1, -1):
            buf[pos] = digits[i]
            pos += 1
        return pos
    buf[pos] = digits[top]
    pos += 1
    if zeros < top:
        buf[pos] = 46  # '.'
        pos += 1
        for i in range(top - 1, zeros - 1, -1):
            buf[pos] = digits[i]
            pos += 1
    exponent = decimals - top  # below 10: decimals <= 9
    buf[pos] = 101  # 'e'
    buf[pos + 1] = 45  # '-'
    buf[pos + 2] = 48 + exponent // 10
    buf[pos + 3] = 48 + exponent % 10
    return pos + 4


@numba.njit(cache=True, nogil=True)
def _format_rows(
    indptr, term_ids, values, decimals, fixed, id_blob, id_off, term_blob, term_off, head, mid, sep, tail, buf
) -> int:
    """Format CSR rows as JSONL records into ``buf``; return the number of bytes written."""
    digits = np.empty(24, np.uint8)
    pos = 0
    for r in range(len(indptr) - 1):
        pos = _put(buf, pos, head)
        pos = _put(buf, pos, id_blob[id_off[r] : id_off[r + 1]])
        pos = _put(buf, pos, mid)
        for j in range(indptr[r], indptr[r + 1]):
            if j > indptr[r]:
                pos = _put(buf, pos, sep)
            t = term_ids[j]
            pos = _put(buf, pos, term_blob[term_off[t] : term_off[t + 1]])
            buf[pos] = 58  # ':'
            buf[pos + 1] = 32  # ' '
            if fixed:
                pos = _put_fixed(buf, pos + 2, values[j], decimals, digits)
            else:
                pos = _put_json_float(buf, pos + 2, values[j], decimals, digits)
        pos = _put(buf, pos, tail)
    return pos


_HEAD = np.frombuffer(b'{"id": ', dtype=np.uint8)
_MID = np.frombuffer(b', "vector": {', dtype=np.uint8)
_SEP = np.frombuffer(b", ", dtype=np.uint8)
_TAIL = np.frombuffer(b"}}\n", dtype=np.uint8)


def _format_batch(
    batch: SparseBatch,
    ids: Sequence[str],
    term_blob: NDArray,
    term_off: NDArray,
    decimals: int,
    scale: float,
    fixed: bool,
) -> bytes:
    id_blob, id_off = _string_table(ids)
    values = fixed_point(batch.weights, decimals, scale, at_least_one=fixed)
    if not fixed and values.size and values.max() >= 2**50:
        raise ValueError(f"weights up to {batch.weights.max()} are too large for {decimals} decimals")
    term_lens = np.diff(term_off)
    bound = (
        len(id_blob)
        + len(ids) * (len(_HEAD) + len(_MID) + len(_TAIL))
        + int(term_lens[batch.term_ids].sum())
        + batch.nnz * (4 + 25 + decimals)
    )
    buf = np.empty(bound, dtype=np.uint8)
    n = _format_rows(
        batch.indptr,
        batch.term_ids,
        values,
        decimals,
        fixed,
        id_blob,
        id_off,
        term_blob,
        term_off,
        _HEAD,
        _MID,
        _SEP,
        _TAIL,
        buf,
    )
    return buf[:n].tobytes()


def write_sparse_jsonl(
    path: str | Path,
    ids: Iterable[str],
    batches: Iterable[SparseBatch],
    vocab: Sequence[str],
    decimals: int = 6,
    scale: float = 1.0,
    fixed: bool = False,
    overwrite: bool = False,
) -> int:
    """Write CSR batches (rows in ``ids`` order) as sparse-vector JSONL; return the row count.

    Args:
        path: output file, written through a temporary file and a rename (nothing on failure).
        ids: one external id per row, over all batches (read as the rows are written).
        batches: the rows, in order; term ids index ``vocab``.
        vocab: term string by term id.
        decimals: digits after the decimal point the weights are rounded to.
        scale: multiply the weights by this first (e.g. a quantization factor for Lucene).
        fixed: exactly ``decimals`` digits and at least one unit (``decimals=0``: integers >= 1);
            otherwise the rounded weight as Python's ``json`` writes a float (zero included).
        overwrite: replace an existing ``path``.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        ValueError: not one id per row.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass --overwrite to replace it")
    term_blob, term_off = _string_table(vocab)
    ids = iter(ids)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    written = 0
    try:
        with open(tmp, "wb") as f:
            for batch in batches:
                for part in batch.chunks(_WRITE_CHUNK_ROWS):
                    row_ids = list(islice(ids, len(part)))
                    if len(row_ids) != len(part):
                        raise ValueError(f"fewer ids than rows ({written + len(row_ids)})")
                    f.write(_format_batch(part, row_ids, term_blob, term_off, decimals, scale, fixed))
                    written += len(part)
        if next(ids, None) is not None:
            raise ValueError(f"more ids than rows ({written})")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("wrote %d vectors to %s", written, path)
    return written
