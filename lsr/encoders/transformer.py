"""The torch half of the transformer encoders: device, tokenization, length-sorted batches, windows.

:class:`TransformerSparseModel` turns texts into a :class:`SparseBatch` over the
tokenizer's vocabulary; a subclass supplies ``_pool(input_ids, mask)``, the dense
``[batch, vocab]`` float32 vectors of a padded batch of sequences (SPLADE: pooled
log-saturated MLM logits; uniCOIL: token weights scattered to their ids).

The shared loop, per call of :meth:`TransformerSparseModel.encode`:
    1. empty or whitespace-only texts get an empty vector and never reach the model;
    2. the Rust tokenizer truncates each text to ``max_length`` tokens, or cuts it
       into overlapping windows (``long_docs: windows``);
    (steps 1-2 are :class:`TextTokenizer`, which needs no model: ``lsr encode --ray`` runs them on CPU
    workers and hands the :class:`Tokens` to :meth:`TransformerSparseModel.encode_tokens`, steps 3-5)
    3. sequences are sorted by length and cut into batches of at most
       ``batch_tokens`` padded tokens, so little compute goes to padding;
    4. each batch runs under ``torch.inference_mode`` (and autocast for bf16/fp16); on the
       CPU, batches run concurrently on ``threads`` Python threads with one torch thread each;
    5. the windows of one text are pooled together, then thresholds and top-k apply.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from lsr.config import EncoderConfig, PruneConfig, TransformerConfig, from_dict
from lsr.encoders import query_idf
from lsr.encoders.base import CorpusEncoder
from lsr.encoders.hf import (
    check_vocab,
    clean_text,
    prune_row,
    read_doc_settings,
    require,
    resolve_model,
    rows_to_batch,
    vocab_digest,
)
from lsr.encoders.lean_query import LeanQueryRuntime
from lsr.encoders.onnx_query import OnnxQueryRuntime, resolve_runtime
from lsr.encoders.st import read_st_folder
from lsr.encoders.words import WordTerms, index_words, whole_words, word_spans
from lsr.errors import ConfigError, LsrError
from lsr.index.sparse import SparseBatch

logger = logging.getLogger(__name__)

PAD_MULTIPLE = {False: 32, True: 8}  # padded lengths are multiples of this (CPU, GPU)
MAX_BATCH_SEQUENCES = 128  # bounds the dense [batch, vocab] output of a batch of short texts


def available_cpus() -> int:
    """Cores this process may run on (the affinity mask, which containers narrow), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def pick_device(spec: str, key: str = "encoder.transformer.device") -> Any:
    """``auto`` (cuda when available, else cpu), cpu, cuda or cuda:N; ``key`` names the setting."""
    torch = require("torch")
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{key} = {spec!r}, but torch sees no CUDA device")
    return torch.device(spec)


