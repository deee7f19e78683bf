"""Product-quantized dense vectors: the ``dense/`` artifact of an index and its ADC scoring kernel.

A document vector x (dim d, optionally rotated by an OPQ matrix R: x' = R x) is cut into
M sub-vectors of d / M dims; each is replaced by the id of its nearest centroid in that
sub-space's codebook (``ksub`` <= 256 centroids), so a document costs M bytes.

Inner-product scoring without decoding (asymmetric distance computation, ADC): for a query
q (rotated the same way), one lookup table ``lut[m, c] = <q_m, codebook[m, c]>`` of shape
[M, ksub], then ``score(doc) = sum_m lut[m, codes[doc, m]]``, which equals <q, decode(doc)>.

This module needs numpy and numba only (no faiss, no torch): training happens at index time
in ``lsr.dense.stage``; query time reads ``.npy`` files memory-mapped.

Files of ``<index>/dense/`` (format ``lsr-dense`` v1):

    codes.npy       uint8 [n_docs, M]         centroid id per sub-space, row i = internal doc i
    codebooks.npy   float32 [M, ksub, d / M]
    rotation.npy    float32 [d, d]            OPQ only: x' = rotation @ x
    vectors.npy     float32 [n_docs, d]       optional: the unquantized vectors
    meta.json
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numba
import numpy as np
from numpy.typing import NDArray

from lsr.index.io import ArtifactError, CorruptArtifactError, load_array, read_meta

DENSE_FORMAT = "lsr-dense"
DENSE_FORMAT_VERSION = 1
DENSE_DIR = "dense"


def ids_digest(ids: Sequence[str]) -> str:
    """sha256 of the doc ids in index order (one per line): ties dense codes to one corpus and order."""
    h = hashlib.sha256()
    for doc_id in ids:
        h.update(doc_id.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def valid_m(dim: int, limit: int = 256) -> list[int]:
    """Sub-quantizer counts that divide ``dim`` (up to ``limit``)."""
    return [m for m in range(1, min(dim, limit) + 1) if dim % m == 0]


def check_m(dim: int, m: int) -> None:
    """Raise ValueError naming the valid M values when ``m`` does not divide ``dim``."""
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1 or dim % m:
        raise ValueError(
            f"PQ with M = {m!r} sub-quantizers needs M to divide the dense dimension {dim}; "
            f"valid M: {valid_m(dim)}"
        )


# ---------------------------------------------------------------------------------------- kernels


@numba.njit(cache=True, nogil=True)
def build_lut(query: NDArray[np.float32], codebooks: NDArray[np.float32]) -> NDArray[np.float32]:
    """``lut[m, c] = <query[m*dsub:(m+1)*dsub], codebooks[m, c]>``, float32 [M, ksub]."""
    n_sub, ksub, dsub = codebooks.shape
    lut = np.empty((n_sub, ksub), dtype=np.float32)
    for m in range(n_sub):
        base = m * dsub
        for c in range(ksub):
            s = np.float32(0.0)
            for j in range(dsub):
                s += query[base + j] * codebooks[m, c, j]
            lut[m, c] = s
    return lut


@numba.njit(cache=True, nogil=True)
def adc_scores(
    lut: NDArray[np.float32], codes: NDArray[np.uint8], cands: NDArray[np.int64]
) -> NDArray[np.float32]:
    """ADC inner products of the candidates ``cands`` (internal doc ids): sum_m lut[m, codes[d, m]]."""
    n_sub = lut.shape[0]
    out = np.empty(len(cands), dtype=np.float32)
    for i in range(len(cands)):
        d = cands[i]
        s = np.float32(0.0)
        for m in range(n_sub):
            s += lut[m, codes[d, m]]
        out[i] = s
    return out


@numba.njit(cache=True, nogil=True)
def adc_scan(lut: NDArray[np.float32], codes: NDArray[np.uint8]) -> NDArray[np.float32]:
    """ADC inner products of every document (a flat scan over the codes)."""
    n_docs, n_sub = codes.shape
    out = np.empty(n_docs, dtype=np.float32)
    for d in range(n_docs):
        s = np.float32(0.0)
        for m in range(n_sub):
            s += lut[m, codes[d, m]]
        out[d] = s
    return out


# ------------------------------------------------------------------------------ slow references


def decode_reference(codebooks: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Reconstruct (rotated) vectors from their codes: float64 [n, d]."""
    n_sub = codebooks.shape[0]
    parts = [codebooks[m][codes[:, m].astype(np.int64)] for m in range(n_sub)]
    return np.concatenate(parts, axis=1).astype(np.float64) if parts else np.zeros((len(codes), 0))


def adc_reference(
    query: np.ndarray, codebooks: np.ndarray, codes: np.ndarray, cands: np.ndarray | None = None
) -> np.ndarray:
    """Obviously-correct ADC: decode the candidates' vectors, then dot with the (rotated) query."""
    rows = codes if cands is None else codes[np.asarray(cands, dtype=np.int64)]
    return decode_reference(codebooks, rows) @ np.asarray(query, dtype=np.float64)


