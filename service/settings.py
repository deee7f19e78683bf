"""Service settings travel: the ``service`` section of the one config (``lsr.config.ServiceConfig``)
to uvicorn worker processes, and the API key.

The section travels to worker processes as JSON in the ``LSR_SERVICE_SETTINGS`` environment variable;
the API key itself never does: workers read it again from the file or environment variable the
settings name.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from lsr.config import ServiceConfig, from_dict
from lsr.errors import ConfigError

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
        path = Path(settings.api_key_file)
        if not path.is_file():
            raise ConfigError(f"API key file {path} does not exist")
        key = path.read_text(encoding="utf-8").strip()
        if not key:
            raise ConfigError(f"API key file {path} is empty")
        return key
    key = os.environ.get(settings.api_key_env, "").strip()
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
