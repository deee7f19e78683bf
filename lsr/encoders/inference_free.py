"""Inference-free learned sparse retrieval: SPLADE documents, table-weighted query tokens.

Documents go through a SPLADE document encoder. A query is tokenized with the same
tokenizer and each distinct token weighs ``table[token]`` (Geng et al. 2024; the
OpenSearch neural-sparse "doc-only" models): no neural model and no torch at query
time, so query encoding costs a tokenization and a table lookup.

The table is either the IDF of each token in the tokenized corpus texts,
``ln(1 + (N - df + 0.5) / (df + 0.5))``, or a learned table shipped with the model
as ``idf.json`` (``{token: weight}``). Encoding writes the table (``query_weights.npy``,
float32[vocab]) and the tokenizer (``tokenizer.json``) into the vectors directory;
they travel into the index, which can therefore encode queries by itself.

A word-terms uniCOIL folder (``lsr_terms.json``, :mod:`lsr.encoders.words`; the shipped default) is
indexed with that uniCOIL's documents instead (:class:`WordsInferenceFreeEncoder`), and a query's
analyzer terms weigh their counts (:class:`WordsQueryEncoder`), x idf^p of the collection by the
searcher: BM25's query side over learned document weights. Only the tokenizer travels into the index.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable, Sequence
from itertools import chain, islice
from pathlib import Path
from typing import Any

import numpy as np

from lsr.config import EncoderConfig, PruneConfig, from_dict
from lsr.encoders.base import CorpusStats, Finish
from lsr.encoders.hf import check_vocab, clean_text, count_row, prune_row, resolve_model, rows_to_batch
from lsr.encoders.splade import SpladeEncoder
from lsr.encoders.unicoil import HEAD_FILE, UniCoilEncoder
from lsr.encoders.words import TERMS_FILE, bert_ascii_words, bert_words_tokenizer, index_words, model_terms
from lsr.errors import ConfigError
from lsr.index.sparse import PTR_DTYPE, TERM_DTYPE, WEIGHT_DTYPE, SparseBatch

logger = logging.getLogger(__name__)

TABLE_FILE = "query_weights.npy"
TOKENIZER_FILE = "tokenizer.json"
MODEL_TABLE_FILE = "idf.json"  # a learned table shipped with the model (OpenSearch's convention)


def idf_table(stats: CorpusStats) -> np.ndarray:
    """The query table of corpus IDFs (float32[vocab])."""
    return stats.idf().astype(np.float32)


def token_stats(tokenizer: Any, texts: Iterable[str], vocab_size: int, chunk: int = 4096) -> CorpusStats:
    """In how many texts each token id occurs (whole texts, no truncation); N counts every text."""
    tokenizer.no_truncation()
    df = np.zeros(vocab_size, dtype=np.int64)
    n_docs = 0
    texts = iter(texts)
    while batch := list(islice(texts, chunk)):
        encodings = tokenizer.encode_batch_fast([clean_text(t) for t in batch], add_special_tokens=False)
        for enc in encodings:
            df[np.unique(np.asarray(enc.ids, dtype=np.int64))] += 1
        n_docs += len(batch)
    return CorpusStats(n_docs, df)


def table_from_json(path: Path, vocab: Sequence[str]) -> np.ndarray:
    """A ``{token: weight}`` JSON file as float32[vocab]; tokens it leaves out weigh 0."""
    try:
        weights = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read the query weight table {path} ({exc})") from None
    if not isinstance(weights, dict):
        raise ConfigError(f"{path} must hold a JSON object {{token: weight}}")
    index = {t: i for i, t in enumerate(vocab)}
    table = np.zeros(len(vocab), dtype=np.float32)
    unknown = 0
    for token, weight in weights.items():
        if token in index and isinstance(weight, (int, float)) and np.isfinite(weight) and weight > 0:
            table[index[token]] = weight
        else:
            unknown += token not in index
    if unknown:
        logger.warning("%s: %d tokens are not in the model's vocabulary; ignored", path, unknown)
    return table


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


class InferenceFreeEncoder(SpladeEncoder):
    """Corpus encoder: SPLADE documents; the query table and tokenizer come out of ``finish``."""

    name = "inference-free"

    def __init__(self, cfg: EncoderConfig, impl: str = "fast"):
        if cfg.query_model:
            raise ConfigError("encoder.query_model does not apply to inference-free: queries use no model")
        super().__init__(cfg, impl)

    def describe(self) -> dict[str, Any]:
        meta = super().describe()
        meta.update(
            query_model=None,
            inference_free={
                "query_weights": self.query_weights_spec(),
                "table": TABLE_FILE,
                "tokenizer": TOKENIZER_FILE,
            },
        )
        return meta

    def query_weights_spec(self) -> str:
        """``query_weights`` with ``auto`` resolved: ``model`` when the model ships idf.json, else ``idf``."""
        spec = self.cfg.inference_free.query_weights
        if spec == "auto":
            shipped = (self.model_path / MODEL_TABLE_FILE).is_file() or bool(self.st and self.st.query_table)
            return "model" if shipped else "idf"
        return spec

    @property
    def stats_from(self) -> str | None:  # type: ignore[override]
        return "texts" if self.query_weights_spec() == "idf" else None

    def statistics(self, source: Iterable[str]) -> CorpusStats:
        return token_stats(self.model.backend, source, len(self.vocab))

    def finish(self, stats: CorpusStats | None) -> Finish:
        table = idf_table(stats) if stats is not None else self._table_from_file()
        table[[i for i in self.model.special_ids if i < len(table)]] = 0.0  # [CLS], [SEP], ... never count
        logger.info("inference-free query table: %d tokens with a weight", int(np.count_nonzero(table)))
        tokenizer_json = (self.st.mlm if self.st else self.model_path) / TOKENIZER_FILE
        tokenizer = (
            tokenizer_json.read_bytes()
            if tokenizer_json.is_file()
            else self.model.backend.to_str().encode("utf-8")
        )
        return Finish(files={TABLE_FILE: _npy_bytes(table), TOKENIZER_FILE: tokenizer})

    def _table_from_file(self) -> np.ndarray:
        spec = self.query_weights_spec()
        if spec == "model" and self.st and self.st.query_table:  # a sentence-transformers Router folder
            table = self.st.query_weights()
            if len(table) != len(self.vocab):
                raise ConfigError(
                    f"{self.st.query_table}: {len(table)} query weights for a vocabulary of {len(self.vocab)}"
                )
            return table.copy()
        path = self.model_path / MODEL_TABLE_FILE if spec == "model" else Path(spec)
        if not path.is_file():
            raise ConfigError(f"encoder.inference_free.query_weights = {spec!r}: {path} does not exist")
        return table_from_json(path, self.vocab)


class WordsInferenceFreeEncoder(UniCoilEncoder):
    """Corpus encoder for a word-terms uniCOIL folder: the uniCOIL's documents (word terms, tf saturation
    as its ``lsr_terms.json`` says); queries need no model (:class:`WordsQueryEncoder`). The tokenizer
    travels into the index for the query side."""

    name = "inference-free"

    def __init__(self, cfg: EncoderConfig):
        if cfg.query_model:
            raise ConfigError("encoder.query_model does not apply to inference-free: queries use no model")
        super().__init__(cfg)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "query_model": None,
            "inference_free": {"query_weights": "counts", "tokenizer": TOKENIZER_FILE},
        }

    def finish(self, stats: CorpusStats | None) -> Finish:
        return Finish(files={TOKENIZER_FILE: self.model.backend.to_str().encode("utf-8")})


def inference_free_encoder(cfg: EncoderConfig) -> InferenceFreeEncoder | WordsInferenceFreeEncoder:
    """The ``inference-free`` corpus encoder of ``cfg``: SPLADE documents with a token table, or, for a
    word-terms uniCOIL folder (``lsr_terms.json``), that uniCOIL's documents with term-count queries."""
    if cfg.model and model_terms(cfg.model) is not None:
        folder = resolve_model(cfg.model)
        if not (folder / HEAD_FILE).is_file():  # the trainer writes a word-terms uniCOIL's head there
            raise ConfigError(
                f"inference-free:{cfg.model} is a SPLADE of word terms ({TERMS_FILE}): inference-free over "
                "word terms indexes a uniCOIL's documents (the default inference-free); for SPLADE "
                "documents with a query token table use a wordpiece folder (e.g. lsr/models/inference-free)"
            )
        return WordsInferenceFreeEncoder(cfg)
    return InferenceFreeEncoder(cfg)


