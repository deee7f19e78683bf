"""The dense stage of an index: PQ-compressed bi-encoder vectors that re-score sparse candidates.

``build_dense_stage(index_dir, corpus)`` encodes the indexed corpus with a dense bi-encoder
(all-MiniLM-L6-v2 by default), trains a product quantizer with faiss (``IndexPQ``, optionally
an OPQ rotation) and writes ``<index_dir>/dense/`` (format in ``lsr.index.pq``) atomically.
Query time needs no faiss: ``DenseStage.open(index_dir)`` memory-maps the codes, encodes the
query with the same model and scores candidates with the numba ADC kernel.

Too few documents for 8-bit PQ (256 centroids per sub-quantizer): the stage falls back to
``floor(log2(n_docs))`` bits (2^bits centroids, still one byte per code), logs a warning and
records it in the meta (``nbits``, ``notes``); faiss itself recommends at least 39 x 256 training
vectors for 8 bits, so under 9,984 documents a note says the codebooks are under-trained.
Fewer than 2 documents: refused. OPQ needs 256 documents; below that it is refused too.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from lsr import __version__
from lsr.data.corpus import open_corpus
from lsr.data.docstore import DocStore, DocStoreWriter
from lsr.data.formats import CorpusSource
from lsr.dense.fusion import FUSION_METHODS, check_fusion, fused_order
from lsr.dense.model import DenseModel, resolve_dense_model
from lsr.errors import LsrError
from lsr.index import Index
from lsr.index.io import (
    ArtifactError,
    atomic_directory,
    directory_bytes,
    read_meta,
    save_array,
    write_meta,
)
from lsr.index.pq import (
    DENSE_DIR,
    DENSE_FORMAT,
    DENSE_FORMAT_VERSION,
    DenseCodes,
    check_m,
    ids_digest,
    pq_encode,
)

logger = logging.getLogger(__name__)

DEFAULT_FUSION = {"method": "convex-minmax", "weight": 0.5, "tuned": False}
FAISS_MIN_POINTS_PER_CENTROID = 39


def _index_ids(index_dir: Path) -> tuple[dict[str, Any], Sequence[str]]:
    """The index's meta and its doc ids in order (the index loader's own checks apply)."""
    index = Index.load(index_dir, blockmax=False)
    return index.meta, index.doc_keys


class DenseStage:
    """An index's ``dense/`` directory plus (lazily) the query-side dense model."""

    def __init__(self, codes: DenseCodes, index_dir: Path):
        self.codes = codes
        self.meta = codes.meta
        self.index_dir = index_dir

    @classmethod
    def open(cls, index_dir: str | Path, doc_keys: Sequence[str] | None = None) -> DenseStage | None:
        """The dense stage of ``index_dir``, or None if it has none.

        Raises:
            ArtifactError: a corrupt or foreign ``dense/``, or codes of another corpus (doc count or
                doc-id digest differ from the index's).
        """
        index_dir = Path(index_dir)
        path = index_dir / DENSE_DIR
        if not path.exists():
            return None
        codes = DenseCodes.load(path)
        if doc_keys is None:
            doc_keys = _index_ids(index_dir)[1]
        if codes.n_docs != len(doc_keys) or codes.meta.get("ids_digest") != ids_digest(doc_keys):
            raise ArtifactError(
                f"{path} was built for another corpus or document order ({codes.n_docs} docs, ids digest "
                f"{str(codes.meta.get('ids_digest'))[:12]}) than the index {index_dir} ({len(doc_keys)} "
                f"docs, digest {ids_digest(doc_keys)[:12]}); rebuild it: lsr index --dense-for {index_dir} "
                "--overwrite"
            )
        return cls(codes, index_dir)

    @property
    def fusion(self) -> dict[str, Any]:
        """The stored fusion settings: ``method``, ``weight`` (dense share), ``tuned`` and where."""
        return dict(self.meta.get("fusion") or DEFAULT_FUSION)

    def resolve_fusion(self, method: str = "auto", weight: float = -1.0) -> tuple[str, float]:
        """(method, weight): 'auto' / a negative weight take the stored values; a method other than the
        stored one takes its tuned weight from ``fusion.weights`` when there is one."""
        stored = self.fusion
        m = stored["method"] if method in ("auto", "", None) else method
        if weight is None or weight < 0:
            weight = (
                stored["weight"]
                if m == stored["method"]
                else (stored.get("weights") or {}).get(m, DEFAULT_FUSION["weight"])
            )
        check_fusion(m, weight)
        return m, float(weight)

    @cached_property
    def model(self):
        """The dense model the documents were encoded with (loaded on first use)."""
        desc = self.meta["model"]
        path = Path(desc.get("path", ""))
        if not (path / "config.json").is_file():  # moved machine: resolve the spec again
            path = resolve_dense_model(desc.get("spec") or None)
        return DenseModel(
            path, max_length=int(desc.get("max_length", 256)), batch_size=int(self.meta.get("batch_size", 64))
        )

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        emb = self.model.encode(list(texts))
        if emb.shape[1] != self.codes.dim:
            raise ArtifactError(f"the dense model gives dim {emb.shape[1]}, the codes dim {self.codes.dim}")
        return emb

    def dense_scores(self, query_emb: np.ndarray, cands: np.ndarray, use_float: bool = False) -> np.ndarray:
        return self.codes.score_float(query_emb, cands) if use_float else self.codes.score(query_emb, cands)

    def rerank(
        self,
        query_emb: np.ndarray,
        cands: np.ndarray,
        sparse_scores: np.ndarray,
        method: str,
        weight: float,
        use_float: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(candidates in fused order, their fused scores) for one query."""
        cands = np.asarray(cands, dtype=np.int64)
        dense = self.dense_scores(query_emb, cands, use_float)
        order, fused = fused_order(np.asarray(sparse_scores, dtype=np.float64), dense, method, weight)
        return cands[order], fused[order]

    @property
    def nbytes(self) -> int:
        return directory_bytes(self.codes.path)


def store_fusion(
    index_dir: str | Path,
    method: str,
    weight: float,
    weights: dict[str, float] | None = None,
    tuned_on: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the fusion settings into ``<index_dir>/dense/meta.json`` (atomically); return the meta."""
    path = Path(index_dir) / DENSE_DIR
    meta = read_meta(path, DENSE_FORMAT, (DENSE_FORMAT_VERSION,))
    check_fusion(method, weight)
    fusion: dict[str, Any] = {"method": method, "weight": float(weight), "tuned": tuned_on is not None}
    if weights:
        fusion["weights"] = weights
    if tuned_on:
        fusion["tuned_on"] = tuned_on
    meta["fusion"] = fusion
    meta = write_meta(path, meta)
    return meta


def _corpus_texts(index_dir: Path, corpus: str | Path | CorpusSource | None, ids: Sequence[str]) -> list[str]:
    """Texts (title + text) in index order, from ``corpus`` (checked against the index) or its docstore."""
    if corpus is None:
        return _docstore_texts(index_dir, ids)
    position = {doc_id: i for i, doc_id in enumerate(ids)}
    found: list[str | None] = [None] * len(ids)
    n_corpus, unknown = 0, []
    for doc in open_corpus(corpus):
        n_corpus += 1
        i = position.get(doc.id)
        if i is None:
            unknown.append(doc.id)
            continue
        found[i] = doc.contents
    missing = [ids[i] for i, t in enumerate(found) if t is None]
    if unknown or missing or n_corpus != len(ids):
        raise LsrError(
            f"corpus {corpus} ({n_corpus} docs) is not the corpus of index {index_dir} ({len(ids)} docs): "
            f"{len(unknown)} corpus ids not in the index (e.g. {unknown[:3]}), {len(missing)} indexed ids "
            f"not in the corpus (e.g. {missing[:3]}); index the same corpus"
        )
    return [t or "" for t in found]


def _docstore_texts(index_dir: Path, ids: Sequence[str]) -> list[str]:
    """Texts (title + text) in index order from the index's docstore, checked against ``ids.txt``."""
    if not DocStoreWriter.files(index_dir):
        raise LsrError(f"{index_dir} has no docstore (index.store_docs: false): give the corpus")
    store = DocStore(index_dir)
    texts = []
    for i in range(len(ids)):
        doc = store.get(i)
        if doc.get("id") != ids[i]:
            raise ArtifactError(
                f"{index_dir}: docstore doc {i} is {doc.get('id')!r}, ids.txt says {ids[i]!r}"
            )
        texts.append(f"{doc.get('title', '')} {doc.get('text', '')}".strip())
    return texts


def _reusable_vectors(index_dir: Path, digest: str, model_path: str, max_length: int) -> np.ndarray | None:
    """Float vectors of an existing dense stage of the same corpus and model (skips re-encoding)."""
    path = index_dir / DENSE_DIR
    if not (path / "vectors.npy").is_file():
        return None
    try:
        old = DenseCodes.load(path)
    except ArtifactError:
        return None
    desc = old.meta.get("model", {})
    if (
        old.vectors is None
        or old.meta.get("ids_digest") != digest
        or desc.get("path") != model_path
        or int(desc.get("max_length", -1)) != max_length
    ):
        return None
    logger.info("reusing the float vectors of %s (same corpus and model)", path)
    return np.array(old.vectors, dtype=np.float32)


def train_pq(
    x: np.ndarray, m: int, opq: bool = False, *, niter: int = 25, seed: int = 1234
) -> tuple[np.ndarray, np.ndarray | None, int, list[str]]:
    """(codebooks float32 [M, ksub, d/M], OPQ rotation [d, d] or None, nbits, notes) trained by faiss
    (k-means of ``niter`` iterations per sub-space, faiss's default 25, seeded)."""
    try:
        import faiss
    except ImportError:
        raise LsrError('the dense stage needs faiss at index time: pip install -e ".[dense]"') from None
    n, dim = x.shape
    check_m(dim, m)
    notes: list[str] = []
    if n < 2:
        raise LsrError(f"PQ needs at least 2 document vectors to train, got {n}")
    nbits = min(8, int(math.floor(math.log2(n))))
    if nbits < 8:
        msg = (
            f"only {n} documents: PQ falls back from 8 to {nbits} bits ({2**nbits} centroids per "
            f"sub-quantizer; 8 bits need at least 256 training vectors)"
        )
        logger.warning(msg)
        notes.append(msg)
    elif n < FAISS_MIN_POINTS_PER_CENTROID * 256:
        notes.append(
            f"{n} training vectors for 256 centroids (faiss recommends >= "
            f"{FAISS_MIN_POINTS_PER_CENTROID * 256}); codebooks are trained on fewer"
        )
    x = np.ascontiguousarray(x, dtype=np.float32)
    rotation = None
    if opq:
        if nbits < 8:
            raise LsrError(f"OPQ needs at least 256 document vectors to train, got {n}; drop --opq")
        mat = faiss.OPQMatrix(dim, m)
        inner = faiss.ProductQuantizer(dim, m, 8)  # OPQ's own PQ, without faiss's per-iteration warning
        inner.cp.min_points_per_centroid = 1
        mat.pq = inner
        mat.train(x)
        rotation = faiss.vector_to_array(mat.A).reshape(dim, dim).astype(np.float32)
        x = np.ascontiguousarray(x @ rotation.T)
    index = faiss.IndexPQ(dim, m, nbits, faiss.METRIC_INNER_PRODUCT)
    index.pq.cp.min_points_per_centroid = 1  # the warning faiss would print 48 times is in ``notes``
    index.pq.cp.niter = niter
    index.pq.cp.seed = seed
    index.train(x)
    books = faiss.vector_to_array(index.pq.centroids).reshape(m, 2**nbits, dim // m).astype(np.float32)
    return books, rotation, nbits, notes


def build_dense_stage(
    index_dir: str | Path,
    corpus: str | Path | CorpusSource | None,
    model: str | None = None,
    pq_m: int = 48,
    opq: bool = False,
    keep_float: bool = False,
    progress: bool = False,
    *,
    batch_size: int = 64,
    max_length: int = 256,
    overwrite: bool = True,
    vectors: np.ndarray | None = None,
) -> dict[str, Any]:
    """Encode the indexed corpus, train PQ and write ``<index_dir>/dense/``; return its meta.

    Args:
        corpus: the corpus the index was built from (checked id by id), or None to read the index's
            docstore.
        model: a dense model folder or hub name; None: all-MiniLM-L6-v2 (the ``dense`` extra).
        pq_m: sub-quantizers = bytes per document; must divide the model's dimension.
        keep_float: also store the float32 vectors (4 x dim bytes per document).
        overwrite: replace an existing dense stage (the old one stays until the new one is complete).
        vectors: float32 [n_docs, dim] embeddings in index order, already computed with ``model``.

    Raises:
        LsrError / ValueError: M does not divide the dimension (the message lists valid M), too few
            documents, a corpus that is not the index's.
    """
    index_dir = Path(index_dir)
    index_meta, ids = _index_ids(index_dir)
    out = index_dir / DENSE_DIR
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    dense_model = DenseModel(resolve_dense_model(model), max_length=max_length, batch_size=batch_size)
    check_m(dense_model.dim, pq_m)
    digest = ids_digest(ids)
    start = time.perf_counter()
    vectors = _document_vectors(index_dir, corpus, ids, dense_model, digest, vectors, progress)
    encode_seconds = time.perf_counter() - start
    pq = _quantize(vectors, pq_m, opq)
    desc = dense_model.describe() | {"spec": model or ""}
    head = _stage_meta(
        desc,
        dense_model.dim,
        pq,
        pq_m=pq_m,
        opq=opq,
        keep_float=keep_float,
        n_docs=len(ids),
        digest=digest,
        index_uid=index_meta.get("uid"),
        batch_size=batch_size,
        fusion=_kept_fusion(out, digest, desc["path"]),
        encode_seconds=encode_seconds,
    )
    return _write_stage(out, pq, vectors if keep_float else None, head, overwrite)


def _stage_meta(
    model: dict[str, Any],
    dim: int,
    pq: _Quantized,
    *,
    pq_m: int,
    opq: bool,
    keep_float: bool,
    n_docs: int,
    digest: str,
    index_uid: str | None,
    batch_size: int,
    fusion: dict[str, Any],
    encode_seconds: float,
) -> dict[str, Any]:
    """A dense stage's meta.json, less its ``arrays`` section."""
    return {
        "format": DENSE_FORMAT,
        "format_version": DENSE_FORMAT_VERSION,
        "lsr_version": __version__,
        "model": model,
        "text": "title + ' ' + text",
        "metric": "inner_product",
        "dim": dim,
        "m": pq_m,
        "nbits": pq.nbits,
        "ksub": 2**pq.nbits,
        "opq": bool(opq),
        "keep_float": bool(keep_float),
        "n_docs": n_docs,
        "ids_digest": digest,
        "index_uid": index_uid,
        "bytes_per_doc": pq_m,
        "batch_size": batch_size,
        "pq_mse": pq.mse,
        "notes": pq.notes,
        "fusion": fusion,
        "encode_seconds": round(encode_seconds, 3),
        "train_seconds": round(pq.seconds, 3),
    }


def _write_stage(
    out: Path, pq: _Quantized, vectors: np.ndarray | None, head: dict[str, Any], overwrite: bool
) -> dict[str, Any]:
    """Write codes, codebooks, the OPQ rotation and ``vectors`` (if any), then meta.json, atomically."""
    with atomic_directory(out, overwrite=overwrite) as tmp:
        arrays = {
            "codes": save_array(tmp, "codes", pq.codes),
            "codebooks": save_array(tmp, "codebooks", pq.books),
        }
        if pq.rotation is not None:
            arrays["rotation"] = save_array(tmp, "rotation", pq.rotation)
        if vectors is not None:
            arrays["vectors"] = save_array(tmp, "vectors", vectors)
        meta = {**head, "arrays": arrays}
        meta = write_meta(tmp, meta)
    logger.info(
        "dense stage: %d docs, dim %d, M = %d (%d bits), %s -> %s",
        meta["n_docs"],
        meta["dim"],
        meta["m"],
        meta["nbits"],
        "OPQ" if meta["opq"] else "no rotation",
        out,
    )
    return meta


def _document_vectors(
    index_dir: Path,
    corpus: str | Path | CorpusSource | None,
    ids: Sequence[str],
    dense_model: DenseModel,
    digest: str,
    vectors: np.ndarray | None,
    progress: bool,
) -> np.ndarray:
    """float32 [n_docs, dim] document vectors in index order: given, reused from the existing stage of
    the same corpus and model, or encoded from the corpus (or docstore)."""
    if vectors is None:
        vectors = _reusable_vectors(index_dir, digest, str(dense_model.path), dense_model.max_length)
    if vectors is None:
        texts = _corpus_texts(index_dir, corpus, ids)
        vectors = dense_model.encode(texts, progress=progress, desc="dense encode")
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.shape != (len(ids), dense_model.dim):
        raise ValueError(
            f"dense vectors of shape {list(vectors.shape)} for {len(ids)} docs of dim {dense_model.dim}"
        )
    return vectors


@dataclass
class _Quantized:
    books: np.ndarray
    rotation: np.ndarray | None
    nbits: int
    notes: list[str]
    codes: np.ndarray
    mse: float  # mean squared reconstruction error per document
    seconds: float


def _quantize(vectors: np.ndarray, pq_m: int, opq: bool) -> _Quantized:
    """Train PQ (and OPQ) on the document vectors and encode them."""
    start = time.perf_counter()
    books, rotation, nbits, notes = train_pq(vectors, pq_m, opq)
    rotated = vectors if rotation is None else np.ascontiguousarray(vectors @ rotation.T)
    codes = pq_encode(rotated, books)
    seconds = time.perf_counter() - start
    recon = np.concatenate([books[m][codes[:, m].astype(np.int64)] for m in range(pq_m)], axis=1)
    mse = float(((recon - rotated) ** 2).sum(axis=1).mean()) if len(vectors) else 0.0
    return _Quantized(books, rotation, nbits, notes, codes, mse, seconds)


def _kept_fusion(out: Path, digest: str, model_path: str) -> dict[str, Any]:
    """The fusion settings of the stage being replaced when it has the same corpus and model (a tuned
    weight survives a rebuild), else the default."""
    if (out / "meta.json").is_file():
        try:
            prev = read_meta(out, DENSE_FORMAT, (DENSE_FORMAT_VERSION,))
            if prev.get("ids_digest") == digest and prev.get("model", {}).get("path") == model_path:
                return prev.get("fusion", dict(DEFAULT_FUSION))
        except ArtifactError:
            pass
    return dict(DEFAULT_FUSION)


__all__ = ["FUSION_METHODS", "DenseStage", "build_dense_stage", "store_fusion", "train_pq"]
