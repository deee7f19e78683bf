"""``lsr adapt`` with ``adapt.method: select``: a SPLADE folder's scoring settings chosen on the corpus.

A model trained on one collection weighs terms as that collection taught it; two settings outside the
network decide much of how it ranks another one: how documents' weights saturate with term frequency
and length (``lsr_doc.json``'s ``tf``: ``k1``, ``b``, ``avgdl``; :mod:`lsr.encoders.splade`) and how
strongly query terms are weighted by the collection's IDF (``lsr_query.json``'s ``query_idf``;
:mod:`lsr.encoders.query_idf`). This method picks both for the user's corpus, with no labels and no
training:

1. the corpus (sampled to ``adapt.select_max_docs``) is encoded once, without tf saturation, and each
   document's token counts are kept (a SPLADE of word terms, ``lsr_terms.json``: its analyzer terms'
   counts, and the chosen tf goes into that file);
2. ``adapt.select_queries`` pseudo-queries are cut from it: a window of 8 to 16 consecutive words of a
   document (title included), at most a quarter of it, is the query, and the relevant document is that
   document *with the window taken out* (re-encoded), so that a query's words are not all in its
   document (the inverse cloze task of Lee et al. 2019; a sentence copied whole was found by every
   setting, nDCG@10 near 1, and chose nothing); a corpus with fewer long documents than queries gives
   up to ``WINDOWS_PER_DOC`` windows of each (the choice is noisy: on the ood suite 1,000 pseudo-queries
   chose settings 0.005 nDCG@10 worse, on the mean, than 5,000);
3. every setting of a grid (no saturation, or k1 in ``K1`` x b in ``B``, with ``avgdl`` the corpus's
   mean length in the model's tokens; x ``query_idf`` in ``POWERS``) ranks each pseudo-query's
   document among the corpus's exactly (float scores), and the setting with the best mean nDCG@10 is
   written into a copy of the folder; with ``adapt.keep_start_if_worse`` the folder's own settings win
   unless another scores strictly higher.

Only documents are read. On the six out-of-domain collections (each adapted on its own documents,
evaluated on its qrels) this raised the default splade's nDCG@10 by 0.018 on their mean, each one up,
where the training method lowered it (reports/adapt-select, docs/results.md "lsr adapt").
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from lsr.data.corpus import Doc
from lsr.encoders.hf import DOC_FILE, clean_text, read_doc_settings
from lsr.encoders.query_idf import MODEL_FILE as QUERY_FILE
from lsr.encoders.query_idf import idf_table
from lsr.encoders.query_idf import resolve as resolve_power
from lsr.encoders.words import Saturation, read_terms_file, write_terms_file
from lsr.errors import LsrError
from lsr.index.io import publish_directory, write_json
from lsr.train.data import doc_text

logger = logging.getLogger(__name__)

K1 = (0.5, 1.0, 2.0, 3.0)
B = (0.2, 0.4, 0.6, 0.8, 1.0)
POWERS = (0.0, 0.25, 0.5, 0.75, 1.0)
WINDOW_WORDS = (8, 16)  # a pseudo-query's words, at most a quarter of its document's
WINDOWS_PER_DOC = 5  # pseudo-queries cut from one document at most
MIN_QUERIES = 20  # fewer pseudo-queries: refused (nothing to choose on)
QUERY_CHUNK = 256  # pseudo-queries scored against the corpus at once (a dense chunk x docs array)
ENCODE_CHUNK = 512  # texts encoded at once (a progress bar step)


@dataclass(frozen=True)
class Setting:
    """One point of the grid: the documents' tf saturation (None: none) and the query IDF power."""

    tf: Saturation | None
    power: float

    def label(self) -> str:
        tf = "no tf" if self.tf is None else f"k1 {self.tf.k1:g} b {self.tf.b:g}"
        return f"{tf}, query_idf {self.power:g}"


