"""``ir_datasets`` ids as corpora, queries and qrels, with a clear error when offline.

``ir_datasets`` downloads lazily, the first time a dataset's files are read. On
a machine without internet that read fails deep inside ``requests``; here it
becomes a :class:`DatasetUnavailableError` that names the local alternative.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from lsr.data.corpus import Doc, check_id
from lsr.errors import DatasetUnavailableError

LOCAL_HINT = (
    "pass a local BEIR folder instead (a directory with corpus.jsonl[.gz], queries.jsonl[.gz] "
    "and qrels/<split>.tsv), e.g. --dataset ../shared/data/beir/scifact"
)


class IrdsDataset:
    """A thin adapter over ``ir_datasets.load(dataset_id)``."""

    def __init__(self, dataset_id: str):
        try:
            import ir_datasets
        except ImportError:
            raise DatasetUnavailableError(
                f"{dataset_id!r} is not a local path, and ir_datasets is not installed; {LOCAL_HINT}"
            ) from None
        try:
            self._ds = ir_datasets.load(dataset_id)
        except KeyError:
            raise DatasetUnavailableError(
                f"{dataset_id!r} is neither an existing local path nor a known ir_datasets id; "
                f"{LOCAL_HINT}"
            ) from None
        self.id = dataset_id

    def _guard(self, what: str, fn):
        try:
            return fn()
        except DatasetUnavailableError:
            raise
        except Exception as exc:  # network, missing files, checksum: all "cannot load here"
            raise DatasetUnavailableError(
                f"could not load the {what} of ir_datasets id {self.id!r} "
                f"({type(exc).__name__}: {exc}); the machine may be offline; {LOCAL_HINT}"
            ) from exc

    def corpus(self) -> IrdsCorpus:
        if not self._ds.has_docs():
            raise DatasetUnavailableError(f"ir_datasets id {self.id!r} has no documents")
        return IrdsCorpus(self)

    def queries(self) -> dict[str, str]:
        def read() -> dict[str, str]:
            return {q.query_id: q.default_text() for q in self._ds.queries_iter()}

        return self._guard("queries", read)

    def qrels(self) -> dict[str, dict[str, int]]:
        def read() -> dict[str, dict[str, int]]:
            out: dict[str, dict[str, int]] = {}
            for r in self._ds.qrels_iter():
                out.setdefault(r.query_id, {})[r.doc_id] = int(r.relevance)
            return out

        return self._guard("qrels", read)


class IrdsCorpus:
    def __init__(self, dataset: IrdsDataset):
        self.dataset = dataset
        self.name = dataset.id

    def __iter__(self) -> Iterator[Doc]:
        docs = self.dataset._guard("documents", lambda: iter(self.dataset._ds.docs_iter()))
        # The first read is where an offline download fails: guard it, then stream.
        first = self.dataset._guard("documents", lambda: next(docs, None))
        if first is None:
            return
        for d in itertools.chain([first], docs):
            title = getattr(d, "title", "") or ""
            text = d.text if hasattr(d, "text") else d.default_text()
            yield Doc(check_id(d.doc_id, f"{self.name} doc"), title, text)
