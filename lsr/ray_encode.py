"""Distributed encoding on a Ray cluster (``lsr encode ... --ray [ADDRESS]``; the ``ray`` extra).

The corpus is cut into blocks of ``encoder.shard_docs`` documents, the unit the single-process encode
writes and resumes at. Ray Data feeds the blocks still to do to a pool of encoder actors (one per GPU
when the cluster has GPUs, else one per CPU; each builds the encoder from the config, so batch size,
device and dtype are the config's). An actor writes its block's CSR arrays into
``.OUT.ray-blocks/block-NNNNN/`` (a temporary folder renamed into place: a block is there whole or
not at all). The driver then writes the ``lsr-vectors`` directory through the one
:class:`~lsr.vectors.VectorWriter` (ids and docstore from the corpus, the rows from the blocks) and
runs the encoder's statistics pass and finish, as :func:`lsr.pipeline.encode_corpus` does.

Resume: the blocks folder carries the resume key (encoder config and corpus file, as
:func:`lsr.encode.resume_key`); a run with the same key encodes only the blocks that are not there,
so a crashed driver or worker loses at most the blocks in flight, and nothing is duplicated (a block
is one folder per position). A restarted actor (Ray restarts them) redoes only its own block.

BM25 is refused: its vocabulary grows while it encodes (one per process) and its cost is the
analysis, which one process does at thousands of documents per second. A uniCOIL of word terms
(:mod:`lsr.encoders.words`) is refused for the same growing vocabulary.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from lsr.config import Config, EncoderConfig, from_dict, to_dict
from lsr.data.corpus import Doc, open_corpus
from lsr.encode import resume_key
from lsr.encoders import encoder_kind, make_encoder
from lsr.encoders.hf import clean_text
from lsr.encoders.unicoil import writes_words
from lsr.encoders.words import TERMS_FILE
from lsr.errors import LsrError
from lsr.index.sparse import SparseBatch
from lsr.pipeline import Corpus, finish_vectors
from lsr.vectors import VectorWriter, load_shard, save_shard

logger = logging.getLogger(__name__)

KEY_FILE = "key.json"
CONNECT_TIMEOUT_S = 3.0


def blocks_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.ray-blocks"


def block_name(i: int) -> str:
    return f"block-{i:05d}"


def connect(address: str | None) -> Any:
    """``ray`` connected to the cluster at ``address`` (None or "local": a local Ray started here).

    Raises:
        LsrError: ray is not installed, or nothing answers at ``address`` within a few seconds.
    """
    try:
        import ray
    except ImportError as exc:
        raise LsrError(
            f"--ray needs the ray extra ({exc.name} is missing): pip install -e '.[ray]'"
        ) from None
    if ray.is_initialized():
        return ray
    if address in (None, "", "local"):
        ray.init(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
        return ray
    check_reachable(address)
    ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    return ray


def check_reachable(address: str) -> None:
    """Fail fast, naming ``address``, when no Ray head listens there (ray.init would retry for a minute).

    Raises:
        LsrError: a malformed address, or one that refuses or times out.
    """
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise LsrError(f"Ray cluster address {address!r} must be HOST:PORT (e.g. 127.0.0.1:6379)")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise LsrError(
            f"the Ray cluster at {address} does not answer ({exc}); start it with "
            f"`ray start --head --port {port}` or check the address"
        ) from None


def encode_corpus_ray(
    config: Config,
    corpus: Corpus,
    out: str | Path,
    address: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Encode ``corpus`` on the Ray cluster at ``address`` into a vectors directory (the same one
    :func:`lsr.pipeline.encode_corpus` writes); return its meta, with ``ray`` = {blocks, encoded now,
    actors}.

    Raises:
        LsrError: BM25 or a uniCOIL of word terms, a corpus that cannot be named again (no resume), ray
            missing or unreachable.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    if not encoder_kind(config.encoder.name).model:
        raise LsrError(
            f"--ray encodes with the transformer encoders; encode {config.encoder.name} in one process"
        )
    if writes_words(config.encoder):
        raise LsrError(
            f"--ray: the uniCOIL at {config.encoder.model} writes word terms ({TERMS_FILE}), a vocabulary "
            "that grows while it encodes (one per process); encode it in one process (without --ray)"
        )
    ray = connect(address)  # before the model loads: a wrong address fails in seconds
    encoder = make_encoder(config.encoder)
    docs = open_corpus(corpus)
    key = resume_key(config, corpus, docs)
    if key is None:
        raise LsrError("--ray needs a corpus it can read again (a file or folder, not stdin)")
    start = time.perf_counter()
    work = open_blocks(blocks_dir(out), key)
    todo = _pending(docs, config.encoder.shard_docs, work)
    actors = _encode_blocks(ray, config.encoder, todo, work) if todo else 0
    with VectorWriter(out, config.encoder.shard_docs, config.index.store_docs, overwrite) as writer:
        n_blocks = _assemble(docs, config.encoder.shard_docs, work, writer)
        ray_section = {"ray": {"blocks": n_blocks, "encoded": len(todo), "actors": actors}}
        meta = finish_vectors(config, encoder, corpus, docs, writer, start, extra=ray_section)
    shutil.rmtree(work, ignore_errors=True)
    return meta


def open_blocks(work: Path, key: str) -> Path:
    """The blocks folder of this encode: kept when its key matches (resume), else started afresh."""
    record = work / KEY_FILE
    if record.is_file() and json.loads(record.read_text(encoding="utf-8")).get("key") == key:
        logger.info("resuming the Ray encode in %s", work)
        return work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    record.write_text(json.dumps({"key": key}), encoding="utf-8")
    return work


def corpus_blocks(docs: Iterable[Doc], block_docs: int) -> Iterator[tuple[int, list[Doc]]]:
    """The corpus in blocks of ``block_docs`` documents, numbered from 0."""
    it = iter(docs)
    i = 0
    while block := list(islice(it, block_docs)):
        yield i, block
        i += 1


def _pending(docs: Iterable[Doc], block_docs: int, work: Path) -> list[tuple[int, list[str]]]:
    """(block, texts) of the blocks not written yet."""
    return [
        (i, [doc.contents for doc in block])
        for i, block in corpus_blocks(docs, block_docs)
        if not (work / block_name(i)).is_dir()
    ]


def _encode_blocks(ray: Any, encoder: EncoderConfig, todo: list[tuple[int, list[str]]], work: Path) -> int:
    """Run the pending blocks through Ray Data's actor pool; return the number of actors."""
    import ray.data
    from ray.data import ActorPoolStrategy

    ray.data.DataContext.get_current().enable_progress_bars = False
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    per_gpu = encoder.transformer.actors_per_gpu
    actors = max(1, min(len(todo), gpus * per_gpu or int(resources.get("CPU", 1))))
    items = [{"block": i, "texts": json.dumps(texts)} for i, texts in todo]
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    done = ds.map_batches(
        BlockEncoder,
        fn_constructor_kwargs={"encoder": to_dict(encoder), "work": str(work)},
        batch_size=1,
        compute=ActorPoolStrategy(size=actors),
        num_gpus=1 / per_gpu if gpus else 0,
        num_cpus=0 if gpus else 1,
    )
    n = sum(int(row["n_docs"]) for row in done.iter_rows())
    logger.info("encoded %d documents in %d blocks on %d actors", n, len(todo), actors)
    return actors


