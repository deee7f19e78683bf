"""sentence-transformers ``SparseEncoder`` folders, read without sentence-transformers (and without torch).

Two layouts (``modules.json`` at the top; module types matched by class name, so ST 5's
``sparse_encoder.models.X`` and ST 6's ``sparse_encoder.modules.x.X`` both read):

* SPLADE: ``MLMTransformer`` at the top (the Hugging Face checkpoint and tokenizer) + ``SpladePooling``
  in a subfolder (``config.json``: ``pooling_strategy`` max|sum, ``activation_function`` relu|log1p_relu);
* inference-free: one ``Router`` (``router_config.json``) whose ``document`` route is MLMTransformer +
  SpladePooling and whose ``query`` route is a ``SparseStaticEmbedding`` (a weight per vocabulary token in
  ``model.safetensors``), each module in its own subfolder, tokenizer included.

What the folder says is what the vectors get: pooling, activation (ST's ``relu`` is SPLADE's
``log(1 + relu(x))``; ``log1p_relu`` applies log1p twice) and the maximum sequence length (ST 5:
``sentence_bert_config.json``; ST 6: the tokenizer's ``model_max_length``). A module or setting lsr
does not implement is refused by name, never silently replaced.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from lsr.config import EncoderConfig
from lsr.errors import ConfigError

logger = logging.getLogger(__name__)

POOLINGS = ("max", "sum")
ACTIVATIONS = ("relu", "log1p_relu")
_LARGE = 1_000_000  # transformers' "no limit" model_max_length is ~1e30


@dataclasses.dataclass(frozen=True)
class StFolder:
    """What lsr takes from a sentence-transformers sparse folder."""

    root: Path
    mlm: Path  # the MLMTransformer folder: checkpoint + tokenizer
    pooling: str = "max"
    activation: str = "relu"
    max_seq_length: int | None = None
    query_table: Path | None = None  # the SparseStaticEmbedding folder (inference-free)

    def describe(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "mlm": str(self.mlm),
            "pooling": self.pooling,
            "activation": self.activation,
            "max_seq_length": self.max_seq_length,
            "query_table": str(self.query_table) if self.query_table else None,
        }

    def apply(self, cfg: EncoderConfig) -> EncoderConfig:
        """``cfg`` with the folder's pooling and lengths (logged where they differ from the config)."""
        if cfg.splade.pooling != self.pooling:
            logger.info("%s: SpladePooling says %s pooling; using it", self.root, self.pooling)
        splade = dataclasses.replace(cfg.splade, pooling=self.pooling)
        transformer = cfg.transformer
        if self.max_seq_length:
            if self.max_seq_length != transformer.max_length:
                logger.info("%s: max_seq_length %d; using it", self.root, self.max_seq_length)
            transformer = dataclasses.replace(
                transformer, max_length=self.max_seq_length, query_max_length=self.max_seq_length
            )
        return dataclasses.replace(cfg, splade=splade, transformer=transformer)

    def query_weights(self) -> np.ndarray:
        """The SparseStaticEmbedding weights (float32[vocab]), read with safetensors' numpy API."""
        if self.query_table is None:
            raise ConfigError(f"{self.root}: no SparseStaticEmbedding query module")
        from safetensors.numpy import load_file

        path = self.query_table / "model.safetensors"
        if not path.is_file():
            raise ConfigError(f"{self.query_table}: no model.safetensors (SparseStaticEmbedding weights)")
        tensors = load_file(str(path))
        if "weight" not in tensors or tensors["weight"].ndim != 1:
            raise ConfigError(f"{path}: expected one 1-d tensor 'weight', found {sorted(tensors)}")
        return tensors["weight"].astype(np.float32)


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read {path} ({exc})") from None


def _kind(type_name: str) -> str:
    return type_name.rsplit(".", 1)[-1]


def read_st_folder(root: Path) -> StFolder | None:
    """The sentence-transformers layout of ``root``; None when it has no ``modules.json``.

    Raises:
        ConfigError: a module or setting lsr does not implement (named), or a malformed file.
    """
    modules_file = root / "modules.json"
    if not modules_file.is_file():
        return None
    modules = _json(modules_file)
    kinds = [(_kind(m.get("type", "")), root / m.get("path", "")) for m in modules]
    if [k for k, _ in kinds] == ["Router"]:
        return _router(root, kinds[0][1])
    return _document_route(root, kinds)