def query_side(meta: dict[str, Any], directory: Path | None, needs: str) -> tuple[Any, PruneConfig]:
    """The query tokenizer an inference-free index holds (truncated at the meta's query length, no
    padding) and the meta's prune settings.

    Raises:
        ConfigError: no index directory (``needs``: what the query side reads from it).
    """
    from tokenizers import Tokenizer  # the optional encoders extra

    if directory is None:
        raise ConfigError(f"an inference-free query encoder needs the index directory ({needs})")
    files = meta.get("inference_free", {})
    tokenizer = Tokenizer.from_file(str(Path(directory) / files.get("tokenizer", TOKENIZER_FILE)))
    tokenizer.no_padding()
    tokenizer.enable_truncation(int(meta.get("transformer", {}).get("query_max_length", 128)))
    return tokenizer, from_dict(PruneConfig, meta.get("prune", {}), "encoder.prune")


class InferenceFreeQueryEncoder:
    """Query side: a tokenizer and a weight table, both read from the index; never imports torch."""

    def __init__(self, meta: dict[str, Any], term_index: dict[str, int], directory: Path | None):
        self.tokenizer, self.prune = query_side(meta, directory, "its query table")
        assert directory is not None  # query_side refuses None
        files = meta.get("inference_free", {})
        self.table = np.load(Path(directory) / files.get("table", TABLE_FILE), allow_pickle=False)
        vocab = [self.tokenizer.id_to_token(i) or f"[unused-id-{i}]" for i in range(len(self.table))]
        check_vocab(vocab, term_index, "the inference-free query tokenizer")

    @classmethod
    def from_meta(
        cls, meta: dict[str, Any], term_index: dict[str, int], directory: Path | None = None
    ) -> InferenceFreeQueryEncoder | WordsQueryEncoder:
        """The query side of an inference-free index: a token table, or (``terms: words``: a word-terms
        uniCOIL's documents) the query's analyzer-term counts."""
        if meta.get("terms") is not None:
            return WordsQueryEncoder.from_meta(meta, term_index, directory)
        return cls(meta, term_index, directory)

    def encode(self, texts: Sequence[str]) -> SparseBatch:
        """Each distinct token of a text weighs ``table[token]``; tokens that weigh 0 are dropped."""
        n = len(texts)
        if n == 0:
            return SparseBatch.empty()
        encodings = self.tokenizer.encode_batch_fast([clean_text(t) for t in texts], add_special_tokens=False)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=n)
        ids = np.fromiter(
            chain.from_iterable(e.ids for e in encodings), dtype=np.int64, count=int(lengths.sum())
        )
        size = len(self.table)
        keys = np.unique(np.repeat(np.arange(n, dtype=np.int64), lengths) * size + ids)
        rows, terms = np.divmod(keys, size)
        weights = self.table[terms]
        threshold = self.prune.query_threshold
        keep = weights > 0 if threshold <= 0 else weights >= threshold
        rows, terms, weights = rows[keep], terms[keep], weights[keep]
        indptr = np.zeros(n + 1, dtype=PTR_DTYPE)
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
        batch = SparseBatch(indptr, terms.astype(TERM_DTYPE), weights.astype(WEIGHT_DTYPE, copy=False))
        if self.prune.query_max_terms:
            limit = self.prune.query_max_terms
            batch = rows_to_batch([prune_row(*batch.row(i), 0.0, limit) for i in range(n)])
        return batch


