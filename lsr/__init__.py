"""lsr: learned sparse retrieval: encoders, training, a numba inverted index, evaluation.

This module stays light on purpose: ``import lsr`` (and ``lsr.config``) never
imports torch, transformers or numba. Heavy dependencies load inside the
functions that need them.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Index", "__version__"]


def __getattr__(name: str) -> Any:
    """``lsr.Index`` (lsr.api) loads numpy, numba and the searcher on first use only."""
    if name == "Index":
        from lsr.api import Index

        return Index
    raise AttributeError(f"module 'lsr' has no attribute {name!r}")
