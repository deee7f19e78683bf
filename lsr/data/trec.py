"""Qrels (BEIR TSV or TREC) and runs (TREC six-column format)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from operator import itemgetter
from pathlib import Path

from lsr.data.jsonl import iter_lines
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
    for line_no, line in enumerate(iter_lines(path), start=1):
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


def trec_order(docs: Mapping[str, float]) -> list[tuple[str, float]]:
    """``(doc id, score)`` by descending score, ties by descending doc id: trec_eval's order, which
    ``lsr eval`` ranks by (ties are common with quantized impacts)."""
    items = sorted(docs.items(), key=itemgetter(0), reverse=True)
    items.sort(key=itemgetter(1), reverse=True)  # stable: equal scores keep descending ids
    return items


def run_scores(scores: list[float]) -> list[str]:
    """The score column of a run whose ``scores`` are in rank order (non-increasing): six decimals,
    and where several rank positions print the same, extra digits after the sixth decimal that make
    them strictly decreasing. Tools sort a run by score again and break ties their own way (ranx's
    sort is not even stable); strictly decreasing scores give every tool ``lsr eval``'s order, and
    each written score still reads as the true one to six decimals."""
    text = [f"{s:.6f}" for s in scores]
    out = list(text)
    start = 0
    while start < len(text):
        end = start
        while end + 1 < len(text) and text[end + 1] == text[start]:
            end += 1
        size = end - start + 1
        if size > 1:
            width = len(str(size - 1))
            negative = text[start].startswith("-")
            for i in range(size):  # appended digits lower a negative number: count up instead
                out[start + i] = f"{text[start]}{(i if negative else size - 1 - i):0{width}d}"
        start = end + 1
    return out


RUN_FORMATS = ("trec", "json", "tsv")


def write_run(
    run: Mapping[str, Mapping[str, float]], path: str | Path, tag: str = "lsr", fmt: str = "trec"
) -> None:
    """Write a run, each query's documents in :func:`trec_order`, ties in score made strictly
    decreasing by :func:`run_scores`, so that trec_eval, pytrec_eval, ir_measures, ranx and
    ``lsr eval`` all rank the file the same way (SciFact BM25 with uint8 impacts: ranx read 0.6767
    instead of 0.6775 when ties were written in index order with equal scores).

    Formats: ``trec`` (``qid Q0 docid rank score tag``), ``tsv`` (``qid<TAB>docid<TAB>rank<TAB>score``),
    ``json`` (``{qid: {docid: score}}`` in rank order, as ranx's ``Run.from_file`` reads it). Written to
    a temporary file and renamed, so a crash never leaves a partial run.

    Raises:
        ValueError: an unknown format, or a tag with whitespace.
    """
    if fmt not in RUN_FORMATS:
        raise ValueError(f"run format {fmt!r} is not one of {list(RUN_FORMATS)}")
    if not tag or any(c.isspace() for c in tag):
        raise ValueError(f"run tag {tag!r} must be non-empty without whitespace (a TREC run column)")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            if fmt == "json":  # the written scores as numbers: ties stay apart
                json.dump({q: {d: float(s) for d, s in _ranked(docs)} for q, docs in run.items()}, f)
            else:
                for qid, docs in run.items():
                    f.writelines(_lines(qid, _ranked(docs), tag, fmt))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _lines(qid: str, ranked: list[tuple[str, str]], tag: str, fmt: str) -> Iterator[str]:
    for rank, (doc_id, score) in enumerate(ranked, start=1):
        if fmt == "trec":
            yield f"{qid} Q0 {doc_id} {rank} {score} {tag}\n"
        else:
            yield f"{qid}\t{doc_id}\t{rank}\t{score}\n"


def _ranked(docs: Mapping[str, float]) -> list[tuple[str, str]]:
    """``(doc id, written score)`` in rank order, the score as :func:`run_scores` writes it."""
    ranked = trec_order(docs)
    return list(zip((d for d, _ in ranked), run_scores([s for _, s in ranked]), strict=True))