class BlockEncoder:
    """A Ray Data actor: builds the encoder once, encodes whole blocks and writes them atomically."""

    def __init__(self, encoder: dict[str, Any], work: str):
        self.encoder = make_encoder(from_dict(EncoderConfig, encoder, "encoder"))
        self.work = Path(work)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        n_docs = []
        for block, texts in zip(batch["block"], batch["texts"], strict=True):
            texts = json.loads(texts)
            vectors = self.encoder.encode(texts)
            write_block(self.work, int(block), vectors)
            n_docs.append(len(texts))
        return {"block": np.asarray(batch["block"]), "n_docs": np.asarray(n_docs)}


def write_block(work: Path, i: int, vectors: SparseBatch) -> None:
    """One block's CSR arrays, published by a rename (a block exists whole or not at all)."""
    final = work / block_name(i)
    tmp = work / f".{block_name(i)}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    save_shard(tmp, "rows", vectors)
    for path in tmp.iterdir():
        with open(path, "rb") as f:
            os.fsync(f.fileno())
    os.replace(tmp, final)


def _assemble(docs: Iterable[Doc], block_docs: int, work: Path, writer: VectorWriter) -> int:
    """Every block's rows, with ids and docstore from the corpus, into ``writer`` in corpus order."""
    n = 0
    for i, block in corpus_blocks(docs, block_docs):
        where = work / block_name(i)
        if not where.is_dir():
            raise LsrError(f"{where} is missing: the Ray encode did not finish block {i}; run it again")
        rows = load_shard(where, "rows", mmap=False)
        if len(rows) != len(block):
            raise LsrError(f"{where} holds {len(rows)} rows for {len(block)} documents; delete {work}")
        for j, doc in enumerate(block):
            writer.add(doc.id, *rows.row(j), clean_text(doc.title), clean_text(doc.text), doc.metadata)
        n += 1
    return n
