"""Why a document scored what it did: for each query term it holds, the query weight x the document's
impact (stored impact x the quantization scale). The contributions sum to the document's score (up
to float32 rounding). ``lsr eval explain`` prints them; the service answers them (``POST /v1/explain``)
and the search page shows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Contribution:
    term: str
    query_weight: float
    doc_impact: float  # dequantized: stored impact x scale

    @property
    def contribution(self) -> float:
        return self.query_weight * self.doc_impact


def doc_impact(index: Any, term: int, doc: int) -> float:
    """The weight the search scores internal doc ``doc`` with for ``term`` (0 when absent): the exact
    weight when the index rescores (lsr.index.rescore), else the dequantized impact. A live index
    (``segments``) looks in the segment that holds the document, with that segment's scale."""
    if getattr(index, "rescore", False) and index.forward is not None:
        return float(index.forward.weight(doc, term))
    segments = getattr(index, "segments", None)
    if segments is not None:
        seg = int(np.searchsorted(index.bases, doc, side="right")) - 1
        segment = segments[seg]
        if term >= segment.n_terms:
            return 0.0
        return doc_impact(segment, term, doc - int(index.bases[seg]))
    lo, hi = int(index.term_ptr[term]), int(index.term_ptr[term + 1])
    docs = np.asarray(index.doc_ids[lo:hi])
    i = int(np.searchsorted(docs, doc))  # posting lists are sorted by doc id
    if i < len(docs) and docs[i] == doc:
        return float(index.impacts[lo + i]) * float(index.scale)
    return 0.0


def contributions(index: Any, terms: Any, weights: Any, doc: int) -> list[Contribution]:
    """The query terms (ids ``terms`` with ``weights``) that internal doc ``doc`` holds, largest
    contribution first."""
    vocab = index.vocab
    out = []
    for t, w in zip(np.asarray(terms).tolist(), np.asarray(weights).tolist(), strict=True):
        impact = doc_impact(index, int(t), doc)
        if impact:
            out.append(Contribution(vocab[int(t)], float(w), impact))
    out.sort(key=lambda c: -c.contribution)
    return out


def query_terms(index: Any, terms: Any, weights: Any) -> list[tuple[str, float]]:
    """``(term, weight)`` of an encoded query, heaviest first."""
    vocab = index.vocab
    pairs = zip(np.asarray(terms).tolist(), np.asarray(weights).tolist(), strict=True)
    return sorted(((vocab[int(t)], float(w)) for t, w in pairs), key=lambda x: -x[1])
