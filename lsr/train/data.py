"""Training data: qrels pairs, a dev hold-out, pseudo-queries, mined hard negatives, cached teacher scores.

``prepare_dataset`` (CPU; needs the BM25 analyzer, so PyStemmer) writes a **prepared dataset**
directory, format ``lsr-train-data`` v1, that the trainer reads with gzip + json alone (no ranx,
PyStemmer or ir_datasets: it travels to a GPU machine as is):

| file | content |
|---|---|
| ``docs.jsonl.gz`` | ``{"id", "text"}`` per corpus document (title + text, as lsr indexes them) |
| ``train.jsonl.gz`` | ``{"qid", "query", "source", "cands": [pos, neg...], "scores": {teacher: [...]}}`` |
| ``dev.jsonl.gz`` | ``{"qid", "query", "rels": {doc_id: grade}}``: held-out train queries |
| ``meta.json`` | format, the prepare config, counts (skipped queries included), teachers, seconds |

* Pairs come from ``qrels/<train_split>.tsv`` only (test qrels are refused by the config); a query with
  no positive grade or no text is skipped and counted; each (query, positive) is one example.
* The dev split is a seeded share of the train queries; none of its queries is trained on.
* Pseudo-queries need no labels: a title finds its own document (``title``), and a sentence of at
  least ``pseudo_min_words`` words finds the document it comes from (``span``).
* Hard negatives are the top hits of our own index (``mining_encoder``: ``bm25`` or a sparse model such
  as ``splade:models/splade-tiny``) with every labelled positive of the query removed; a short list is
  padded with random non-positive documents (counted).
* From a bare corpus (``prepare_corpus_dataset``, for ``lsr adapt``): pseudo-queries only; those of a
  held-out share of the documents are the dev split, cut out of their documents' text.
* Teacher scores (raw, one list per teacher, aligned with ``cands``) are computed once here; the
  trainer normalizes and mixes them (so one prepared dataset serves every teacher ablation).
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lsr.config import load_config, to_dict
from lsr.data.corpus import load_queries, open_corpus, qrels_path
from lsr.data.trec import read_qrels
from lsr.dense.model import DenseModel
from lsr.encoders import encoder_overrides
from lsr.encoders.transformer import load_tokenizer, pick_device
from lsr.errors import ConfigError, DataFormatError, LsrError
from lsr.index.io import atomic_directory, write_json
from lsr.pipeline import build_index_from_vectors, encode_corpus
from lsr.searcher import Searcher
from lsr.train.config import PrepareConfig, TeacherConfig
from lsr.vectors import Vectors

logger = logging.getLogger(__name__)

FORMAT = "lsr-train-data"
FORMAT_VERSION = 1
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


# --- the prepared dataset (read side: stdlib + numpy) ---------------------------------------------


@dataclass
class Example:
    qid: str
    query: str
    source: str  # qrels | title | span
    cands: list[str]  # positive first, then hard negatives
    scores: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class DevQuery:
    qid: str
    query: str
    rels: dict[str, int]


@dataclass
class PreparedData:
    path: Path
    meta: dict[str, Any]
    doc_ids: list[str]
    doc_texts: list[str]
    train: list[Example]
    dev: list[DevQuery]

    @property
    def teachers(self) -> list[str]:
        return list(self.meta.get("teachers", []))


@dataclass
class DevSuite:
    """A zero-shot collection scored at every evaluation to select checkpoints (never trained on)."""

    name: str
    doc_ids: list[str]
    doc_texts: list[str]  # title + text, as lsr indexes them
    queries: list[DevQuery]


def doc_text(title: str, text: str) -> str:
    """The text lsr indexes for a document: its title and body joined by a space."""
    return f"{title} {text}" if title else text


def load_suite(folder: str | Path, split: str = "test") -> DevSuite:
    """A BEIR folder's documents and its ``split`` queries with at least one relevant document."""
    folder = Path(folder)
    docs = list(open_corpus(folder))
    queries = load_queries(folder)
    judged = read_qrels(qrels_path(folder, split))
    dev = [
        DevQuery(qid, queries[qid], {d: g for d, g in rels.items() if g > 0})
        for qid, rels in judged.items()
        if qid in queries and any(g > 0 for g in rels.values())
    ]
    if not docs or not dev:
        raise DataFormatError(f"{folder}: no documents or no judged {split} queries to evaluate on")
    return DevSuite(folder.name, [d.id for d in docs], [doc_text(d.title, d.text) for d in docs], dev)


