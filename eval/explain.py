"""``lsr eval --explain QID``: why a document ranked where it did.

For one query: its terms and weights (from the index's own query encoder), then for each of the
top documents the query terms it contains, the document's impact for each (dequantized: stored
impact x the index's scale) and the contribution ``query weight x impact``. The contributions sum
to the document's score (up to float32 rounding), which the output shows next to the score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class DocExplanation:
    rank: int
    doc_id: str
    score: float
    relevance: int | None
    title: str
    terms: list[tuple[str, float, float, float]] = field(default_factory=list)  # term, q_w, impact, contrib

    @property
    def total(self) -> float:
        return float(sum(t[3] for t in self.terms))


@dataclass
class Explanation:
    qid: str
    text: str
    query_terms: list[tuple[str, float]]
    docs: list[DocExplanation]
    scale: float


def doc_impact(index: Any, term: int, doc: int) -> float:
    """The weight the search scores internal doc ``doc`` with for ``term`` (0 when absent): the exact
    weight when the index rescores (lsr.index.rescore), else the dequantized impact."""
    if getattr(index, "rescore", False) and index.forward is not None:
        return index.forward.weight(doc, term)
    lo, hi = int(index.term_ptr[term]), int(index.term_ptr[term + 1])
    docs = np.asarray(index.doc_ids[lo:hi])
    i = int(np.searchsorted(docs, doc))
    if i < len(docs) and docs[i] == doc:
        return float(index.impacts[lo + i]) * float(index.scale)
    hit = np.flatnonzero(docs == doc)  # posting lists are sorted by doc id; this is a safety net
    return float(index.impacts[lo + hit[0]]) * float(index.scale) if len(hit) else 0.0


def explain_query(
    index_dir: str | Path,
    qid: str,
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]] | None,
    k: int = 5,
    mode: str = "exact",
) -> Explanation:
    """Explain the top ``k`` documents of query ``qid``.

    Raises:
        KeyError: ``qid`` is not among the dataset's queries (the message lists a few ids).
    """
    from lsr.searcher import Searcher

    if qid not in queries:
        sample = ", ".join(list(queries)[:5])
        raise KeyError(f"query id {qid!r} is not in the dataset's queries (e.g. {sample})")
    searcher = Searcher(index_dir)
    index = searcher.index
    encoded = searcher.encode_texts([queries[qid]])
    terms, weights = encoded.row(0)
    vocab = index.vocab
    q = sorted(
        ((vocab[int(t)], float(w), int(t)) for t, w in zip(terms, weights, strict=True)), key=lambda x: -x[1]
    )
    result = index.search(terms, weights, k=k, mode=mode)
    keys = index.doc_keys
    grades = (qrels or {}).get(qid, {})
    docs = []
    for rank, (d, s) in enumerate(zip(result.docs.tolist(), result.scores.tolist(), strict=True), start=1):
        title = ""
        if searcher.docstore is not None:
            title = searcher.docstore.get(d).get("title", "")
        contrib = []
        for term, w, t in q:
            imp = doc_impact(index, t, d)
            if imp:
                contrib.append((term, w, imp, w * imp))
        contrib.sort(key=lambda x: -x[3])
        docs.append(
            DocExplanation(rank, keys[d], float(s), grades.get(keys[d]) if qrels else None, title, contrib)
        )
    return Explanation(qid, queries[qid], [(t, w) for t, w, _ in q], docs, float(index.scale))


def format_explanation(ex: Explanation, max_terms: int = 12) -> str:
    lines = [f"query {ex.qid}: {ex.text}", f"{len(ex.query_terms)} query terms (weight):"]
    lines.append(
        "  "
        + ", ".join(f"{t} {w:.3g}" for t, w in ex.query_terms[:40])
        + (" ..." if len(ex.query_terms) > 40 else "")
    )
    lines.append(f"contribution = query weight x document impact (stored impact x scale {ex.scale:.4g})")
    for d in ex.docs:
        rel = "" if d.relevance is None else f"  judged {d.relevance}"
        lines.append("")
        lines.append(
            f"#{d.rank} {d.doc_id}  score {d.score:.4f}  (sum of contributions {d.total:.4f}, "
            f"{len(d.terms)} matching terms){rel}"
        )
        if d.title:
            lines.append(f"   {d.title[:100]}")
        for term, w, imp, c in d.terms[:max_terms]:
            lines.append(
                f"   {term:<20} {w:8.3f} x {imp:8.3f} = {c:8.3f}  ({100 * c / d.score:4.1f}%)"
                if d.score
                else f"   {term:<20} {w:8.3f} x {imp:8.3f} = {c:8.3f}"
            )
        if len(d.terms) > max_terms:
            rest = sum(t[3] for t in d.terms[max_terms:])
            lines.append(f"   ... {len(d.terms) - max_terms} more terms: {rest:.3f}")
    return "\n".join(lines)


def explanation_dict(ex: Explanation) -> dict[str, Any]:
    return {
        "qid": ex.qid,
        "text": ex.text,
        "scale": ex.scale,
        "query_terms": [{"term": t, "weight": w} for t, w in ex.query_terms],
        "docs": [
            {
                "rank": d.rank,
                "doc_id": d.doc_id,
                "score": d.score,
                "relevance": d.relevance,
                "title": d.title,
                "sum_of_contributions": d.total,
                "terms": [
                    {"term": t, "query_weight": w, "doc_impact": i, "contribution": c}
                    for t, w, i, c in d.terms
                ],
            }
            for d in ex.docs
        ],
    }
