"""Queries for ``lsr search --queries``: text (BEIR folder, .jsonl, .tsv, ir_datasets id) or
pre-encoded sparse-vector JSONL (encoded in the searcher's vocabulary)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lsr.data.corpus import load_queries
from lsr.data.sparse_jsonl import is_sparse_jsonl, iter_sparse_jsonl
from lsr.index import SparseBatch

if TYPE_CHECKING:
    from lsr.searcher import Searcher


def load_query_input(
    searcher: Searcher, spec: str | Path, split: str | None = None
) -> tuple[list[str], list[str] | None, SparseBatch | None]:
    """``(query ids, texts, None)`` for text queries, ``(query ids, None, sparse vectors)`` for JSONL."""
    if is_sparse_jsonl(spec):
        records = list(iter_sparse_jsonl(spec))
        return [r[0] for r in records], None, searcher.encode_vectors([r[1] for r in records])
    queries = load_queries(spec, split)
    return list(queries), list(queries.values()), None
