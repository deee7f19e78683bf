"""Encoders by name. ``make_encoder`` builds the document side from the config;
``load_query_encoder`` rebuilds the query side from an index's own meta.

| name             | documents                         | queries                                   |
|------------------|-----------------------------------|-------------------------------------------|
| `bm25`           | Lucene BM25 impacts               | analyzed terms weighted by count          |
| `splade`         | MLM logits, log(1 + ReLU), pooled | the same model (or `encoder.query_model`) |
| `unicoil`        | one weight per input token        | the same model (or `encoder.query_model`) |
| `inference-free` | SPLADE                            | tokens weighted by a table; no torch      |

Nothing here imports torch; the transformer encoders load it when built.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lsr.config import BM25Config, EncoderConfig, from_dict
from lsr.encoders.base import CorpusEncoder, QueryEncoder
from lsr.errors import ConfigError

ENCODERS = ("bm25", "splade", "unicoil", "inference-free")
MODEL_ENCODERS = ENCODERS[1:]

ENCODER_HELP = (
    "bm25; splade, unicoil or inference-free with a model folder as NAME:FOLDER "
    "(e.g. inference-free:models/splade-tiny); or just a model folder, meaning splade "
    "(e.g. models/splade-tiny). A bare splade or inference-free uses the default model "
    "(lsr.encoders.default_model); other bare names take --set encoder.model=FOLDER"
)

# the models shipped inside the package (lsr/models/NAME), then the fetched splade-tiny
SHIPPED_MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
FALLBACK_MODELS = ("models/splade-tiny",)


def default_model(name: str) -> Path | None:
    """The model folder a bare ``--encoder splade`` / ``inference-free`` resolves to, or None.

    First the model shipped in the package (``lsr/models/<name>``, with weights), then
    ``models/splade-tiny`` (``python scripts/fetch_models.py``) beside the repo or in the
    working directory.
    """
    if name not in ("splade", "inference-free"):
        return None
    shipped = SHIPPED_MODELS_DIR / name
    if (shipped / "config.json").is_file():
        return shipped
    repo = Path(__file__).resolve().parents[2]
    for rel in FALLBACK_MODELS:
        for base in (repo, Path.cwd()):
            if (base / rel / "config.json").is_file():
                return (base / rel).resolve()
    return None


def encoder_overrides(spec: str) -> list[str]:
    """``--set`` style overrides for an ``--encoder`` value (see ``ENCODER_HELP``).

    Raises:
        ConfigError: neither a known name, ``NAME:FOLDER``, nor an existing folder.
    """
    name, sep, model = spec.partition(":")
    if spec in ENCODERS:
        default = default_model(spec)
        return [f"encoder.name={spec}"] + ([f"encoder.model={json.dumps(str(default))}"] if default else [])
    if sep and name in MODEL_ENCODERS and model:
        return [f"encoder.name={name}", f"encoder.model={json.dumps(model)}"]
    if Path(spec).is_dir():
        return ["encoder.name=splade", f"encoder.model={json.dumps(spec)}"]
    if "/" in spec or sep:
        raise ConfigError(
            f"--encoder {spec!r}: no such model folder (or encoder name before the ':'); "
            f"encoders: {list(ENCODERS)}"
        )
    raise ConfigError(
        f"unknown encoder {spec!r}; available: {list(ENCODERS)}, NAME:MODEL_FOLDER, or a "
        "model folder (splade)"
    )


def make_encoder(cfg: EncoderConfig) -> CorpusEncoder:
    """The corpus encoder named by ``cfg.name``."""
    if cfg.name == "bm25":
        from lsr.encoders.bm25 import BM25Encoder

        return BM25Encoder(cfg.bm25)
    if cfg.name == "splade":
        from lsr.encoders.splade import SpladeEncoder

        return SpladeEncoder(cfg)
    if cfg.name == "unicoil":
        from lsr.encoders.unicoil import UniCoilEncoder

        return UniCoilEncoder(cfg)
    if cfg.name == "inference-free":
        from lsr.encoders.inference_free import InferenceFreeEncoder

        return InferenceFreeEncoder(cfg)
    raise ConfigError(f"unknown encoder {cfg.name!r}; available: {list(ENCODERS)}")


def load_query_encoder(
    encoder_meta: dict[str, Any], term_index: dict[str, int], directory: str | Path | None = None
) -> QueryEncoder:
    """The query encoder matching an index, from its meta.json ``encoder`` section.

    Args:
        encoder_meta: the ``encoder`` section of the index (or vectors) meta.
        term_index: the index vocabulary, term -> id; the query side must produce the same ids.
        directory: the index directory, for encoders that keep query files there (inference-free).

    Raises:
        ConfigError: the index was built from pre-encoded vectors with no known
            query encoder (pass pre-encoded JSONL queries instead), or the query
            side's vocabulary differs from the index's.
    """
    name = encoder_meta.get("name")
    if name == "bm25":
        from lsr.encoders.bm25 import BM25QueryEncoder

        return BM25QueryEncoder(from_dict(BM25Config, encoder_meta["bm25"], "encoder.bm25"), term_index)
    if name == "splade":
        from lsr.encoders.splade import SpladeQueryEncoder

        return SpladeQueryEncoder(encoder_meta, term_index)
    if name == "unicoil":
        from lsr.encoders.unicoil import UniCoilQueryEncoder

        return UniCoilQueryEncoder(encoder_meta, term_index)
    if name == "inference-free":
        from lsr.encoders.inference_free import InferenceFreeQueryEncoder

        return InferenceFreeQueryEncoder(encoder_meta, term_index, Path(directory) if directory else None)
    raise ConfigError(
        f"this index was built with encoder {name!r}, which has no text query encoder here; "
        'pass pre-encoded queries as sparse-vector JSONL ({"id", "vector": {term: weight}})'
    )


__all__ = [
    "ENCODERS",
    "ENCODER_HELP",
    "CorpusEncoder",
    "QueryEncoder",
    "default_model",
    "encoder_overrides",
    "load_query_encoder",
    "make_encoder",
]
