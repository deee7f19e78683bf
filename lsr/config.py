"""One configuration object for every stage, read from YAML and overridden from the CLI.

``load_config(path, overrides)``:
    1. starts from the defaults below;
    2. merges a YAML file (a path, or the name of a file shipped in ``configs/``),
       which holds only the values that differ from the defaults;
    3. applies ``--set section.key=value`` overrides (values parsed as YAML scalars);
    4. rejects unknown keys (the message names them and lists the known ones) and
       checks types and ranges.

The resolved config (``to_dict``) is written into every artifact. stdlib + PyYAML only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from lsr.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")  # a config section: a dataclass

# libyaml's loader where PyYAML has it: the pure-Python one took seconds to refuse a few thousand
# unclosed brackets (a fuzz input); libyaml stops at its nesting limit at once
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_YAML_LOADER)  # a safe loader (SafeLoader or its C twin)


def _one_of(section: str, name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{section}.{name} = {value!r} is not one of {list(allowed)}")


def _positive(section: str, name: str, value: float, allow_zero: bool = False) -> None:
    if isinstance(value, float) and not math.isfinite(value):  # NaN passes both comparisons below
        raise ConfigError(f"{section}.{name} = {value!r} must be a finite number")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{section}.{name} = {value!r} must be {'>= 0' if allow_zero else '> 0'}")


@dataclass(frozen=True)
class BM25Config:
    """BM25 (Lucene form: idf * tf / (tf + k1 * (1 - b + b * dl / avgdl))) and its analyzer.

    The defaults (Snowball English stemmer, Lucene's 33 stopwords, tokens of two or more characters,
    k1 = 1.5, b = 0.75) were chosen on SciFact train and the ood suite (docs/results.md, "Default
    BM25"); ``--config bm25-lucene`` is Anserini's BEIR "flat" BM25 (Porter, every token, k1 = 0.9,
    b = 0.4), the one pyserini reproduces.
    """

    k1: float = 1.5
    b: float = 0.75
    # the text's language: one PyStemmer stems (lsr.analysis.LANGUAGES); picks the auto stemmer and stopwords
    language: str = "english"
    # auto = the language's Snowball stemmer (english: Porter2, as bm25s); porter (Lucene/Anserini, English
    # only); none; or any language's Snowball stemmer by name
    stemmer: str = "auto"
    # auto = the language's list: english -> lucene (Lucene's 33 words = bm25s' "english"), others Lucene's
    # list for that language (none where Lucene has none); nltk (English, 153 words); none; a language's list
    stopwords: str = "auto"
    min_length: int = 2  # shortest token kept, in characters (bm25s: 2; Lucene: 1)
    porter_min_stem: int = 3  # stemmer porter: shortest token stemmed (Lucene: 3, so "us" stays "us")
    lowercase: bool = True

    def __post_init__(self) -> None:
        _positive("encoder.bm25", "k1", self.k1, allow_zero=True)
        if not 0.0 <= self.b <= 1.0:
            raise ConfigError(f"encoder.bm25.b = {self.b!r} must lie in [0, 1]")
        self._resolve_language()
        for name in ("min_length", "porter_min_stem"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"encoder.bm25.{name} = {value!r} must be an integer >= 1")

    def _resolve_language(self) -> None:
        """``auto`` stemmer and stopwords become the language's (so the index meta records what ran)."""
        from lsr.analysis import ENGLISH_STOPWORDS, LANGUAGES, STEMMERS, language_stopwords

        _one_of("encoder.bm25", "language", self.language, LANGUAGES)
        english = self.language == "english"
        if self.stemmer == "auto":
            object.__setattr__(self, "stemmer", self.language)
        if self.stopwords == "auto":
            listed = (
                "lucene" if english else (self.language if self.language in language_stopwords() else "none")
            )
            object.__setattr__(self, "stopwords", listed)
        _one_of("encoder.bm25", "stemmer", self.stemmer, ("auto", *STEMMERS))
        _one_of(
            "encoder.bm25", "stopwords", self.stopwords, ("auto", *ENGLISH_STOPWORDS, *language_stopwords())
        )
        if not english and (self.stemmer == "porter" or self.stopwords in ("lucene", "nltk")):
            raise ConfigError(
                f"encoder.bm25: stemmer {self.stemmer!r} / stopwords {self.stopwords!r} are English; for "
                f"language {self.language!r} use auto (its Snowball stemmer and stopword list) or none"
            )


