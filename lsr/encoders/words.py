"""Word terms for a uniCOIL: each token's weight goes to the BM25 analyzer's terms of its word.

A wordpiece uniCOIL writes one weight per tokenizer piece ("retriev", "##al"); BM25 scores analyzer terms
(lowercased, stopwords dropped, stemmed: "retriev" for retrieval, retrieve and retrieving). On the
out-of-domain suite BM25 over wordpieces is about 0.11 nDCG@10 below BM25 over analyzer terms, and the
same model pooled to analyzer terms gains about 0.02 (reports/ood-unicoil): the terms a model writes
matter out of domain. With ``terms: words`` a uniCOIL writes analyzer terms instead:

    w(term) = max over the tokenizer's words whose analysis holds the term, and over those words' pieces,
              of the token weights

(a word's pieces come from the tokenizer's word ids and character offsets; a stopword's pieces write
nothing). The vocabulary is the analyzer's terms, growing with the corpus as BM25's does; a query's terms
outside it match no document and are dropped.

A model folder says that it writes words in ``lsr_terms.json`` (``{"terms": "words", "analyzer": {...}}``:
the BM25 analyzer settings it was trained with), which the trainer writes and the encoder reads, so the
documents of an index, its queries and the training scores all use one analysis.

A document's weights may also saturate with term frequency and normalize by length as BM25's do
(``"tf": {"k1", "b", "avgdl"}`` in the file; :class:`Saturation`):

    w(term, d) = max weight x tf (k1 + 1) / (tf + k1 (1 - b + b |d| / avgdl))

with tf the term's count in the analyzed document and |d| its analyzed length. The max over a term's
occurrences keeps no count of them; on the out-of-domain suite this factor gained about 0.02 nDCG@10
(cacm +0.04, lisa +0.04) for a model trained without it (reports/ood-unicoil). ``avgdl`` is a fixed
reference, the training corpus's mean analyzed length, not the indexed collection's, so a document's
weights depend on that document alone (live adds, shards and re-encodes agree); on the suite the fixed
reference scored as the collection's own mean did.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lsr.analysis import Analyzer
from lsr.config import BM25Config, from_dict
from lsr.encoders.hf import model_json, resolve_model
from lsr.errors import ConfigError

TERMS_FILE = "lsr_terms.json"
# BERT's pre-tokenizer over printable ASCII: a run of letters and digits is a word, so is each other
# character (every printable ASCII character that is neither is punctuation to BERT); whitespace splits
_ASCII_WORD = re.compile(r"[A-Za-z0-9]+|[!-/:-@\[-`{-~]")
_ASCII_TEXT = re.compile(r"[\t\n\r -~]*")  # printable ASCII and the whitespace BertNormalizer keeps
ANALYZER_KEYS = ("language", "stemmer", "stopwords", "min_length", "porter_min_stem", "lowercase")


def analyzer_section(cfg: BM25Config | None = None) -> dict[str, Any]:
    """The analyzer settings of a BM25 config (the defaults: the default BM25's analysis)."""
    cfg = cfg or BM25Config()
    return {k: getattr(cfg, k) for k in ANALYZER_KEYS}


def make_word_analyzer(section: dict[str, Any]) -> Analyzer:
    """The analyzer of an ``analyzer`` section (lsr_terms.json, an index's encoder meta).

    Raises:
        ConfigError: a key that is not an analyzer setting, or a bad value (named).
    """
    unknown = sorted(set(section) - set(ANALYZER_KEYS))
    if unknown:
        raise ConfigError(f"word terms: unknown analyzer setting(s) {unknown}; known: {list(ANALYZER_KEYS)}")
    cfg = from_dict(BM25Config, dict(section), "analyzer")
    return Analyzer(cfg.stemmer, cfg.stopwords, cfg.lowercase, cfg.min_length, cfg.porter_min_stem)


@dataclass(frozen=True)
class Saturation:
    """BM25's term-frequency saturation and length normalization of a document's term weights (the
    module docstring; wordpieces: :mod:`lsr.encoders.splade`). ``avgdl``: the reference length, in the
    terms counted (the training corpus's mean)."""

    k1: float
    b: float
    avgdl: float

    def __post_init__(self) -> None:
        for name, value, ok in (
            ("k1", self.k1, lambda v: v > 0),
            ("b", self.b, lambda v: 0 <= v <= 1),
            ("avgdl", self.avgdl, lambda v: v > 0),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
                raise ConfigError(f"tf.{name} = {value!r} must be a number in {_TF_RANGES[name]}")

    @classmethod
    def from_section(cls, section: Any) -> Saturation:
        """A ``tf`` section (``{"k1", "b", "avgdl"}``).

        Raises:
            ConfigError: not such a mapping, or a value out of range (named).
        """
        if not isinstance(section, dict) or set(section) != {"k1", "b", "avgdl"}:
            raise ConfigError(f'tf must be {{"k1": ..., "b": ..., "avgdl": ...}}, got {section!r:.200}')
        return cls(section["k1"], section["b"], section["avgdl"])

    def section(self) -> dict[str, float]:
        return {"k1": self.k1, "b": self.b, "avgdl": self.avgdl}

    def factors(self, terms: Sequence[str]) -> tuple[dict[str, float], float]:
        """Each term's factor for a document analyzed into ``terms`` (with repeats), and the factor of a
        term counted once (for a term the whole-text analysis did not find)."""
        counted = Counter(terms)
        scaled = self.scale(np.asarray([*counted.values(), 1]), len(terms)).tolist()
        return dict(zip(counted, scaled[:-1], strict=True)), scaled[-1]

    def scale(self, counts: np.ndarray, length: Any) -> np.ndarray:
        """float64 factors of terms counted ``counts`` times (each > 0) in a document of ``length``
        (a number, or one per count)."""
        norm = self.k1 * (1.0 - self.b + self.b * np.asarray(length, dtype=np.float64) / self.avgdl)
        counts = np.asarray(counts, dtype=np.float64)
        return counts * (self.k1 + 1.0) / (counts + norm)


_TF_RANGES = {"k1": "(0, inf)", "b": "[0, 1]", "avgdl": "(0, inf)"}


def read_terms_file(model_dir: Path | None) -> dict[str, Any] | None:
    """A model folder's ``lsr_terms.json`` (``{"terms": "words", "analyzer": {...}}``, with an optional
    ``"tf"`` section), or None when the folder has none (a wordpiece model).

    Raises:
        ConfigError: the file is not JSON, or names terms other than ``words``, or a bad analyzer or tf
            section.
    """
    path = model_dir / TERMS_FILE if model_dir is not None else None
    if path is None or not path.is_file():
        return None
    data = model_json(path)
    analyzer = data.get("analyzer") if isinstance(data, dict) else None
    if not isinstance(analyzer, dict) or data.get("terms") != "words":
        raise ConfigError(f'{path}: expected {{"terms": "words", "analyzer": {{...}}}}, got {data!r:.200}')
    try:
        make_word_analyzer(analyzer)  # refuse a bad analyzer or tf section now
        if "tf" in data:
            Saturation.from_section(data["tf"])
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return data


def write_terms_file(model_dir: Path, analyzer: dict[str, Any], tf: Saturation | None = None) -> None:
    data: dict[str, Any] = {"terms": "words", "analyzer": analyzer}
    if tf is not None:
        data["tf"] = tf.section()
    (Path(model_dir) / TERMS_FILE).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class WholeWords:
    """A tokenized sequence as :meth:`WordTerms.pairs` reads it (``word_ids``, ``offsets``), each piece's
    offsets widened to its whole word's span, so that a word cut by a window edge is analyzed whole."""

    word_ids: list[int | None]
    offsets: list[tuple[int, int]]


def word_spans(encodings: Sequence[Any]) -> dict[int, tuple[int, int]]:
    """Word id -> (start, end) character span, over the sequences of one text (the encoding and its
    ``overflowing`` windows: word ids and offsets count in the whole text)."""
    spans: dict[int, tuple[int, int]] = {}
    for enc in encodings:
        for wid, (start, end) in zip(enc.word_ids, enc.offsets, strict=True):
            if wid is not None:
                old = spans.get(wid)
                spans[wid] = (start, end) if old is None else (min(old[0], start), max(old[1], end))
    return spans


def whole_words(enc: Any, spans: dict[int, tuple[int, int]] | None) -> Any:
    """``enc`` with its words' whole spans (``spans`` of its text; None: a text of one sequence, whose
    words are whole)."""
    if spans is None:
        return enc
    word_ids = enc.word_ids
    return WholeWords(word_ids, [(0, 0) if w is None else spans[w] for w in word_ids])


def full_analyzer(section: dict[str, Any], where: str) -> dict[str, Any]:
    """An ``analyzer`` section with every setting (the defaults filled in), as an index records it."""
    return analyzer_section(from_dict(BM25Config, dict(section), where))


def model_terms(model: str, what: str = "encoder.model") -> dict[str, Any] | None:
    """A model folder's ``lsr_terms.json`` (word terms), or None (wordpieces); no model loads.

    Raises:
        ConfigError: a malformed file (named), or a model that is not there.
    """
    return read_terms_file(resolve_model(model, what))


class WordTermsCorpus:
    """What a corpus encoder of word terms adds to a :class:`~lsr.encoders.transformer.TransformerEncoder`
    (the uniCOIL and SPLADE encoders mix it in before it): the analyzer and tf section of the model
    folder's ``lsr_terms.json``, a vocabulary that grows with the corpus (no resume; a live index seeds
    it), and an index meta that records ``terms: words`` in place of the tokenizer's fingerprint."""

    word_analyzer: dict[str, Any] | None = None
    word_tf: dict[str, Any] | None = None  # the documents' tf saturation
    model: Any
    model_path: Path
    query_model_path: Path
    resumable: bool

    def read_terms(self, model: str) -> None:
        """The folder's word terms (before the model loads: a malformed file fails first)."""
        terms = model_terms(model)
        self.word_analyzer = None if terms is None else full_analyzer(terms["analyzer"], TERMS_FILE)
        self.word_tf = None if terms is None else terms.get("tf")

    def check_words(self) -> None:
        """After the model loaded: no resume (the vocabulary grows in memory), and a query model that
        analyzes as the document model does."""
        if self.word_analyzer is None:
            return
        self.resumable = False
        if self.query_model_path == self.model_path:
            return
        query_terms = read_terms_file(self.query_model_path)
        query = None if query_terms is None else full_analyzer(query_terms["analyzer"], TERMS_FILE)
        if query != self.word_analyzer:
            raise ConfigError(
                f"the query model {self.query_model_path} analyzes words as {query} ({TERMS_FILE}), the "
                f"document model {self.model_path} as {self.word_analyzer}: they must write the same terms"
            )

    def make_words(self) -> WordTerms | None:
        """The model's word terms (None: wordpieces)."""
        if self.word_analyzer is None:
            return None
        return WordTerms.from_section(self.word_analyzer, tf=self.word_tf)

    @property
    def words(self) -> WordTerms | None:
        """The word terms (None: wordpieces)."""
        return getattr(self.model, "words", None)

    @property
    def vocab(self) -> list[str]:
        return self.model.vocab if self.words is None else self.words.vocab

    def seed_vocab(self, vocab: Sequence[str]) -> None:
        """Start from an existing vocabulary (a live index's): its terms keep their ids, new terms follow.

        Raises:
            ValueError: a wordpiece model (its vocabulary is the tokenizer's, fixed).
        """
        if self.words is None:
            raise ValueError(f"the model at {self.model_path} writes wordpieces: a fixed vocabulary")
        self.words.term_ids = {term: i for i, term in enumerate(vocab)}

    def describe(self) -> dict[str, Any]:
        meta = super().describe()  # type: ignore[misc]
        if self.word_analyzer is None:
            return meta
        # the vocabulary is the corpus's terms, not the tokenizer's: no fingerprint of the tokenizer's
        meta = {k: v for k, v in meta.items() if k not in ("vocab_size", "vocab_sha256")}
        tf = {} if self.word_tf is None else {"tf": self.word_tf}
        return {**meta, "terms": "words", "analyzer": self.word_analyzer, **tf}


def bert_ascii_words(tokenizer: Any, text: str, added: Sequence[str] = ()) -> list[str] | None:
    """The words of ``text`` as ``tokenizer`` (a tokenizers ``Tokenizer`` whose normalizer is a
    ``BertNormalizer`` or none and whose pre-tokenizer is a ``BertPreTokenizer``) splits it, each as its
    span of ``text``, without running the tokenizer: the spans of :meth:`WordTerms.word_texts` of its
    encoding. None when that is not certain, and the caller tokenizes: a character outside printable
    ASCII and tab, newline, carriage return (the normalizer may drop or split it), an ``added`` token
    (lowercased; the tokenizer's own, such as ``[MASK]``, matched whole) in the lowercased text, or
    words long enough that the truncation could cut them (a word's pieces are at most its characters)."""
    if not _ASCII_TEXT.fullmatch(text):
        return None
    lowered = text.lower()
    if any(token in lowered for token in added):
        return None
    words = _ASCII_WORD.findall(text)
    truncation = tokenizer.truncation
    if truncation is not None and sum(map(len, words)) > truncation["max_length"]:
        return None
    return words


def bert_words_tokenizer(tokenizer: Any) -> bool:
    """Whether :func:`bert_ascii_words` can split for ``tokenizer``: a BERT normalizer (or none), a BERT
    pre-tokenizer and a WordPiece model (every word gives at least one token: [UNK] if nothing else),
    truncating (if at all) from the right."""
    from tokenizers import models, normalizers, pre_tokenizers

    normalizer = tokenizer.normalizer
    truncation = tokenizer.truncation
    return (
        (normalizer is None or isinstance(normalizer, normalizers.BertNormalizer))
        and isinstance(tokenizer.pre_tokenizer, pre_tokenizers.BertPreTokenizer)
        and isinstance(tokenizer.model, models.WordPiece)
        and (truncation is None or truncation.get("direction", "right") == "right")
    )


def index_words(meta: dict[str, Any], term_index: dict[str, int]) -> WordTerms | None:
    """The word terms of an index's ``encoder`` meta (its analyzer over the index's vocabulary, read
    only: query terms outside it are dropped), or None for wordpieces (no ``terms``).

    Raises:
        ConfigError: ``terms`` other than ``words``, or no ``analyzer`` section, or a bad one.
    """
    terms, analyzer = meta.get("terms"), meta.get("analyzer")
    if terms is None:
        return None
    if terms != "words" or not isinstance(analyzer, dict):
        raise ConfigError(
            f"this index's encoder meta has terms = {terms!r}, analyzer = {analyzer!r}: expected "
            "no terms (wordpieces) or terms = 'words' with an analyzer section"
        )
    return WordTerms(make_word_analyzer(analyzer), term_index)


@dataclass
class WordTerms:
    """Token positions of a tokenized text -> term ids of their words' analyzer terms.

    Attributes:
        analyzer: the BM25 analyzer of the words.
        term_ids: the vocabulary, term -> id; grows when ``pairs`` is called with ``grow``.
        saturation: the documents' tf saturation (None: a term's weight is its largest token weight).
    """

    analyzer: Analyzer
    term_ids: dict[str, int]
    saturation: Saturation | None = None

    def __post_init__(self) -> None:
        self._cache: dict[str, tuple[str, ...]] = {}

    @classmethod
    def from_section(
        cls, section: dict[str, Any], vocab: list[str] | None = None, tf: dict[str, Any] | None = None
    ) -> WordTerms:
        saturation = Saturation.from_section(tf) if tf is not None else None
        return cls(make_word_analyzer(section), {t: i for i, t in enumerate(vocab or [])}, saturation)

    def doc_factors(self, text: str) -> tuple[dict[str, float], float] | None:
        """The tf factors of a document's terms (``Saturation.factors`` of the whole text's analysis), or
        None without saturation."""
        return None if self.saturation is None else self.saturation.factors(self.analyzer(text))

    @property
    def vocab(self) -> list[str]:
        return list(self.term_ids)

    def analyze(self, word: str) -> tuple[str, ...]:
        terms = self._cache.get(word)
        if terms is None:
            terms = tuple(dict.fromkeys(self.analyzer(word)))
            if len(self._cache) < 1_000_000:
                self._cache[word] = terms
        return terms

    def _words(self, text: str, encoding: Any) -> Iterator[tuple[list[int], tuple[str, ...]]]:
        """Each word of ``encoding`` (a tokenizers ``Encoding`` of ``text``, with word ids and offsets):
        its pieces' positions and its analyzed terms."""
        words: dict[int, list[int]] = {}
        for pos, wid in enumerate(encoding.word_ids):
            if wid is not None:
                words.setdefault(wid, []).append(pos)
        offsets = encoding.offsets
        for pieces in words.values():
            yield pieces, self.analyze(text[offsets[pieces[0]][0] : offsets[pieces[-1]][1]])

    def pairs(self, text: str, encoding: Any, grow: bool) -> tuple[np.ndarray, np.ndarray]:
        """(positions, term ids), int64 each: every (token position, term) pair of ``encoding``, a term
        of a word paired with each of its pieces. Terms outside the vocabulary are dropped unless
        ``grow``."""
        positions: list[int] = []
        terms: list[int] = []
        ids = self.term_ids
        for pieces, words_terms in self._words(text, encoding):
            for term in words_terms:
                tid = ids.setdefault(term, len(ids)) if grow else ids.get(term)
                if tid is not None:
                    positions += pieces
                    terms += [tid] * len(pieces)
        return np.asarray(positions, dtype=np.int64), np.asarray(terms, dtype=np.int64)

    def counts(self, words: Iterable[str]) -> dict[int, int]:
        """Term id -> its number of ``words`` (a query's words: :meth:`word_texts` or
        :func:`bert_ascii_words`) whose analysis holds it (a query's term counts, as BM25 counts a
        query's terms); terms outside the vocabulary are dropped."""
        out: dict[int, int] = {}
        ids = self.term_ids
        for word in words:
            for term in self.analyze(word):
                tid = ids.get(term)
                if tid is not None:
                    out[tid] = out.get(tid, 0) + 1
        return out

    def word_texts(self, text: str, encoding: Any) -> list[str]:
        """The words of ``encoding`` (a tokenizers ``Encoding`` of ``text``), each as its span of
        ``text``, in order."""
        offsets = encoding.offsets
        spans: dict[int, list[int]] = {}
        for pos, wid in enumerate(encoding.word_ids):
            if wid is not None:
                span = spans.setdefault(wid, [offsets[pos][0], offsets[pos][1]])
                span[1] = offsets[pos][1]
        return [text[a:b] for a, b in spans.values()]

    def token_terms(self, tokens: Sequence[str]) -> dict[int, tuple[str, ...]]:
        """A SPLADE's expansion over word terms: token id -> the analyzer terms of that token of the
        tokenizer's vocabulary (``tokens``, in id order), for its whole-word tokens only (no ``##``
        continuation, no bracketed special or unused token; tokens that analyze to nothing, such as
        stopwords and punctuation, are left out)."""
        out: dict[int, tuple[str, ...]] = {}
        for i, token in enumerate(tokens):
            if token.startswith("##") or (token.startswith("[") and token.endswith("]")):
                continue
            terms = self.analyze(token)
            if terms:
                out[i] = terms
        return out

    @staticmethod
    def expansion(
        tokens: np.ndarray, weights: np.ndarray, token_terms: dict[int, tuple[str, ...]]
    ) -> dict[str, float]:
        """Each term's largest weight over the whole-word tokens that analyze to it (``tokens``,
        ``weights``: a SPLADE's pooled row over the tokenizer's vocabulary; ``token_terms``:
        :meth:`token_terms`)."""
        best: dict[str, float] = {}
        for v, w in zip(tokens.tolist(), weights.tolist(), strict=True):
            for term in token_terms.get(v, ()):
                if w > best.get(term, 0.0):
                    best[term] = w
        return best

    def row(
        self,
        text: str,
        encoding: Any,
        weights: np.ndarray,
        grow: bool,
        factors: tuple[dict[str, float], float] | None = None,
        expanded: dict[str, float] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One sequence's row (ascending term ids, weights > 0): each term's largest weight over its
        words' pieces (``weights``: per token position) and its ``expanded`` weight (a SPLADE's
        :meth:`expansion`), times its factor (``doc_factors`` of the whole document; None: 1). Terms
        outside the vocabulary are dropped, or with ``grow`` join it in order of first occurrence (the
        words' terms first, then the expansion's), those with a weight > 0 only (a term the model gives
        nothing has no postings, so the vocabulary holds the corpus's terms only, as BM25's)."""
        best: dict[str, float] = {}
        for pieces, words_terms in self._words(text, encoding):
            w = weights[pieces].max()
            for term in words_terms:
                best[term] = max(best.get(term, w), w)
        for term, w in (expanded or {}).items():
            best[term] = max(best.get(term, w), w)
        if factors is not None:
            per_term, once = factors
            best = {term: w * per_term.get(term, once) for term, w in best.items()}
        ids = self.term_ids
        kept = [
            (tid, w)
            for term, w in best.items()
            if w > 0 and (tid := ids.setdefault(term, len(ids)) if grow else ids.get(term)) is not None
        ]
        kept.sort()
        return np.asarray([t for t, _ in kept], np.int32), np.asarray([w for _, w in kept], np.float32)
