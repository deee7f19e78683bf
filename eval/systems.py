"""Named systems for ``lsr eval --systems`` and the index cache that serves them.

A system is one of:

* an index directory (with ``meta.json``): evaluated as it is;
* ``bm25``, ``splade``, ``unicoil``, ``inference-free`` (a bare name uses the default model, see
  ``lsr.encoders.default_model``), ``NAME:MODEL_FOLDER`` or a model folder (SPLADE): an index is built
  over the dataset's corpus with that encoder, or taken from the cache;
* ``hybrid`` or ``hybrid:MODEL_FOLDER``: the SPLADE index plus the dense re-rank stage
  (``lsr.dense.stage``), evaluated with ``rerank="dense"``;
* ``dense`` or ``dense:MODEL_FOLDER``: dense-only retrieval, a flat scan of the float vectors of the
  dense model (default all-MiniLM-L6-v2, else ``dense.model``; ``dense:MODEL`` names another); its
  index is a BM25 index (cheap, it only carries the ids and the docstore) plus a dense stage built
  with the ``dense`` config section and ``keep_float``;
* ``pyserini-bm25``: the external reference, Lucene BM25 through pyserini (``lsr.eval.pyserini_ref``);
* ``run:FILE``: a TREC run file evaluated as it is (``{split}`` in FILE is filled in; for the DL
  re-rank protocols a run name of the pool, e.g. ``run:bm25``, also works).

Built indexes are cached under ``CACHE/indexes/<label>-<key>``, where the key is a content hash of
the corpus file's bytes (or the candidate subset), the resolved encoder and index config, and the
model weights, so a changed model, corpus or setting builds a new index and an unchanged one is reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsr.config import Config, to_dict
from lsr.data.corpus import CORPUS_NAMES, find_file, open_corpus
from lsr.data.irds import cache_dir as irds_cache_dir
from lsr.data.irds import local_folder
from lsr.dense.stage import build_dense_stage
from lsr.encoders import REGISTRY, encoder_overrides
from lsr.errors import ConfigError
from lsr.index.io import publish_directory, read_meta, write_json
from lsr.pipeline import index_corpus

logger = logging.getLogger(__name__)

NAMED = ("bm25", "splade", "unicoil", "inference-free", "hybrid", "dense", "pyserini-bm25")
STAGED = ("hybrid", "dense")  # kinds whose index gets a dense stage (the dense section is in the key)
CACHE_FORMAT = 1


@dataclass(frozen=True)
class SystemSpec:
    """A parsed ``--systems`` entry. ``kind``: index | encoder | hybrid | dense | pyserini | run."""

    spec: str
    kind: str
    label: str
    overrides: tuple[str, ...] = ()
    path: Path | None = None
    run: str = ""

    @property
    def index_dir(self) -> Path:
        """The index folder of an ``index`` system.

        Raises:
            ConfigError: the system is not an index folder (the message names it).
        """
        if self.path is None:
            raise ConfigError(f"system {self.spec!r} ({self.kind}) is not an index folder")
        return self.path


def parse_system(spec: str) -> SystemSpec:
    """Parse one system; fails before any work on a name, folder or file that does not exist.

    Raises:
        ConfigError: an unknown name, or a folder/file that does not exist (the message names it).
    """
    spec = spec.strip()
    if not spec:
        raise ConfigError("empty system name")
    if spec.startswith("run:"):
        return parse_run(spec)
    if spec == "pyserini-bm25":
        return SystemSpec(spec, "pyserini", spec)
    if spec == "hybrid" or spec.startswith("hybrid:"):
        return parse_hybrid(spec)
    if spec == "dense" or spec.startswith("dense:"):
        return parse_dense(spec)
    path = Path(spec)
    if (path / "meta.json").is_file():
        return SystemSpec(spec, "index", path.name or spec, path=path)
    try:
        overrides = encoder_overrides(spec)
    except ConfigError as exc:
        raise ConfigError(
            f"unknown system {spec!r}: {exc}; systems are {', '.join(NAMED)}, NAME:MODEL_FOLDER, "
            "an index directory, or run:FILE"
        ) from None
    if (
        spec in REGISTRY
        and REGISTRY[spec].default_model
        and not any(o.startswith("encoder.model=") for o in overrides)
    ):
        raise ConfigError(
            f"system {spec!r}: no default model found (python scripts/fetch_models.py), or "
            f"name one: {spec}:MODEL_FOLDER"
        )
    name, sep, model = spec.partition(":")
    if sep and model and not Path(model).exists() and (Path(model).is_absolute() or model.startswith(".")):
        raise ConfigError(f"system {spec!r}: no such model folder {model!r}")
    label = f"{name}:{Path(model).name}" if sep and model else spec
    return SystemSpec(spec, "encoder", label, tuple(overrides))


def parse_run(spec: str) -> SystemSpec:
    """``run:FILE`` (``{split}`` filled in later) or ``run:NAME`` (a run of the DL pool)."""
    run = spec[4:]
    if not run:
        raise ConfigError("run: needs a TREC run file (or a run name of the DL pool), e.g. run:bm25")
    if (
        ("/" in run or run.endswith((".trec", ".gz", ".txt")))
        and "{split}" not in run
        and not Path(run).is_file()
    ):
        raise ConfigError(f"system {spec!r}: no such run file {run!r}")
    return SystemSpec(spec, "run", spec, run=run)


def parse_hybrid(spec: str) -> SystemSpec:
    """``hybrid`` (the default SPLADE model) or ``hybrid:MODEL_FOLDER``, plus the dense re-rank stage."""
    model = spec.partition(":")[2]
    overrides = encoder_overrides(f"splade:{model}" if model else "splade")
    if not any(o.startswith("encoder.model=") for o in overrides):
        raise ConfigError(
            "system 'hybrid': no default SPLADE model found (python scripts/fetch_models.py), "
            "or name one: hybrid:MODEL_FOLDER"
        )
    return SystemSpec(spec, "hybrid", spec, tuple(overrides))


def parse_dense(spec: str) -> SystemSpec:
    """``dense`` (the ``dense.model`` of the config, default all-MiniLM-L6-v2) or ``dense:MODEL``.

    Raises:
        ConfigError: ``dense:`` without a model, or a model path that does not exist.
    """
    model = spec.partition(":")[2]
    if spec.startswith("dense:") and not model:
        raise ConfigError("dense: needs a dense model folder or hub name, e.g. dense:models/minilm")
    if model and not Path(model).exists() and (Path(model).is_absolute() or model.startswith(".")):
        raise ConfigError(f"system {spec!r}: no such dense model folder {model!r}")
    overrides = ["encoder.name=bm25", "dense.keep_float=true"]
    if model:
        overrides.append(f"dense.model={json.dumps(model)}")
    label = f"dense:{Path(model).name}" if model else "dense"
    return SystemSpec(spec, "dense", label, tuple(overrides))


def sparse_part(system: SystemSpec) -> SystemSpec:
    """The sparse system under a staged one: a hybrid re-ranks its SPLADE system (same encoder
    overrides, so the same cached index); a dense system sits on the BM25 index."""
    if system.kind == "dense":
        return SystemSpec("bm25", "encoder", "bm25", system.overrides)
    model = system.spec.partition(":")[2]
    return SystemSpec(
        f"splade:{model}" if model else "splade",
        "encoder",
        f"splade:{Path(model).name}" if model else "splade",
        system.overrides,
    )


# ---- content hashes ------------------------------------------------------------------------------

_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes (memoized by path, size and mtime)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def tree_digest(path: Path) -> str:
    """sha256 over a folder's files (relative names and contents), or of one file."""
    if path.is_file():
        return file_digest(path)
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file() and not q.name.startswith(".")):
        h.update(f"{p.relative_to(path)}\0{file_digest(p)}\n".encode())
    return h.hexdigest()


