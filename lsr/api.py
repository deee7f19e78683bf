"""The in-memory Python API: build an index from documents you hold, search it, save it, load it.

    import lsr
    index = lsr.Index.build(["a cat sat", "a dog ran"], encoder="bm25")
    for hit in index.search("cat", k=1):
        print(hit.doc_id, hit.score)

A thin layer over the pipeline (:func:`lsr.pipeline.index_corpus`: the same encode -> statistics ->
index path as ``lsr index``) and the one retrieval path (:class:`lsr.searcher.Searcher`), so results
equal the CLI's. An index built without a ``path`` lives in a temporary folder that is removed when the
:class:`Index` is garbage-collected; :meth:`Index.save` copies it to a folder that ``lsr search``,
``lsr serve`` and :meth:`Index.load` open.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lsr.config import load_config
from lsr.data.formats import CorpusSource, InMemoryCorpus
from lsr.encoders import encoder_overrides
from lsr.searcher import Hit, Plan, Queries, Searcher


class Index:
    """A searchable index (wraps a :class:`~lsr.searcher.Searcher` over an index folder)."""

    def __init__(self, path: str | Path, _tmp: tempfile.TemporaryDirectory | None = None):
        self.path = Path(path)
        self.searcher = Searcher(self.path)
        self._tmp = _tmp  # kept alive as long as the index: its folder holds the memory-mapped arrays

    @classmethod
    def build(
        cls,
        docs: Iterable[Any] | str | Path,
        encoder: str = "bm25",
        *,
        config: str | Path | None = None,
        overrides: Sequence[str] = (),
        path: str | Path | None = None,
        overwrite: bool = False,
        progress: bool = False,
    ) -> Index:
        """Encode and index ``docs``.

        Args:
            docs: dicts (``id``/``_id``, optional ``title``, ``text``), ``(id, text)`` or ``(id, title,
                text)`` tuples, plain strings (ids ``"0"``, ``"1"``, ...), or a corpus path in any shape
                ``lsr index --corpus`` reads.
            encoder: as ``--encoder``: ``bm25``, ``splade``, ``inference-free``, ``NAME:FOLDER``.
            config: a YAML config file or a shipped config name (``bm25-lucene``), as ``--config``.
            overrides: ``section.key=value`` strings, as ``--set``.
            path: where to write the index (default: a temporary folder; see :meth:`save`).
            overwrite: replace an existing ``path``.
            progress: show progress bars.

        Raises:
            DataFormatError: a document in no accepted form, or a duplicate id (the message says which).
            ConfigError: a bad encoder name or config value.
        """
        from lsr.pipeline import index_corpus  # lazy: tqdm and the encoders load only to build

        cfg = load_config(config, [*encoder_overrides(encoder), *overrides])
        corpus = CorpusSource(str(docs)) if isinstance(docs, (str, Path)) else InMemoryCorpus(docs)
        tmp = None if path is not None else tempfile.TemporaryDirectory(prefix="lsr-index-")
        out = Path(path) if path is not None else Path(tmp.name) / "index"  # type: ignore[union-attr]
        index_corpus(cfg, corpus, out, overwrite=overwrite, progress=progress)
        return cls(out, tmp)

    @classmethod
    def load(cls, path: str | Path) -> Index:
        """Open an index folder (``Index.save``, ``lsr index``), memory-mapped."""
        return cls(path)

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Copy the index to ``path`` (complete or not at all: copied beside it, then renamed).

        Raises:
            FileExistsError: ``path`` exists and ``overwrite`` is false.
        """
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it")
        if path.resolve() == self.path.resolve():
            return path
        tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.path, tmp)
        old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
        return path

    def __len__(self) -> int:
        return int(self.searcher.index.meta["n_docs"])

    def __repr__(self) -> str:
        encoder = self.searcher.index.meta.get("encoder", {}).get("name", "?")
        return f"Index({len(self)} docs, encoder {encoder!r}, path {str(self.path)!r})"

    def plan(self, k: int, **options: Any) -> Plan:
        """The :class:`~lsr.searcher.Plan` of a search: ``k`` and any Plan field (mode, alpha, ...)."""
        return Plan(k=k, **options)

    def search(
        self, query: str, k: int = 10, fields: Sequence[str] = ("title", "text"), **options: Any
    ) -> list[Hit]:
        """The top ``k`` documents for a text query: :class:`~lsr.searcher.Hit` (rank, doc_id, score,
        title, fields) in rank order. ``options``: Plan fields (``mode="safe"``, ``rerank="dense"``).

        Raises:
            ValueError: an empty query or a bad option (named).
        """
        return self.searcher.hits(self.searcher.search(query, self.plan(k, **options)), fields)

    def search_batch(
        self, queries: Sequence[str], k: int = 10, **options: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """Many text queries at once (the batch kernel on all cores): ``(ids, scores)``, arrays of shape
        ``(len(queries), k)``; rows with fewer than ``k`` matches end in ids ``""`` and scores ``nan``."""
        results = self.searcher.search_batch(Queries(texts=list(queries)), self.plan(k, **options))
        ids = np.full((len(results), k), "", dtype=object)
        scores = np.full((len(results), k), np.nan, dtype=np.float32)
        keys = self.searcher.index.doc_keys
        for row, result in enumerate(results):
            n = len(result.docs)
            ids[row, :n] = [keys[d] for d in result.docs.tolist()]
            scores[row, :n] = result.scores
        return ids, scores