def pick_dtype(spec: str, device: Any) -> Any:
    """The compute dtype: ``auto`` is bfloat16 on a GPU and float32 on the CPU."""
    torch = require("torch")
    if spec == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, spec)


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Errors only from transformers while loading: its load reports go to the console otherwise
    (lsr checks missing and unexpected weights itself)."""
    logging_ = require("transformers").utils.logging
    before = logging_.get_verbosity()
    logging_.set_verbosity_error()
    try:
        yield
    finally:
        logging_.set_verbosity(before)


def load_tokenizer(path: Path) -> Any:
    """The fast (Rust) tokenizer of a model folder."""
    transformers = require("transformers")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot load its tokenizer ({exc})") from None
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(
            f"{path}: the tokenizer has no fast (Rust) version; lsr needs tokenizer.json "
            "or a vocabulary that transformers can convert"
        )
    return tokenizer


def tokenizer_vocab(tokenizer: Any, size: int) -> list[str]:
    """Token strings by id for ids [0, size); ids the tokenizer does not know get a placeholder."""
    backend = tokenizer.backend_tokenizer
    if backend.get_vocab_size(with_added_tokens=True) > size:
        raise ConfigError(
            f"the tokenizer has {backend.get_vocab_size(with_added_tokens=True)} tokens, more "
            f"than the model's {size} outputs"
        )
    vocab = [backend.id_to_token(i) or f"[unused-id-{i}]" for i in range(size)]
    if len(set(vocab)) != len(vocab):
        raise ConfigError("the tokenizer's vocabulary has repeated token strings; it cannot name index terms")
    return vocab


@dataclasses.dataclass
class Tokens:
    """Texts as the model reads them (steps 1-2 of the loop): ``n_texts`` texts, the indices of those with
    content (``live``), the token ids of their sequences (special tokens included; a text's windows one
    after another) and, per sequence, the index in ``live`` of its text (``owner``, ascending); for
    documents whose tf saturates, ``counts``: per text in ``live`` its :func:`token_counts`."""

    n_texts: int
    live: list[int]
    seqs: Sequence[Any]  # each a list of ids or an int array
    owner: np.ndarray
    counts: list[tuple[np.ndarray, np.ndarray, int]] | None = None

    def to_bytes(self) -> bytes:
        """The tokens as one ``.npz`` (no pickles): what a Ray CPU worker hands to an encoder actor."""
        lengths = np.fromiter((len(s) for s in self.seqs), dtype=np.int64, count=len(self.seqs))
        ids = np.fromiter((t for s in self.seqs for t in s), dtype=np.int32, count=int(lengths.sum()))
        counts: dict[str, Any] = {}
        if self.counts is not None:
            counts = {
                "count_ids": np.concatenate([c[0] for c in self.counts] or [np.zeros(0, np.int64)]),
                "count_values": np.concatenate([c[1] for c in self.counts] or [np.zeros(0, np.int64)]),
                "count_sizes": np.asarray([len(c[0]) for c in self.counts], dtype=np.int64),
                "count_lengths": np.asarray([c[2] for c in self.counts], dtype=np.int64),
            }
        buf = io.BytesIO()
        np.savez(
            buf,
            n_texts=np.int64(self.n_texts),
            live=np.asarray(self.live, dtype=np.int64),
            ids=ids,
            lengths=lengths,
            owner=self.owner,
            **counts,
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Tokens:
        """The tokens :meth:`to_bytes` wrote; each sequence a view into one array of ids."""
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            ids, lengths = z["ids"], z["lengths"]
            seqs = np.split(ids, np.cumsum(lengths)[:-1]) if len(lengths) else []
            counts = None
            if "count_sizes" in z:
                cuts = np.cumsum(z["count_sizes"])[:-1]
                counts = list(
                    zip(
                        np.split(z["count_ids"], cuts),
                        np.split(z["count_values"], cuts),
                        z["count_lengths"].tolist(),
                        strict=True,
                    )
                )
            return cls(int(z["n_texts"]), z["live"].tolist(), seqs, z["owner"], counts)


def token_counts(counter: Any, texts: Sequence[str], special_ids: Sequence[int]) -> list[Any]:
    """Per text: (token ids ascending, their counts, the number of tokens), ``counter`` (a tokenizers
    ``Tokenizer`` that does not truncate) over the whole cleaned text, special tokens left out."""
    out = []
    special = np.asarray(special_ids, dtype=np.int64)
    for enc in counter.encode_batch_fast([clean_text(t) for t in texts], add_special_tokens=False):
        ids = np.asarray(enc.ids, dtype=np.int64)
        ids = ids[~np.isin(ids, special)]
        unique, counts = np.unique(ids, return_counts=True)
        out.append((unique, counts, len(ids)))
    return out


def untruncated(backend: Any) -> Any:
    """A copy of a tokenizers ``Tokenizer`` that does not truncate (for :func:`token_counts`)."""
    counter = type(backend).from_str(backend.to_str())
    counter.no_truncation()
    return counter


def counts_of(counted: tuple[np.ndarray, np.ndarray, int], terms: np.ndarray) -> np.ndarray:
    """Each of ``terms``' count in a text of :func:`token_counts` ``counted`` (0: not in the text)."""
    ids, counts, _ = counted
    if not len(ids):
        return np.zeros(len(terms), dtype=counts.dtype)
    at = np.minimum(np.searchsorted(ids, terms), len(ids) - 1)
    return np.where(ids[at] == terms, counts[at], 0)