def _write_jsonl_gz(path: Path, rows: Iterator[dict[str, Any]] | list[dict[str, Any]]) -> int:
    n = 0
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=6) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def _read_jsonl_gz(path: Path) -> Iterator[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataFormatError(f"{path}:{line_no}: not JSON ({exc})") from None


def load_prepared(path: str | Path) -> PreparedData:
    """Read a prepared dataset directory.

    Raises:
        FileNotFoundError: no such directory or a missing file.
        DataFormatError: not an ``lsr-train-data`` v1 directory, or malformed rows.
    """
    path = Path(path)
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{path} is not a prepared dataset (no meta.json); run lsr train-prepare")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise DataFormatError(
            f"{path}: format {meta.get('format')!r} v{meta.get('format_version')}, "
            f"expected {FORMAT} v{FORMAT_VERSION}; re-run lsr train-prepare"
        )
    ids, texts = [], []
    for row in _read_jsonl_gz(path / "docs.jsonl.gz"):
        ids.append(row["id"])
        texts.append(row["text"])
    known = set(ids)
    train = []
    for row in _read_jsonl_gz(path / "train.jsonl.gz"):
        ex = Example(row["qid"], row["query"], row["source"], row["cands"], row.get("scores", {}))
        bad = [d for d in ex.cands if d not in known]
        if bad:
            raise DataFormatError(f"{path}: train query {ex.qid!r} names unknown documents {bad[:3]}")
        for name, s in ex.scores.items():
            if len(s) != len(ex.cands):
                raise DataFormatError(
                    f"{path}: train query {ex.qid!r}: {len(s)} {name} scores for {len(ex.cands)} candidates"
                )
        train.append(ex)
    dev = [DevQuery(r["qid"], r["query"], r["rels"]) for r in _read_jsonl_gz(path / "dev.jsonl.gz")]
    return PreparedData(path, meta, ids, texts, train, dev)


# --- pairs, split, pseudo-queries (pure functions, tested directly) --------------------------------


def positive_pairs(
    qrels: dict[str, dict[str, int]], queries: dict[str, str], known_docs: set[str]
) -> tuple[dict[str, list[str]], dict[str, int]]:
    """``({qid: [positive doc ids]}, counts)``: queries without a positive (or text) are skipped."""
    pairs: dict[str, list[str]] = {}
    counts = {"skipped_no_positive": 0, "skipped_no_text": 0, "positives_not_in_corpus": 0}
    for qid, judged in qrels.items():
        if not queries.get(qid, "").strip():
            counts["skipped_no_text"] += 1
            continue
        pos = [d for d, g in judged.items() if g > 0]
        counts["positives_not_in_corpus"] += sum(d not in known_docs for d in pos)
        pos = [d for d in pos if d in known_docs]
        if not pos:
            counts["skipped_no_positive"] += 1
            continue
        pairs[qid] = pos
    return pairs, counts


def split_dev(
    qids: Sequence[str], fraction: float, seed: int, max_dev: int = 0
) -> tuple[list[str], list[str]]:
    """``(train qids, dev qids)``: a seeded shuffle, the first ``round(fraction * n)`` are dev."""
    order = sorted(qids)
    random.Random(seed).shuffle(order)
    n_dev = int(round(fraction * len(order)))
    if max_dev:
        n_dev = min(n_dev, max_dev)
    dev = set(order[:n_dev])
    return [q for q in qids if q not in dev], [q for q in qids if q in dev]


