"""Qrels (BEIR TSV or TREC) and runs (TREC six-column format)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from lsr.data.jsonl import open_text
from lsr.errors import DataFormatError

Qrels = dict[str, dict[str, int]]
Run = dict[str, dict[str, float]]


def read_qrels(path: str | Path) -> Qrels:
    """Read qrels as ``{query_id: {doc_id: grade}}``.

    Accepts BEIR's ``query-id<TAB>corpus-id<TAB>score`` (header optional) and
    TREC's ``qid iter docid grade``.
    """
    qrels: Qrels = {}
    for line_no, parts in _fields(path):
        if line_no == 1 and parts[0] in {"query-id", "qid", "query_id"}:
            continue
        if len(parts) == 3:
            qid, doc_id, grade = parts
        elif len(parts) == 4:
            qid, _, doc_id, grade = parts
        else:
            raise DataFormatError(f"{path}:{line_no}: expected 3 (BEIR) or 4 (TREC) columns")
        try:
            qrels.setdefault(qid, {})[doc_id] = int(float(grade))
        except (ValueError, OverflowError):  # OverflowError: int(float("inf"))
            raise DataFormatError(f"{path}:{line_no}: grade {grade!r} is not a number") from None
    return qrels


def _fields(path: str | Path) -> Iterator[tuple[int, list[str]]]:
    """``(line_number, whitespace-separated fields)`` of each non-blank line."""
    with open_text(path) as f:
        for line_no, line in enumerate(f, start=1):
            parts = line.split()
            if parts:
                yield line_no, parts


def read_run(path: str | Path) -> Run:
    """Read a TREC run ``qid Q0 docid rank score tag`` as ``{qid: {docid: score}}``."""
    run: Run = {}
    for line_no, parts in _fields(path):
        if len(parts) != 6:
            raise DataFormatError(f"{path}:{line_no}: expected 6 columns, got {len(parts)}")
        try:
            run.setdefault(parts[0], {})[parts[2]] = float(parts[4])
        except ValueError:
            raise DataFormatError(f"{path}:{line_no}: score {parts[4]!r} is not a number") from None
    return run


def write_run(run: Mapping[str, Mapping[str, float]], path: str | Path, tag: str = "lsr") -> None:
    """Write a TREC run, each query's documents by descending score.

    The sort is stable, so tied documents keep the order the searcher gave them
    (ascending internal doc id), and the ranks match ``lsr search`` exactly.

    Written to a temporary file and renamed, so a crash never leaves a partial run.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for qid, docs in run.items():
                ranked = sorted(docs.items(), key=lambda kv: -kv[1])
                for rank, (doc_id, score) in enumerate(ranked, start=1):
                    f.write(f"{qid} Q0 {doc_id} {rank} {score:.6f} {tag}\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
