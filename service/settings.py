"""Service settings travel: the ``service`` section of the one config (``lsr.config.ServiceConfig``)
to uvicorn worker processes, and the API key.

The section travels to worker processes as JSON in the ``LSR_SERVICE_SETTINGS`` environment variable;
the API key itself never does: workers read it again from the file or environment variable the
settings name.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from pathlib import Path

from lsr.config import ServiceConfig, from_dict
from lsr.errors import ConfigError

logger = logging.getLogger("lsr.service")

SETTINGS_ENV = "LSR_SERVICE_SETTINGS"


def check_indexes(settings: ServiceConfig) -> ServiceConfig:
    """``settings`` if it names an index to serve.

    Raises:
        ConfigError: no index.
    """
    if not settings.indexes:
        raise ConfigError("no index to serve: give at least one --index DIR (or NAME=DIR)")
    return settings


def to_json(settings: ServiceConfig) -> str:
    return json.dumps(asdict(settings))


def from_env() -> ServiceConfig:
    raw = os.environ.get(SETTINGS_ENV)
    if not raw:
        raise ConfigError(f"{SETTINGS_ENV} is not set: start the service with `lsr serve`")
    return check_indexes(from_dict(ServiceConfig, json.loads(raw), "service"))


def api_key(settings: ServiceConfig) -> str | None:
    """The key every /v1 request must send as ``X-API-Key``, or None (no key required).

    Raises:
        ConfigError: the key file is missing or empty.
    """
    if settings.api_key_file:
        return _read_key_file(Path(settings.api_key_file))
    key = os.environ.get(settings.api_key_env, "").strip()
    return key or None


class ApiKey:
    """The API key, re-read from its file when the file's mtime changes (rotation without a restart).

    A file that is missing or empty at a re-read keeps the previous key (a rotation that writes the file
    in place may leave it empty for a moment) and logs a warning; the key itself is never logged.
    """

    def __init__(self, settings: ServiceConfig):
        self.path = Path(settings.api_key_file) if settings.api_key_file else None
        self._mtime = self.path.stat().st_mtime_ns if self.path is not None and self.path.is_file() else None
        self.value = api_key(settings)

    def current(self) -> str | None:
        if self.path is None:
            return self.value
        try:
            mtime = self.path.stat().st_mtime_ns
        except OSError:
            mtime = None
        if mtime != self._mtime:
            self._mtime = mtime
            try:
                self.value = _read_key_file(self.path)
                logger.info("API key file %s changed: the new key is in use", self.path)
            except ConfigError as exc:
                logger.warning("%s; keeping the previous key", exc)
        return self.value


def index_roots(settings: ServiceConfig) -> list[Path]:
    """The resolved folders a reload may open an index from (``settings.index_roots``, else the parents
    of the indexes served at start)."""
    roots = settings.index_roots or tuple(str(Path(p).resolve().parent) for p in settings.indexes.values())
    return [Path(r).resolve() for r in roots]


def check_reload_path(path: str, roots: list[Path]) -> Path:
    """``path`` resolved (symlinks and ``..`` followed) if it lies inside one of ``roots``.

    Raises:
        PermissionError: outside every root (the message names the path, not the roots).
    """
    resolved = Path(path).resolve()
    if not any(resolved == root or root in resolved.parents for root in roots):
        raise PermissionError(
            f"path {path!r} is outside the index roots this service may load from (symlinks and '..' are "
            "resolved first); the operator sets them with `lsr serve --index-root DIR`"
        )
    return resolved


def _read_key_file(path: Path) -> str:
    if not path.is_file():
        raise ConfigError(f"API key file {path} does not exist")
    key = path.read_text(encoding="utf-8").strip()
    if not key:
        raise ConfigError(f"API key file {path} is empty")
    return key


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
