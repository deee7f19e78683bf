"""Fast reading and writing of the sparse-vector JSONL format for the benchmarks.

One record per line, ``{"id": "...", "vector": {"term": weight, ...}}``, the format
pyserini's JsonVectorCollection, Seismic and ``lsr index --vectors`` read.

Writing goes through a numba kernel that formats whole CSR chunks into bytes, so a
million documents of ~120 terms take seconds rather than minutes. Weights are written
in fixed point with ``decimals`` digits after the point (``decimals=0``: integers, the
form Lucene impact indexes need). :func:`fixed_point` gives the exact values a reader
gets back, so callers that round their weights with it first get a lossless round trip.

Reading (:func:`read_vectors_jsonl`) uses ``orjson`` when it is installed (it comes with
``ranx``) and the standard ``json`` module otherwise. New terms get ids chunk by chunk
(sorted within a chunk, so ids are deterministic); rows come back with ascending term ids.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain
from pathlib import Path
from typing import Any

import numba
import numpy as np
from numpy.typing import NDArray

from lsr.index.sparse import PTR_DTYPE, TERM_DTYPE, WEIGHT_DTYPE, SparseBatch, concat

logger = logging.getLogger(__name__)

_MAX_DECIMALS = 9
_WRITE_CHUNK_ROWS = 50_000
_READ_CHUNK_ROWS = 50_000


def _json_loader() -> Callable[[bytes], Any]:
    try:
        import orjson

        return orjson.loads
    except ImportError:  # pragma: no cover - orjson ships with ranx
        return json.loads


def fixed_point(weights: NDArray, decimals: int, scale: float = 1.0) -> NDArray[np.int64]:
    """Weights times ``scale`` as integers in units of ``10**-decimals``, at least 1 (so > 0)."""
    if not 0 <= decimals <= _MAX_DECIMALS:
        raise ValueError(f"decimals must lie in [0, {_MAX_DECIMALS}], got {decimals}")
    q = np.rint(weights.astype(np.float64) * (scale * 10.0**decimals))
    return np.maximum(q, 1).astype(np.int64)


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
def _format_rows(
    indptr, term_ids, values, decimals, id_blob, id_off, term_blob, term_off, head, mid, sep, tail, buf
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
            pos = _put_fixed(buf, pos + 2, values[j], decimals, digits)
        pos = _put(buf, pos, tail)
    return pos


_HEAD = np.frombuffer(b'{"id": ', dtype=np.uint8)
_MID = np.frombuffer(b', "vector": {', dtype=np.uint8)
_SEP = np.frombuffer(b", ", dtype=np.uint8)
_TAIL = np.frombuffer(b"}}\n", dtype=np.uint8)


def _format_batch(
    batch: SparseBatch, ids: Sequence[str], term_blob: NDArray, term_off: NDArray, decimals: int, scale: float
) -> bytes:
    id_blob, id_off = _string_table(ids)
    values = fixed_point(batch.weights, decimals, scale)
    term_lens = np.diff(term_off)
    bound = (
        len(id_blob)
        + len(ids) * (len(_HEAD) + len(_MID) + len(_TAIL))
        + int(term_lens[batch.term_ids].sum())
        + batch.nnz * (4 + 21 + decimals)
    )
    buf = np.empty(bound, dtype=np.uint8)
    n = _format_rows(
        batch.indptr,
        batch.term_ids,
        values,
        decimals,
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


def _slices(batch: SparseBatch, rows: int) -> Iterator[tuple[int, SparseBatch]]:
    for start in range(0, len(batch), rows):
        end = min(start + rows, len(batch))
        lo, hi = batch.indptr[start], batch.indptr[end]
        part = SparseBatch(batch.indptr[start : end + 1] - lo, batch.term_ids[lo:hi], batch.weights[lo:hi])
        yield start, part


def write_vectors_jsonl(
    path: str | Path,
    ids: Sequence[str],
    batches: Iterable[SparseBatch],
    vocab: Sequence[str],
    decimals: int = 5,
    scale: float = 1.0,
) -> int:
    """Write CSR batches (rows in ``ids`` order) as sparse-vector JSONL; return the row count.

    Args:
        path: output file, written through a temporary file and a rename.
        ids: one external id per row, over all batches.
        batches: the rows, in order; term ids index ``vocab``.
        vocab: term string by term id.
        decimals: digits after the decimal point (0 writes integers).
        scale: multiply the weights by this first (e.g. a quantization factor for Lucene).
    """
    path = Path(path)
    term_blob, term_off = _string_table(vocab)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    written = 0
    try:
        with open(tmp, "wb") as f:
            for batch in batches:
                for start, part in _slices(batch, _WRITE_CHUNK_ROWS):
                    row_ids = ids[written + start : written + start + len(part)]
                    f.write(_format_batch(part, row_ids, term_blob, term_off, decimals, scale))
                written += len(batch)
        if written != len(ids):
            raise ValueError(f"{len(ids)} ids for {written} rows")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    logger.info("wrote %d vectors to %s", written, path)
    return written


def _vectors_to_batch(vectors: list[dict[str, float]], vocab: dict[str, int], grow: bool) -> SparseBatch:
    """Rows of ``{term: weight}`` into a CSR batch over ``vocab`` (rows sorted by term id).

    New terms get the next ids in sorted order (deterministic); when ``grow`` is false,
    unknown terms are dropped. Zero weights are dropped (as lsr and Seismic do).
    """
    if grow:
        new = set().union(*vectors).difference(vocab)
        for term in sorted(new):
            vocab[term] = len(vocab)
    else:
        vectors = [{t: w for t, w in v.items() if t in vocab} for v in vectors]
    lengths = np.fromiter(map(len, vectors), dtype=np.int64, count=len(vectors))
    nnz = int(lengths.sum())
    terms = np.fromiter(map(vocab.__getitem__, chain.from_iterable(vectors)), dtype=np.int64, count=nnz)
    weights = np.fromiter(chain.from_iterable(v.values() for v in vectors), dtype=np.float64, count=nnz)
    rows = np.repeat(np.arange(len(vectors), dtype=np.int64), lengths)
    order = np.argsort(rows * (len(vocab) + 1) + terms)
    order = order[weights[order] > 0]
    indptr = np.zeros(len(vectors) + 1, dtype=PTR_DTYPE)
    np.cumsum(np.bincount(rows[order], minlength=len(vectors)), out=indptr[1:])
    return SparseBatch(indptr, terms[order].astype(TERM_DTYPE), weights[order].astype(WEIGHT_DTYPE))


def read_vectors_jsonl(
    path: str | Path, vocab: dict[str, int] | None = None, grow_vocab: bool = True
) -> tuple[list[str], SparseBatch, dict[str, int]]:
    """Read sparse-vector JSONL into ``(ids, CSR batch, vocabulary)``.

    Args:
        vocab: term -> id to start from (a document vocabulary when reading queries).
        grow_vocab: add unseen terms to ``vocab`` (in sorted order, chunk by chunk); when
            false they are dropped.
    """
    loads = _json_loader()
    vocab = {} if vocab is None else vocab
    ids: list[str] = []
    parts: list[SparseBatch] = []
    vectors: list[dict[str, float]] = []
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                continue
            obj = loads(line)
            ids.append(str(obj["id"]))
            vectors.append(obj["vector"])
            if len(vectors) == _READ_CHUNK_ROWS:
                parts.append(_vectors_to_batch(vectors, vocab, grow_vocab))
                vectors = []
    if vectors or not parts:
        parts.append(_vectors_to_batch(vectors, vocab, grow_vocab))
    batch = parts[0] if len(parts) == 1 else concat(parts)
    return ids, batch, vocab