def _router(root: Path, folder: Path) -> StFolder:
    config = _json(folder / "router_config.json")
    types, structure = config.get("types", {}), config.get("structure", {})
    unknown_routes = sorted(set(structure) - {"query", "document"})
    if unknown_routes or "document" not in structure:
        raise ConfigError(
            f"{root}: a Router with routes {sorted(structure)}; lsr reads query and document routes only"
        )
    document = _document_route(root, [(_kind(types[m]), folder / m) for m in structure["document"]])
    query = [(_kind(types[m]), folder / m) for m in structure.get("query", [])]
    if [k for k, _ in query] != ["SparseStaticEmbedding"]:
        raise ConfigError(
            f"{root}: the Router's query route is {[k for k, _ in query]}; lsr implements a "
            "SparseStaticEmbedding query route (inference-free) only"
        )
    return dataclasses.replace(document, query_table=query[0][1])


def _document_route(root: Path, kinds: list[tuple[str, Path]]) -> StFolder:
    names = [k for k, _ in kinds]
    if names != ["MLMTransformer", "SpladePooling"]:
        raise ConfigError(
            f"{root}: sentence-transformers modules {names}; lsr implements MLMTransformer + SpladePooling "
            "(SPLADE) and a Router with a SparseStaticEmbedding query route (inference-free)"
        )
    mlm, pooling_dir = kinds[0][1], kinds[1][1]
    pooling = _json(pooling_dir / "config.json")
    strategy = pooling.get("pooling_strategy", "max")
    activation = pooling.get("activation_function", "relu")
    if strategy not in POOLINGS or activation not in ACTIVATIONS:
        raise ConfigError(
            f"{pooling_dir}: SpladePooling({strategy!r}, activation_function={activation!r}); lsr "
            f"implements pooling {list(POOLINGS)} and activations {list(ACTIVATIONS)}"
        )
    return StFolder(root, mlm, strategy, activation, _max_seq_length(mlm))


def _max_seq_length(mlm: Path) -> int | None:
    sbert = mlm / "sentence_bert_config.json"
    settings = _json(sbert) if sbert.is_file() else {}
    if settings.get("do_lower_case"):
        raise ConfigError(f"{sbert}: do_lower_case is true; lsr does not lowercase texts before tokenizing")
    length = settings.get("max_seq_length")
    if length is None and (mlm / "tokenizer_config.json").is_file():
        length = _json(mlm / "tokenizer_config.json").get("model_max_length")
    return int(length) if isinstance(length, (int, float)) and 0 < length < _LARGE else None


# --- the other way: lsr model folders as sentence-transformers folders --------------------------------

