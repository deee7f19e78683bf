"""Distributed encoding on a Ray cluster (``lsr encode ... --ray [ADDRESS]``; the ``ray`` extra).

The corpus is cut into blocks of ``encoder.shard_docs`` documents, the unit the single-process encode
writes and resumes at. One Ray Data pipeline, streaming, a corpus block per Ray block:

1. read: one task on the driver's node (the corpus is a path there) reads the corpus and emits the
   blocks still to do, their texts, as it goes (the driver never holds the texts of the corpus);
2. tokenize: CPU tasks (``num_cpus=1``, one tokenizer thread each; on a cluster without GPUs, whose
   CPUs the actors hold, none reserved and at most one task per actor) turn a block's texts into the
   encoder's :class:`~lsr.encoders.transformer.Tokens` with the encoder's own
   :class:`~lsr.encoders.transformer.TextTokenizer` (truncation, windows);
3. encode: a pool of encoder actors (``encoder.transformer.actors_per_gpu`` per GPU when the cluster
   has GPUs, else one per CPU; each builds the encoder from the config, so batch size, device and
   dtype are the config's) runs the model on the tokens
   (:meth:`~lsr.encoders.transformer.TransformerEncoder.encode_tokens`: length-sorted batches, the
   sparse rows) and writes the block's CSR arrays into ``.OUT.ray-blocks/block-NNNNN/`` (a temporary
   folder renamed into place: a block is there whole or not at all).

The driver writes the ``lsr-vectors`` directory through the one :class:`~lsr.vectors.VectorWriter`
while the stage runs: it reads the corpus again in order (ids and docstore) and writes each block as
soon as the block and every block before it are there (blocks finish in any order); then it runs the
encoder's statistics pass and finish, as :func:`lsr.pipeline.encode_corpus` does.

Resume: the blocks folder carries the resume key (encoder config and corpus file, as
:func:`lsr.encode.resume_key`); a run with the same key encodes only the blocks that are not there,
so a crashed driver or worker loses at most the blocks in flight, and nothing is duplicated (a block
is one folder per position); when every block is there, no actor starts. A restarted actor (Ray
restarts them) redoes only its own block.

BM25 is refused: its vocabulary grows while it encodes (one per process) and its cost is the
analysis, which one process does at thousands of documents per second. A uniCOIL or SPLADE of word terms
(:mod:`lsr.encoders.words`, also as ``inference-free``) and ``bm25+MODEL`` are refused for the same
growing vocabulary. A SPLADE whose documents saturate tf (``lsr_doc.json``) runs: the CPU workers'
tokens carry each text's token counts (``Tokens.counts``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from lsr.config import Config, EncoderConfig, from_dict, to_dict
from lsr.data.corpus import Doc, open_corpus
from lsr.data.formats import CorpusSource
from lsr.encode import resume_key
from lsr.encoders import encoder_kind, make_encoder
from lsr.encoders.hf import clean_text
from lsr.encoders.transformer import TextTokenizer, Tokens, TransformerEncoder
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
    actors (0: every block was there), stage_seconds (from the stage's start to its last block)}.

    Raises:
        LsrError: BM25, a vocabulary that grows while it encodes (word terms, ``bm25+MODEL``), a corpus
            that cannot be named again (no resume), ray missing or unreachable.
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
            f"--ray: the model at {config.encoder.model} writes word terms ({TERMS_FILE}), a vocabulary "
            "that grows while it encodes (one per process); encode it in one process (without --ray)"
        )
    ray = connect(address)  # before the model loads: a wrong address fails in seconds
    encoder = driver_encoder(config.encoder)
    if not isinstance(encoder, TransformerEncoder) or not encoder.resumable:
        raise LsrError(
            f"--ray: the {encoder.name} encoder's vocabulary grows while it encodes (one per process); "
            "encode it in one process (without --ray)"
        )
    docs = open_corpus(corpus)
    key = resume_key(config, corpus, docs)
    if key is None:
        raise LsrError("--ray needs a corpus it can read again (a file or folder, not stdin)")
    start = time.perf_counter()
    work = open_blocks(blocks_dir(out), key)
    stage = EncodeStage(ray, config.encoder, reader_corpus(corpus, docs), work, encoder.text_tokenizer)
    with VectorWriter(out, config.encoder.shard_docs, config.index.store_docs, overwrite) as writer:
        n_blocks = write_blocks(docs, config.encoder.shard_docs, work, writer, stage.wait)
        stage.finish()
        ray_section = {
            "ray": {
                "blocks": n_blocks,
                "encoded": stage.encoded,
                "actors": stage.actors,
                "stage_seconds": round(stage.seconds, 3),
            }
        }
        meta = finish_vectors(config, encoder, corpus, docs, writer, start, extra=ray_section)
    shutil.rmtree(work, ignore_errors=True)
    return meta


def driver_encoder(cfg: EncoderConfig) -> Any:
    """The driver's copy of the encoder, on the CPU: it encodes nothing (it checks the model folder,
    gives the CPU workers their tokenizer and writes the meta), so it neither waits for a GPU's start
    (seconds) nor holds GPU memory the actors need; it describes the device the config names."""
    transformer = dataclasses.replace(cfg.transformer, device="cpu")
    encoder = make_encoder(dataclasses.replace(cfg, transformer=transformer))
    if isinstance(encoder, TransformerEncoder):
        ran = encoder.cfg.transformer
        encoder.cfg = dataclasses.replace(
            encoder.cfg, transformer=dataclasses.replace(ran, device=cfg.transformer.device)
        )
    return encoder


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


def finished_blocks(work: Path) -> set[int]:
    """The blocks in ``work`` (written whole: a block folder appears by a rename)."""
    return {int(p.name.removeprefix("block-")) for p in work.glob("block-*") if p.is_dir()}


def corpus_blocks(docs: Iterable[Doc], block_docs: int) -> Iterator[tuple[int, list[Doc]]]:
    """The corpus in blocks of ``block_docs`` documents, numbered from 0."""
    it = iter(docs)
    i = 0
    while block := list(islice(it, block_docs)):
        yield i, block
        i += 1


def reader_corpus(corpus: Corpus, docs: Iterable[Doc]) -> Corpus:
    """``corpus`` as a Ray task on this node opens it again, whatever its working directory: a local
    path made absolute; an ``ir_datasets`` id as it is; documents already open as they are."""
    if isinstance(corpus, CorpusSource):
        path = Path(corpus.spec)
        return dataclasses.replace(corpus, spec=str(path.resolve())) if path.exists() else corpus
    if isinstance(corpus, (str, Path)):
        return Path(corpus).resolve() if Path(corpus).exists() else corpus
    return docs


class EncodeStage:
    """The Ray Data pipeline (read, tokenize, encode) of the blocks not in ``work``; it starts when
    :meth:`wait` is first called, so a resumed encode whose blocks are all there starts no actor."""

    def __init__(
        self, ray: Any, encoder: EncoderConfig, corpus: Corpus, work: Path, tokenizer: TextTokenizer
    ):
        self.ray = ray
        self.encoder = encoder
        self.corpus = corpus
        self.work = work
        self.tokenizer = tokenizer
        self.results: Iterator[dict[str, Any]] | None = None
        self.actors = 0
        self.encoded = 0
        self.n_docs = 0
        self.started = 0.0
        self.seconds = 0.0  # from the start to the last block written

    def wait(self) -> bool:
        """Wait until one more block is written; False when the stage has no block left."""
        if self.results is None:
            self.results = self._start()
        row = next(self.results, None)
        if row is None:
            return False
        self.encoded += 1
        self.n_docs += int(row["n_docs"])
        self.seconds = time.perf_counter() - self.started
        return True

    def finish(self) -> None:
        """Let a started stage run out (every block is written by now)."""
        if self.results is not None:
            while self.wait():
                pass
            logger.info(
                "encoded %d documents in %d blocks on %d actors", self.n_docs, self.encoded, self.actors
            )

    def _start(self) -> Iterator[dict[str, Any]]:
        import ray.data
        from ray.data import ActorPoolStrategy, TaskPoolStrategy

        self.started = time.perf_counter()
        resources = self.ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        per_gpu = self.encoder.transformer.actors_per_gpu
        self.actors = max(1, gpus * per_gpu or int(resources.get("CPU", 1)))
        here = self.ray.get_runtime_context().get_node_id()
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        default_block_size = context.target_max_block_size
        # a dataset keeps the context it was made with: each block of the corpus its own Ray block (the
        # default merges what a task emits up to 128 MB, and a tokenizing task would get several)
        context.target_max_block_size = 1
        try:
            done = finished_blocks(self.work)
            read = partial(read_blocks, corpus=self.corpus, block_docs=self.encoder.shard_docs, done=done)
            ds = ray.data.from_items([{"corpus": 0}]).map_batches(
                read, batch_size=1, num_cpus=0, label_selector={"ray.io/node-id": here}
            )
            ds = ds.map_batches(
                partial(tokenize_blocks, tokenizer=self.tokenizer),
                batch_size=1,
                num_cpus=1 if gpus else 0,
                compute=None if gpus else TaskPoolStrategy(size=self.actors),
            )
            ds = ds.map_batches(
                BlockEncoder,
                fn_constructor_kwargs={"encoder": to_dict(self.encoder), "work": str(self.work)},
                batch_size=1,
                compute=ActorPoolStrategy(size=self.actors),
                num_gpus=1 / per_gpu if gpus else 0,
                num_cpus=0 if gpus else 1,
            )
        finally:
            context.target_max_block_size = default_block_size
        return iter(ds.iter_rows())


def read_blocks(
    batch: dict[str, Any], corpus: Corpus, block_docs: int, done: set[int]
) -> Iterator[dict[str, Any]]:
    """The stage's source (one task): each block of ``corpus`` not in ``done``, its number and its
    texts (one JSON string: a text may hold lone surrogates, which Arrow strings refuse).

    A corpus it cannot read on stops it there, the blocks before emitted: the driver reads the same
    corpus in order and raises that error itself when it gets there, as ``lsr encode`` would."""
    try:
        for i, block in corpus_blocks(open_corpus(corpus), block_docs):
            if i not in done:
                texts = json.dumps([doc.contents for doc in block])
                yield {"block": np.asarray([i]), "texts": np.asarray([texts], dtype=object)}
    except Exception as exc:  # the driver's own read of the corpus raises it
        logger.warning("the Ray encode's reader stopped: %s", exc)


def tokenize_blocks(batch: dict[str, Any], tokenizer: TextTokenizer) -> dict[str, Any]:
    """A CPU task: each block's texts into the encoder's tokens (:meth:`Tokens.to_bytes`), on one
    thread, as ``num_cpus=1`` says (the Rust tokenizer would use every core; it reads this variable at
    each call, and a ``runtime_env`` would start workers of their own, seconds each)."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    tokens = [tokenizer(json.loads(texts)).to_bytes() for texts in batch["texts"]]
    return {"block": np.asarray(batch["block"]), "tokens": np.asarray(tokens, dtype=object)}