def pq_encode(x: np.ndarray, codebooks: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Codes uint8 [n, M]: the nearest centroid (L2) of each sub-vector of the (rotated) rows of ``x``."""
    x = np.asarray(x, dtype=np.float32)
    n_sub, ksub, dsub = codebooks.shape
    if x.ndim != 2 or x.shape[1] != n_sub * dsub:
        raise ValueError(f"vectors of shape {x.shape} do not match codebooks of dim {n_sub * dsub}")
    if ksub > 256:
        raise ValueError(f"{ksub} centroids per sub-quantizer do not fit uint8 codes (at most 256)")
    codes = np.empty((len(x), n_sub), dtype=np.uint8)
    norms = (codebooks.astype(np.float32) ** 2).sum(axis=2)  # [M, ksub]
    for start in range(0, len(x), chunk):
        block = x[start : start + chunk].reshape(-1, n_sub, dsub)
        # |x - c|^2 = |x|^2 - 2 x.c + |c|^2; |x|^2 is the same for every centroid
        dots = np.einsum("nmd,mkd->nmk", block, codebooks)
        codes[start : start + chunk] = np.argmin(norms[None] - 2 * dots, axis=2)
    return codes


# -------------------------------------------------------------------------------- the artifact


class DenseCodes:
    """A loaded ``dense/`` directory: PQ codes, codebooks, optional rotation and float vectors.

    Arrays are memory-mapped; ``codebooks`` and ``rotation`` (small) are read into memory.
    """

    def __init__(self, path: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]):
        self.path = path
        self.meta = meta
        self.codes: NDArray[np.uint8] = arrays["codes"]
        self.codebooks: NDArray[np.float32] = np.ascontiguousarray(arrays["codebooks"])
        rot = arrays.get("rotation")
        self.rotation: NDArray[np.float32] | None = None if rot is None else np.ascontiguousarray(rot)
        self.vectors: NDArray[np.float32] | None = arrays.get("vectors")
        self.n_docs, self.m = self.codes.shape
        self.dim = int(meta["dim"])

    @classmethod
    def load(cls, path: str | Path) -> DenseCodes:
        """Open a ``dense/`` directory and check its arrays against each other and its meta.

        Raises:
            ArtifactError: missing, half-written, foreign, other-version or inconsistent directory.
        """
        path = Path(path)
        meta = read_meta(path, DENSE_FORMAT, (DENSE_FORMAT_VERSION,))
        try:
            specs = meta["arrays"]
            n_docs, m, dim = int(meta["n_docs"]), int(meta["m"]), int(meta["dim"])
            if "codes" not in specs or "codebooks" not in specs:
                raise KeyError("codes/codebooks")
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"{path}/meta.json lacks or garbles {exc}; rebuild the dense stage") from None
        arrays = {name: load_array(path, name, spec) for name, spec in specs.items()}
        codes, books = arrays["codes"], arrays["codebooks"]
        problems = []
        if codes.dtype != np.uint8 or codes.shape != (n_docs, m):
            problems.append(f"codes {codes.dtype} {list(codes.shape)} != uint8 [{n_docs}, {m}]")
        if (
            books.dtype != np.float32
            or books.ndim != 3
            or books.shape[0] != m
            or books.shape[0] * books.shape[2] != dim
            or not 1 <= books.shape[1] <= 256
        ):
            problems.append(f"codebooks {books.dtype} {list(books.shape)} do not fit M = {m}, dim = {dim}")
        if "rotation" in arrays and arrays["rotation"].shape != (dim, dim):
            problems.append(f"rotation {list(arrays['rotation'].shape)} != [{dim}, {dim}]")
        if "vectors" in arrays and arrays["vectors"].shape != (n_docs, dim):
            problems.append(f"vectors {list(arrays['vectors'].shape)} != [{n_docs}, {dim}]")
        if (
            not problems and codes.size and int(codes.max()) >= books.shape[1]
        ):  # the ADC kernels index by code
            problems.append(f"codes hold centroid {int(codes.max())} of {books.shape[1]}")
        if problems:
            raise CorruptArtifactError(
                path, f"is inconsistent: {'; '.join(problems)}; rebuild the dense stage"
            )
        return cls(path, meta, arrays)

    @property
    def code_nbytes(self) -> int:
        """Bytes of the PQ codes (M per document)."""
        return int(self.codes.nbytes)

    @property
    def bytes_per_doc(self) -> float:
        return self.code_nbytes / max(self.n_docs, 1)

    def rotate(self, queries: np.ndarray) -> np.ndarray:
        """Apply the OPQ rotation (if any) to float32 rows."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        return q if self.rotation is None else np.ascontiguousarray(q @ self.rotation.T)

    def lut(self, query: np.ndarray) -> NDArray[np.float32]:
        """The lookup table [M, ksub] of one query (rotated here)."""
        q = self.rotate(np.asarray(query, dtype=np.float32).reshape(1, -1))[0]
        if q.shape[0] != self.dim:
            raise ValueError(f"query of dim {q.shape[0]} for dense codes of dim {self.dim}")
        return build_lut(q, self.codebooks)

    def score(self, query: np.ndarray, cands: np.ndarray) -> NDArray[np.float32]:
        """ADC scores of internal doc ids ``cands`` for one query embedding."""
        cands = np.ascontiguousarray(cands, dtype=np.int64)
        if len(cands) and (cands.min() < 0 or cands.max() >= self.n_docs):
            raise IndexError(f"candidate doc ids must lie in [0, {self.n_docs})")
        return adc_scores(self.lut(query), self.codes, cands)

    def scan(self, query: np.ndarray) -> NDArray[np.float32]:
        """ADC scores of every document."""
        return adc_scan(self.lut(query), self.codes)

    def score_float(self, query: np.ndarray, cands: np.ndarray) -> NDArray[np.float32]:
        """Exact inner products with the stored float vectors (needs ``keep_float`` at build time)."""
        if self.vectors is None:
            raise ArtifactError(
                f"{self.path} keeps no float vectors; rebuild the dense stage with keep_float"
            )
        rows = self.vectors[np.asarray(cands, dtype=np.int64)]
        return (rows @ np.asarray(query, dtype=np.float32)).astype(np.float32)
