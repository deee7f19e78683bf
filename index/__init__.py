"""lsr.index: the inverted index. numpy + numba only; never imports torch or the encoders.

Public API:
    SparseBatch            CSR batch of sparse vectors, the only form that crosses packages
    build_index            forward vectors -> CSC posting lists on disk
    Index                  memory-mapped index with exhaustive top-k search
"""

from lsr.index.builder import build_index
from lsr.index.search import Index, SearchResult
from lsr.index.sparse import SparseBatch

__all__ = ["Index", "SearchResult", "SparseBatch", "build_index"]
