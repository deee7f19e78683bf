"""Hugging Face checkpoints and vocabularies, without torch: shared by every transformer encoder.

Everything here is importable without torch so that the inference-free query side
(a tokenizer and a weight table) never loads it. The torch half lives in
:mod:`lsr.encoders.transformer`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lsr.config import LONG_DOCS
from lsr.errors import ConfigError
from lsr.index.sparse import PTR_DTYPE, TERM_DTYPE, WEIGHT_DTYPE, SparseBatch

logger = logging.getLogger(__name__)

EXTRA_HINT = 'install the encoder dependencies: pip install -e ".[encoders]" (after the CPU torch pin)'
FETCH_HINT = "python scripts/fetch_models.py puts splade-tiny in models/splade-tiny"


def require(module: str) -> Any:
    """Import a heavy optional dependency, or raise an ImportError that names the extra."""
    import importlib

    try:
        loaded = importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{module} is needed for transformer encoders ({exc}); {EXTRA_HINT}") from None
    if module == "transformers":  # lsr reports progress itself; no bar per checkpoint load
        loaded.utils.logging.disable_progress_bar()
    return loaded


def resolve_model(spec: str, what: str = "encoder.model") -> Path:
    """A local model folder for ``spec``: the folder itself, or a hub name from the local cache or hub.

    Hub names fail fast offline, with a message that says to pass a local folder.

    Raises:
        ConfigError: empty spec, a path that does not exist, or a hub name that cannot be had.
    """
    if not spec:
        raise ConfigError(
            f"{what} is empty: name a model folder, e.g. --encoder splade:models/splade-tiny ({FETCH_HINT})"
        )
    path = Path(spec).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        raise ConfigError(f"{what} = {spec!r} is not a model folder ({FETCH_HINT})")
    hub = require("huggingface_hub")
    try:  # the local cache first: no network, no waiting
        return Path(hub.snapshot_download(spec, local_files_only=True))
    except Exception:
        pass
    if os.environ.get("HF_HUB_OFFLINE"):
        raise ConfigError(
            f"{what} = {spec!r}: not in the local Hugging Face cache and HF_HUB_OFFLINE is "
            f"set; pass a local model folder instead ({FETCH_HINT})"
        )
    try:
        return Path(hub.snapshot_download(spec))
    except Exception as exc:
        raise ConfigError(
            f"{what} = {spec!r}: could not get it from the Hugging Face hub "
            f"({type(exc).__name__}; offline?); pass a local model folder instead "
            f"({FETCH_HINT})"
        ) from None


def vocab_digest(vocab: Sequence[str]) -> str:
    """A short fingerprint of a vocabulary (term strings in id order)."""
    return hashlib.sha256(json.dumps(list(vocab), ensure_ascii=False).encode()).hexdigest()[:16]


def check_vocab(vocab: Sequence[str], term_index: Mapping[str, int], what: str) -> None:
    """Refuse a query encoder whose vocabulary is not the index's, term for term.

    Raises:
        ConfigError: naming the first disagreement.
    """
    if len(vocab) != len(term_index):
        raise ConfigError(
            f"vocabulary mismatch: {what} has {len(vocab)} terms, the index has "
            f"{len(term_index)}; query and document encoders must share one vocabulary"
        )
    for i, term in enumerate(vocab):
        if term_index.get(term) != i:
            raise ConfigError(
                f"vocabulary mismatch: {what} has term {term!r} at id {i}, the index has it "
                f"at {term_index.get(term)}; query and document encoders must share one "
                "vocabulary"
            )


def clean_text(text: str) -> str:
    """Text the Rust tokenizers accept: lone surrogates (from JSON escapes of bad bytes) become U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text)


def prune_row(
    terms: np.ndarray, weights: np.ndarray, threshold: float, max_terms: int
) -> tuple[np.ndarray, np.ndarray]:
    """Drop weights below ``threshold`` (and all weights <= 0), then keep the ``max_terms`` largest.

    Ties at the cut keep the smaller term id, so the result does not depend on the input order.
    """
    keep = weights > 0 if threshold <= 0 else weights >= threshold
    if not keep.all():
        terms, weights = terms[keep], weights[keep]
    if max_terms and len(terms) > max_terms:
        order = np.lexsort((terms, -weights))[:max_terms]
        order.sort()  # back to ascending term ids (terms came in ascending)
        terms, weights = terms[order], weights[order]
    return terms, weights


def model_json(path: Path) -> Any:
    """The JSON of a model folder's settings file at ``path``.

    Raises:
        ConfigError: the file cannot be read as JSON (naming it).
    """
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not JSON ({exc})") from None


DOC_FILE = "lsr_doc.json"  # a model folder's document-side settings (lsr_query.json: the query side's)
DOC_KEYS = ("tf", "long_docs", "what", "selected_on")  # what / selected_on: free text for the reader
DOC_LONG_DOCS = tuple(v for v in LONG_DOCS if v != "auto")  # what a model folder may choose


def read_doc_settings(model_dir: Path) -> dict[str, Any]:
    """A model folder's ``lsr_doc.json`` (``{}`` when it has none): ``tf``, the documents' tf
    saturation (SPLADE, :func:`lsr.encoders.splade.read_doc_file`), and ``long_docs``, how the model
    reads documents longer than ``max_length`` (``truncate`` or ``windows``; what
    ``encoder.transformer.long_docs: auto`` means for it).

    Raises:
        ConfigError: the file is not a JSON object, has a key other than ``DOC_KEYS``, or a
            ``long_docs`` other than ``DOC_LONG_DOCS`` (each named, with the file).
    """
    path = Path(model_dir) / DOC_FILE
    if not path.is_file():
        return {}
    data = model_json(path)
    if not isinstance(data, dict):
        raise ConfigError(f'{path}: expected a JSON object such as {{"tf": {{...}}}}, got {data!r:.200}')
    unknown = sorted(set(data) - set(DOC_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; known: {list(DOC_KEYS)}")
    if data.get("long_docs", "truncate") not in DOC_LONG_DOCS:
        raise ConfigError(f"{path}: long_docs = {data['long_docs']!r} must be one of {list(DOC_LONG_DOCS)}")
    return data


def count_row(counts: Mapping[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The canonical row (ascending term ids) of a query's term id -> count, the counts as weights."""
    row = sorted(counts.items())
    terms = np.fromiter((t for t, _ in row), dtype=TERM_DTYPE, count=len(row))
    return terms, np.fromiter((c for _, c in row), dtype=WEIGHT_DTYPE, count=len(row))


def rows_to_batch(rows: Sequence[tuple[np.ndarray, np.ndarray]]) -> SparseBatch:
    """CSR from rows that are already canonical (ascending term ids, weights > 0)."""
    if not rows:
        return SparseBatch.empty()
    lengths = np.fromiter((len(t) for t, _ in rows), dtype=PTR_DTYPE, count=len(rows))
    indptr = np.zeros(len(rows) + 1, dtype=PTR_DTYPE)
    np.cumsum(lengths, out=indptr[1:])
    return SparseBatch(
        indptr,
        np.concatenate([t for t, _ in rows]).astype(TERM_DTYPE, copy=False),
        np.concatenate([w for _, w in rows]).astype(WEIGHT_DTYPE, copy=False),
    )
