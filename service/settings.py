"""Service settings: which indexes to serve, limits, API key, CORS.

``ServiceSettings`` is a frozen dataclass that rejects unknown keys (``from_dict``). It travels to
uvicorn worker processes as JSON in the ``LSR_SERVICE_SETTINGS`` environment variable; the API key
itself never does: workers read it again from the file or environment variable the settings name.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from lsr.errors import ConfigError

SETTINGS_ENV = "LSR_SERVICE_SETTINGS"
DEFAULT_API_KEY_ENV = "LSR_API_KEY"


@dataclass(frozen=True)
class ServiceSettings:
    """What ``lsr serve`` runs with. ``indexes`` maps a name to an index directory (in order: the
    first one is the default of requests that name none)."""

    indexes: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    search_threads: int = 0  # threads running searches in each worker; 0: the cores of the machine
    timeout_s: float = 10.0  # per request; past it the request is answered 503
    max_k: int = 1000
    max_query_chars: int = 2048
    max_query_tokens: int = 256  # whitespace-separated tokens of a text query
    max_vector_terms: int = 4096  # terms of a pre-encoded query vector
    max_batch: int = 256  # queries in one /v1/search/batch request
    max_body_bytes: int = 1 << 20
    api_key_file: str | None = None
    api_key_env: str = DEFAULT_API_KEY_ENV  # the key is read from this variable when no file is given
    cors_origins: tuple[str, ...] = ()
    warmup: bool = True  # encode and search a few queries in every mode before /readyz says ready
    log_requests: bool = True  # one JSON line per request on the lsr.service.access logger

    def __post_init__(self) -> None:
        if not self.indexes:
            raise ConfigError("no index to serve: give at least one --index DIR (or NAME=DIR)")
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
        ):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "port" else 1):
                raise ConfigError(f"{key} = {value!r} must be a positive integer")
        if self.search_threads < 0:
            raise ConfigError(f"search_threads = {self.search_threads!r} must be >= 0 (0: all cores)")
        if not self.timeout_s > 0:
            raise ConfigError(f"timeout_s = {self.timeout_s!r} must be > 0")
        object.__setattr__(self, "cors_origins", tuple(self.cors_origins))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServiceSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown service setting(s) {unknown}; known: {sorted(known)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> ServiceSettings:
        raw = os.environ.get(SETTINGS_ENV)
        if not raw:
            raise ConfigError(f"{SETTINGS_ENV} is not set: start the service with `lsr serve`")
        return cls.from_dict(json.loads(raw))

    @property
    def threads(self) -> int:
        return self.search_threads or os.cpu_count() or 1

    def api_key(self) -> str | None:
        """The key every /v1 request must send as ``X-API-Key``, or None (no key required).

        Raises:
            ConfigError: the key file is missing or empty.
        """
        if self.api_key_file:
            path = Path(self.api_key_file)
            if not path.is_file():
                raise ConfigError(f"API key file {path} does not exist")
            key = path.read_text(encoding="utf-8").strip()
            if not key:
                raise ConfigError(f"API key file {path} is empty")
            return key
        key = os.environ.get(self.api_key_env, "").strip()
        return key or None


def parse_index_specs(specs: list[str]) -> dict[str, str]:
    """``["DIR", "NAME=DIR", ...]`` -> ``{name: dir}``; a bare directory is named after its folder.

    Raises:
        ConfigError: a name given twice.
    """
    out: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or "/" in name:
            name, path = Path(spec.rstrip("/")).name, spec
        if name in out:
            raise ConfigError(f"index name {name!r} is given twice (use NAME=DIR to tell them apart)")
        out[name] = path
    return out
