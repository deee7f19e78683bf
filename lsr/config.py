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
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from lsr.errors import ConfigError


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
    """BM25 (Lucene form: idf * tf / (tf + k1 * (1 - b + b * dl / avgdl))) and its analyzer."""

    k1: float = 0.9
    b: float = 0.4
    stemmer: str = "porter"  # porter (Lucene/Anserini), english (Porter2), none
    stopwords: str = "lucene"  # lucene (Lucene's English list, as Anserini), none
    lowercase: bool = True

    def __post_init__(self) -> None:
        _positive("encoder.bm25", "k1", self.k1, allow_zero=True)
        if not 0.0 <= self.b <= 1.0:
            raise ConfigError(f"encoder.bm25.b = {self.b!r} must lie in [0, 1]")
        _one_of("encoder.bm25", "stemmer", self.stemmer, ("porter", "english", "none"))
        _one_of("encoder.bm25", "stopwords", self.stopwords, ("lucene", "none"))


@dataclass(frozen=True)
class EncoderConfig:
    name: str = "bm25"
    bm25: BM25Config = field(default_factory=BM25Config)
    shard_docs: int = 100_000  # documents per encoded shard on disk

    def __post_init__(self) -> None:
        _positive("encoder", "shard_docs", self.shard_docs)


@dataclass(frozen=True)
class IndexConfig:
    impact_dtype: str = "uint8"  # uint8 | uint16 | float32
    store_docs: bool = True  # keep a docstore (titles and texts) in the index

    def __post_init__(self) -> None:
        _one_of("index", "impact_dtype", self.impact_dtype, ("uint8", "uint16", "float32"))


@dataclass(frozen=True)
class SearchConfig:
    k: int = 1000
    threads: int = 0  # 0: all cores
    batch_size: int = 1024  # queries encoded and searched per batch

    def __post_init__(self) -> None:
        _positive("search", "k", self.k)
        _positive("search", "threads", self.threads, allow_zero=True)
        _positive("search", "batch_size", self.batch_size)


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


@dataclass(frozen=True)
class Config:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


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
    data: dict[str, Any] = {}
    if path is not None:
        resolved = resolve_config_path(path)
        try:
            loaded = yaml.safe_load(resolved.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{resolved}: invalid YAML ({exc})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{resolved}: expected a mapping of sections at the top level")
        data = loaded or {}
    for item in overrides:
        _apply_override(data, item)
    return from_dict(Config, data, "")


def _apply_override(data: dict[str, Any], item: str) -> None:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} must look like section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    node = data
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {part!r} is a value, not a section")
    node[parts[-1]] = value


def from_dict(cls: type, data: Any, prefix: str) -> Any:
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
    if dataclasses.is_dataclass(hint):
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