def pseudo_queries(
    docs: Sequence[tuple[str, str, str]], n_titles: int, n_spans: int, min_words: int, seed: int
) -> list[tuple[str, str, str, str]]:
    """``[(pseudo qid, text, source, doc id)]`` from unlabelled documents ``(id, title, text)``."""
    rng = random.Random(seed)
    out = []
    titled = [d for d in docs if len(d[1].split()) >= 2]
    for doc_id, title, _ in rng.sample(titled, min(n_titles, len(titled))):
        out.append((f"title:{doc_id}", title, "title", doc_id))
    order = list(docs)
    rng.shuffle(order)
    taken = 0
    for doc_id, _, text in order:
        if taken >= n_spans:
            break
        sentences = [s for s in _SENTENCE.split(text) if len(s.split()) >= min_words]
        if sentences:
            out.append((f"span:{doc_id}", rng.choice(sentences), "span", doc_id))
            taken += 1
    return out


def pick_negatives(
    ranked: Sequence[str], positives: set[str], n: int, all_docs: Sequence[str], rng: random.Random
) -> tuple[list[str], int]:
    """The first ``n`` hits that are not positives, padded with random non-positive documents.

    Returns ``(negatives, padded)``.
    """
    negs = [d for d in ranked if d not in positives][:n]
    padded = 0
    if len(negs) < n:
        taken = set(negs) | positives
        pool = [d for d in all_docs if d not in taken]
        extra = rng.sample(pool, min(n - len(negs), len(pool)))
        padded = len(extra)
        negs += extra
    if len(negs) < n:
        raise ValueError(f"the corpus has only {len(negs)} non-positive documents for {n} negatives")
    return negs, padded


def sparse_dot(q_terms: np.ndarray, q_w: np.ndarray, d_terms: np.ndarray, d_w: np.ndarray) -> float:
    _, qi, di = np.intersect1d(q_terms, d_terms, assume_unique=True, return_indices=True)
    return float(np.dot(q_w[qi].astype(np.float64), d_w[di].astype(np.float64)))


# --- scorers (write side) ---------------------------------------------------------------------------


class SparseIndexScorer:
    """A corpus encoded and indexed with one ``--encoder`` spec: search (mining) and exact scoring."""

    def __init__(self, spec: str, corpus: str, workdir: Path, device: str = "auto", progress: bool = False):
        overrides = encoder_overrides(spec)
        if spec != "bm25":
            overrides.append(f"encoder.transformer.device={device}")
        cfg = load_config(None, overrides)
        name = re.sub(r"[^A-Za-z0-9_-]+", "_", spec)[:40]
        vec_dir, idx_dir = workdir / f"{name}.vectors", workdir / f"{name}.index"
        encode_corpus(cfg, corpus, vec_dir, overwrite=True, progress=progress)
        build_index_from_vectors(cfg, vec_dir, idx_dir, overwrite=True)
        self.searcher = Searcher(idx_dir)
        vectors = Vectors(vec_dir)
        ids = list(vectors.iter_ids())
        rows = []
        for batch in vectors.batches():
            for i in range(len(batch)):
                t, w = batch.row(i)
                rows.append((np.array(t), np.array(w)))
        self.rows = dict(zip(ids, rows, strict=True))

    def search(self, queries: dict[str, str], k: int) -> dict[str, list[str]]:
        from lsr.searcher import Plan, Queries

        qids = list(queries)
        results = self.searcher.search_batch(Queries(texts=[queries[q] for q in qids]), Plan(k=k))
        return {q: list(hits) for q, hits in self.searcher.to_run(qids, results).items()}

    def score(self, texts: Sequence[str], cands: Sequence[Sequence[str]]) -> list[list[float]]:
        encoded = self.searcher.encode_texts(list(texts))
        out = []
        for i, docs in enumerate(cands):
            qt, qw = encoded.row(i)
            out.append([sparse_dot(qt, qw, *self.rows[d]) for d in docs])
        return out


