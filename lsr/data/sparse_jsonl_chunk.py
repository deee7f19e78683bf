"""One chunk of a sparse-vector JSONL file parsed into arrays, in a worker process of
:func:`lsr.data.sparse_jsonl.read_sparse_jsonl` (this module imports only numpy, so that a
spawned worker starts fast)."""

from __future__ import annotations

import json
from collections.abc import Callable
from itertools import chain
from typing import Any

import numpy as np
from numpy.typing import NDArray


def json_loader() -> Callable[[bytes], Any]:
    try:
        import orjson  # the bench extra; optional

        return orjson.loads
    except ImportError:  # pragma: no cover - orjson ships with ranx
        return json.loads


ParsedChunk = tuple[list[str], list[str], NDArray[np.int32], NDArray[np.float32], NDArray[np.int64]]


def parse_chunk(path: str, start: int, end: int) -> ParsedChunk:
    """Bytes ``[start, end)`` of the file (whole lines) as ``(ids, terms, local, weights, lengths)``:
    ``terms`` every term of the chunk once (zero weights included), in no particular order;
    per row its postings with a weight > 0 (as float64), in the record's order, as ``local`` indices
    into ``terms`` and float32 ``weights``; ``lengths`` the postings kept per row."""
    buf = np.empty(end - start + 1, dtype=np.uint8)
    with open(path, "rb") as f:
        f.seek(start)
        f.readinto(buf[:-1].data)
    buf[-1] = 10  # the scanner's sentinel
    from lsr.data.sparse_jsonl_scan import scan_records  # numba: imported by a worker, not the pool's parent

    scanned = scan_records(buf)
    # else lines as a file iterates them: JSON may hold a bare \r
    return scanned if scanned is not None else parse_lines(buf[:-1].tobytes().split(b"\n"))


def parse_lines(lines: list[bytes]) -> ParsedChunk:
    """:func:`parse_chunk` of the records on ``lines`` (blank lines skipped)."""
    loads = json_loader()
    ids: list[str] = []
    vectors: list[dict[str, float]] = []
    for line in lines:
        if not line.strip():
            continue
        obj = loads(line)
        ids.append(str(obj["id"]))
        vectors.append(obj["vector"])
    terms = list(set().union(*vectors))
    local = {term: i for i, term in enumerate(terms)}
    sizes = np.fromiter(map(len, vectors), dtype=np.int64, count=len(vectors))
    nnz = int(sizes.sum())
    index = np.fromiter(map(local.__getitem__, chain.from_iterable(vectors)), dtype=np.int32, count=nnz)
    weights = np.fromiter(chain.from_iterable(v.values() for v in vectors), dtype=np.float64, count=nnz)
    keep = weights > 0
    return ids, terms, index[keep], weights[keep].astype(np.float32), kept_lengths(sizes, keep)


def kept_lengths(lengths: NDArray[np.int64], keep: NDArray[np.bool_]) -> NDArray[np.int64]:
    """Row lengths once the postings where ``keep`` is false are dropped (``keep`` runs over the
    postings row after row)."""
    rows = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    return np.bincount(rows[keep], minlength=len(lengths)).astype(np.int64)
