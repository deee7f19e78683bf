"""SPLADE (Formal et al. 2021, 2022): w_j = pool_i log(1 + ReLU(logit_ij)) over a sequence's tokens.

The MLM head's vocabulary projection dominates the cost (for splade-tiny it is 90% of
the FLOPs: hidden 128 -> 30,522 logits per token). The straightforward version
materializes ``[batch, tokens, vocab]`` float32 logits, applies ReLU, log1p and the
mask to all of them, then takes the max: gigabytes of memory traffic per batch.
:meth:`SpladeModel._pool` computes the same numbers in cache-sized tiles:

* log1p and ReLU are monotonic, so ``max_i log1p(relu(x_i + b)) = log1p(relu(max_i x_i + b))``:
  only the pooled ``[batch, vocab]`` result is transformed, and the bias is added once;
* padded positions take the hidden state of the sequence's first token, so a plain
  ``amax`` over the padded block is already attention-mask aware (a duplicate never
  changes a max);
* the projection runs over tiles of about ``TILE_TOKENS`` tokens times ``VOCAB_CHUNK``
  vocabulary rows, so each tile of logits stays in cache from the matmul to the max.

:func:`splade_pool_reference` is the straightforward version; tests hold the two equal
and the benchmark (``benchmarks/encode_bench.py``) compares their speed.

Term-frequency saturation of documents: a model folder may say ``{"tf": {"k1", "b", "avgdl"}}`` in
``lsr_doc.json`` (:func:`read_doc_file`; the document side's settings, as ``lsr_query.json`` holds the
query side's). Each document term the text holds (count c > 0 in the model's tokenization of the whole
cleaned text, special tokens left out, |d| its number of such tokens) then weighs

    w(t, d) x c (k1 + 1) / (c + k1 (1 - b + b |d| / avgdl))

(:class:`lsr.encoders.words.Saturation`), once per document after its windows are pooled; expansion
terms (c = 0) and queries keep their weights. ``avgdl`` is a fixed reference (the training corpus's mean
length in such tokens), so a document's weights depend on that document alone: live adds, shards and
re-encodes agree. The counts come with the tokens (``Tokens.counts``, made by the ``TextTokenizer``), so
``lsr encode --ray`` workers make them too. The index meta records the section (``encoder.tf``).

Word terms: a model folder with ``lsr_terms.json`` (:mod:`lsr.encoders.words`; the shipped default)
writes the BM25 analyzer's terms of words instead of wordpieces. Each sequence's pooled row is computed
as above; each analyzer term of a word takes the largest pooled weight of the word's tokens, and every
whole-word token of the row (no ``##`` piece, no bracketed token) writes its pooled weight to its own
analysis, the expansion (``WordTerms.token_terms``); windows pool by max. The file's ``tf`` section
saturates documents (with the analyzer's counts; a term the text does not hold counts once), so
``lsr_doc.json`` must not carry one, and only max pooling applies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lsr.config import EncoderConfig, SpladeConfig, TransformerConfig, from_dict
from lsr.encoders.hf import DOC_FILE, read_doc_settings, require, resolve_model
from lsr.encoders.transformer import (
    Tokens,
    TransformerEncoder,
    TransformerQueryEncoder,
    TransformerSparseModel,
    counts_of,
    section,
)
from lsr.encoders.words import TERMS_FILE, Saturation, WordTerms, WordTermsCorpus
from lsr.errors import ConfigError

logger = logging.getLogger(__name__)

# tile sizes of the fused projection + max: (tokens, vocabulary rows) per matmul
TILES = {"cpu": (512, 2048), "cuda": (16384, 32768)}


def read_doc_file(model_dir: Path) -> Saturation | None:
    """The documents' tf saturation of a model folder's ``lsr_doc.json`` (``{"tf": {"k1", "b",
    "avgdl"}}``, :func:`lsr.encoders.hf.read_doc_settings`), or None when the folder has no such file
    or it has no ``tf``.

    Raises:
        ConfigError: a bad file (:func:`~lsr.encoders.hf.read_doc_settings`) or tf section (named, with
            the file).
    """
    data = read_doc_settings(model_dir)
    try:
        return Saturation.from_section(data["tf"]) if "tf" in data else None
    except ConfigError as exc:
        raise ConfigError(f"{model_dir / DOC_FILE}: {exc}") from None


class SpladeModel(TransformerSparseModel):
    """A masked-language model read as SPLADE: any ``*ForMaskedLM`` checkpoint folder.

    Args:
        path: the model folder.
        cfg: tokenization and runtime settings.
        pooling: "max" or "sum" over the tokens (and windows) of a text.
        impl: "fast" (tiled, the default) or "reference" (full logits, then pool).
    """

    def __init__(
        self,
        path: Path,
        cfg: TransformerConfig,
        pooling: str = "max",
        impl: str = "fast",
        activation: str = "relu",
    ):
        if pooling not in ("max", "sum"):
            raise ValueError(f"pooling {pooling!r} is not one of ['max', 'sum']")
        if impl not in ("fast", "reference"):
            raise ValueError(f"impl {impl!r} is not one of ['fast', 'reference']")
        if activation not in ("relu", "log1p_relu"):
            raise ValueError(f"activation {activation!r} is not one of ['relu', 'log1p_relu']")
        self.pooling = self.window_pooling = pooling
        self.saturation: Saturation | None = None  # documents' tf saturation: saturate()
        self._token_terms: dict[int, tuple[str, ...]] | None = None  # word terms: the expansion's terms
        self.activation = activation
        self.impl = impl
        super().__init__(path, cfg)

    def _load(self) -> None:
        torch, transformers = self.torch, require("transformers")
        try:
            model, info = transformers.AutoModelForMaskedLM.from_pretrained(
                str(self.path), output_loading_info=True
            )
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"{self.path}: cannot load a masked-language model for SPLADE ({exc})"
            ) from None
        missing = _really_missing(model, info.get("missing_keys") or [])
        if missing:
            arch = getattr(model.config, "architectures", None)
            shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
            raise ConfigError(
                f"{self.path} has no masked-language-model head (missing weights: {shown}; "
                f"config.json architectures: {arch}); SPLADE needs a *ForMaskedLM checkpoint"
            )
        model.eval().to(self.device)
        decoder = model.get_output_embeddings()
        if decoder is None or not hasattr(decoder, "weight"):
            raise ConfigError(f"{self.path}: the model has no output embeddings (vocabulary projection)")
        self.model_config = model.config
        self.vocab_size = int(decoder.weight.shape[0])
        self.weight = decoder.weight.detach()
        bias = getattr(decoder, "bias", None)
        self.bias = bias.detach() if bias is not None else torch.zeros(self.vocab_size, device=self.device)
        self.bias = self.bias.float()
        # the trunk: the whole model with its vocabulary projection replaced by the identity, so
        # its "logits" are the transformed hidden states that the projection would read
        _replace_module(model, decoder, torch.nn.Identity())
        self.trunk = model
        self._weight_cast = self.weight if self.dtype == torch.float32 else self.weight.to(self.dtype)

    def word_weights(self, seqs: list[Any], query: bool) -> list[tuple[np.ndarray, dict[str, float] | None]]:
        """Word terms: each position weighs its token's pooled weight, and every whole-word token of the
        pooled row writes its weight to its own analysis (the expansion: the module docstring)."""
        token_terms = self.token_terms()
        out: list[tuple[np.ndarray, dict[str, float] | None]] = []
        for seq, (tokens, weights) in zip(
            seqs, self.sequence_rows([s.ids for s in seqs], query), strict=True
        ):
            ids = np.asarray(seq.ids, dtype=np.int64)
            at = np.minimum(np.searchsorted(tokens, ids), max(len(tokens) - 1, 0))
            held = tokens[at] == ids if len(tokens) else np.zeros(len(ids), dtype=bool)
            per_position = np.where(held, weights[at] if len(tokens) else 0.0, 0.0).astype(np.float32)
            out.append((per_position, WordTerms.expansion(tokens, weights, token_terms)))
        return out

    def token_terms(self) -> dict[int, tuple[str, ...]]:
        """Token id -> the terms its whole-word token writes (:meth:`WordTerms.token_terms`), once."""
        assert self.words is not None
        if self._token_terms is None:
            self._token_terms = self.words.token_terms(self.vocab)
        return self._token_terms

    def saturate(self, saturation: Saturation | None) -> None:
        """Documents' tf saturation from now on (None: none); their tokens then carry their counts."""
        self.saturation = saturation
        if saturation is not None:
            self.text_tokenizer.count_documents(self.special_ids)

    def document_scale(self, tokens: Tokens) -> Callable[[int, np.ndarray, np.ndarray], np.ndarray] | None:
        """Documents that saturate: each term a text holds times its tf factor (the module docstring),
        from the counts ``tokens`` carry."""
        saturation, counts = self.saturation, tokens.counts
        if saturation is None:
            return None
        if counts is None:
            raise ValueError(f"{self.path}: documents' tf saturates ({DOC_FILE}), the tokens carry no counts")

        def scale(k: int, terms: np.ndarray, weights: np.ndarray) -> np.ndarray:
            count = counts_of(counts[k], terms)
            held = count > 0
            factor = np.ones(len(terms))
            factor[held] = saturation.scale(count[held], counts[k][2])
            return (weights * factor).astype(np.float32)

        return scale

    def hidden(self, input_ids: Any, mask: Any) -> Any:
        """``[batch, tokens, hidden]``: what the vocabulary projection reads."""
        return self.trunk(input_ids=input_ids, attention_mask=mask.long()).logits

    def _pool(self, input_ids: Any, mask: Any) -> Any:
        if self.impl == "reference":
            return splade_pool_reference(
                self.hidden(input_ids, mask), mask, self.weight, self.bias, self.pooling, self.activation
            )
        return self._pool_tiled(self.hidden(input_ids, mask), mask)

    def _pool_tiled(self, hidden: Any, mask: Any) -> Any:
        torch = self.torch
        n, length, dim = hidden.shape
        tile_tokens, chunk = TILES["cuda" if self.device.type == "cuda" else "cpu"]
        weight = self._weight_cast
        hidden = hidden.to(weight.dtype)
        if self.pooling == "max":  # padded positions repeat token 0: invisible to a max
            hidden = torch.where(mask.unsqueeze(-1), hidden, hidden[:, :1])
        out = torch.empty(n, self.vocab_size, dtype=torch.float32, device=hidden.device)
        rows = max(1, tile_tokens // length)
        buffer = torch.empty(min(n, rows) * length * chunk, dtype=weight.dtype, device=hidden.device)
        maskf = mask.unsqueeze(-1).to(torch.float32)
        for r0 in range(0, n, rows):
            r1 = min(n, r0 + rows)
            tile = hidden[r0:r1].reshape(-1, dim)
            for v0 in range(0, self.vocab_size, chunk):
                v1 = min(self.vocab_size, v0 + chunk)
                logits = buffer[: tile.shape[0] * (v1 - v0)].view(tile.shape[0], v1 - v0)
                torch.matmul(tile, weight[v0:v1].T, out=logits)  # reused: no allocation per tile
                logits = logits.view(r1 - r0, length, v1 - v0)
                if self.pooling == "max":
                    out[r0:r1, v0:v1] = logits.amax(dim=1)
                else:
                    act = torch.log1p(torch.relu(logits.float() + self.bias[v0:v1]))
                    if self.activation == "log1p_relu":
                        act = torch.log1p(act)
                    out[r0:r1, v0:v1] = (act * maskf[r0:r1]).sum(dim=1)
        if self.pooling == "max":  # monotonic: the activation of the max is the max of the activations
            out += self.bias
            torch.relu_(out)
            torch.log1p_(out)
            if self.activation == "log1p_relu":
                torch.log1p_(out)
        return out


def splade_pool_reference(
    hidden: Any, mask: Any, weight: Any, bias: Any, pooling: str = "max", activation: str = "relu"
) -> Any:
    """The straightforward SPLADE pooling: full ``[batch, tokens, vocab]`` logits, then pool.

    ``pool_i log(1 + relu(logits)) * mask`` as in naver/splade (activation ``log1p_relu``: log1p once
    more, as sentence-transformers' SpladePooling names it); the oracle for :meth:`SpladeModel._pool`.
    """
    torch = require("torch")
    logits = torch.nn.functional.linear(hidden.to(weight.dtype), weight).float() + bias
    act = torch.log1p(torch.relu(logits))
    if activation == "log1p_relu":
        act = torch.log1p(act)
    act = act * mask.unsqueeze(-1)
    return act.amax(dim=1) if pooling == "max" else act.sum(dim=1)


def _really_missing(model: Any, missing: list[str]) -> list[str]:
    """Missing weights, less those a checkpoint never stores: buffers and a projection tied to the
    input embeddings (older transformers list them)."""
    out, emb = model.get_output_embeddings(), model.get_input_embeddings()
    tied = out is not None and emb is not None and out.weight is emb.weight
    names = {n for n, p in model.named_parameters(remove_duplicate=False) if tied and p is out.weight}
    return sorted(k for k in missing if k not in names and not k.endswith("position_ids"))


def _replace_module(root: Any, old: Any, new: Any) -> None:
    for name, module in root.named_modules():
        if module is old and name:
            parent_name, _, attr = name.rpartition(".")
            setattr(root.get_submodule(parent_name) if parent_name else root, attr, new)
            return
    raise ConfigError("cannot find the vocabulary projection inside the model")


# --- encoders ----------------------------------------------------------------------------------


class SpladeEncoder(WordTermsCorpus, TransformerEncoder):
    """Corpus encoder: SPLADE document vectors over the tokenizer vocabulary, or over the analyzer's
    terms of the words for a model folder with ``lsr_terms.json`` (a growing vocabulary, as BM25's)."""

    name = "splade"

    def __init__(self, cfg: EncoderConfig, impl: str = "fast"):
        self.impl = impl
        self.read_terms(cfg.model)  # a bad file fails before the model loads
        self.doc_tf = read_doc_file(resolve_model(cfg.model))
        if self.word_analyzer is not None:
            _check_words_settings(cfg, self.doc_tf)
        super().__init__(cfg)
        self.check_words()

    def make_model(self, path: Path) -> SpladeModel:
        activation = self.st.activation if self.st else "relu"
        model = SpladeModel(path, self.cfg.transformer, self.cfg.splade.pooling, self.impl, activation)
        model.saturate(self.doc_tf)
        model.words = self.make_words()
        return model

    def own_section(self) -> dict[str, Any]:
        tf = {} if self.doc_tf is None else {"tf": self.doc_tf.section()}
        return {"splade": section(self.cfg.splade), **tf}


def _check_words_settings(cfg: EncoderConfig, doc_tf: Saturation | None) -> None:
    """A SPLADE of word terms pools with max and saturates as its ``lsr_terms.json`` says."""
    if cfg.splade.pooling != "max":
        raise ConfigError(
            f"encoder.splade.pooling = {cfg.splade.pooling!r}: the model at {cfg.model} writes word terms "
            f"({TERMS_FILE}), each its largest token weight; use max"
        )
    if doc_tf is not None:
        raise ConfigError(
            f"{cfg.model}: a model of word terms saturates as its {TERMS_FILE} says; "
            f"remove the tf of {DOC_FILE}"
        )


class SpladeQueryEncoder(TransformerQueryEncoder):
    """Query side: the query checkpoint (the document one unless ``query_model`` was set); an index of
    word terms (``terms: words`` in its meta) analyzes as its meta says."""

    def make_model(self, path: Path, cfg: TransformerConfig, meta: dict[str, Any]) -> SpladeModel:
        splade = from_dict(SpladeConfig, meta.get("splade", {}), "encoder.splade")
        activation = self.st.activation if self.st else "relu"
        return SpladeModel(path, cfg, splade.pooling, activation=activation)
