"""The stages behind the CLI: encode a corpus, build an index.

Each function takes the resolved :class:`~lsr.config.Config`, does one job,
writes its artifact atomically (with the resolved config inside) and returns
what it wrote. Encoding a corpus: the encode loop (:func:`lsr.encode.encode_documents`)
writes the encoder's batches into the vector store, the statistics pass (for the
encoders that need one, :mod:`lsr.encoders.base`) reads the written vectors or the
corpus texts, and what the encoder makes of the statistics (BM25: impacts instead of
term frequencies; inference-free: the query table) goes into the same store.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from lsr import __version__
from lsr.config import Config, config_hash, resolved_impact_dtype, to_dict
from lsr.data.corpus import Doc, open_corpus
from lsr.data.docstore import DocStoreWriter
from lsr.data.formats import CorpusSource
from lsr.data.sparse_jsonl import is_sparse_jsonl, iter_sparse_rows, write_sparse_jsonl
from lsr.encode import encode_documents, resume_key
from lsr.encoders import CorpusEncoder, CorpusStats, make_encoder
from lsr.errors import reports_disk_full
from lsr.index import BuildOptions, build_index
from lsr.vectors import Vectors, VectorWriter
from lsr.weights import flattening_warning

logger = logging.getLogger(__name__)


def _sections(config: Config, encoder: dict[str, Any], source: str) -> dict[str, Any]:
    return {
        "lsr_version": __version__,
        "encoder": encoder,
        "source": {"corpus": source},
        "config": to_dict(config),
        "config_hash": config_hash(config),
    }


Corpus = str | Path | CorpusSource | Iterable[Doc]


@reports_disk_full
def encode_corpus(
    config: Config,
    corpus: Corpus,
    out: str | Path,
    fmt: str = "npy",
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Encode ``corpus`` (any shape :func:`~lsr.data.corpus.open_corpus` opens) with ``config.encoder``
    into a vectors directory (npy) or a sparse-vector JSONL file (float weights; integer weights for
    Anserini come from ``lsr export --to anserini``, lsr.export)."""
    if fmt not in ("npy", "jsonl"):
        raise ValueError(f"format {fmt!r} is not one of ['npy', 'jsonl']")
    if fmt == "jsonl":
        return _encode_to_jsonl(config, corpus, Path(out), overwrite, progress)
    encoder = make_encoder(config.encoder)
    docs = open_corpus(corpus)
    start = time.perf_counter()
    # transformer encoders are slow enough to make a crash expensive: their writes can resume
    key = resume_key(config, corpus, docs) if encoder.resumable else None
    with VectorWriter(out, config.encoder.shard_docs, config.index.store_docs, overwrite, key) as writer:
        encode_documents(encoder, docs, writer, progress)
        meta = finish_vectors(config, encoder, corpus, docs, writer, start, progress)
    logger.info(
        "encoded %d docs from %s into %s (%.1fs)", meta["n_docs"], corpus, out, meta["encode_seconds"]
    )
    return meta


