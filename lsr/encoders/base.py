"""What every encoder provides, and the corpus statistics some of them need.

An encoder turns texts into a :class:`SparseBatch` over its vocabulary; it never
writes files. The pipeline (:mod:`lsr.pipeline`) runs a corpus through it with
the resumable encode loop (:mod:`lsr.encode`) into the one vector store
(:class:`lsr.vectors.VectorWriter`), then, for the encoders that need them,
runs the statistics pass and applies what the encoder makes of the statistics:

| encoder           | ``stats_from`` | the statistics pass reads          | ``finish`` returns               |
|-------------------|----------------|------------------------------------|----------------------------------|
| `bm25`            | `vectors`      | the written term-frequency vectors | tf -> BM25 impacts, per shard    |
| `inference-free`  | `texts` (idf)  | the corpus texts, tokenized whole  | the query table and tokenizer    |
| `splade`, `unicoil` | -            | -                                  | nothing                          |

BM25 counts its statistics from the vectors it already wrote rather than in a
pass before encoding: analysis (tokenizing, stopwords, stemming) is the whole
cost of BM25, and a pass before encoding would analyze every document twice;
the written term frequencies already hold df (rows containing a term) and each
document's length (the sum of its row). The inference-free IDF counts tokens
of whole texts (no truncation, no windows, no expansion), which the SPLADE
document vectors cannot give, so its pass reads the corpus texts again.

A *query encoder* is rebuilt from the ``encoder`` section that the index's
meta.json carries (``from_meta``), so queries and documents can never be
encoded differently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lsr.index.sparse import SparseBatch


@dataclass(frozen=True)
class CorpusStats:
    """Document frequencies of a corpus, the input of an IDF.

    Attributes:
        n_docs: the N of the IDF (BM25: documents with at least one term, as Lucene's
            docCount; inference-free: every text).
        df: int64[n_terms], how many of those documents contain each term.
        total_len: the summed length in terms of those documents (BM25's avgdl; 0 if not counted).
    """

    n_docs: int
    df: np.ndarray
    total_len: int = 0

    @property
    def avgdl(self) -> float:
        return self.total_len / self.n_docs if self.n_docs else 1.0

    def idf(self) -> np.ndarray:
        """BM25's IDF, ``ln(1 + (N - df + 0.5) / (df + 0.5))`` (float64): positive for every df."""
        return np.log1p((self.n_docs - self.df + 0.5) / (self.df + 0.5))


@dataclass(frozen=True)
class Finish:
    """What an encoder makes of the corpus statistics.

    Attributes:
        reweight: applied to every written shard, in order (BM25: term frequencies -> impacts).
        files: extra files for the query side, ``{name: bytes}``; they travel into the index.
    """

    reweight: Callable[[SparseBatch], SparseBatch] | None = None
    files: dict[str, bytes] = field(default_factory=dict)


class CorpusEncoder:
    """The document side: texts in, one sparse vector per text out, over ``vocab``.

    Subclasses set ``name`` and implement ``vocab``, ``describe`` and ``encode``; those
    that need corpus statistics set ``stats_from`` and implement ``statistics`` and ``finish``.
    """

    name: str
    resumable = False  # slow enough that a crashed encode should resume (transformer encoders)
    read_ahead = 4096  # documents per ``encode`` call (transformer encoders: encoder.transformer.sort_docs)
    stats_from: str | None = None  # "vectors" (the written vectors), "texts" (the corpus texts) or None

    @property
    def vocab(self) -> list[str]:
        """Term strings by term id (complete once every text has been encoded)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """The ``encoder`` section stored in vectors and index meta (enough to rebuild the query side)."""
        raise NotImplementedError

    def encode(self, texts: Sequence[str]) -> SparseBatch:
        """One row per text, in order: ascending term ids, weights > 0."""
        raise NotImplementedError

    def statistics(self, source: Iterable[Any]) -> CorpusStats:
        """The statistics pass over ``source``: written batches or corpus texts (``stats_from``)."""
        raise NotImplementedError(f"the {self.name} encoder needs no corpus statistics")

    def finish(self, stats: CorpusStats | None) -> Finish:
        """What to do with the written vectors once the statistics are known (None: no pass ran)."""
        return Finish()


class QueryEncoder(Protocol):
    """The query side, rebuilt from an index's ``encoder`` meta section and vocabulary."""

    @classmethod
    def from_meta(
        cls, meta: dict[str, Any], term_index: dict[str, int], directory: Path | None
    ) -> QueryEncoder: ...

    def encode(self, texts: Sequence[str]) -> SparseBatch: ...
