"""Streaming readers and writers for corpora, queries, qrels, runs and sparse vectors.

Everything here streams: a corpus is an iterator of :class:`Doc`, never a list.
"""

from lsr.data.corpus import Doc, Query, load_queries, open_corpus
from lsr.data.jsonl import iter_jsonl
from lsr.data.trec import read_qrels, read_run, write_run

__all__ = [
    "Doc",
    "Query",
    "iter_jsonl",
    "load_queries",
    "open_corpus",
    "read_qrels",
    "read_run",
    "write_run",
]