def model_digests(config: Config) -> dict[str, str]:
    """Digests of the model folders (and weight files) a config's encoder reads."""
    enc = config.encoder
    out = {}
    for name in ("model", "query_model"):
        value = getattr(enc, name)
        if value and Path(value).exists():
            out[name] = tree_digest(Path(value))
        elif value:
            out[name] = f"hub:{value}"  # a hub name: its cached revision is not pinned here
    qw = enc.inference_free.query_weights
    if enc.name == "inference-free" and qw not in ("idf", "model") and Path(qw).is_file():
        out["query_weights"] = file_digest(Path(qw))
    return out


def corpus_digest(corpus: str | Path) -> str:
    """Digest of a corpus: its file's bytes (a BEIR folder, a registered id), or the id itself."""
    path = Path(corpus)
    if path.is_file():
        return file_digest(path)
    if path.is_dir():
        found = find_file(path, CORPUS_NAMES)
        if found is None:
            raise FileNotFoundError(f"{path} has no {' or '.join(CORPUS_NAMES)}")
        return file_digest(found)
    local = local_folder(str(corpus))
    if local is not None:
        return corpus_digest(local[0])
    return f"irds:{corpus}"


def cache_key(config: Config, corpus: str, extra: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """``(key, inputs)``: a 16-hex content hash of what determines an index, and the inputs themselves."""
    inputs = {
        "cache_format": CACHE_FORMAT,
        "corpus": corpus,
        "encoder": to_dict(config.encoder),
        "index": to_dict(config.index),
        "models": model_digests(config),
        **(extra or {}),
    }
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
    return key, inputs


def default_cache_dir() -> Path:
    return irds_cache_dir() / "indexes"


# ---- building ------------------------------------------------------------------------------------


@dataclass
class BuiltIndex:
    path: Path
    cached: bool
    build_seconds: float | None
    encode_seconds: float | None
    key: str = ""
    inputs: dict[str, Any] = field(default_factory=dict)
    note: str = ""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:40] or "system"


