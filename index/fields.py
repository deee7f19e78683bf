"""Metadata fields: typed columns beside an index's postings, and filters over them.

``fields/`` inside an index (or segment), built from the docstore's ``metadata`` objects for the
fields a schema names (config ``index.fields``: ``{name: keyword | int | float | date}``):

    NAME.npy          keyword: int32 codes into NAME.values.json (-1: missing); int: int64;
                      float: float64; date: int64 seconds since 1970-01-01 UTC; one per internal doc
    NAME.present.npy  bool: the doc has the field
    meta.json         format lsr-fields v1, n_docs, the schema

A filter is one small JSON form (shared by the CLI, Python and REST)::

    {"term": {"lang": "en"}}          {"terms": {"lang": ["en", "de"]}}
    {"range": {"year": {"gte": 2000, "lt": 2010}}}       {"exists": "year"}
    {"and": [f, ...]}   {"or": [f, ...]}   {"not": f}

It becomes a bool[n_docs] mask, ANDed with the live docs and handed to the kernels, so a filtered
search returns k documents whenever k documents match.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from lsr.index.docstore import DocStore, DocStoreWriter
from lsr.index.io import ArtifactError, atomic_directory, load_array, read_meta, save_array, write_meta

FIELDS_DIR = "fields"
FIELDS_FORMAT = "lsr-fields"
FIELDS_FORMAT_VERSION = 1
FIELD_TYPES = ("keyword", "int", "float", "date")
RANGE_OPS = ("gt", "gte", "lt", "lte")


class FieldError(ValueError):
    """Metadata of the wrong type for its field, or a filter that names an unknown field or is malformed."""


def check_schema(schema: dict[str, str]) -> dict[str, str]:
    for name, kind in schema.items():
        if kind not in FIELD_TYPES:
            raise FieldError(f"field {name!r} has type {kind!r}; the types are {list(FIELD_TYPES)}")
    return dict(schema)


# --- building -------------------------------------------------------------------------------------


def build_fields(index_dir: Path, schema: dict[str, str], n_docs: int) -> None:
    """Write ``index_dir/fields`` from the docstore's metadata (internal doc order)."""
    check_schema(schema)
    store = DocStore(index_dir) if DocStoreWriter.files(index_dir) else None
    metas = [(store.get(i).get("metadata") or {}) if store is not None else {} for i in range(n_docs)]
    with atomic_directory(index_dir / FIELDS_DIR, overwrite=True) as tmp:
        arrays = {}
        for name, kind in schema.items():
            values = [
                _value(m.get(name), name, kind, store.get(i)["id"] if store else i)
                for i, m in enumerate(metas)
            ]
            arrays.update(_column(tmp, name, kind, values))
        write_meta(
            tmp,
            {
                "format": FIELDS_FORMAT,
                "format_version": FIELDS_FORMAT_VERSION,
                "n_docs": n_docs,
                "schema": schema,
                "arrays": arrays,
            },
        )


def _value(value: Any, name: str, kind: str, doc: Any) -> Any:
    """A metadata value checked against its field type (None: missing)."""
    if value is None:
        return None
    try:
        return convert(value, kind)
    except FieldError as exc:
        raise FieldError(f"document {doc!r}: field {name!r}: {exc}") from None


def convert(value: Any, kind: str) -> Any:
    """``value`` as the column type of ``kind`` (a date: seconds since the epoch, UTC)."""
    if kind == "keyword" and isinstance(value, str):
        return value
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind == "date" and isinstance(value, str):
        return _date_seconds(value)
    raise FieldError(f"{value!r} is not a {kind} value")


def _date_seconds(text: str) -> int:
    try:
        when = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise FieldError(f"{text!r} is not an ISO date (YYYY-MM-DD[THH:MM:SS])") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return int(when.timestamp())