def dense_scores(
    model_spec: str,
    texts: Sequence[str],
    cands: Sequence[Sequence[str]],
    doc_text: dict[str, str],
    device: str,
    max_length: int,
    progress: bool,
) -> list[list[float]]:
    """Cosine of all-MiniLM-L6-v2 (or another sentence-transformers folder) embeddings."""
    model = DenseModel.load(model_spec or None, device=device, max_length=max_length)
    uniq = sorted({d for c in cands for d in c})
    pos = {d: i for i, d in enumerate(uniq)}
    d_emb = model.encode([doc_text[d] for d in uniq], progress=progress, desc="dense teacher: docs")
    q_emb = model.encode(list(texts), progress=progress, desc="dense teacher: queries")
    return [[float(q_emb[i] @ d_emb[pos[d]]) for d in c] for i, c in enumerate(cands)]


def cross_scores(
    model_path: str,
    texts: Sequence[str],
    cands: Sequence[Sequence[str]],
    doc_text: dict[str, str],
    device: str,
    max_length: int,
    batch: int = 64,
) -> list[list[float]]:
    """A Hugging Face cross-encoder (``*ForSequenceClassification``): the last logit of each pair."""
    import torch
    import transformers

    dev = pick_device(device)
    tok = load_tokenizer(Path(model_path))
    model = transformers.AutoModelForSequenceClassification.from_pretrained(model_path).eval().to(dev)
    pairs = [(texts[i], doc_text[d]) for i, c in enumerate(cands) for d in c]
    flat: list[float] = []
    with torch.inference_mode():
        for s in range(0, len(pairs), batch):
            chunk = pairs[s : s + batch]
            enc = tok(
                [p[0] for p in chunk],
                [p[1] for p in chunk],
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            ).to(dev)
            flat += model(**enc).logits[:, -1].float().cpu().tolist()
    out, at = [], 0
    for c in cands:
        out.append(flat[at : at + len(c)])
        at += len(c)
    return out


# --- prepare ---------------------------------------------------------------------------------------


def _check_dataset(folder: Path, split: str) -> None:
    if not folder.is_dir():
        raise FileNotFoundError(f"prepare.dataset = {str(folder)!r} is not a BEIR folder")
    if "dl-pool" in folder.resolve().parts or split.lower() in ("dl19", "dl20", "test"):
        raise ConfigError(
            f"prepare: {folder} / qrels {split!r} is evaluation data; training never uses "
            "test qrels or the TREC DL pool"
        )


def prepare_dataset(
    cfg: PrepareConfig, out: str | Path, overwrite: bool = False, progress: bool = False
) -> dict[str, Any]:
    """Build the prepared dataset directory ``out`` (see the module docstring); returns its meta."""
    start = time.perf_counter()
    src = _read_dataset(cfg)
    queries = _training_queries(cfg, src)
    meta = _build(cfg, src, queries, out, overwrite, progress, start, {"qrels": str(src.qrels_file)})
    if src.counts["skipped_no_positive"] or src.counts["skipped_no_text"]:
        logger.warning(
            "skipped %d queries with no positive and %d with no text",
            src.counts["skipped_no_positive"],
            src.counts["skipped_no_text"],
        )
    return meta


def prepare_corpus_dataset(
    cfg: PrepareConfig, corpus: str | Path, out: str | Path, overwrite: bool = False, progress: bool = False
) -> dict[str, Any]:
    """A prepared dataset from a bare corpus, with no queries and no qrels (``lsr adapt``).

    Every training query is a pseudo-query (``pseudo_titles``, ``pseudo_spans``). The documents with a
    pseudo-query are split with :func:`split_dev` (``dev_fraction``, ``seed``): the pseudo-queries of
    the held-out documents form the dev split, each with its own document as the one relevant one
    (capped at ``dev_max_queries``), and none of them is trained on; each is cut out of its document
    (:func:`cut_from_documents`), so that the dev split measures retrieval, not exact match.

    Raises:
        LsrError: no pseudo-query can be made from the corpus, or none is left for training.
    """
    start = time.perf_counter()
    src, queries = _read_bare_corpus(cfg, Path(corpus))
    return _build(cfg, src, queries, out, overwrite, progress, start, {"qrels": None})