def write_subset_corpus(corpus: str | Path, doc_ids: set[str], out: Path) -> int:
    """Write the documents of ``corpus`` whose id is in ``doc_ids`` to ``out`` (BEIR JSONL, corpus order)."""
    n = 0
    with open(out, "w", encoding="utf-8") as f:
        for doc in open_corpus(corpus):
            if doc.id in doc_ids:
                f.write(json.dumps({"_id": doc.id, "title": doc.title, "text": doc.text}) + "\n")
                n += 1
    return n


def _cached(out: Path, info_path: Path, key: str, inputs: dict[str, Any]) -> BuiltIndex | None:
    if not ((out / "meta.json").is_file() and info_path.is_file()):
        return None
    info = json.loads(info_path.read_text(encoding="utf-8"))
    return BuiltIndex(
        out, True, info.get("build_seconds"), info.get("encode_seconds"), key, inputs, info.get("note", "")
    )


def _build_staged(
    system: SystemSpec,
    config: Config,
    corpus: str | Path,
    source: str | Path,
    work: Path,
    out: Path,
    **kw: Any,
) -> tuple[dict[str, Any], float]:
    """The sparse part's index (``sparse_part``; cached, or built once: ``kw`` are ensure_index's
    cache_dir, doc_ids and progress) copied, plus a dense stage built with ``config.dense``."""
    sparse = ensure_index(sparse_part(system), config, corpus, **kw)
    staging = work / "index"
    shutil.copytree(sparse.path, staging)
    d = config.dense
    build_dense_stage(
        staging,
        source,
        d.model or None,
        d.pq_m,
        d.opq,
        d.keep_float,
        kw["progress"],
        batch_size=d.batch_size,
        max_length=d.max_length,
    )
    publish_directory(staging, out)
    return read_meta(out, "lsr-index", (1,)), sparse.build_seconds or 0.0


def ensure_index(
    system: SystemSpec,
    config: Config,
    corpus: str | Path,
    cache_dir: Path,
    doc_ids: Iterable[str] | None = None,
    progress: bool = False,
) -> BuiltIndex:
    """The index of ``system`` over ``corpus`` (only ``doc_ids`` when given): from the cache, or built
    with ``config`` (a hybrid system's index also gets its dense stage, built with ``config.dense``)."""
    if system.kind == "index":
        meta = json.loads((system.index_dir / "meta.json").read_text(encoding="utf-8"))
        return BuiltIndex(system.index_dir, True, None, meta.get("encode_seconds"))
    subset = sorted(set(doc_ids)) if doc_ids is not None else None
    digest = corpus_digest(corpus)
    if subset is not None:
        digest = hashlib.sha256((digest + "\n" + "\n".join(subset)).encode()).hexdigest()
    key, inputs = cache_key(config, digest, {"dense": to_dict(config.dense)} if system.kind in STAGED else {})
    out = cache_dir / f"{_slug(system.label)}-{key}"
    info_path = cache_dir / f"{out.name}.build.json"
    cached = _cached(out, info_path, key, inputs)
    if cached is not None:
        return cached
    cache_dir.mkdir(parents=True, exist_ok=True)
    where = f" ({len(subset)} documents)" if subset is not None else ""
    logger.info("building %s over %s%s -> %s", system.label, corpus, where, out)
    work = cache_dir / f".{out.name}.work{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    note = ""
    try:
        source: str | Path = corpus
        if subset is not None:
            source = work / "corpus.jsonl"
            n = write_subset_corpus(corpus, set(subset), source)
            note = f"indexed only the {n} candidate passages of the re-ranked run"
        start = time.perf_counter()
        if system.kind in STAGED:
            kw = {"cache_dir": cache_dir, "doc_ids": doc_ids, "progress": progress}
            meta, before = _build_staged(system, config, corpus, source, work, out, **kw)
        else:
            meta, before = index_corpus(config, source, out, overwrite=True, progress=progress), 0.0
        seconds = before + time.perf_counter() - start
    finally:
        shutil.rmtree(work, ignore_errors=True)
    build_seconds = round(seconds, 3)
    encode_seconds: float | None = meta.get("encode_seconds")
    info = {
        "build_seconds": build_seconds,
        "encode_seconds": encode_seconds,
        "key": key,
        "inputs": inputs,
        "note": note,
    }
    write_json(info_path, info)
    return BuiltIndex(out, False, build_seconds, encode_seconds, key, inputs, note)
