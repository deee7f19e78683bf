"""uniCOIL (Lin and Ma 2021): one non-negative weight per input token, no expansion.

``w_t = ReLU(head(h_t))`` for each token's last hidden state ``h_t`` (a linear head
``hidden -> 1``); a term repeated in a text keeps its largest weight; special tokens
and padding get none. The head lives in the checkpoint: pyserini's uniCOIL models
store it as ``tok_proj`` beside the ``bert.*`` weights, and :meth:`UniCoilModel.save_pretrained`
writes it to ``unicoil_head.safetensors``. ``new_head=True`` starts from any
BERT-family backbone with a freshly initialized head (for training).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lsr.config import TransformerConfig
from lsr.encoders.hf import require
from lsr.encoders.transformer import TransformerEncoder, TransformerQueryEncoder, TransformerSparseModel
from lsr.errors import ConfigError

HEAD_FILE = "unicoil_head.safetensors"
HEAD_KEY = "tok_proj"
_WEIGHT_FILES = (HEAD_FILE, "model.safetensors", "pytorch_model.bin")


def find_head(path: Path) -> dict[str, Any] | None:
    """The head's ``{"weight", "bias"}`` tensors from a checkpoint folder, or None."""
    torch = require("torch")
    for name in _WEIGHT_FILES:
        file = path / name
        if not file.is_file():
            continue
        if name.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(str(file))
        else:
            state = torch.load(file, map_location="cpu", weights_only=True)
        keys = [k for k in state if k.endswith(f"{HEAD_KEY}.weight")]
        if keys:
            prefix = keys[0][: -len("weight")]
            return {"weight": state[keys[0]], "bias": state.get(prefix + "bias")}
    return None


class UniCoilModel(TransformerSparseModel):
    """A BERT-family encoder with a uniCOIL token-weight head."""

    window_pooling = "max"

    def __init__(self, path: Path, cfg: TransformerConfig, new_head: bool = False):
        self.new_head = new_head
        super().__init__(path, cfg)

    def _load(self) -> None:
        torch, transformers = self.torch, require("transformers")
        try:
            backbone = transformers.AutoModel.from_pretrained(str(self.path))
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"{self.path}: cannot load a transformer backbone for uniCOIL ({exc})"
            ) from None
        self.model_config = backbone.config
        hidden = int(backbone.config.hidden_size)
        self.head = torch.nn.Linear(hidden, 1)
        state = find_head(self.path)
        if state is None and not self.new_head:
            raise ConfigError(
                f"{self.path} has no uniCOIL head ({HEAD_KEY}.weight in "
                f"{', '.join(_WEIGHT_FILES)}); start from a backbone with a fresh head only "
                "for training (new_head=True)"
            )
        if state is None:
            torch.nn.init.normal_(self.head.weight, std=getattr(backbone.config, "initializer_range", 0.02))
            torch.nn.init.zeros_(self.head.bias)
        else:
            with torch.no_grad():
                self.head.weight.copy_(state["weight"].reshape(1, hidden))
                bias = state["bias"]
                self.head.bias.copy_(bias.reshape(1) if bias is not None else torch.zeros(1))
        self.backbone = backbone.eval().to(self.device)
        self.head = self.head.eval().to(self.device)
        self.vocab_size = int(backbone.get_input_embeddings().weight.shape[0])
        self.special = torch.zeros(self.vocab_size, dtype=torch.bool, device=self.device)
        self.special[[i for i in self.special_ids if i < self.vocab_size]] = True

    def token_weights(self, input_ids: Any, mask: Any) -> Any:
        """``[batch, tokens]`` weights >= 0; zero at padding and special tokens."""
        hidden = self.backbone(input_ids=input_ids, attention_mask=mask.long()).last_hidden_state
        weights = self.torch.relu(self.head(hidden)).squeeze(-1).float()
        return weights * (mask & ~self.special[input_ids])

    def _pool(self, input_ids: Any, mask: Any) -> Any:
        weights = self.token_weights(input_ids, mask)
        out = self.torch.zeros(
            input_ids.shape[0], self.vocab_size, dtype=self.torch.float32, device=input_ids.device
        )
        return out.scatter_reduce_(1, input_ids, weights, reduce="amax", include_self=True)

    def save_pretrained(self, out: str | Path) -> None:
        """Backbone, tokenizer and head into a folder this class loads again."""
        from safetensors.torch import save_file

        out = Path(out)
        self.backbone.save_pretrained(out)
        self.tokenizer.save_pretrained(out)
        save_file(
            {
                f"{HEAD_KEY}.weight": self.head.weight.detach().cpu().contiguous(),
                f"{HEAD_KEY}.bias": self.head.bias.detach().cpu().contiguous(),
            },
            str(out / HEAD_FILE),
        )


class UniCoilEncoder(TransformerEncoder):
    """Corpus encoder: uniCOIL document vectors over the tokenizer vocabulary."""

    name = "unicoil"

    def make_model(self, path: Path) -> UniCoilModel:
        return UniCoilModel(path, self.cfg.transformer)


class UniCoilQueryEncoder(TransformerQueryEncoder):
    def make_model(self, path: Path, cfg: TransformerConfig, meta: dict[str, Any]) -> UniCoilModel:
        return UniCoilModel(path, cfg)
