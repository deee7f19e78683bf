"""The dense feature of an index, in one place (the numba ADC kernels stay in ``lsr.index.pq``).

* ``lsr.dense.model``: dense bi-encoders (sentence-transformers layout), texts -> float32 embeddings;
* ``lsr.dense.stage``: the ``dense/`` stage of an index: PQ build with faiss (``lsr index --dense``),
  opening it and scoring candidates or the whole corpus at query time;
* ``lsr.dense.fusion``: fusion of sparse and dense scores (convex min-max / z-score, RRF);
* ``lsr.dense.tune``: fusion-weight tuning on a dev split, stored in the dense meta (``lsr tune-fusion``).

Nothing is imported here, so ``import lsr.dense.fusion`` stays numpy-only.
"""
