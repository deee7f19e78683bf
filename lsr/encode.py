"""The encode loop: a corpus through an encoder into the vector store, resumable after a crash.

Documents are read ``encoder.read_ahead`` at a time and handed to the encoder together
(a transformer encoder sorts them by length into batches), then written in corpus
order, so memory stays bounded and the output order never depends on batching. A resumed
:class:`~lsr.vectors.VectorWriter` already holds the first ``writer.n_docs``
documents: they are skipped here, after checking that the corpus still has the
last written id at that position.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from itertools import islice
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from lsr.config import Config, to_dict
from lsr.data.corpus import CORPUS_NAMES, Doc, corpus_file, find_file
from lsr.encoders.base import CorpusEncoder
from lsr.encoders.hf import clean_text
from lsr.errors import DataFormatError
from lsr.vectors import VectorWriter, partial_dir

logger = logging.getLogger(__name__)

# transformer settings that change speed or memory but never the vectors
_RUNTIME_ONLY = ("batch_tokens", "sort_docs", "threads", "actors_per_gpu")


def resume_key(config: Config, corpus: object, docs: object = None) -> str | None:
    """What an interrupted encode must share with this one to be resumed: the encoder config,
    the docstore setting, and the corpus (``corpus`` as given, ``docs`` as opened): path, size and
    mtime of its local file, else its spec (an ``ir_datasets`` id). None for a corpus that can not be
    named again (stdin, documents in memory): no resume."""
    encoder = to_dict(config.encoder)
    for key in _RUNTIME_ONLY:
        encoder["transformer"].pop(key, None)
    file = corpus_file(docs)
    if file is None and isinstance(corpus, (str, Path)):
        path = Path(corpus)
        file = find_file(path, CORPUS_NAMES) if path.is_dir() else (path if path.is_file() else None)
    if file is None and str(getattr(docs, "name", "")).startswith("<"):  # <stdin>, <memory>
        return None
    source: dict[str, Any] = {"spec": str(corpus)}
    if file is not None:
        stat = file.stat()
        source = {"path": str(file.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    blob = json.dumps(
        {"encoder": encoder, "store_docs": config.index.store_docs, "corpus": source}, sort_keys=True
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def encode_documents(
    encoder: CorpusEncoder, docs: Iterable[Doc], writer: VectorWriter, progress: bool = False
) -> int:
    """Encode ``docs`` (title and text, joined) into ``writer``; return how many were encoded now.

    Raises:
        DataFormatError: a resumed encode finds another document id where it stopped.
    """
    remaining = iter(docs)
    _skip_written(remaining, writer)
    encoded = 0
    desc = f"{encoder.name}: encode"
    with tqdm(initial=writer.n_docs, desc=desc, unit="doc", disable=not progress) as bar:
        while buffer := list(islice(remaining, encoder.read_ahead)):
            batch = encoder.encode([doc.contents for doc in buffer])
            for i, doc in enumerate(buffer):  # lone surrogates (JSON escapes of bad bytes) cannot be stored
                writer.add(doc.id, *batch.row(i), clean_text(doc.title), clean_text(doc.text), doc.metadata)
            encoded += len(buffer)
            bar.update(len(buffer))
    return encoded


def _skip_written(docs: Iterable[Doc], writer: VectorWriter) -> None:
    if not writer.n_docs:
        return
    last = None
    for doc in islice(docs, writer.n_docs):
        last = doc
    if last is None or last.id != writer.last_id:
        found = "the corpus ends before it" if last is None else f"found {last.id!r}"
        raise DataFormatError(
            f"cannot resume: the interrupted encode stopped after doc {writer.n_docs} ({writer.last_id!r}), "
            f"but {found}; delete {partial_dir(writer.out)} to start over"
        )
    logger.info("skipped the %d documents encoded before the interruption", writer.n_docs)