_ST = "sentence_transformers"
TYPES = {
    "MLMTransformer": f"{_ST}.sparse_encoder.models.MLMTransformer",
    "SpladePooling": f"{_ST}.sparse_encoder.models.SpladePooling",
    "SparseStaticEmbedding": f"{_ST}.sparse_encoder.models.SparseStaticEmbedding",
    "Router": f"{_ST}.models.Router",
}
QUERY_TABLE = "idf.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def export_st_folder(
    model: Path, out: Path, pooling: str = "max", max_seq_length: int = 512, overwrite: bool = False
) -> str:
    """Write ``model`` (a Hugging Face MLM folder, as ``--encoder splade:`` / ``inference-free:`` read it)
    as a folder sentence-transformers' ``SparseEncoder(out)`` loads: with an ``idf.json`` query table, a
    Router (SparseStaticEmbedding queries weighted by that table, MLMTransformer + SpladePooling
    documents), else MLMTransformer + SpladePooling. Returns ``"inference-free"`` or ``"splade"``.

    Raises:
        FileExistsError: ``out`` exists and ``overwrite`` is false.
        ConfigError: not a model folder, or a bad pooling.
    """
    import shutil

    if pooling not in POOLINGS:
        raise ConfigError(f"pooling {pooling!r} is not one of {list(POOLINGS)}")
    if not (model / "config.json").is_file():
        raise ConfigError(f"{model} is not a Hugging Face model folder (no config.json)")
    from lsr.encoders.unicoil import HEAD_FILE  # not at the top: unicoil imports this module

    if (model / HEAD_FILE).is_file():  # the shipped default inference-free is one
        raise ConfigError(
            f"{model} is a uniCOIL ({HEAD_FILE}): sentence-transformers' SparseEncoder has no "
            "uniCOIL module; export a SPLADE or SPLADE inference-free folder (e.g. lsr/models/inference-free)"
        )
    if (model / "lsr_terms.json").is_file():  # the shipped default splade is one
        raise ConfigError(
            f"{model} writes word terms (lsr_terms.json: the BM25 analyzer's stems, tf saturation), which "
            "sentence-transformers' SparseEncoder cannot: it scores wordpieces; export a wordpiece SPLADE "
            "folder (e.g. lsr/models/splade-scifact)"
        )
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    tmp = out.parent / f".{out.name}.st-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    kind = "inference-free" if (model / QUERY_TABLE).is_file() else "splade"
    mlm = tmp / "document_0_MLMTransformer" if kind == "inference-free" else tmp
    shutil.copytree(model, mlm, ignore=shutil.ignore_patterns(QUERY_TABLE, "README.md"))
    _write(mlm / "sentence_bert_config.json", {"max_seq_length": max_seq_length, "do_lower_case": False})
    vocab_size = int(_json(model / "config.json")["vocab_size"])
    pooling_config = {
        "pooling_strategy": pooling,
        "activation_function": "relu",  # ST's relu is SPLADE's log(1 + relu)
        "word_embedding_dimension": vocab_size,
    }
    _write(
        tmp / "config_sentence_transformers.json",
        {
            "model_type": "SparseEncoder",
            "prompts": {"query": "", "document": ""} if kind == "inference-free" else {},
            "default_prompt_name": None,
            "similarity_fn_name": "dot",
        },
    )
    if kind == "splade":
        _write(tmp / "1_SpladePooling" / "config.json", pooling_config)
        modules = [_module(0, "", "MLMTransformer"), _module(1, "1_SpladePooling", "SpladePooling")]
        _write(tmp / "modules.json", modules)
    else:
        _write(tmp / "document_1_SpladePooling" / "config.json", pooling_config)
        _query_module(model, tmp / "query_0_SparseStaticEmbedding", vocab_size)
        _write(tmp / "router_config.json", _router_config())
        _write(tmp / "modules.json", [_module(0, "", "Router")])
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return kind


def _module(idx: int, path: str, kind: str) -> dict[str, Any]:
    return {"idx": idx, "name": str(idx), "path": path, "type": TYPES[kind]}


def _router_config() -> dict[str, Any]:
    names = {"query_0_SparseStaticEmbedding", "document_0_MLMTransformer", "document_1_SpladePooling"}
    return {
        "types": {name: TYPES[name.split("_", 2)[2]] for name in sorted(names)},
        "structure": {
            "query": ["query_0_SparseStaticEmbedding"],
            "document": ["document_0_MLMTransformer", "document_1_SpladePooling"],
        },
        "parameters": {"default_route": "document", "allow_empty_key": True},
    }


def _query_module(model: Path, folder: Path, vocab_size: int) -> None:
    """SparseStaticEmbedding: the tokenizer and the idf.json weights as a float32[vocab] ``weight``
    (special tokens 0, as lsr's query side never weighs them)."""
    import shutil

    from safetensors.numpy import save_file
    from tokenizers import Tokenizer

    from lsr.encoders.inference_free import table_from_json

    folder.mkdir(parents=True)
    for name in TOKENIZER_FILES:
        if (model / name).is_file():
            shutil.copy2(model / name, folder / name)
    tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))
    vocab = [tokenizer.id_to_token(i) or f"[unused-id-{i}]" for i in range(vocab_size)]
    weight = table_from_json(model / QUERY_TABLE, vocab)
    special = [i for i, token in tokenizer.get_added_tokens_decoder().items() if token.special]
    weight[[i for i in special if i < vocab_size]] = 0.0
    save_file({"weight": weight}, str(folder / "model.safetensors"))
    _write(folder / "config.json", {"frozen": False})


def _write(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
