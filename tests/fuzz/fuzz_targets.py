"""Fuzz targets of every reader: each takes bytes, writes them where the reader looks and reads them.

A target either returns (the input was read) or raises one of :data:`OURS` (our error, with a message);
any other exception is a bug. The CI subset (tests/fuzz/test_fuzz.py) runs them through hypothesis; the
long run (scripts/fuzz_long.py) through :func:`mutate` with a seeded ``random.Random``, faster per input.
Seeds are small valid files; inputs are random bytes or mutations of a seed (bit flips, truncations,
inserted junk, huge numbers, NaN, wrong types, deep nesting, invalid UTF-8).
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lsr.errors import LsrError
from lsr.index.io import ArtifactError

OURS: tuple[type[Exception], ...] = (LsrError, ArtifactError)
REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "tests" / "data" / "beir-tiny"

CORPUS_JSONL = (TINY / "corpus.jsonl").read_bytes()
CORPUS_CSV = b'_id,title,text\nd1,Cats,"The cat, sat."\nd2,,A dog and a cat.\n'
CORPUS_TSV = b"_id\ttitle\ttext\nd1\tCats\tThe cat sat.\nd2\t\tA dog and a cat.\n"
QUERIES_JSONL = (TINY / "queries.jsonl").read_bytes()
QUERIES_TSV = b"q1\tcat on a mat\nq2\tdogs\n"
QRELS = (TINY / "qrels" / "test.tsv").read_bytes() + b"q3 0 d2 1\n"
RUN = b"q1 Q0 d1 1 2.5 lsr\nq1 Q0 d2 2 1.25 lsr\nq2 Q0 d3 1 0.5 lsr\n"
SPARSE = (
    b'{"id": "d1", "vector": {"cat": 1.5, "mat": 0.25}, "contents": "x"}\n'
    b'{"id": "d2", "vector": {"dog": 2}}\n'
    b'{"vector": {"caf\xc3\xa9": 1.25e-1, "dog": 0, "ant": 3E2}, "ok": true, "id": 7, '
    b'"contents": "a\\"b\\u00e9"}\n'
)
CONFIG = (REPO / "configs" / "bm25.yaml").read_bytes() + b"search:\n  k: 10\nservice:\n  port: 8080\n"
OVERRIDE = b"search.k=100"

# tokens that parsers treat specially: the mutator splices them in
JUNK = [
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"1e999",
    b"-1e999",
    b"9" * 400,
    b"-0",
    b"null",
    b"true",
    b"[]",
    b"{}",
    b'""',
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\x00",
    b"\xef\xbb\xbf",
    b"\t",
    b"\n",
    b"\r",
    b",",
    b'"',
    b":",
    b"=",
    b".",
    b"[" * 200,
    b"{" * 200,
    b"[" * 5000,
    b'{"a":' * 3000,
    b"- " * 50,
    b"&a [*a, *a]",
    b"!!python/object:os.system",
    b"\\u0000",
    b"\\ud800",
    b"1" * 30,
    b"0x10",
    b"1_000",
    b"~",
    b"? ",
    b"%",
    b"\x1b",
]


def mutate(seed: bytes, rnd: random.Random) -> bytes:
    """One to four random edits of ``seed`` (or fresh random bytes, one time in eight)."""
    if rnd.random() < 0.125:
        return rnd.randbytes(rnd.randrange(0, 200))
    data = bytearray(seed)
    for _ in range(rnd.randrange(1, 5)):
        data = _EDITS[rnd.randrange(len(_EDITS))](data, rnd)
    return bytes(data)


def _flip(data: bytearray, rnd: random.Random) -> bytearray:
    if data:
        data[rnd.randrange(len(data))] ^= 1 << rnd.randrange(8)
    return data


def _byte(data: bytearray, rnd: random.Random) -> bytearray:
    if data:
        data[rnd.randrange(len(data))] = rnd.randrange(256)
    return data


def _truncate(data: bytearray, rnd: random.Random) -> bytearray:
    return data[: rnd.randrange(len(data) + 1)]


def _delete(data: bytearray, rnd: random.Random) -> bytearray:
    i = rnd.randrange(len(data) + 1)
    del data[i : i + rnd.randrange(1, 16)]
    return data


def _junk(data: bytearray, rnd: random.Random) -> bytearray:
    i = rnd.randrange(len(data) + 1)
    data[i:i] = rnd.choice(JUNK)
    return data


def _replace_token(data: bytearray, rnd: random.Random) -> bytearray:
    """Replace a run of word characters or digits (a value, a key) by a junk token."""
    i = rnd.randrange(len(data) + 1)
    j = i
    while j < len(data) and (chr(data[j]).isalnum() or data[j] in b"._-"):
        j += 1
    data[i : max(j, i + 1)] = rnd.choice(JUNK)
    return data


def _duplicate(data: bytearray, rnd: random.Random) -> bytearray:
    i = rnd.randrange(len(data) + 1)
    j = rnd.randrange(i, len(data) + 1)
    data[j:j] = data[i:j]
    return data


_EDITS: list[Callable[[bytearray, random.Random], bytearray]] = [
    _flip,
    _byte,
    _truncate,
    _delete,
    _junk,
    _junk,
    _replace_token,
    _replace_token,
    _duplicate,
]


JSON_VALUES: list[object] = [
    None,
    True,
    0,
    -1,
    1.5,
    -(2**70),
    2**70,
    10**400,
    float("nan"),
    float("inf"),
    "",
    "x",
    "../../etc",
    [],
    [1, "a"],
    {},
    {"dtype": "int64", "shape": [-1]},
    {"a": {"b": None}},
]


def mutate_json(seed: bytes, rnd: random.Random) -> bytes:
    """A JSON object with one to three fields deleted, retyped, or set to odd values (NaN, huge numbers,
    nesting deep enough to hit the recursion limit); every other time a byte-level :func:`mutate`."""
    if rnd.random() < 0.5:
        return mutate(seed, rnd)
    obj = json.loads(seed)
    for _ in range(rnd.randrange(1, 4)):
        node = obj
        while isinstance(node, dict) and node and rnd.random() < 0.6:
            child = node[rnd.choice(list(node))]
            if not isinstance(child, (dict, list)) or not child:
                break
            node = child if isinstance(child, dict) else {str(i): v for i, v in enumerate(child)}
        if not isinstance(node, dict) or not node:
            continue
        key = rnd.choice(list(node))
        op = rnd.randrange(4)
        if op == 0:
            del node[key]
        elif op == 1:
            node[key] = rnd.choice(JSON_VALUES)
        elif op == 2:
            node[key] = [node[key]] if rnd.random() < 0.5 else {"v": node[key]}
        else:
            deep: object = node[key]
            for _ in range(rnd.choice([10, 5000])):
                deep = [deep]
            node[key] = deep
    try:
        return json.dumps(obj).encode()
    except RecursionError:
        return b"[" * 5000 + b"]" * 5000


@dataclass
class Target:
    """A reader under fuzz: ``run(workdir, data)`` reads ``data``; ``seed`` is a valid input."""

    name: str
    seed: bytes
    run: Callable[[Path, bytes], object]
    mutator: Callable[[bytes, random.Random], bytes] = mutate


def _file(workdir: Path, name: str, data: bytes) -> Path:
    path = workdir / name
    path.write_bytes(data)
    return path


def _corpus(suffix: str) -> Callable[[Path, bytes], object]:
    def run(workdir: Path, data: bytes) -> object:
        from lsr.data.corpus import open_corpus

        return list(open_corpus(_file(workdir, f"corpus.{suffix}", data)))

    return run


def _queries(suffix: str) -> Callable[[Path, bytes], object]:
    def run(workdir: Path, data: bytes) -> object:
        from lsr.data.corpus import load_queries

        return load_queries(_file(workdir, f"queries.{suffix}", data))

    return run


def _qrels(workdir: Path, data: bytes) -> object:
    from lsr.data.trec import read_qrels

    return read_qrels(_file(workdir, "qrels.tsv", data))


def _run(workdir: Path, data: bytes) -> object:
    from lsr.data.trec import read_run

    return read_run(_file(workdir, "run.trec", data))


def _sparse(workdir: Path, data: bytes) -> object:
    """Both readers of sparse JSONL: the validated records, and ``lsr index --vectors``' rows (the byte
    scanner where it reads a chunk); the same records or the same error, else a bug."""
    from lsr.data.sparse_jsonl import is_sparse_jsonl, iter_sparse_jsonl, iter_sparse_rows

    path = _file(workdir, "vectors.jsonl", data)

    def records() -> list:
        return list(iter_sparse_jsonl(path))

    def rows() -> list:
        vocab: dict[str, int] = {}
        out = list(iter_sparse_rows(path, vocab))
        terms = list(vocab)
        return [
            (i, {terms[t]: w for t, w in zip(ts.tolist(), ws.tolist(), strict=True)}, c)
            for i, ts, ws, c in out
        ]

    outcomes = [_outcome(records), _outcome(rows)]
    assert outcomes[0] == outcomes[1], outcomes
    if isinstance(outcomes[0], str):
        raise LsrError(outcomes[0])
    return is_sparse_jsonl(path), outcomes[0]


def _outcome(read: Callable[[], list]) -> list | str:
    try:
        return read()
    except OURS as exc:
        return f"{type(exc).__name__}: {exc}"


def _config(workdir: Path, data: bytes) -> object:
    from lsr.config import load_config

    return load_config(_file(workdir, "config.yaml", data))


def _override(workdir: Path, data: bytes) -> object:
    from lsr.config import load_config

    text = data.decode("utf-8", errors="replace")  # argv is text: what a shell passes to --set
    return load_config(None, [text])


TARGETS: dict[str, Target] = {
    t.name: t
    for t in [
        Target("corpus-jsonl", CORPUS_JSONL, _corpus("jsonl")),
        Target("corpus-csv", CORPUS_CSV, _corpus("csv")),
        Target("corpus-tsv", CORPUS_TSV, _corpus("tsv")),
        Target("queries-jsonl", QUERIES_JSONL, _queries("jsonl")),
        Target("queries-tsv", QUERIES_TSV, _queries("tsv")),
        Target("qrels", QRELS, _qrels),
        Target("trec-run", RUN, _run),
        Target("sparse-jsonl", SPARSE, _sparse),
        Target("config-yaml", CONFIG, _config),
        Target("config-set", OVERRIDE, _override),
    ]
}


# --- meta.json of artifacts: a tiny BM25 index (with block-max data) and a vectors directory ----------


def build_artifacts(root: Path) -> dict[str, Path]:
    """A tiny index (``index/``, block-max data in ``index/blockmax``) and vectors (``vectors/``)."""
    from lsr.config import load_config
    from lsr.pipeline import encode_corpus, index_corpus

    if not (root / "index" / "meta.json").is_file():
        index_corpus(load_config("bm25"), TINY, root / "index", overwrite=True)
    if not (root / "vectors" / "meta.json").is_file():
        encode_corpus(load_config("bm25"), TINY, root / "vectors", overwrite=True)
    return {"index": root / "index", "vectors": root / "vectors"}


def _meta_target(name: str, kind: str, sub: str, opener: Callable[[Path], object]) -> Callable[..., Target]:
    """A target that writes the bytes over ``sub/meta.json`` of a copy of the ``kind`` artifact."""

    def make(artifacts: dict[str, Path], workdir: Path) -> Target:
        copy = workdir / name
        if not copy.exists():
            shutil.copytree(artifacts[kind], copy)
        meta = copy / sub / "meta.json"
        seed = meta.read_bytes()

        def run(_: Path, data: bytes) -> object:
            meta.write_bytes(data)
            try:
                return opener(copy)
            finally:
                meta.write_bytes(seed)

        return Target(name, seed, run, mutate_json)

    return make


def _open_index(path: Path) -> object:
    from lsr.index.search import Index

    index = Index.load(path)
    return index.doc_keys, index.vocab


def _open_vectors(path: Path) -> object:
    from lsr.vectors import Vectors

    vectors = Vectors(path)
    return list(vectors.batches()), vectors.vocab(), list(vectors.iter_ids())


META_TARGETS = [
    _meta_target("meta-index", "index", ".", _open_index),
    _meta_target("meta-blockmax", "index", "blockmax", _open_index),
    _meta_target("meta-vectors", "vectors", ".", _open_vectors),
]


def all_targets(workdir: Path) -> dict[str, Target]:
    """Every target; the artifact ones copy their artifact into ``workdir`` (built there once)."""
    artifacts = build_artifacts(workdir / "artifacts")
    metas = {t.name: t for t in (make(artifacts, workdir) for make in META_TARGETS)}
    return {**TARGETS, **metas}


def check(target: Target, workdir: Path, data: bytes) -> BaseException | None:
    """Run ``target`` on ``data``: None when it read it or raised our error with a message, else the
    exception (a bug)."""
    try:
        target.run(workdir, data)
    except OURS as exc:
        if not str(exc):
            return exc
    except Exception as exc:
        return exc
    return None