@dataclass(frozen=True)
class SpladeConfig:
    """SPLADE pooling of log(1 + ReLU(MLM logits)) over a sequence's tokens."""

    pooling: str = "max"  # max (SPLADE v2+) | sum (SPLADE v1)

    def __post_init__(self) -> None:
        _one_of("encoder.splade", "pooling", self.pooling, ("max", "sum"))


@dataclass(frozen=True)
class InferenceFreeConfig:
    """Inference-free queries: tokens weighted by a static table, no neural model at query time."""

    # auto: the model's idf.json when it ships one (the table it was trained with), else idf;
    # idf: ln(1 + (N - df + 0.5) / (df + 0.5)), df = documents whose tokenized text holds the token;
    # model: the idf.json {token: weight} shipped with the model (a learned table);
    # any other value: the path of such a JSON file
    query_weights: str = "auto"

    def __post_init__(self) -> None:
        if not self.query_weights:
            raise ConfigError(
                "encoder.inference_free.query_weights must be auto, idf, model or a JSON file path"
            )


LONG_DOCS = ("auto", "truncate", "windows")  # encoder.transformer.long_docs
# lsr.encoders.onnx_query
QUERY_RUNTIMES = ("auto", "torch", "lean", "lean-bf16", "onnx", "onnx-int8", "onnx-int8-smooth")


@dataclass(frozen=True)
class TransformerConfig:
    """Tokenization, long documents and runtime of the Hugging Face encoders."""

    max_length: int = 512  # tokens per document sequence, special tokens included
    query_max_length: int = 128
    # auto | truncate | windows (outputs of overlapping windows pooled together); auto: the model folder's
    # choice (``long_docs`` in its lsr_doc.json, lsr.encoders.hf.read_doc_settings), else truncate
    long_docs: str = "auto"
    window_overlap: int = 64  # tokens shared by consecutive windows (long_docs: windows)
    batch_tokens: int = 16384  # padded tokens per forward pass
    sort_docs: int = 2048  # documents read ahead and encoded in length order
    device: str = "auto"  # auto (cuda when available, else cpu) | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto (bfloat16 on GPU, float32 on CPU) | float32 | bfloat16 | float16
    threads: int = 0  # CPU: batches encoded at once, one torch thread each; 0: all cores
    # lsr encode --ray on GPUs: encoder actors sharing each GPU (tokenization and sparse rows run on the
    # actor's CPU: a small model keeps a GPU busy only from several processes)
    actors_per_gpu: int = 1
    # queries: auto (CPU: lean for SPLADE, onnx for uniCOIL when installed; GPU: torch) | torch
    # (float32) | lean | lean-bf16 | onnx | onnx-int8; the LSR_QUERY_RUNTIME environment variable overrides it
    # (lsr.encoders.onnx_query)
    query_runtime: str = "auto"

    def __post_init__(self) -> None:
        for name in ("max_length", "query_max_length", "batch_tokens", "sort_docs", "actors_per_gpu"):
            _positive("encoder.transformer", name, getattr(self, name))
        if self.max_length < 8 or self.query_max_length < 8:
            raise ConfigError("encoder.transformer.max_length and query_max_length must be >= 8 tokens")
        _one_of("encoder.transformer", "long_docs", self.long_docs, LONG_DOCS)
        _one_of("encoder.transformer", "query_runtime", self.query_runtime, QUERY_RUNTIMES)
        _positive("encoder.transformer", "window_overlap", self.window_overlap, allow_zero=True)
        if self.long_docs == "windows" and self.window_overlap > self.max_length // 2:
            raise ConfigError(
                f"encoder.transformer.window_overlap = {self.window_overlap} must be at most "
                f"max_length / 2 = {self.max_length // 2}"
            )
        if self.batch_tokens < self.max_length:
            raise ConfigError(
                f"encoder.transformer.batch_tokens = {self.batch_tokens} must be >= "
                f"max_length = {self.max_length}"
            )
        if self.device != "auto" and not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ConfigError(
                f"encoder.transformer.device = {self.device!r} is not auto, cpu, cuda or cuda:N"
            )
        _one_of("encoder.transformer", "dtype", self.dtype, ("auto", "float32", "bfloat16", "float16"))
        _positive("encoder.transformer", "threads", self.threads, allow_zero=True)


@dataclass(frozen=True)
class PruneConfig:
    """Sparsification after encoding; recorded in the artifact, applied to documents and queries."""

    doc_threshold: float = 0.0  # drop document weights below this
    doc_max_terms: int = 0  # keep the largest N weights per document; 0: no limit
    query_threshold: float = 0.0
    query_max_terms: int = 0

    def __post_init__(self) -> None:
        for name in ("doc_threshold", "doc_max_terms", "query_threshold", "query_max_terms"):
            _positive("encoder.prune", name, getattr(self, name), allow_zero=True)