class BlockEncoder:
    """A Ray Data actor: builds the encoder once, encodes whole blocks of tokens and writes them
    atomically."""

    def __init__(self, encoder: dict[str, Any], work: str):
        built = make_encoder(from_dict(EncoderConfig, encoder, "encoder"))
        assert isinstance(built, TransformerEncoder)  # encode_corpus_ray refused the others
        self.encoder = built
        self.work = Path(work)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        n_docs = []
        for block, data in zip(batch["block"], batch["tokens"], strict=True):
            vectors = self.encoder.encode_tokens(Tokens.from_bytes(data))
            write_block(self.work, int(block), vectors)
            n_docs.append(len(vectors))
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


def write_blocks(
    docs: Iterable[Doc], block_docs: int, work: Path, writer: VectorWriter, wait: Callable[[], bool]
) -> int:
    """Every block's rows, with ids and docstore from the corpus, into ``writer`` in corpus order, each
    as soon as it and every block before it are in ``work``; ``wait()`` blocks until one more block is
    written (False: none will be), and is called only while the next block is missing."""
    n = 0
    for i, block in corpus_blocks(docs, block_docs):
        where = work / block_name(i)
        while not where.is_dir():
            if not wait():
                raise LsrError(f"{where} is missing: the Ray encode did not finish block {i}; run it again")
        rows = load_shard(where, "rows", mmap=False)
        if len(rows) != len(block):
            raise LsrError(f"{where} holds {len(rows)} rows for {len(block)} documents; delete {work}")
        for j, doc in enumerate(block):
            writer.add(doc.id, *rows.row(j), clean_text(doc.title), clean_text(doc.text), doc.metadata)
        n += 1
    return n
