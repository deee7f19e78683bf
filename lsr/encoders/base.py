"""What every encoder provides.

A *corpus encoder* turns a stream of documents into sparse vectors written by a
:class:`lsr.vectors.VectorWriter` and returns the vocabulary. A *query encoder*
turns texts into a :class:`SparseBatch` over the same vocabulary; it is rebuilt
from the ``encoder`` section that the index's meta.json carries, so queries and
documents can never be encoded differently.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from lsr.data.corpus import Doc
from lsr.index.sparse import SparseBatch
from lsr.vectors import VectorWriter


class CorpusEncoder(Protocol):
    name: str

    def describe(self) -> dict[str, Any]:
        """The ``encoder`` section stored in vectors and index meta (enough to rebuild the query side)."""
        ...

    def encode_corpus(self, docs: Iterable[Doc], writer: VectorWriter, progress: bool = False) -> list[str]:
        """Encode every document into ``writer``; return the vocabulary (term by id)."""
        ...


class QueryEncoder(Protocol):
    def encode(self, texts: Sequence[str]) -> SparseBatch: ...