def check_windows(backend: Any, max_length: int, overlap: int) -> None:
    """Refuse a tokenizer whose ``overflowing`` windows lose the rest of a long text.

    tokenizers 0.23.1 and 0.23.2 stop tokenizing at ``max_length`` and return at most one short
    overflowing sequence (huggingface/tokenizers#2091): ``long_docs: windows`` would silently read a
    long document as its first window. Probed on one synthetic text several windows long: the last
    window must reach the text's end.

    Raises:
        LsrError: the windows stop short (the message names the installed version and the way out).
    """
    probe = untruncated(backend)  # a copy: the caller's truncation settings stay as they are
    probe.enable_truncation(max_length, stride=overlap)
    text = " ".join(["window"] * (3 * max_length))
    enc = probe.encode(text)
    last = enc.overflowing[-1] if enc.overflowing else enc
    reached = max((end for _, end in last.offsets), default=0)
    if reached < len(text):
        import tokenizers

        raise LsrError(
            f"tokenizers {tokenizers.__version__} drops the windows of long documents (it read "
            f"{reached} of {len(text)} characters of a test text in windows of {max_length} tokens; "
            "huggingface/tokenizers#2091, versions 0.23.1-0.23.2), so encoder.transformer.long_docs: "
            "windows would cut every long document short. Install another version (pip install "
            "'tokenizers>=0.23.3'), or set encoder.transformer.long_docs=truncate"
        )