def _build(
    cfg: PrepareConfig,
    src: _Source,
    queries: _Queries,
    out: str | Path,
    overwrite: bool,
    progress: bool,
    start: float,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Mine negatives, score teachers, write the directory ``out`` atomically; returns its meta."""
    with tempfile.TemporaryDirectory(prefix="lsr-prepare-") as tmp, atomic_directory(out, overwrite) as work:
        scorers = _Scorers(str(src.folder), Path(tmp), cfg.teacher_device, progress)
        examples = _mine_examples(cfg, src, queries, scorers)
        teacher_seconds = _score_teachers(cfg, src, examples, scorers, progress)
        _write_prepared(work, src, examples)
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "dataset": str(src.folder),
            **extra,
            "prepare": to_dict(cfg),
            "counts": src.counts,
            "teachers": [t.name for t in cfg.teachers],
            "teacher_seconds": teacher_seconds,
            "seconds": round(time.perf_counter() - start, 2),
        }
        write_json(work / "meta.json", meta)
    return meta


@dataclass
class _Source:
    """A BEIR folder as prepare reads it: documents, all queries, the train qrels, the dev split, counts."""

    folder: Path
    docs: list[tuple[str, str, str]]  # (id, title, text)
    doc_text: dict[str, str]  # title + text, as lsr indexes them
    all_ids: list[str]
    queries: dict[str, str]
    qrels_file: Path | None  # None: a bare corpus (no qrels read)
    qrels: dict[str, dict[str, int]]
    labelled: dict[str, list[str]]  # qid -> positives in the corpus
    train_q: list[str]
    dev_q: list[str]
    counts: dict[str, int]


def _read_dataset(cfg: PrepareConfig) -> _Source:
    """The corpus, queries and train qrels; labelled queries split into train and dev."""
    folder = Path(cfg.dataset)
    _check_dataset(folder, cfg.train_split)
    docs = [(d.id, d.title, d.text) for d in open_corpus(folder)]
    texts = {d[0]: doc_text(d[1], d[2]) for d in docs}
    counts: dict[str, int] = {"corpus_docs": len(docs)}
    qrels_file = qrels_path(folder, cfg.train_split)
    qrels = read_qrels(qrels_file)
    all_queries = load_queries(folder)
    labelled, skip = positive_pairs(qrels, all_queries, set(texts))
    counts.update(skip)
    train_q, dev_q = split_dev(list(labelled), cfg.dev_fraction, cfg.seed, cfg.dev_max_queries)
    counts["dev_queries"] = len(dev_q)
    all_ids = [d[0] for d in docs]
    return _Source(
        folder, docs, texts, all_ids, all_queries, qrels_file, qrels, labelled, train_q, dev_q, counts
    )


@dataclass
class _Queries:
    """The training queries: positives, text and source (qrels | title | span) by query id."""

    pairs: dict[str, list[str]]
    texts: dict[str, str]
    sources: dict[str, str]


def _training_queries(cfg: PrepareConfig, src: _Source) -> _Queries:
    """Labelled train queries (``use_labels``), then the pseudo-queries; counted in ``src.counts``."""
    pairs: dict[str, list[str]] = {}
    texts: dict[str, str] = {}
    if cfg.use_labels:
        for q in src.train_q:
            pairs[q], texts[q] = src.labelled[q], src.queries[q]
    src.counts["train_queries"] = len(pairs)
    sources = dict.fromkeys(pairs, "qrels")
    for qid, text, source, doc_id in pseudo_queries(
        src.docs, cfg.pseudo_titles, cfg.pseudo_spans, cfg.pseudo_min_words, cfg.seed
    ):
        pairs[qid], texts[qid], sources[qid] = [doc_id], text, source
        src.counts[f"pseudo_{source}s"] = src.counts.get(f"pseudo_{source}s", 0) + 1
    if not pairs:
        raise ValueError(
            "no training query: use_labels is false and no pseudo-queries were asked for "
            "(prepare.pseudo_titles / pseudo_spans), or the qrels hold no positive"
        )
    return _Queries(pairs, texts, sources)


def cut_from_documents(
    queries: list[tuple[str, str, str, str]], doc_text: dict[str, str]
) -> list[tuple[str, str, str, str]]:
    """Cut each pseudo-query ``(qid, text, source, doc id)`` out of its document's text (in place).

    A title or sentence left in its document finds it by exact match, whatever the model: every model
    would score 1.0 on such a dev split (the inverse cloze task of Lee et al. 2019 removes it too). A
    query whose document would be left empty is dropped. Returns the queries kept.
    """
    kept = []
    for query in queries:
        _, text, _, doc_id = query
        rest = doc_text[doc_id].replace(text, " ", 1).strip()
        if rest:
            doc_text[doc_id] = rest
            kept.append(query)
    return kept


def _read_bare_corpus(cfg: PrepareConfig, corpus: Path) -> tuple[_Source, _Queries]:
    """A corpus alone: pseudo-queries split by document into training queries and the dev split."""
    docs = [(d.id, d.title, d.text) for d in open_corpus(corpus)]
    doc_text = {d[0]: (f"{d[1]} {d[2]}" if d[1] else d[2]) for d in docs}
    pseudo = pseudo_queries(docs, cfg.pseudo_titles, cfg.pseudo_spans, cfg.pseudo_min_words, cfg.seed)
    if not pseudo:
        raise LsrError(
            f"{corpus}: no pseudo-query could be made (no title of 2+ words, no sentence of "
            f"{cfg.pseudo_min_words}+ words)"
        )
    _, dev_docs = split_dev(sorted({p[3] for p in pseudo}), cfg.dev_fraction, cfg.seed)
    held_out = set(dev_docs)
    dev = cut_from_documents([p for p in pseudo if p[3] in held_out], doc_text)
    dev = dev[: cfg.dev_max_queries] if cfg.dev_max_queries else dev
    if not dev:
        raise LsrError(
            f"{corpus}: no dev pseudo-query is left: each held-out document's pseudo-queries are its whole "
            "text (one title or sentence: texts without sentence breaks?), and cutting them out would "
            "leave it empty; a dev split is needed to select the checkpoint and check that adapting helps"
        )
    train = [p for p in pseudo if p[3] not in held_out]
    if not train:
        raise LsrError(
            f"{corpus}: all {len(pseudo)} pseudo-queries fell in the dev split; lower dev_fraction"
        )
    counts: dict[str, int] = {"corpus_docs": len(docs), "train_queries": 0, "dev_queries": len(dev)}
    counts.update(skipped_no_positive=0, skipped_no_text=0, dev_docs=len(held_out))
    for _, _, source, _ in train:
        counts[f"pseudo_{source}s"] = counts.get(f"pseudo_{source}s", 0) + 1
    src = _Source(
        folder=corpus,
        docs=docs,
        doc_text=doc_text,
        all_ids=[d[0] for d in docs],
        queries={q: text for q, text, _, _ in dev},
        qrels_file=None,
        qrels={q: {doc_id: 1} for q, _, _, doc_id in dev},
        labelled={},
        train_q=[],
        dev_q=[q for q, _, _, _ in dev],
        counts=counts,
    )
    queries = _Queries(
        pairs={q: [doc_id] for q, _, _, doc_id in train},
        texts={q: text for q, text, _, _ in train},
        sources={q: source for q, _, source, _ in train},
    )
    return src, queries


class _Scorers:
    """One :class:`SparseIndexScorer` per ``--encoder`` spec, built on first use."""

    def __init__(self, corpus: str, workdir: Path, device: str, progress: bool):
        self.corpus, self.workdir, self.device, self.progress = corpus, workdir, device, progress
        self.built: dict[str, SparseIndexScorer] = {}

    def __call__(self, spec: str) -> SparseIndexScorer:
        if spec not in self.built:
            logger.info("indexing %s with %s", self.corpus, spec)
            self.built[spec] = SparseIndexScorer(spec, self.corpus, self.workdir, self.device, self.progress)
        return self.built[spec]


def _mine_examples(cfg: PrepareConfig, src: _Source, queries: _Queries, scorers: _Scorers) -> list[Example]:
    """One example per (query, positive): the positive, then the query's mined hard negatives."""
    ranked = scorers(cfg.mining_encoder).search(queries.texts, cfg.mining_depth)
    rng = random.Random(cfg.seed)
    examples: list[Example] = []
    padded = 0
    for qid, positives in queries.pairs.items():
        negs, pad = pick_negatives(ranked.get(qid, []), set(positives), cfg.negatives, src.all_ids, rng)
        padded += pad
        for p in positives:
            examples.append(Example(qid, queries.texts[qid], queries.sources[qid], [p, *negs]))
    src.counts["padded_negatives"] = padded
    src.counts["train_examples"] = len(examples)
    return examples


def _score_teachers(
    cfg: PrepareConfig, src: _Source, examples: list[Example], scorers: _Scorers, progress: bool
) -> dict[str, float]:
    """Each teacher's raw scores into ``examples[i].scores``; returns the seconds per teacher."""
    texts = [e.query for e in examples]
    cands = [e.cands for e in examples]
    teacher_seconds = {}
    for teacher in cfg.teachers:
        t0 = time.perf_counter()
        scores = _teacher_scores(teacher, cfg, texts, cands, src.doc_text, scorers, progress)
        for e, s in zip(examples, scores, strict=True):
            e.scores[teacher.name] = [round(x, 6) for x in s]
        teacher_seconds[teacher.name] = round(time.perf_counter() - t0, 2)
        logger.info(
            "teacher %s scored %d lists in %.1fs", teacher.name, len(examples), teacher_seconds[teacher.name]
        )
    return teacher_seconds


def _write_prepared(work: Path, src: _Source, examples: list[Example]) -> None:
    """docs.jsonl.gz, train.jsonl.gz and dev.jsonl.gz (dev relevance limited to corpus documents)."""
    _write_jsonl_gz(work / "docs.jsonl.gz", ({"id": i, "text": src.doc_text[i]} for i in src.all_ids))
    _write_jsonl_gz(
        work / "train.jsonl.gz",
        (
            {"qid": e.qid, "query": e.query, "source": e.source, "cands": e.cands, "scores": e.scores}
            for e in examples
        ),
    )
    _write_jsonl_gz(
        work / "dev.jsonl.gz",
        (
            {
                "qid": q,
                "query": src.queries[q],
                "rels": {d: g for d, g in src.qrels[q].items() if d in src.doc_text},
            }
            for q in src.dev_q
        ),
    )


def _teacher_scores(
    teacher: TeacherConfig,
    cfg: PrepareConfig,
    texts: list[str],
    cands: list[list[str]],
    doc_text: dict[str, str],
    sparse: _Scorers,
    progress: bool,
) -> list[list[float]]:
    if teacher.name == "bm25":
        return sparse("bm25").score(texts, cands)
    if teacher.name == "splade":
        return sparse(f"splade:{teacher.model}").score(texts, cands)
    if teacher.name == "dense":
        return dense_scores(
            teacher.model, texts, cands, doc_text, cfg.teacher_device, cfg.max_length, progress
        )
    return cross_scores(teacher.model, texts, cands, doc_text, cfg.teacher_device, cfg.max_length)
