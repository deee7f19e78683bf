"""Queries for ``lsr search --queries``: text (BEIR folder, .jsonl, .tsv, ir_datasets id) or
pre-encoded sparse-vector JSONL, returned encoded for a given searcher."""

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
) -> tuple[list[str], SparseBatch]:
    """``(query ids, encoded queries)`` from any supported query source."""
    if is_sparse_jsonl(spec):
        records = list(iter_sparse_jsonl(spec))
        return [r[0] for r in records], searcher.encode_vectors([r[1] for r in records])
    return searcher.encode_query_texts(load_queries(spec, split))