class TextTokenizer:
    """Steps 1-2 of the loop: texts -> :class:`Tokens`. It needs the tokenizer, the settings and the
    model's number of positions, not the model: it pickles (the Rust tokenizer travels as its JSON), so
    ``lsr encode --ray`` runs it on CPU workers."""

    def __init__(self, backend: Any, cfg: TransformerConfig, max_positions: int):
        self.backend = backend
        self.cfg = cfg
        self.max_positions = max_positions
        self.counter: Any = None  # documents' token counts (tf saturation): the tokenizer untruncated
        self.special_ids: list[int] = []
        if cfg.long_docs == "windows":  # before any document is read, not after a corpus is cut short
            check_windows(backend, *self.window_shape(cfg.max_length, windows=True))

    def count_documents(self, special_ids: Sequence[int]) -> None:
        """From now on, documents' :class:`Tokens` carry each text's :func:`token_counts`."""
        self.counter = untruncated(self.backend)
        self.special_ids = list(special_ids)

    def __call__(self, texts: Sequence[str], query: bool = False) -> Tokens:
        """The tokens of documents (``long_docs: windows`` cuts long ones into windows) or queries."""
        live = [i for i, t in enumerate(texts) if t and not t.isspace()]
        windows = self.cfg.long_docs == "windows" and not query
        max_length = self.cfg.query_max_length if query else self.cfg.max_length
        seqs, owner = self.tokenize([texts[i] for i in live], max_length, windows)
        counts = None
        if self.counter is not None and not query:
            counts = token_counts(self.counter, [texts[i] for i in live], self.special_ids)
        return Tokens(len(texts), live, seqs, owner, counts)

    def tokenize(
        self, texts: Sequence[str], max_length: int, windows: bool
    ) -> tuple[list[list[int]], np.ndarray]:
        """Token ids of each sequence (special tokens included) and the index of the text it came from."""
        self.set_truncation(max_length, windows)
        encodings = self.backend.encode_batch_fast([clean_text(t) for t in texts])
        seqs: list[list[int]] = []
        owner: list[int] = []
        for i, enc in enumerate(encodings):
            seqs.append(enc.ids)
            owner.append(i)
            if windows:
                for extra in enc.overflowing:
                    seqs.append(extra.ids)
                    owner.append(i)
        return seqs, np.asarray(owner, dtype=np.int64)

    def window_shape(self, max_length: int, windows: bool) -> tuple[int, int]:
        """(sequence length: ``max_length``, the model's positions at most; tokens two consecutive
        windows share: ``window_overlap``, at most half a sequence, 0 without ``windows``)."""
        max_length = min(max_length, self.max_positions)
        return max_length, min(self.cfg.window_overlap, max_length // 2) if windows else 0

    def set_truncation(self, max_length: int, windows: bool) -> None:
        """Sequences of at most ``max_length`` tokens (the model's positions at most); the rest of a text in
        ``overflowing`` sequences, which overlap by ``window_overlap`` tokens with ``windows``."""
        max_length, overlap = self.window_shape(max_length, windows)
        self.backend.enable_truncation(max_length, stride=overlap)


class TransformerSparseModel:
    """Texts -> sparse vectors over the tokenizer vocabulary (see the module docstring).

    Subclasses set ``window_pooling`` ("max" or "sum") and implement ``_load`` and ``_pool``.
    """

    window_pooling = "max"
    # queries through ONNX Runtime (lsr.encoders.onnx_query) instead of torch; set by the query encoder
    query_runtime: Any = None
    # word terms (lsr.encoders.words) instead of wordpieces; set by the corpus and query encoders
    words: WordTerms | None = None

    def __init__(self, path: Path, cfg: TransformerConfig):
        self.torch = require("torch")
        self.path = Path(path)
        self.cfg = cfg
        self.device = pick_device(cfg.device)
        self.dtype = pick_dtype(cfg.dtype, self.device)
        # CPU: one torch thread per batch and batches spread over `threads` Python threads (torch
        # releases the GIL). Intra-op threads would meet at a barrier after every op, thousands of
        # times per batch, and a barrier waits a whole scheduler slice whenever another process
        # holds a core; whole batches per thread never wait for each other.
        self.workers = 1 if self.device.type == "cuda" else (cfg.threads or available_cpus())
        if self.device.type == "cpu":
            self.torch.set_num_threads(1)
        self._executor: ThreadPoolExecutor | None = None
        self.tokenizer = load_tokenizer(self.path)
        self.backend = self.tokenizer.backend_tokenizer
        self.backend.no_padding()
        self.pad_id = int(self.tokenizer.pad_token_id or 0)
        self.special_ids = sorted(set(self.tokenizer.all_special_ids))
        with quiet_transformers():
            self._load()
        self.max_positions = self._max_positions()
        self.text_tokenizer = TextTokenizer(self.backend, cfg, self.max_positions)

    # --- subclass interface ---------------------------------------------------------------------

    def _load(self) -> None:
        raise NotImplementedError

    def _pool(self, input_ids: Any, mask: Any) -> Any:
        """Dense ``[batch, vocab_size]`` float32 weights (>= 0) of a padded batch of sequences."""
        raise NotImplementedError

    vocab_size: int
    model_config: Any

    # --- shared ---------------------------------------------------------------------------------

    def _max_positions(self) -> int:
        n = getattr(self.model_config, "max_position_embeddings", None)
        return int(n) if n else 512

    @property
    def vocab(self) -> list[str]:
        if not hasattr(self, "_vocab"):
            self._vocab = tokenizer_vocab(self.tokenizer, self.vocab_size)
        return self._vocab

    def describe(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "vocab_size": self.vocab_size,
            "vocab_sha256": vocab_digest(self.vocab),
            "architectures": list(getattr(self.model_config, "architectures", None) or []),
        }

    def batches(self, lengths: np.ndarray) -> list[np.ndarray]:
        """Sequence indices, longest first, cut into batches of at most ``batch_tokens`` padded tokens."""
        order = np.argsort(-lengths, kind="stable")
        out, start = [], 0
        while start < len(order):
            longest = int(lengths[order[start]])
            n = max(1, min(self.cfg.batch_tokens // max(longest, 1), MAX_BATCH_SEQUENCES))
            out.append(order[start : start + n])
            start += n
        return out

    def _padded(self, seqs: Sequence[Any], idx: np.ndarray) -> tuple[Any, Any]:
        # a few distinct shapes: fewer kernel plans and cached primitives (memory grows with each)
        ids, mask = self._padded_numpy(seqs, idx, PAD_MULTIPLE[self.device.type == "cuda"])
        return self.torch.from_numpy(ids).to(self.device), self.torch.from_numpy(mask).to(self.device)

    def _padded_numpy(
        self, seqs: Sequence[Any], idx: np.ndarray, multiple: int
    ) -> tuple[np.ndarray, np.ndarray]:
        longest = max(len(seqs[i]) for i in idx)
        longest = min(-(-longest // multiple) * multiple, max(self.max_positions, longest))
        ids = np.full((len(idx), longest), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(idx), longest), dtype=bool)
        for row, i in enumerate(idx):
            ids[row, : len(seqs[i])] = seqs[i]
            mask[row, : len(seqs[i])] = True
        return ids, mask

    def _dense_rows(self, dense: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        """Rows (ascending term ids, weights > 0) of a dense ``[batch, vocab]`` tensor."""
        torch = self.torch
        nz = torch.nonzero(dense > 0)
        weights = dense[nz[:, 0], nz[:, 1]].float().cpu().numpy()
        rows_idx, terms = nz[:, 0].cpu().numpy(), nz[:, 1].cpu().numpy().astype(np.int32)
        bounds = np.searchsorted(rows_idx, np.arange(dense.shape[0] + 1))
        return [(terms[s:e], weights[s:e]) for s, e in zip(bounds[:-1], bounds[1:], strict=True)]

    def _merge_windows(self, parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        if len(parts) == 1:
            return parts[0]
        terms = np.concatenate([t for t, _ in parts])
        weights = np.concatenate([w for _, w in parts])
        order = np.argsort(terms, kind="stable")
        terms, weights = terms[order], weights[order]
        starts = np.flatnonzero(np.r_[True, terms[1:] != terms[:-1]])
        reduce = np.maximum if self.window_pooling == "max" else np.add
        return terms[starts], reduce.reduceat(weights, starts).astype(np.float32)

    def encode(self, texts: Sequence[str], prune: PruneConfig, query: bool = False) -> SparseBatch:
        """Encode texts (documents, or queries with ``query=True``) into one CSR row each, in order."""
        if not texts:
            return SparseBatch.empty()
        if self.words is not None:
            return self._encode_words(texts, prune, query)
        return self.encode_tokens(self.text_tokenizer(texts, query), prune, query)

    def encode_tokens(self, tokens: Tokens, prune: PruneConfig, query: bool = False) -> SparseBatch:
        """Steps 3-5 of the loop: one CSR row per text of ``tokens`` (from :attr:`text_tokenizer`, here
        or on another process), in order."""
        if self.words is not None:  # word terms come from the words of the texts, not from token ids
            raise ValueError(f"the model at {self.path} writes word terms: encode texts, not tokens")
        if tokens.n_texts == 0:
            return SparseBatch.empty()
        seq_rows = self.sequence_rows(tokens.seqs, query)
        scale = None if query else self.document_scale(tokens)
        return self.text_rows(tokens.n_texts, tokens.live, tokens.owner, seq_rows, prune, query, scale)

    def _encode_words(self, texts: Sequence[str], prune: PruneConfig, query: bool) -> SparseBatch:
        """Rows over word terms (:mod:`lsr.encoders.words`): each text tokenized with offsets and word
        ids (documents in windows when ``long_docs`` says so), each sequence's :meth:`word_weights`,
        each analyzer term of a word taking the largest weight of the word's pieces (a word cut by a
        window or by truncation is analyzed whole). The term ids are assigned on this thread, in text
        and window order, so a corpus always gets the same vocabulary: documents grow it, queries keep
        the terms in it. A document's tf factors come from its whole text, the same for each window."""
        words = self.words
        assert words is not None
        live = [i for i, t in enumerate(texts) if t and not t.isspace()]
        windows = self.cfg.long_docs == "windows" and not query
        cleaned = [clean_text(texts[i]) for i in live]
        self.text_tokenizer.set_truncation(
            self.cfg.query_max_length if query else self.cfg.max_length, windows
        )
        encodings = self.backend.encode_batch(cleaned)
        seqs: list[Any] = []
        owner: list[int] = []
        for k, enc in enumerate(encodings):
            for seq in [enc, *enc.overflowing] if windows else [enc]:
                seqs.append(seq)
                owner.append(k)
        weights = self.word_weights(seqs, query)
        # a text in one sequence has its words whole; one with more has words cut at the edges
        spans = [word_spans([enc, *enc.overflowing]) if enc.overflowing else None for enc in encodings]
        factors = [None if query else words.doc_factors(t) for t in cleaned]
        rows = [
            words.row(cleaned[k], whole_words(seq, spans[k]), w, not query, factors[k], expanded)
            for seq, (w, expanded), k in zip(seqs, weights, owner, strict=True)
        ]
        return self.text_rows(len(texts), live, np.asarray(owner, dtype=np.int64), rows, prune, query)

    def word_weights(self, seqs: list[Any], query: bool) -> list[tuple[np.ndarray, dict[str, float] | None]]:
        """Word terms: each sequence's (tokenizers ``Encoding``) weight per token position and its
        expansion (term -> weight, or None)."""
        raise NotImplementedError(f"{type(self).__name__} does not write word terms")

    def document_scale(self, tokens: Tokens) -> Callable[[int, np.ndarray, np.ndarray], np.ndarray] | None:
        """The ``scale`` of :meth:`text_rows` for documents of ``tokens`` (None here: weights as pooled)."""
        return None

    def sequence_rows(self, seqs: Sequence[Any], query: bool) -> list[Any]:
        """Steps 3-4: each sequence's row (ascending term ids, weights > 0), batches on the workers."""
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        seq_rows: list[Any] = [None] * len(seqs)
        encode = self._encode_onnx if query and self.query_runtime is not None else self._encode_batch
        for idx, rows in self._map(lambda idx: (idx, encode(seqs, idx)), self.batches(lengths)):
            for i, row in zip(idx, rows, strict=True):
                seq_rows[i] = row
        return seq_rows

    def text_rows(
        self,
        n_texts: int,
        live: list[int],
        owner: np.ndarray,
        seq_rows: list[Any],
        prune: PruneConfig,
        query: bool,
        scale: Callable[[int, np.ndarray, np.ndarray], np.ndarray] | None = None,
    ) -> SparseBatch:
        """One row per text: the rows of its sequences (``owner``: the index in ``live`` of each
        sequence's text, ascending) pooled, then (``scale``: the weights ``scale(k, terms, weights)``
        of the text ``live[k]``) pruned; texts not in ``live`` get empty rows."""
        threshold = prune.query_threshold if query else prune.doc_threshold
        max_terms = prune.query_max_terms if query else prune.doc_max_terms
        empty = (np.zeros(0, np.int32), np.zeros(0, np.float32))
        out = [empty] * n_texts
        bounds = np.searchsorted(owner, np.arange(len(live) + 1))
        for k, i in enumerate(live):
            terms, weights = self._merge_windows(seq_rows[bounds[k] : bounds[k + 1]])
            if scale is not None:
                weights = scale(k, terms, weights)
            out[i] = prune_row(terms, weights, threshold, max_terms)
        return rows_to_batch(out)

    def _encode_batch(self, seqs: Sequence[Any], idx: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        with self.torch.inference_mode(), self._autocast():  # both are thread-local
            input_ids, mask = self._padded(seqs, idx)
            return self._dense_rows(self._pool(input_ids, mask))

    def _encode_onnx(self, seqs: Sequence[Any], idx: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """A batch of queries through ONNX Runtime, padded to its longest sequence only."""
        return self.query_runtime.rows(*self._padded_numpy(seqs, idx, 1))

    def _map(self, fn: Any, items: list[Any]) -> Any:
        if self.workers == 1 or len(items) < 2:
            return map(fn, items)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="lsr-encode")
        return self._executor.map(fn, items)

    def _autocast(self) -> Any:
        torch = self.torch
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)


# --- corpus and query encoders around a model ---------------------------------------------------


def section(cfg: Any) -> dict[str, Any]:
    """A config dataclass as the plain dict stored in the ``encoder`` meta section."""
    return {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}


def with_long_docs(cfg: EncoderConfig, model_dir: Path) -> EncoderConfig:
    """``cfg`` with ``encoder.transformer.long_docs: auto`` resolved: the model folder's ``long_docs``
    (``lsr_doc.json``, :func:`lsr.encoders.hf.read_doc_settings`), else ``truncate``; a value given
    in the config stays. Index metas record the resolved value, so the query side and ``lsr add`` read
    documents as the index was built."""
    if cfg.transformer.long_docs != "auto":
        return cfg
    long_docs = read_doc_settings(model_dir).get("long_docs", "truncate")
    return dataclasses.replace(cfg, transformer=dataclasses.replace(cfg.transformer, long_docs=long_docs))


class TransformerEncoder(CorpusEncoder):
    """Corpus encoder around a :class:`TransformerSparseModel`; subclasses name the model class.

    ``describe()`` records the resolved model folders, the vocabulary fingerprint and every
    setting the query side needs (tokenization, pruning, the subclass's own section).
    """

    resumable = True

    def __init__(self, cfg: EncoderConfig):
        self.model_path = resolve_model(cfg.model)
        # a sentence-transformers folder: its checkpoint is a module folder, its settings win
        self.st = read_st_folder(self.model_path)
        self.cfg = cfg = with_long_docs(self.st.apply(cfg) if self.st else cfg, self.model_path)
        self.read_ahead = cfg.transformer.sort_docs
        self.query_model_path = (
            resolve_model(cfg.query_model, "encoder.query_model") if cfg.query_model else self.model_path
        )
        self.query_idf = query_idf.resolve(cfg.query_idf, self.model_path)  # before the model loads
        self.model = self.make_model(self.st.mlm if self.st else self.model_path)
        if self.query_model_path != self.model_path:  # refuse now rather than at the first query
            query_st = read_st_folder(self.query_model_path)
            query_folder = query_st.mlm if query_st else self.query_model_path
            query_vocab = tokenizer_vocab(load_tokenizer(query_folder), self.model.vocab_size)
            check_vocab(
                query_vocab,
                {t: i for i, t in enumerate(self.model.vocab)},
                f"the query model {self.query_model_path}",
            )

    def make_model(self, path: Path) -> TransformerSparseModel:
        raise NotImplementedError

    def own_section(self) -> dict[str, Any]:
        return {}

    @property
    def vocab(self) -> list[str]:
        return self.model.vocab

    def describe(self) -> dict[str, Any]:
        info = self.model.describe()
        return {
            "name": self.name,
            "model": str(self.model_path),
            "query_model": str(self.query_model_path),
            "vocab_size": info["vocab_size"],
            "vocab_sha256": info["vocab_sha256"],
            "architectures": info["architectures"],
            **self.own_section(),
            "query_idf": self.query_idf,
            **({"sentence_transformers": self.st.describe()} if self.st else {}),
            "transformer": section(self.cfg.transformer),
            "prune": section(self.cfg.prune),
        }

    def encode(self, texts: Sequence[str]) -> SparseBatch:
        return self.model.encode(texts, self.cfg.prune)

    @property
    def text_tokenizer(self) -> TextTokenizer:
        """What :meth:`encode` tokenizes with (it pickles: ``lsr encode --ray`` ships it to CPU workers)."""
        return self.model.text_tokenizer

    def encode_tokens(self, tokens: Tokens) -> SparseBatch:
        """What :meth:`encode` gives for the texts that :attr:`text_tokenizer` made ``tokens`` of."""
        return self.model.encode_tokens(tokens, self.cfg.prune)


class TransformerQueryEncoder:
    """Query side rebuilt from an index's ``encoder`` section: the query model, same vocabulary."""

    def __init__(self, meta: dict[str, Any], term_index: dict[str, int]):
        path = Path(meta.get("query_model") or meta["model"])
        if not path.is_dir():
            raise ConfigError(
                f"this index was encoded with the model at {path}, which is not there any "
                "more; put the model folder back or re-encode"
            )
        tcfg = from_dict(TransformerConfig, meta.get("transformer", {}), "encoder.transformer")
        # the device of this machine, not of the one that encoded the corpus
        tcfg = dataclasses.replace(tcfg, device="auto")
        self.prune = from_dict(PruneConfig, meta.get("prune", {}), "encoder.prune")
        # the meta holds the settings a sentence-transformers folder gave; its checkpoint is a module folder
        self.st = read_st_folder(path)
        # an index of word terms (``terms: words`` in its meta) analyzes as its meta says
        self.words = index_words(meta, term_index)
        self.model = self.make_model(self.st.mlm if self.st else path, tcfg, meta)
        self.model.words = self.words
        self.check_terms(term_index, path)
        kind = "unicoil" if hasattr(self.model, "token_weights") else "splade"
        self.runtime = resolve_runtime(tcfg.query_runtime, self.model.device.type, kind)
        if self.runtime in ("lean", "lean-bf16"):
            self.model.query_runtime = LeanQueryRuntime(self.model, bf16=self.runtime == "lean-bf16")
        elif self.runtime.startswith("onnx"):
            self.model.query_runtime = OnnxQueryRuntime(self.model, self.runtime)
            self.runtime = self.model.query_runtime.runtime  # onnx where onnx-int8-smooth fell back
        else:
            logger.info("query encoder: torch %s on %s", self.model.dtype, self.model.device)

    @classmethod
    def from_meta(
        cls, meta: dict[str, Any], term_index: dict[str, int], directory: Path | None = None
    ) -> TransformerQueryEncoder:
        return cls(meta, term_index)

    def make_model(self, path: Path, cfg: TransformerConfig, meta: dict[str, Any]) -> TransformerSparseModel:
        raise NotImplementedError

    def check_terms(self, term_index: dict[str, int], path: Path) -> None:
        """Refuse an index whose vocabulary is not the query model's, term for term (word terms: the
        index's vocabulary is its corpus's, any terms)."""
        if self.words is None:
            check_vocab(self.model.vocab, term_index, f"the query model {path}")

    @property
    def batch_invariant(self) -> bool:
        """A query's vector is the same whichever queries are encoded with it (the lean runtime):
        a server may encode concurrent requests' queries together."""
        return isinstance(self.model.query_runtime, LeanQueryRuntime)

    def restrict_terms(self, terms: np.ndarray) -> None:
        """Leave out of the query vectors the terms not in ``terms`` (ascending ids: those with
        postings in the searched index, which no other term can score against) where that saves work
        (the lean runtime's SPLADE projection) and changes no ranking (no ``query_max_terms`` cut,
        which would keep other terms in their place)."""
        if (  # word terms: the index's term ids are not the tokenizer's
            self.words is None
            and self.prune.query_max_terms == 0
            and isinstance(self.model.query_runtime, LeanQueryRuntime)
        ):
            self.model.query_runtime.restrict(terms)

    def encode(self, texts: Sequence[str]) -> SparseBatch:
        return self.model.encode(texts, self.prune, query=True)
