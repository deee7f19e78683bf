"""The sparse-vector JSONL interchange format: ``{"id": ..., "vector": {"term": weight, ...}}``.

pyserini's JsonVectorCollection and Seismic read the same records (pyserini also
accepts a ``contents`` field, kept here as the document text).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lsr.data.corpus import check_id
from lsr.data.jsonl import iter_jsonl, require_str
from lsr.errors import DataFormatError


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
    for line_no, obj in iter_jsonl(path):
        where = f"{path}:{line_no}"
        key = "id" if "id" in obj else "_id"
        doc_id = check_id(require_str(obj, key, where), where)
        contents = obj.get("contents") or ""
        yield doc_id, parse_vector(obj, where), contents if isinstance(contents, str) else ""


def vector_to_dict(term_ids: np.ndarray, weights: np.ndarray, vocab: list[str]) -> dict[str, float]:
    return {vocab[t]: round(float(w), 6) for t, w in zip(term_ids.tolist(), weights.tolist(), strict=True)}


def write_sparse_jsonl(
    records: Iterable[tuple[str, dict[str, float]]], path: str | Path, overwrite: bool = False
) -> int:
    """Write ``(id, vector)`` records atomically; return how many were written."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass --overwrite to replace it")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    n = 0
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for doc_id, vector in records:
                f.write(json.dumps({"id": doc_id, "vector": vector}, ensure_ascii=False) + "\n")
                n += 1
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return n