def _column(tmp: Path, name: str, kind: str, values: list[Any]) -> dict[str, Any]:
    present = np.array([v is not None for v in values], bool)
    if kind == "keyword":
        vocab = sorted({v for v in values if v is not None})
        code = {v: i for i, v in enumerate(vocab)}
        column = np.array([code[v] if v is not None else -1 for v in values], np.int32)
        (tmp / f"{name}.values.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    else:
        dtype = np.float64 if kind == "float" else np.int64
        column = np.array([v if v is not None else 0 for v in values], dtype)
    return {
        name: save_array(tmp, name, column),
        f"{name}.present": save_array(tmp, f"{name}.present", present),
    }


# --- loading and filtering ------------------------------------------------------------------------


class Fields:
    """The loaded columns of one index or segment."""

    def __init__(self, path: Path, meta: dict[str, Any]):
        self.path = path
        self.schema: dict[str, str] = meta["schema"]
        self.n_docs: int = meta["n_docs"]
        self.columns = {name: load_array(path, name, spec) for name, spec in meta["arrays"].items()}
        self.values = {
            name: {v: i for i, v in enumerate(json.loads((path / f"{name}.values.json").read_text("utf-8")))}
            for name, kind in self.schema.items()
            if kind == "keyword"
        }

    @classmethod
    def load(cls, index_dir: Path) -> Fields | None:
        path = index_dir / FIELDS_DIR
        if not path.exists():
            return None
        meta = read_meta(path, FIELDS_FORMAT, (FIELDS_FORMAT_VERSION,))
        if missing := [n for n in meta["schema"] if n not in meta["arrays"]]:
            raise ArtifactError(f"{path} lacks the columns of {missing}; rebuild the index")
        return cls(path, meta)

    def mask(self, spec: Any) -> NDArray[np.bool_]:
        """bool[n_docs]: the docs that ``spec`` allows (see the module docstring)."""
        op, arg = _one_key(spec)
        if op in ("and", "or"):
            if not isinstance(arg, list) or not arg:
                raise FieldError(f"filter {op!r} needs a non-empty list of filters, got {arg!r}")
            masks = [self.mask(f) for f in arg]
            return np.logical_and.reduce(masks) if op == "and" else np.logical_or.reduce(masks)
        if op == "not":
            return ~self.mask(arg)
        if op == "exists":
            return np.asarray(self.columns[f"{self._field(arg)}.present"], bool).copy()
        return self._leaf(op, arg)

    def _field(self, name: Any) -> str:
        if not isinstance(name, str) or name not in self.schema:
            raise FieldError(
                f"unknown field {name!r} in the filter; the index has fields {sorted(self.schema)}"
            )
        return name

    def _leaf(self, op: str, arg: Any) -> NDArray[np.bool_]:
        if op not in ("term", "terms", "range"):
            raise FieldError(f"unknown filter {op!r}; filters: term, terms, range, exists, and, or, not")
        name, value = _one_key(arg, f"filter {op!r}")
        name = self._field(name)
        column = np.asarray(self.columns[name])
        present = np.asarray(self.columns[f"{name}.present"], bool)
        if op == "range":
            return present & self._range(name, column, value)
        values = value if op == "terms" else [value]
        if not isinstance(values, list):
            raise FieldError(f"filter 'terms' on {name!r} needs a list of values, got {value!r}")
        keys = [self._key(name, v) for v in values]
        return present & np.isin(column, [k for k in keys if k is not None])

    def _key(self, name: str, value: Any) -> Any:
        kind = self.schema[name]
        converted = convert(value, kind)
        return self.values[name].get(converted) if kind == "keyword" else converted

    def _range(self, name: str, column: np.ndarray, bounds: Any) -> NDArray[np.bool_]:
        kind = self.schema[name]
        if kind == "keyword":
            raise FieldError(f"a range on keyword field {name!r}; ranges apply to int, float and date fields")
        if not isinstance(bounds, dict) or not bounds or set(bounds) - set(RANGE_OPS):
            raise FieldError(
                f"range on {name!r} must be an object of {list(RANGE_OPS)} bounds, got {bounds!r}"
            )
        keep = np.ones(len(column), bool)
        for op, bound in bounds.items():
            b = convert(bound, "float" if kind == "int" else kind)
            keep &= {"gt": column > b, "gte": column >= b, "lt": column < b, "lte": column <= b}[op]
        return keep


def _one_key(spec: Any, what: str = "a filter") -> tuple[str, Any]:
    if not isinstance(spec, dict) or len(spec) != 1:
        raise FieldError(f"{what} must be an object with exactly one key, got {spec!r}")
    return next(iter(spec.items()))


def live_filtered(
    live: NDArray[np.uint8], n_docs: int, fields: Fields | None, spec: Any
) -> NDArray[np.uint8]:
    """The kernels' live array with a filter applied (``fields`` None: an index without fields)."""
    if fields is None:
        raise FieldError(
            "the index has no metadata fields (config index.fields at build time): it cannot filter"
        )
    mask = fields.mask(spec)
    if len(live):
        mask &= live.astype(bool)
    return np.ascontiguousarray(mask, dtype=np.uint8)