class WordsQueryEncoder:
    """Query side of an inference-free index of word terms: each analyzer term of the query's words
    weighs its count (the searcher multiplies by idf(t)^p of the collection, ``encoder.query_idf``), as
    BM25's query side does over the uniCOIL's document weights; the index's tokenizer (words split as the
    documents' were) and the analyzer, no model, no torch."""

    def __init__(self, meta: dict[str, Any], term_index: dict[str, int], directory: Path | None):
        words = index_words(meta, term_index)
        if words is None:
            raise ConfigError("an inference-free index of word terms needs terms = 'words' in its meta")
        self.words = words
        self.tokenizer, self.prune = query_side(meta, directory, "its tokenizer")
        # the words of an ASCII query split without the tokenizer (the same words, several times faster)
        self._ascii = bert_words_tokenizer(self.tokenizer)
        self._added = [t.content.lower() for t in self.tokenizer.get_added_tokens_decoder().values()]

    def query_words(self, text: str) -> list[str]:
        """The words of a query as the index's tokenizer splits them (:func:`bert_ascii_words` when it
        can tell), each as its span of the text."""
        words = bert_ascii_words(self.tokenizer, text, self._added) if self._ascii else None
        if words is not None:
            return words
        text = clean_text(text)
        return self.words.word_texts(text, self.tokenizer.encode(text, add_special_tokens=False))

    @classmethod
    def from_meta(
        cls, meta: dict[str, Any], term_index: dict[str, int], directory: Path | None = None
    ) -> WordsQueryEncoder:
        return cls(meta, term_index, directory)

    def encode(self, texts: Sequence[str]) -> SparseBatch:
        threshold, limit = self.prune.query_threshold, self.prune.query_max_terms
        rows = [count_row(self.words.counts(self.query_words(text))) for text in texts]
        return rows_to_batch([prune_row(terms, weights, threshold, limit) for terms, weights in rows])
