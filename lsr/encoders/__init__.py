"""Encoders by name. ``make_encoder`` builds the document side from the config;
``load_query_encoder`` rebuilds the query side from an index's own meta."""

from __future__ import annotations

from typing import Any

from lsr.config import BM25Config, EncoderConfig, from_dict
from lsr.encoders.base import CorpusEncoder, QueryEncoder
from lsr.errors import ConfigError

ENCODERS = ("bm25",)


def make_encoder(cfg: EncoderConfig) -> CorpusEncoder:
    """The corpus encoder named by ``cfg.name``."""
    if cfg.name == "bm25":
        from lsr.encoders.bm25 import BM25Encoder

        return BM25Encoder(cfg.bm25)
    raise ConfigError(f"unknown encoder {cfg.name!r}; available: {list(ENCODERS)}")


def load_query_encoder(encoder_meta: dict[str, Any], term_index: dict[str, int]) -> QueryEncoder:
    """The query encoder matching an index, from its meta.json ``encoder`` section.

    Raises:
        ConfigError: the index was built from pre-encoded vectors with no known
            query encoder (pass pre-encoded JSONL queries instead).
    """
    name = encoder_meta.get("name")
    if name == "bm25":
        from lsr.encoders.bm25 import BM25QueryEncoder

        return BM25QueryEncoder(from_dict(BM25Config, encoder_meta["bm25"], "encoder.bm25"), term_index)
    raise ConfigError(
        f"this index was built with encoder {name!r}, which has no text query encoder here; "
        "pass pre-encoded queries as sparse-vector JSONL ({\"id\", \"vector\": {term: weight}})"
    )


__all__ = ["ENCODERS", "CorpusEncoder", "QueryEncoder", "load_query_encoder", "make_encoder"]