@dataclass(frozen=True)
class PlusConfig:
    """``bm25+MODEL`` encoders: score = BM25 + model_weight x the model's score (lsr.encoders.plus)."""

    model_weight: float = 0.5

    def __post_init__(self) -> None:
        if not (isinstance(self.model_weight, (int, float)) and 0 < self.model_weight < float("inf")):
            raise ConfigError(f"encoder.plus.model_weight = {self.model_weight!r} must be a number > 0")


MAX_QUERY_IDF = 4.0  # encoder.query_idf: idf^4 already ranks by the rarest query term alone


@dataclass(frozen=True)
class EncoderConfig:
    name: str = "bm25"  # bm25 | splade | unicoil | inference-free | bm25+splade | bm25+unicoil | ...
    # splade, unicoil, inference-free: the model folder (or hub name) of the document side
    model: str = ""
    query_model: str = ""  # splade, unicoil: another checkpoint for queries ("": model), same vocabulary
    bm25: BM25Config = field(default_factory=BM25Config)
    splade: SpladeConfig = field(default_factory=SpladeConfig)
    inference_free: InferenceFreeConfig = field(default_factory=InferenceFreeConfig)
    plus: PlusConfig = field(default_factory=PlusConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    shard_docs: int = 100_000  # documents per encoded shard on disk (the unit a crashed encode resumes at)
    # splade, unicoil, inference-free: query term weights x idf^query_idf, the idf of the indexed
    # collection (lsr.encoders.query_idf); 0: off; negative (default): the model folder's
    # lsr_query.json value, else 0. Recorded in the index meta, applied to every text query.
    query_idf: float = -1.0

    def __post_init__(self) -> None:
        _positive("encoder", "shard_docs", self.shard_docs)
        power = self.query_idf
        if isinstance(power, bool) or not isinstance(power, (int, float)) or not math.isfinite(power):
            raise ConfigError(f"encoder.query_idf = {self.query_idf!r} must be a finite number")
        if self.query_idf > MAX_QUERY_IDF:
            raise ConfigError(
                f"encoder.query_idf = {self.query_idf!r} must be at most {MAX_QUERY_IDF} (0: off, "
                "negative: the model's own value)"
            )


IMPACT_DTYPE_CHOICES = ("auto", "uint8", "uint16", "float32")


def resolved_impact_dtype(impact_dtype: str) -> str:
    """``index.impact_dtype`` with ``auto`` replaced by float32, for every encoder: exact scores without
    a forward index (until 2026-12-02 the learned encoders' auto was uint8 with a float32 forward index
    to rescore from: more bytes and slower; benchmarks/RESULTS.md, "float32 impacts by default")."""
    return "float32" if impact_dtype == "auto" else impact_dtype


@dataclass(frozen=True)
class IndexConfig:
    # auto | uint8 | uint16 | float32; auto: float32 (exact scores, no forward index needed; uint8
    # rounding cost bm25 up to 0.005 nDCG@10 on the ood suite; see resolved_impact_dtype)
    impact_dtype: str = "auto"
    store_docs: bool = True  # keep a docstore (titles and texts) in the index
    blockmax: bool = True  # build block-max data (search modes safe and approx)
    block_size: int = 16  # documents per block (smaller: tighter bounds, more blocks)
    # none | bp (recursive graph bisection: similar docs share blocks, so block bounds are tighter and
    # safe/approx search scores fewer blocks; benchmarks/RESULTS.md, "Default reordering") | auto: bp
    # from 50,000 documents up (lsr.index.reorder.AUTO_MIN_DOCS)
    reorder: str = "auto"
    # swap rounds per bisection level: 2 prunes almost as well as 8 (200k synthetic, safe mode: 190 vs
    # 184 blocks scored per query, input order 305) at 30% of the ordering time (reorder_bench)
    bp_iterations: int = 2
    # none | float32: with integer impacts (index.impact_dtype uint8 or uint16), also keep each
    # document's float32 weights (6 bytes per posting, memory-mapped) and rescore the candidates
    # exactly: results equal float scoring; float32 impacts are exact without it
    rescore: str = "float32"
    # 0, or N: also keep each term's N highest-impact postings as pruned lists that search mode approx
    # runs on (search.budget then also cuts the query), rescoring its candidates exactly
    # (lsr.index.approx); larger N: higher recall, more bytes; needs blockmax
    approx_lists: int = 0
    # live index merge policy (lsr add / delete): merge the newest segments into one when there are
    # more than max_segments; rewrite a segment alone once more than max_deleted of its docs are deleted
    max_segments: int = 10
    max_deleted: float = 0.3
    # metadata fields stored as columns for filters: {name: keyword | int | float | date}, read from
    # each document's BEIR ``metadata`` object (needs store_docs)
    fields: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _one_of("index", "impact_dtype", self.impact_dtype, IMPACT_DTYPE_CHOICES)
        _positive("index", "max_segments", self.max_segments)
        _positive("index", "approx_lists", self.approx_lists, allow_zero=True)
        if self.approx_lists and not self.blockmax:
            raise ConfigError(f"index.approx_lists = {self.approx_lists} needs index.blockmax")
        for name, kind in self.fields.items():
            _one_of("index", f"fields.{name}", kind, ("keyword", "int", "float", "date"))
        if not 0 < self.max_deleted <= 1:
            raise ConfigError(f"index.max_deleted = {self.max_deleted!r} must lie in (0, 1]")
        _one_of("index", "reorder", self.reorder, ("none", "bp", "auto"))
        _one_of("index", "rescore", self.rescore, ("none", "float32"))
        if not 1 <= self.block_size <= 256:
            raise ConfigError(f"index.block_size = {self.block_size!r} must lie in [1, 256]")
        _positive("index", "bp_iterations", self.bp_iterations)


@dataclass(frozen=True)
class SearchConfig:
    k: int = 1000
    threads: int = 0  # 0: all cores
    batch_size: int = 1024  # queries encoded and searched per batch
    mode: str = "exact"  # exact | safe (block-max, same results) | approx (budget; alpha, beta)
    # approx: score at most about this many documents per query (whole blocks, best bound first),
    # then rescore the best candidates exactly; smaller is faster with lower recall; 0: no budget; on
    # an index with pruned lists (index.approx_lists) a budget below 8192 also cuts the query
    budget: int = 0
    alpha: float = 1.0  # approx: stop when the k-th score exceeds alpha x the best block bound left
    beta: float = 1.0  # approx: keep this fraction of each query's terms, heaviest first
    rerank: str = "none"  # none | dense (re-score the sparse top rerank_depth with the index's dense stage)
    rerank_depth: int = 100  # sparse candidates re-scored per query (at least k)
    fusion: str = "auto"  # auto (as tuned in the dense meta) | convex-minmax | convex-zscore | rrf
    fusion_weight: float = -1.0  # dense share in [0, 1]; negative: the weight stored in the dense meta

    def __post_init__(self) -> None:
        _one_of("search", "mode", self.mode, ("exact", "safe", "approx"))
        _one_of("search", "rerank", self.rerank, ("none", "dense"))
        _one_of("search", "fusion", self.fusion, ("auto", "convex-minmax", "convex-zscore", "rrf"))
        _positive("search", "rerank_depth", self.rerank_depth)
        if self.fusion_weight > 1 or math.isnan(self.fusion_weight):
            raise ConfigError(
                f"search.fusion_weight = {self.fusion_weight!r} must lie in [0, 1] (or be "
                "negative: the tuned weight)"
            )
        for name in ("alpha", "beta"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ConfigError(f"search.{name} = {value!r} must lie in (0, 1]")
        _positive("search", "k", self.k)
        _positive("search", "budget", self.budget, allow_zero=True)
        if self.budget and self.mode != "approx":
            raise ConfigError(
                f"search.budget = {self.budget!r} applies to search.mode approx, not {self.mode!r}"
            )
        _positive("search", "threads", self.threads, allow_zero=True)
        _positive("search", "batch_size", self.batch_size)


@dataclass(frozen=True)
class DenseConfig:
    """The dense stage (``lsr index --dense``): bi-encoder, product quantization, encoding runtime."""

    model: str = ""  # a model folder or hub name; "": all-MiniLM-L6-v2 (the dense extra)
    pq_m: int = 48  # PQ sub-quantizers = bytes per document; must divide the model's dimension
    opq: bool = False  # learn an OPQ rotation before PQ
    keep_float: bool = False  # also store float32 vectors (4 x dim bytes per document)
    batch_size: int = 64
    max_length: int = 256  # tokens per text (capped by the model's own limit)

    def __post_init__(self) -> None:
        for name in ("pq_m", "batch_size", "max_length"):
            _positive("dense", name, getattr(self, name))


@dataclass(frozen=True)
class EvalConfig:
    split: str = "test"
    k: int = 1000
    metrics: tuple[str, ...] = ("ndcg@10", "recall@100", "recall@1000", "mrr@10", "map")
    relevance_level: int = 1  # binary metrics count grade >= this (TREC DL: 2)
    latency_queries: int = 0  # queries timed one by one on one thread; 0: all

    def __post_init__(self) -> None:
        _positive("eval", "k", self.k)
        _positive("eval", "relevance_level", self.relevance_level)
        _positive("eval", "latency_queries", self.latency_queries, allow_zero=True)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. under ``taskset``), else all of them."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # no affinity API (macOS, Windows)
        return os.cpu_count() or 1


@dataclass(frozen=True)
class ServiceConfig:
    """``lsr serve``: which indexes to serve (name -> directory, in order: the first one is the default
    of requests that name none), limits, API key, CORS. The flags of ``lsr serve`` override it."""

    indexes: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    search_threads: int = 0  # threads running searches in each worker; 0: the cores it may use (affinity)
    timeout_s: float = 10.0  # per request; past it the request is answered 503
    # searches admitted at once (running or queued for a search thread); past it a search is answered
    # 503 with Retry-After at once instead of queueing without limit. 0: 4 x search threads (each thread
    # has its next search queued behind it, so the pool never idles, and a queued search waits at most
    # ~3 searches' time: tail latency stays a few searches long instead of growing with the queue)
    max_in_flight: int = 0
    body_timeout_s: float = 10.0  # a request body not received in full within this is answered 408
    max_k: int = 1000
    max_query_chars: int = 2048
    max_query_tokens: int = 256  # whitespace-separated tokens of a text query
    max_vector_terms: int = 4096  # terms of a pre-encoded query vector
    max_batch: int = 256  # queries in one /v1/search/batch request
    max_body_bytes: int = 1 << 20
    api_key_file: str | None = None  # re-read when its mtime changes: the key rotates without a restart
    api_key_env: str = "LSR_API_KEY"  # the key is read from this variable when no file is given
    # where POST /v1/indexes/NAME/reload may open an index from (a given path must resolve, symlinks
    # followed, inside one of them); empty: the folders holding the indexes served at start
    index_roots: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    warmup: bool = True  # encode and search a few queries in every mode before /readyz says ready
    log_requests: bool = True  # one JSON line per request on the lsr.service.access logger
    # seconds between checks of each live index's newest manifest generation: another process's (or
    # worker's) committed write is searchable here within this interval plus the reopen (0: never)
    refresh_s: float = 0.5
    # a Ray cluster (HOST:PORT, or "local"): sharded indexes are searched on Ray Serve shard deployments
    # (lsr.ray_serve); None: every index is searched in this process
    ray: str | None = None
    # with ``ray``: replicas of each shard (Serve restarts a dead one; meanwhile the others answer)
    ray_replicas: int = 1
    # a second port answering GET /healthz and /readyz on its own thread (lsr.service.health), so probes
    # never queue behind a flooded request loop; /healthz there says 503 once the loop has not run for
    # health_stale_s seconds. 0: off (probe the main port). For Kubernetes-style liveness/readiness probes
    health_port: int = 0
    health_stale_s: float = 2.0
    # memory per served index (per shard) for the own indexes of selective filters used more than
    # once (lsr.index.subindex): a filter allowing few scattered documents is searched over an index
    # of just those; past this the least recently used filter's is dropped. 0: none are built
    filter_index_mb: int = 256

    def __post_init__(self) -> None:
        for name in self.indexes:
            if not name or "/" in name or name.strip() != name:
                raise ConfigError(f"index name {name!r} must be non-empty, without '/' or surrounding spaces")
        for key in (
            "port",
            "workers",
            "max_k",
            "max_query_chars",
            "max_query_tokens",
            "max_vector_terms",
            "max_batch",
            "max_body_bytes",
            "filter_index_mb",
            "ray_replicas",
        ):
            value = getattr(self, key)
            least = 0 if key in ("port", "filter_index_mb") else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"{key} = {value!r} must be an integer >= {least}")
        if self.search_threads < 0:
            raise ConfigError(f"search_threads = {self.search_threads!r} must be >= 0 (0: all cores)")
        if not self.timeout_s > 0:
            raise ConfigError(f"timeout_s = {self.timeout_s!r} must be > 0")
        if not self.body_timeout_s > 0:
            raise ConfigError(f"body_timeout_s = {self.body_timeout_s!r} must be > 0")
        if (
            isinstance(self.max_in_flight, bool)
            or not isinstance(self.max_in_flight, int)
            or self.max_in_flight < 0
        ):
            raise ConfigError(f"max_in_flight = {self.max_in_flight!r} must be >= 0 (0: 4 x search threads)")
        self._check_health_port()
        if self.ray == "local" and self.workers > 1:
            raise ConfigError(
                f"workers = {self.workers} with ray = 'local': each worker would start its own Ray; "
                "start one (ray start --head) and give its address"
            )
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))

    def _check_health_port(self) -> None:
        port = self.health_port
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError(f"health_port = {port!r} must be a port number 1-65535 (0: off)")
        if port and port == self.port:
            raise ConfigError(f"health_port = {port} is the service's own port; give it a port of its own")
        if port and self.workers > 1:
            raise ConfigError(
                f"health_port = {port} needs workers = 1 (each of the {self.workers} workers has its own "
                "event loop); run one worker per process and probe each"
            )
        stale = self.health_stale_s
        if isinstance(stale, bool) or not isinstance(stale, (int, float)) or not 0 < stale < math.inf:
            raise ConfigError(f"health_stale_s = {stale!r} must be a number of seconds > 0")

    @property
    def threads(self) -> int:
        return self.search_threads or usable_cores()

    @property
    def admitted(self) -> int:
        """Searches in flight at most (``max_in_flight``, 0: 4 x search threads)."""
        return self.max_in_flight or 4 * self.threads

    @property
    def pool_threads(self) -> int:
        """Threads of the search pool: ``threads``; with ``ray`` one per admitted search, at most 16 x
        ``threads`` (a search of a sharded index on Ray mostly waits for its shards, and concurrent
        ones share shard calls)."""
        return min(self.admitted, 16 * self.threads) if self.ray is not None else self.threads


