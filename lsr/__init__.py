"""lsr: learned sparse retrieval: encoders, training, a numba inverted index, evaluation.

This module stays light on purpose: ``import lsr`` (and ``lsr.config``) never
imports torch, transformers or numba. Heavy dependencies load inside the
functions that need them.
"""

__version__ = "0.1.0"
