"""lsr.index: the inverted index. numpy + numba only; never imports torch or the encoders.

Public API:
    SparseBatch            CSR batch of sparse vectors, the only form that crosses packages
    build_index            forward vectors -> CSC posting lists (+ block-max data) on disk
    BuildOptions           quantization, document reordering, block size
    Index                  memory-mapped index: exact, safe and approximate top-k
    SearchParams           mode (exact | safe | approx), alpha, beta

Live indexes (segments + manifest + tombstones): ``lsr.index.segments`` (``open_index``,
``SegmentedIndex``), ``lsr.index.writer`` (``IndexWriter``, ``MergePolicy``), ``lsr.index.manifest``
(the on-disk format).
"""

from lsr.index.builder import BuildOptions, build_index
from lsr.index.search import Index, SearchParams, SearchResult, max_threads
from lsr.index.sparse import SparseBatch

__all__ = [
    "BuildOptions",
    "Index",
    "SearchParams",
    "SearchResult",
    "SparseBatch",
    "build_index",
    "max_threads",
]
