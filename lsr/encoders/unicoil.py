"""uniCOIL (Lin and Ma 2021): one non-negative weight per input token, no expansion.

``w_t = ReLU(head(h_t))`` for each token's last hidden state ``h_t`` (a linear head
``hidden -> 1``); a term repeated in a text keeps its largest weight; special tokens
and padding get none. The head lives in the checkpoint: pyserini's uniCOIL models
store it as ``tok_proj`` beside the ``bert.*`` weights, and :meth:`UniCoilModel.save_pretrained`
writes it to ``unicoil_head.safetensors``. ``new_head=True`` starts from any
BERT-family backbone with a freshly initialized head (for training).

Word terms: a model folder with ``lsr_terms.json`` (:mod:`lsr.encoders.words`) writes the BM25
analyzer's terms of the words instead of wordpieces. Each text is tokenized with offsets and word
ids, the model gives every token its weight, and each analyzer term of a word takes the largest
weight of the word's pieces (a word cut by a window or by truncation is analyzed whole). Batches run
on the worker threads; the term ids are assigned afterwards on the calling thread, in text and
window order, so a corpus always gets the same vocabulary. The vocabulary grows with the corpus, as
BM25's does; a query keeps only the index's terms. A folder whose file has a ``tf`` section also
saturates each document term's weight with its count and the document's length (``Saturation``);
queries keep their weights. The index meta records ``terms: words``, the analyzer and the tf section,
and the query side analyzes with that section. Queries take their token weights from the
query runtime when one is set (ONNX Runtime or lean: ``token_weights``, picked as for a wordpiece
uniCOIL), documents from torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lsr.config import EncoderConfig, TransformerConfig
from lsr.encoders.hf import require
from lsr.encoders.transformer import (
    TransformerEncoder,
    TransformerQueryEncoder,
    TransformerSparseModel,
)
from lsr.encoders.words import WordTermsCorpus, model_terms
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


def writes_words(cfg: EncoderConfig) -> bool:
    """Whether ``cfg`` encodes with a model of word terms (``unicoil``, ``splade``, ``bm25+`` either)."""
    return cfg.name.removeprefix("bm25+") in ("unicoil", "splade") and model_terms(cfg.model) is not None


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

    def word_weights(self, seqs: list[Any], query: bool) -> list[tuple[np.ndarray, dict[str, float] | None]]:
        """Each sequence's token weights, no expansion (a uniCOIL writes only the words of its text)."""
        return [(w, None) for w in self.sequence_weights([seq.ids for seq in seqs], query)]

    def sequence_weights(self, seqs: list[list[int]], query: bool = False) -> list[np.ndarray]:
        """float32 weights of each sequence's tokens (zero at special tokens), batches on the workers;
        queries on the query runtime when one is set (``token_weights`` of lsr.encoders.onnx_query and
        lsr.encoders.lean_query), else on torch."""
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        batch = self._runtime_batch if query and self.query_runtime is not None else self._token_batch
        out: list[np.ndarray] = [np.zeros(0, np.float32)] * len(seqs)
        for idx, weights in self._map(lambda idx: (idx, batch(seqs, idx)), self.batches(lengths)):
            for i, w in zip(idx, weights, strict=True):
                out[i] = w
        return out

    def _token_batch(self, seqs: list[list[int]], idx: np.ndarray) -> list[np.ndarray]:
        with self.torch.inference_mode(), self._autocast():  # both are thread-local
            input_ids, mask = self._padded(seqs, idx)
            weights = self.token_weights(input_ids, mask).float().cpu().numpy()
        return [weights[row, : len(seqs[i])] for row, i in enumerate(idx)]

    def _runtime_batch(self, seqs: list[list[int]], idx: np.ndarray) -> list[np.ndarray]:
        """A batch of queries on the query runtime, padded to its longest sequence only."""
        return self.query_runtime.token_weights(*self._padded_numpy(seqs, idx, 1))

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


class UniCoilEncoder(WordTermsCorpus, TransformerEncoder):
    """Corpus encoder: uniCOIL document vectors over the tokenizer vocabulary, or over the analyzer's
    terms of the words for a model folder with ``lsr_terms.json`` (a growing vocabulary, as BM25's)."""

    name = "unicoil"

    def __init__(self, cfg: EncoderConfig):
        self.read_terms(cfg.model)
        super().__init__(cfg)
        self.check_words()

    def make_model(self, path: Path) -> UniCoilModel:
        model = UniCoilModel(path, self.cfg.transformer)
        model.words = self.make_words()
        return model


class UniCoilQueryEncoder(TransformerQueryEncoder):
    """The query side; an index of word terms (``terms: words`` in its meta) analyzes as its meta says."""

    def make_model(self, path: Path, cfg: TransformerConfig, meta: dict[str, Any]) -> UniCoilModel:
        return UniCoilModel(path, cfg)
