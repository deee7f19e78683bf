"""Top-k selection over a NumPy score array (the numba kernels keep their own heaps; ``reference.py``
keeps the slow reference). Order: score descending, then doc id ascending; among scores tied at the
cut, the lowest doc ids are kept, so the result never depends on ``np.partition``'s tie order."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def top_k(
    scores: NDArray, k: int, docs: NDArray | None = None, positive: bool = False
) -> tuple[NDArray[np.int64], NDArray]:
    """(doc ids, their scores) of the ``k`` largest of ``scores``.

    Args:
        docs: the doc id of each score (default: its position).
        positive: keep only scores > 0 (a sparse dot product with no shared term is no match).
    """
    scores = np.asarray(scores)
    docs = np.arange(len(scores), dtype=np.int64) if docs is None else np.asarray(docs, dtype=np.int64)
    if positive:
        keep = scores > 0
        scores, docs = scores[keep], docs[keep]
    n = len(scores)
    k = min(k, n)
    if k <= 0:
        return np.zeros(0, np.int64), scores[:0]
    if k < n:
        kth = np.partition(scores, n - k)[n - k]
        keep = scores >= kth
        scores, docs = scores[keep], docs[keep]
    order = np.lexsort((docs, -scores))[:k]
    return docs[order], scores[order]