def finish_vectors(
    config: Config,
    encoder: CorpusEncoder,
    corpus: Corpus,
    docs: Iterable[Doc],
    writer: VectorWriter,
    start: float,
    progress: bool = False,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The end of every encode of a corpus (here and lsr.ray_encode), once ``writer`` holds every row:
    the statistics pass, the encoder's finish, the meta (``extra`` sections added); return the meta."""
    _finish(encoder, corpus_statistics(encoder, docs, writer), writer, progress)
    sections = _sections(config, encoder.describe(), _source_name(corpus, docs))
    sections["encode_seconds"] = round(time.perf_counter() - start, 3)
    return writer.finish(encoder.vocab, {**sections, **(extra or {})})


def _source_name(corpus: Corpus, docs: Iterable[Doc]) -> str:
    """The corpus as the meta records it: the path or id given, or what opened documents call themselves."""
    return str(corpus) if isinstance(corpus, (str, Path, CorpusSource)) else getattr(docs, "name", "<memory>")


def corpus_statistics(
    encoder: CorpusEncoder, docs: Iterable[Doc], writer: VectorWriter
) -> CorpusStats | None:
    """The statistics pass, over what ``encoder.stats_from`` names; None if it needs none.

    Raises:
        ValueError: the corpus gave another number of documents the second time it was read.
    """
    if encoder.stats_from == "vectors":
        return encoder.statistics(writer.batches())
    if encoder.stats_from != "texts":
        return None
    stats = encoder.statistics(doc.contents for doc in docs)  # open_corpus makes a corpus re-iterable
    if stats.n_docs != writer.n_docs:
        raise ValueError(
            f"the statistics pass read {stats.n_docs} documents, the encoding pass {writer.n_docs}: "
            f"the {encoder.name} encoder needs a corpus that can be read twice"
        )
    return stats


def _finish(encoder: CorpusEncoder, stats: CorpusStats | None, writer: VectorWriter, progress: bool) -> None:
    done = encoder.finish(stats)
    if done.reweight is not None:
        writer.rewrite_shards(done.reweight, progress)
    for name, data in done.files.items():
        writer.add_file(name, data)


def _encode_to_jsonl(
    config: Config, corpus: Corpus, out: Path, overwrite: bool, progress: bool
) -> dict[str, Any]:
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    tmp = out.parent / f".{out.name}.vectors"  # a fixed name, so a crashed encode can resume
    try:
        meta = encode_corpus(config, corpus, tmp, "npy", overwrite=True, progress=progress)
        vectors = Vectors(tmp)
        write_sparse_jsonl(out, vectors.iter_ids(), vectors.batches(), vectors.vocab(), overwrite=overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return meta


def import_sparse_jsonl(config: Config, path: str | Path, out: str | Path, progress: bool = False) -> dict:
    """Turn a sparse-vector JSONL file into a vectors directory (vocabulary from the file's terms)."""
    vocab: dict[str, int] = {}
    with VectorWriter(out, config.encoder.shard_docs, config.index.store_docs) as writer:
        rows = iter_sparse_rows(path, vocab)
        for doc_id, ids, weights, contents in tqdm(rows, desc="import", unit="doc", disable=not progress):
            writer.add(doc_id, ids, weights, "", contents)
        return writer.finish(list(vocab), _sections(config, {"name": "external"}, str(path)))


def import_ciff(config: Config, path: str | Path, out: str | Path, progress: bool = False) -> dict:
    """A CIFF file (PISA, Anserini, ``lsr export``) as a vectors directory: tfs become the weights."""
    from lsr.ciff import ciff_rows, read_ciff

    ciff = read_ciff(path)
    with VectorWriter(out, config.encoder.shard_docs, config.index.store_docs) as writer:
        for doc_id, terms, weights in tqdm(ciff_rows(ciff), desc="ciff", unit="doc", disable=not progress):
            writer.add(doc_id, terms, weights, "", "")
        return writer.finish(ciff.terms, _sections(config, {"name": "external"}, str(path)))


def build_index_from_ciff(
    config: Config, path: str | Path, out: str | Path, overwrite: bool = False, progress: bool = False
) -> dict[str, Any]:
    """Build an index from a CIFF file (through a hidden vectors directory)."""
    tmp = Path(out).parent / f".{Path(out).name}.ciff-{uuid.uuid4().hex[:8]}"
    try:
        import_ciff(config, path, tmp, progress)
        return build_index_from_vectors(config, tmp, out, overwrite, progress)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@reports_disk_full
def build_index_from_vectors(
    config: Config, vectors_path: str | Path, out: str | Path, overwrite: bool = False, progress: bool = False
) -> dict[str, Any]:
    """Build an index from a vectors directory or a sparse-vector JSONL file."""
    vectors_path = Path(vectors_path)
    if vectors_path.is_file():
        if not is_sparse_jsonl(vectors_path):
            raise ValueError(f'{vectors_path} is not sparse-vector JSONL ({{"id", "vector": {{...}}}})')
        tmp = Path(out).parent / f".{Path(out).name}.import-{uuid.uuid4().hex[:8]}"
        try:
            import_sparse_jsonl(config, vectors_path, tmp, progress)
            return build_index_from_vectors(config, tmp, out, overwrite, progress)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    vectors = Vectors(vectors_path)
    _warn_flattening(vectors, index_build_options(config).impact_dtype)
    sections = index_sections(config, vectors)
    # files the query side needs (an inference-free tokenizer and weight table) travel with the index
    encoder_files = {name: vectors.path / name for name in vectors.meta.get("files", [])}
    start = time.perf_counter()
    meta = build_index(
        lambda: tqdm(
            vectors.batches(),
            total=len(vectors.meta["shards"]),
            desc="index",
            unit="shard",
            disable=not progress,
        ),
        vectors.n_terms,
        vectors.ids_path,
        vectors.vocab_path,
        out,
        index_build_options(config),
        sections=sections,
        extra_files={
            **(DocStoreWriter.files(vectors.path) if config.index.store_docs else {}),
            **encoder_files,
        },
        overwrite=overwrite,
    )
    logger.info("index built in %.1fs", time.perf_counter() - start)
    return meta


def index_sections(config: Config, vectors: Vectors) -> dict[str, Any]:
    """The meta sections an index built from ``vectors`` carries: the encoder's, the source, the
    resolved configs of the index and of the vectors."""
    vm = vectors.meta
    keys = ("lsr_version", "encoder", "source", "encode_seconds")
    sections: dict[str, Any] = {key: vm[key] for key in keys if key in vm}
    sections.update(config=to_dict(config), config_hash=config_hash(config), vectors_config=vm.get("config"))
    return sections


def _warn_flattening(vectors: Vectors, impact_dtype: str) -> None:
    """Log the outlier weight that would flatten a quantized index (lsr.weights)."""
    if flattening_warning(vectors.batches(), impact_dtype) is not None:
        ids = list(vectors.iter_ids())
        logger.warning("%s", flattening_warning(vectors.batches(), impact_dtype, ids, vectors.vocab()))


def index_build_options(config: Config) -> BuildOptions:
    """The index build options of ``config``."""
    cfg = config.index
    return BuildOptions(
        impact_dtype=resolved_impact_dtype(cfg.impact_dtype),
        reorder=cfg.reorder,
        bp_iterations=cfg.bp_iterations,
        block_size=cfg.block_size if cfg.blockmax else None,
        fields=dict(cfg.fields) or None,
        forward=cfg.rescore,
        approx_lists=cfg.approx_lists,
    )


@reports_disk_full
def index_corpus(
    config: Config, corpus: Corpus, out: str | Path, overwrite: bool = False, progress: bool = False
) -> dict[str, Any]:
    """Encode and index in one go; the intermediate vectors live in a hidden temporary directory."""
    return encode_then_build(
        config,
        corpus,
        out,
        overwrite,
        progress,
        lambda vectors: build_index_from_vectors(config, vectors, out, overwrite, progress),
    )


def encode_then_build(
    config: Config,
    corpus: Corpus,
    out: str | Path,
    overwrite: bool,
    progress: bool,
    build: Callable[[Path], dict[str, Any]],
) -> dict[str, Any]:
    """Encode ``corpus`` into a hidden vectors directory beside ``out``, then ``build(vectors)`` (an
    index, or shards); the vectors are removed afterwards. A fixed name, so a crashed encode resumes."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    tmp = out.parent / f".{out.name}.vectors"
    try:
        encode_corpus(config, corpus, tmp, overwrite=True, progress=progress)
        return build(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