@dataclass(frozen=True)
class Config:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    dense: DenseConfig = field(default_factory=DenseConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)


def to_dict(config: Any) -> dict[str, Any]:
    """The resolved config as plain JSON/YAML-friendly data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_hash(config: Any) -> str:
    return hashlib.sha256(json.dumps(to_dict(config), sort_keys=True).encode()).hexdigest()[:16]


def dump_yaml(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A config file path, or the name of a shipped config (``bm25`` -> ``configs/bm25.yaml``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = resources.files("lsr.configs")
    candidate = shipped / f"{Path(str(name_or_path)).stem}.yaml"
    if candidate.is_file():
        return Path(str(candidate))
    names = sorted(p.name[:-5] for p in shipped.iterdir() if p.name.endswith(".yaml"))
    raise ConfigError(f"config {str(name_or_path)!r} is neither a file nor a shipped config {names}")


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults <- YAML file <- ``section.key=value`` overrides, validated.

    Raises:
        ConfigError: unknown keys, bad types or values, malformed overrides.
    """
    return load_dataclass_config(Config, path, overrides)


def load_dataclass_config(
    cls: type, path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> Any:
    """``cls`` (a config dataclass) from defaults <- YAML file (path or shipped name) <- overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        resolved = resolve_config_path(path)
        try:
            loaded = _yaml(resolved.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError, RecursionError) as exc:
            raise ConfigError(f"{resolved}: invalid YAML ({str(exc)[:300]})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{resolved}: expected a mapping of sections at the top level")
        data = loaded or {}
    for item in overrides:
        _apply_override(data, item)
    return from_dict(cls, data, "")


def _apply_override(data: dict[str, Any], item: str) -> None:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} must look like section.key=value")
    try:
        value = _yaml(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    except RecursionError:
        raise ConfigError(f"override {item[:80]!r}: the value is nested too deeply") from None
    node = data
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {part!r} is a value, not a section")
    node[parts[-1]] = value


def from_dict(cls: type[T], data: Any, prefix: str) -> T:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types."""
    where = prefix or "config"
    if data is None:  # an empty YAML section (`search:` with nothing under it)
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) in {where}: {unknown}; known keys: {sorted(known)}")
    kwargs = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _coerce(hints[name], value, key)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_dict(hint, value, key)
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        item_type = typing.get_args(hint)[0]
        return tuple(_coerce(item_type, v, f"{key}[{i}]") for i, v in enumerate(value))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and (type(value) is not hint):
        raise ConfigError(f"{key} must be {hint.__name__}, got {value!r} ({type(value).__name__})")
    return value
