"""Encoders by name: one registry maps an ``--encoder`` name to its corpus and query encoder.

| name             | documents                         | queries                                   |
|------------------|-----------------------------------|-------------------------------------------|
| `bm25`           | Lucene BM25 impacts               | analyzed terms weighted by count          |
| `splade`         | MLM log(1+ReLU) pooled, or word terms | the same model (or `encoder.query_model`) |
| `unicoil`        | one weight per token (or word term) | the same model (or `encoder.query_model`) |
| `inference-free` | SPLADE, or a word-terms uniCOIL   | a token table, or word-term counts; no torch |
| `bm25+MODEL`     | MODEL's weights, then BM25 impacts | w x MODEL's query side, then BM25's terms |

(MODEL: splade, unicoil or inference-free; :mod:`lsr.encoders.plus`. Word terms: a uniCOIL or SPLADE
folder with lsr_terms.json, :mod:`lsr.encoders.words` (the shipped defaults are); ``inference-free:FOLDER``
with such a uniCOIL folder indexes its documents and weighs a query's analyzer terms by their counts,
x idf^p of the collection.)

``make_encoder`` builds the document side from the config; ``load_query_encoder``
rebuilds the query side from an index's own meta. Importing this package loads no
torch: the transformer encoders load it when a model is built.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsr.config import EncoderConfig
from lsr.encoders.base import CorpusEncoder, CorpusStats, Finish, QueryEncoder
from lsr.encoders.bm25 import BM25Encoder, BM25QueryEncoder
from lsr.encoders.inference_free import InferenceFreeQueryEncoder, inference_free_encoder
from lsr.encoders.plus import PlusEncoder, PlusQueryEncoder
from lsr.encoders.splade import SpladeEncoder, SpladeQueryEncoder
from lsr.encoders.unicoil import UniCoilEncoder, UniCoilQueryEncoder
from lsr.errors import ConfigError


@dataclass(frozen=True)
class EncoderKind:
    """One ``--encoder`` name: its corpus and query encoder classes, and how it finds a model.

    Attributes:
        model: takes a model folder (``NAME:FOLDER``, ``encoder.model``).
        default_model: a bare name resolves to a shipped model (:func:`default_model`).
        tiny_fallback: without a shipped model, the fetched splade-tiny serves (it has an MLM head, so
            it is a SPLADE and an inference-free document encoder, but no uniCOIL head).
        learned: ``bm25+MODEL`` encoders: MODEL, whose shipped model a bare name resolves to.
        shipped: the folder of ``lsr/models`` a bare name resolves to ("": the name's own).
    """

    name: str
    corpus: Callable[[EncoderConfig], CorpusEncoder]
    query: type[QueryEncoder]
    model: bool = True
    default_model: bool = False
    tiny_fallback: bool = False
    learned: str = ""
    shipped: str = ""


LEARNED = (
    EncoderKind("splade", SpladeEncoder, SpladeQueryEncoder, default_model=True, tiny_fallback=True),
    EncoderKind("unicoil", UniCoilEncoder, UniCoilQueryEncoder, default_model=True),
    EncoderKind(
        "inference-free",
        inference_free_encoder,
        InferenceFreeQueryEncoder,
        default_model=True,
        tiny_fallback=True,
        # the uniCOIL of word terms: its documents, term-count queries (lsr.encoders.inference_free);
        # the SPLADE inference-free model that was the default is lsr/models/inference-free
        shipped="unicoil",
    ),
)


def _plus(kind: EncoderKind) -> EncoderKind:
    """``bm25+NAME``: BM25 and the learned encoder ``kind`` in one vector (:mod:`lsr.encoders.plus`)."""
    PlusQueryEncoder.learned_query[kind.name] = kind.query
    return EncoderKind(
        f"bm25+{kind.name}",
        lambda cfg: PlusEncoder(cfg, kind.corpus, kind.name),
        PlusQueryEncoder,
        default_model=True,
        tiny_fallback=kind.tiny_fallback,
        learned=kind.name,
    )


REGISTRY: dict[str, EncoderKind] = {
    kind.name: kind
    for kind in (
        EncoderKind("bm25", BM25Encoder, BM25QueryEncoder, model=False),
        *LEARNED,
        *(_plus(k) for k in LEARNED),
    )
}
ENCODERS = tuple(REGISTRY)

ENCODER_HELP = (
    "bm25; splade, unicoil or inference-free with a model folder as NAME:FOLDER "
    "(e.g. inference-free:models/splade-tiny); or just a model folder, meaning splade "
    "(e.g. models/splade-tiny). A bare splade, unicoil or inference-free uses the shipped "
    "default model (lsr.encoders.default_model). bm25+splade, bm25+unicoil, bm25+inference-free "
    "(also with :FOLDER): BM25 plus the model in one index, score = BM25 + encoder.plus.model_weight "
    "x the model's"
)

# the models shipped inside the package (lsr/models/NAME), then the fetched splade-tiny
SHIPPED_MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
FALLBACK_MODELS = ("models/splade-tiny",)


def encoder_kind(name: str | None) -> EncoderKind:
    """The registry entry of ``name``.

    Raises:
        ConfigError: an unknown name, listing the known ones.
    """
    if name not in REGISTRY:
        raise ConfigError(f"unknown encoder {name!r}; available: {list(ENCODERS)}")
    return REGISTRY[name]


def default_model(name: str) -> Path | None:
    """The model folder a bare ``--encoder splade`` / ``unicoil`` / ``inference-free`` resolves to, or None.

    First the model shipped in the package (``lsr/models/<name>``, with weights; inference-free:
    ``lsr/models/unicoil``, the uniCOIL of word terms, whose documents it indexes with term-count
    queries), then, for splade and inference-free, ``models/splade-tiny`` (``python
    scripts/fetch_models.py``) beside the repo or in the working directory.
    """
    if name not in REGISTRY or not REGISTRY[name].default_model:
        return None
    name = REGISTRY[name].learned or name
    shipped = SHIPPED_MODELS_DIR / (REGISTRY[name].shipped or name)
    if (shipped / "config.json").is_file():
        return shipped
    if not REGISTRY[name].tiny_fallback:
        return None
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
    if spec in REGISTRY:
        default = default_model(spec)
        return [f"encoder.name={spec}"] + ([f"encoder.model={json.dumps(str(default))}"] if default else [])
    if sep and name in REGISTRY and REGISTRY[name].model and model:
        return [f"encoder.name={name}", f"encoder.model={json.dumps(model)}"]
    if Path(spec).is_dir():  # a sentence-transformers Router folder is inference-free, others SPLADE
        kind = "inference-free" if (Path(spec) / "router_config.json").is_file() else "splade"
        return [f"encoder.name={kind}", f"encoder.model={json.dumps(spec)}"]
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
    return encoder_kind(cfg.name).corpus(cfg)


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
    if name not in REGISTRY:
        raise ConfigError(
            f"this index was built with encoder {name!r}, which has no text query encoder here; "
            'pass pre-encoded queries as sparse-vector JSONL ({"id", "vector": {term: weight}})'
        )
    return REGISTRY[name].query.from_meta(encoder_meta, term_index, Path(directory) if directory else None)


__all__ = [
    "ENCODERS",
    "ENCODER_HELP",
    "REGISTRY",
    "CorpusEncoder",
    "CorpusStats",
    "EncoderKind",
    "Finish",
    "QueryEncoder",
    "default_model",
    "encoder_kind",
    "encoder_overrides",
    "load_query_encoder",
    "make_encoder",
]