def window_queries(texts: Sequence[str], n: int, seed: int) -> list[tuple[int, str, str]]:
    """Up to ``n`` pseudo-queries ``(document position, query, the document without it)``: a seeded
    window of 8 to 16 consecutive words, at most a quarter of its document's words (as a sentence
    taken out of a paragraph). The documents long enough come in a seeded order, one window each per
    pass, for at most ``WINDOWS_PER_DOC`` passes: a small corpus gives several windows per document."""
    rng = random.Random(seed)
    lo, hi = WINDOW_WORDS
    split = [t.split() for t in texts]
    order = [i for i, words in enumerate(split) if len(words) >= 4 * lo]
    rng.shuffle(order)
    out: list[tuple[int, str, str]] = []
    for _ in range(WINDOWS_PER_DOC):
        for i in order:
            if len(out) == n:
                return out
            words = split[i]
            width = rng.randint(lo, min(hi, len(words) // 4))
            start = rng.randrange(len(words) - width + 1)
            out.append(
                (i, " ".join(words[start : start + width]), " ".join(words[:start] + words[start + width :]))
            )
    return out


def grid(start: Setting, avgdl: float) -> list[Setting]:
    """The start setting first, then every grid setting (saturation with the corpus's ``avgdl``)."""
    tfs: list[Saturation | None] = [None] + [Saturation(k1, b, avgdl) for k1 in K1 for b in B]
    return [start] + [Setting(tf, p) for tf in tfs for p in POWERS]


class Encoded:
    """Documents' weights (a sorted CSR over the vocabulary, no saturation) with each stored weight's
    token count and its document's length, for every saturation setting's weights (:meth:`with_tf`).

    Args:
        matrix: the weights of ``texts``, one row each.
        model: the SPLADE model that made them (its tokenizer counts the tokens, as the encoder does).
        texts: the documents.
    """

    def __init__(self, matrix: sp.csr_matrix, model: Any, texts: Sequence[str]):
        from lsr.encoders.transformer import counts_of, token_counts, untruncated

        matrix.sort_indices()
        self.matrix = matrix
        self.count = np.zeros(matrix.nnz)
        words = model.words
        if words is None:  # wordpieces: the model tokenizer's counts
            counts = token_counts(untruncated(model.backend), list(texts), model.special_ids)
            for r, counted in enumerate(counts):
                a, b = matrix.indptr[r], matrix.indptr[r + 1]
                self.count[a:b] = counts_of(counted, matrix.indices[a:b])
            self.lengths = np.array([c[2] for c in counts], np.float64)
        else:  # word terms: the analyzer's counts of the whole text, 1 for a term it does not hold
            vocab, lengths = words.vocab, []  # (an expansion term: Saturation.factors' "once")
            for r, text in enumerate(texts):
                analyzed = words.analyzer(clean_text(text))
                counted = Counter(analyzed)
                a, b = matrix.indptr[r], matrix.indptr[r + 1]
                self.count[a:b] = [counted.get(vocab[t], 1) for t in matrix.indices[a:b]]
                lengths.append(len(analyzed))
            self.lengths = np.array(lengths, np.float64)
        rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
        self.length = self.lengths[rows]

    def widen(self, width: int) -> None:
        """The matrix over a vocabulary grown to ``width`` terms since it was encoded (word terms)."""
        self.matrix.resize((self.matrix.shape[0], width))

    @classmethod
    def encode(cls, encoder: Any, texts: Sequence[str], bar: Any = None) -> Encoded:
        """``texts`` encoded by ``encoder`` (a SPLADE corpus encoder whose model saturates nothing), in
        chunks of ``ENCODE_CHUNK`` texts (each one a step of ``bar``, a progress bar, when given)."""
        rows = []
        for a in range(0, len(texts), ENCODE_CHUNK):
            chunk = list(texts[a : a + ENCODE_CHUNK])
            batch = encoder.encode(chunk)
            shape = (len(chunk), len(encoder.vocab))
            rows.append(sp.csr_matrix((batch.weights, batch.term_ids, batch.indptr), shape=shape))
            if bar is not None:
                bar.update(len(chunk))
        width = len(encoder.vocab)  # word terms: the vocabulary grew chunk by chunk
        for m in rows:
            m.resize((m.shape[0], width))
        matrix = sp.vstack(rows, format="csr") if rows else sp.csr_matrix((0, width))
        return cls(matrix, encoder.model, texts)

    def with_tf(self, tf: Saturation | None) -> sp.csr_matrix:
        """The documents' weights under ``tf`` (terms the text holds times their factor)."""
        m = self.matrix
        if tf is None:
            return m
        factor = np.ones(m.nnz)
        held = self.count > 0
        factor[held] = tf.scale(self.count[held], self.length[held])
        return sp.csr_matrix((m.data * factor, m.indices, m.indptr), shape=m.shape)


def _ndcg_of_own(scores: np.ndarray, own: np.ndarray, own_score: np.ndarray) -> float:
    """Sum over queries of nDCG@10 with one relevant document (``own[i]``, scored ``own_score[i]``,
    its row's entry replaced): rank = documents scoring higher, or equal with a lower position, + 1."""
    rows = np.arange(len(own))
    scores[rows, own] = -np.inf
    higher = (scores > own_score[:, None]).sum(1)
    cols = np.arange(scores.shape[1])[None, :]
    tied = ((scores == own_score[:, None]) & (cols < own[:, None])).sum(1)
    rank = higher + tied + 1
    return float(np.where(rank <= 10, 1.0 / np.log2(rank + 1), 0.0).sum())


def score_settings(
    docs: Encoded,
    queries: sp.csr_matrix,
    own: np.ndarray,
    rest: Encoded,
    settings: Sequence[Setting],
    bar: Any = None,
) -> list[float]:
    """Each setting's mean nDCG@10 of the pseudo-queries (``queries``, one row each), query i's
    relevant document being ``own[i]`` with its window taken out (``rest``, row i); a setting is a step
    of ``bar`` (a progress bar) when given."""
    n = docs.matrix.shape[0]
    df = np.bincount(docs.matrix.indices, minlength=docs.matrix.shape[1])
    weighted: dict[Saturation | None, tuple[sp.csc_matrix, sp.csr_matrix]] = {}
    out = []
    for setting in settings:
        if setting.tf not in weighted:  # each saturation comes once per power: weigh it once
            weighted[setting.tf] = (docs.with_tf(setting.tf).T.tocsc(), rest.with_tf(setting.tf))
        d, r = weighted[setting.tf]
        q = queries.multiply(idf_table(df, n, setting.power)[None, :]).tocsr()
        total = 0.0
        for a in range(0, q.shape[0], QUERY_CHUNK):
            chunk = q[a : a + QUERY_CHUNK]
            own_score = np.asarray(chunk.multiply(r[a : a + QUERY_CHUNK]).sum(1)).ravel()
            total += _ndcg_of_own((chunk @ d).toarray(), own[a : a + QUERY_CHUNK], own_score)
        out.append(total / q.shape[0])
        if bar is not None:
            bar.update(1)
    return out


def start_setting(folder: Path) -> Setting:
    """The folder's own settings (its ``lsr_doc.json`` tf, or ``lsr_terms.json``'s for word terms; its
    ``lsr_query.json`` power)."""
    from lsr.encoders.splade import read_doc_file

    terms = read_terms_file(folder)
    if terms is not None:
        tf = Saturation.from_section(terms["tf"]) if "tf" in terms else None
        return Setting(tf, resolve_power(-1.0, folder))
    return Setting(read_doc_file(folder), resolve_power(-1.0, folder))


def select(
    folder: Path, docs: Sequence[Doc], n_queries: int, seed: int, keep_start: bool, progress: bool = False
) -> dict[str, Any]:
    """The grid scored on ``docs``' pseudo-queries and the chosen setting (a JSON-ready record), with
    progress bars (encoding, the grid) when ``progress``.

    Raises:
        LsrError: fewer than MIN_QUERIES documents long enough for a pseudo-query.
    """
    from tqdm.auto import tqdm

    from lsr.config import EncoderConfig
    from lsr.encoders import make_encoder
    from lsr.encoders.splade import SpladeEncoder, SpladeModel

    texts = [doc_text(d.title, d.text) for d in docs]
    pseudo = window_queries(texts, n_queries, seed)
    if len(pseudo) < MIN_QUERIES:
        raise LsrError(
            f"adapt.method select: only {len(pseudo)} documents have {4 * WINDOW_WORDS[0]} words or more "
            f"(at least {MIN_QUERIES} are needed to cut pseudo-queries from); use adapt.method train"
        )
    encoder = make_encoder(EncoderConfig(name="splade", model=str(folder)))
    assert isinstance(encoder, SpladeEncoder) and isinstance(encoder.model, SpladeModel)  # name="splade"
    encoder.model.saturate(None)  # the grid applies each setting's saturation to the same weights
    if encoder.model.words is not None:
        encoder.model.words.saturation = None
    t0 = time.perf_counter()
    with tqdm(
        total=len(texts) + len(pseudo), desc="adapt select: encode", unit="doc", disable=not progress
    ) as bar:
        encoded = Encoded.encode(encoder, texts, bar)
        rest = Encoded.encode(encoder, [p[2] for p in pseudo], bar)
    encoded.widen(len(encoder.vocab))
    batch = encoder.model.encode([p[1] for p in pseudo], encoder.cfg.prune, query=True)
    queries = sp.csr_matrix(
        (batch.weights, batch.term_ids, batch.indptr), shape=(len(pseudo), len(encoder.vocab))
    )
    encode_s = time.perf_counter() - t0
    avgdl = float(encoded.lengths.mean())
    start = start_setting(folder)
    settings = grid(start, avgdl)
    own = np.array([p[0] for p in pseudo])
    t0 = time.perf_counter()
    with tqdm(total=len(settings), desc="adapt select: grid", unit="setting", disable=not progress) as bar:
        ndcg = score_settings(encoded, queries, own, rest, settings, bar)
    best = int(np.argmax(ndcg))  # the first of the best: the start setting on a tie
    if not keep_start:
        best = 1 + int(np.argmax(ndcg[1:]))
    logger.info(
        "adapt select: %d pseudo-queries over %d documents; start (%s) %.4f -> %s %.4f",
        len(pseudo),
        len(texts),
        start.label(),
        ndcg[0],
        settings[best].label(),
        ndcg[best],
    )
    return {
        "pseudo_queries": len(pseudo),
        "window_words": list(WINDOW_WORDS),
        "avgdl": round(avgdl, 4),
        "start": _describe(start, ndcg[0]),
        "chosen": _describe(settings[best], ndcg[best]),
        "kept_start": best == 0,
        "grid": [_describe(s, v) for s, v in zip(settings[1:], ndcg[1:], strict=True)],
        "doc_nnz": round(encoded.matrix.nnz / max(encoded.matrix.shape[0], 1), 2),
        "seconds": {"encode": round(encode_s, 2), "grid": round(time.perf_counter() - t0, 2)},
    }


def _describe(setting: Setting, ndcg: float) -> dict[str, Any]:
    return {
        "tf": None if setting.tf is None else setting.tf.section(),
        "query_idf": setting.power,
        "ndcg@10": round(ndcg, 6),
    }


def write_folder(folder: Path, out: Path, chosen: dict[str, Any], record: dict[str, Any], card: str) -> None:
    """A copy of ``folder`` with the chosen settings (``lsr_doc.json``'s tf, or ``lsr_terms.json``'s for
    word terms; ``lsr_query.json``'s query_idf; other keys kept), the record and the card, written
    beside ``out`` and renamed into place."""
    tmp = out.parent / f".{out.name}.adapt-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(folder, tmp, ignore=shutil.ignore_patterns("lsr_adapt.json", "README.md"))
    terms = read_terms_file(folder)
    if terms is not None:
        tf = Saturation.from_section(chosen["tf"]) if chosen["tf"] is not None else None
        write_terms_file(tmp, terms["analyzer"], tf)
    doc = dict(read_doc_settings(folder))
    doc.pop("tf", None)
    if chosen["tf"] is not None and terms is None:
        doc["tf"] = chosen["tf"]
    (tmp / DOC_FILE).unlink(missing_ok=True)
    if doc:
        write_json(tmp / DOC_FILE, doc)
    query_path = folder / QUERY_FILE
    query = json.loads(query_path.read_text(encoding="utf-8")) if query_path.is_file() else {}
    query.update(
        query_idf=chosen["query_idf"],
        selected_on=f"lsr adapt (method select) on {record['corpus']}: pseudo-queries, lsr_adapt.json",
    )
    write_json(tmp / QUERY_FILE, query)
    write_json(tmp / "lsr_adapt.json", record)
    (tmp / "README.md").write_text(card, encoding="utf-8")
    publish_directory(tmp, out)
