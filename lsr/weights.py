"""Weights on their way out or into a quantized index: integer export, and the outlier that flattens.

* :func:`integer_weights`: ``round(w x factor)``. Anserini's ``JsonVectorCollection`` (impact
  indexing) reads each weight as a Lucene term frequency, an integer: float weights are truncated (21%
  of BM25 and 70% of SPLADE postings vanished in the [fit] test), so ``lsr export --to anserini``
  (and ``--to ciff|bmp``) write integers (lsr.export).
* :func:`flattening_warning`: an index quantizes impacts linearly against the largest weight
  (``scale = max_weight / levels``); one huge weight (say 1e30) makes every other impact 1, and the
  ranking meaningless. Checked on a sample of the weights before a quantized build.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from lsr.index.sparse import SparseBatch

INT32_MAX = 2**31 - 1  # Lucene's term frequency is an int
LEVELS = {"uint8": 255, "uint16": 65535}
SAMPLE = 1_000_000  # weights sampled for the percentile


def integer_weights(weights: np.ndarray, factor: float) -> np.ndarray:
    """``round(w x factor)`` as int64 (zeros kept: callers drop the postings below 1).

    Raises:
        ValueError: a non-positive factor, or a weight that would exceed a 32-bit integer (Lucene's
            term frequency), naming the weight.
    """
    if not factor > 0:
        raise ValueError(f"quantize factor {factor!r} must be > 0")
    q = np.rint(np.asarray(weights, dtype=np.float64) * factor)
    if q.size and q.max() > INT32_MAX:
        raise ValueError(
            f"a weight of {float(np.max(weights)):g} x {factor:g} exceeds Lucene's 32-bit term frequency; "
            "use a smaller --quantize factor (or fix the outlier vector)"
        )
    return q.astype(np.int64)


def flattening_warning(
    batches: Iterable[SparseBatch],
    impact_dtype: str,
    ids: Sequence[str] | None = None,
    vocab: Sequence[str] | None = None,
) -> str | None:
    """A warning when linear quantization to ``impact_dtype`` would put 99% of the postings on the lowest
    two levels because of a few huge weights; None when the weights spread fine (or float32). ``ids``
    and ``vocab`` name the document and term of the largest weight."""
    levels = LEVELS.get(impact_dtype)
    if levels is None:
        return None
    samples: list[np.ndarray] = []
    top, where, offset = 0.0, (0, 0), 0
    for batch in batches:
        w = batch.weights
        if w.size:
            i = int(np.argmax(w))
            if w[i] > top:
                row = offset + int(np.searchsorted(batch.indptr, i, "right")) - 1
                top, where = float(w[i]), (row, int(batch.term_ids[i]))
            samples.append(w[:: max(1, w.size // SAMPLE)])
        offset += len(batch)
    if not samples or top <= 0:
        return None
    p99 = float(np.quantile(np.concatenate(samples), 0.99))
    scale = top / levels
    if p99 >= 2 * scale:
        return None
    doc = ids[where[0]] if ids is not None else f"row {where[0]}"
    term = vocab[where[1]] if vocab is not None else f"term id {where[1]}"
    return (
        f"the largest weight, {top:g} (doc {doc!r}, term {term!r}), is {top / max(p99, 1e-30):.3g} times the "
        f"99th percentile of the weights ({p99:g}): quantized to {impact_dtype} impacts ({levels} levels of "
        f"{scale:g}), 99% of the postings get impact 1 or 2 and rank alike. Fix or clip that vector, or "
        "index with --set index.impact_dtype=float32"
    )
