"""``ir_datasets`` ids as corpora, queries and qrels, with a clear error when offline.

``ir_datasets`` downloads lazily, the first time a dataset's files are read. On
a machine without internet that read fails deep inside ``requests``; here it
becomes a :class:`DatasetUnavailableError` that names the local alternative.

A local BEIR folder (or a zip of one) can be registered for an id, so the same id
works online and offline: ``register_local("beir/scifact/test", "../shared/data/beir/scifact")``
in Python, ``lsr eval --irds-local ID=PATH``, or a registry file ``{"ID": "PATH", ...}``
(JSON) named by ``LSR_IRDS_REGISTRY`` (default ``$LSR_CACHE_DIR/irds-local.json``). A
registered id reads the folder's ``corpus``, ``queries`` and ``qrels/<split>.tsv``, where the
split is the id's last part when the folder has qrels for it (``beir/scifact/test`` -> test),
else ``test``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

from lsr.data.corpus import (
    CORPUS_NAMES,
    Doc,
    JsonlCorpus,
    check_id,
    find_file,
    load_queries,
    qrels_path,
    require_corpus_file,
)
from lsr.errors import DatasetUnavailableError

LOCAL_HINT = (
    "pass a local BEIR folder instead (a directory with corpus.jsonl[.gz], queries.jsonl[.gz] "
    "and qrels/<split>.tsv), e.g. --dataset ../shared/data/beir/scifact, or register one for the id "
    "(lsr eval --irds-local ID=FOLDER_OR_ZIP, or lsr.data.irds.register_local)"
)


def cache_dir() -> Path:
    """``$LSR_CACHE_DIR``, default ``~/.cache/lsr`` (cached indexes, unpacked zips, the registry)."""
    return Path(os.environ.get("LSR_CACHE_DIR") or Path.home() / ".cache" / "lsr")


def registry_path() -> Path:
    """The registry file of local folders for ``ir_datasets`` ids (``LSR_IRDS_REGISTRY``)."""
    return Path(os.environ.get("LSR_IRDS_REGISTRY") or cache_dir() / "irds-local.json")


_LOCAL: dict[str, Path] = {}


def _beir_root(path: Path) -> Path:
    """The folder holding ``corpus.jsonl[.gz]``: ``path`` itself, or, for a zip, its unpacked copy."""
    if path.is_file() and zipfile.is_zipfile(path):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        target = cache_dir() / "irds-zips" / f"{path.stem}-{digest}"
        if not target.is_dir():
            tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
            with zipfile.ZipFile(path) as zf:
                zf.extractall(tmp)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)
        found = sorted(p.parent for name in CORPUS_NAMES for p in target.rglob(name))
        if not found:
            raise FileNotFoundError(f"{path}: the zip holds no {' or '.join(CORPUS_NAMES)}")
        return found[0]
    if path.is_dir():
        if find_file(path, CORPUS_NAMES) is None:
            raise FileNotFoundError(f"{path} is not a BEIR folder: no {' or '.join(CORPUS_NAMES)}")
        return path
    raise FileNotFoundError(f"{path} is neither a BEIR folder nor a zip of one")


def register_local(dataset_id: str, path: str | Path, persist: bool = False) -> Path:
    """Serve ``dataset_id`` from a local BEIR folder or zip (this process; ``persist``: the registry file).

    Returns the BEIR folder. Raises FileNotFoundError when ``path`` is not one.
    """
    root = _beir_root(Path(path).expanduser().resolve())
    _LOCAL[dataset_id] = root
    if persist:
        reg = registry_path()
        data = _read_registry(reg)
        data[dataset_id] = str(Path(path).expanduser().resolve())
        reg.parent.mkdir(parents=True, exist_ok=True)
        tmp = reg.with_name(f".{reg.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, reg)
    return root


def _read_registry(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DatasetUnavailableError(f"{path}: the ir_datasets registry is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise DatasetUnavailableError(f"{path}: the ir_datasets registry must map ids to paths")
    return data


def local_folder(dataset_id: str) -> tuple[Path, str] | None:
    """``(BEIR folder, split)`` registered for ``dataset_id`` (this process, then the registry file)."""
    root = _LOCAL.get(dataset_id)
    if root is None:
        path = _read_registry(registry_path()).get(dataset_id)
        if path is None:
            return None
        root = register_local(dataset_id, path)
    last = dataset_id.rstrip("/").rsplit("/", 1)[-1]
    split = last if (root / "qrels" / f"{last}.tsv").is_file() else "test"
    return root, split


class LocalDataset:
    """A registered id: the same interface as :class:`IrdsDataset`, from a BEIR folder."""

    def __init__(self, dataset_id: str, root: Path, split: str):
        self.id, self.root, self.split = dataset_id, root, split

    def corpus(self) -> JsonlCorpus:
        corpus = JsonlCorpus(require_corpus_file(self.root))
        corpus.name = self.id
        return corpus

    def queries(self) -> dict[str, str]:
        return load_queries(self.root, self.split)

    def qrels(self) -> dict[str, dict[str, int]]:
        from lsr.data.trec import read_qrels

        return read_qrels(qrels_path(self.root, self.split))


class IrdsDataset:
    """A thin adapter over ``ir_datasets.load(dataset_id)`` (or the local folder registered for the id)."""

    def __new__(cls, dataset_id: str):
        local = local_folder(dataset_id)
        if local is not None:
            return LocalDataset(dataset_id, *local)
        return super().__new__(cls)

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
                f"{dataset_id!r} is neither an existing local path nor a known ir_datasets id; {LOCAL_HINT}"
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
