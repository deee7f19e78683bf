"""``lsr export`` speed: the CIFF writer (numba) against the pure-Python writer it replaced, in one run,
the other formats, and reading the CIFF file back (``lsr index --ciff``'s reader against the old one), on
an index (default: SciFact with BM25, uint8 impacts, built here).

    python -m benchmarks.export_bench --out benchmarks/results/export-scifact.json [--index DIR] [--repeat 3]
        [--no-reference]

Every row writes the same index; the ``ciff`` rows must give the same bytes (checked, and reported as
``same_bytes``). Times are in-process (no CLI start-up), the best of ``--repeat``, numba compiled before.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from lsr.ciff import CiffHeader, _bytes_field, _delimited, _int_field
from lsr.export import EXPORT_FORMATS, _load, export_index, integer_converter

# the shared data folder, as tests/conftest.py finds it
SHARED_DATA = Path(
    os.environ.get("LSR_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data"
)
SCIFACT = SHARED_DATA / "beir" / "scifact"


def postings_list_reference(term: str, docs: np.ndarray, tfs: np.ndarray) -> bytes:
    """One PostingsList message, a posting at a time in Python (the writer before the numba kernel)."""
    gaps = np.diff(docs, prepend=0).tolist()
    postings = b"".join(
        _bytes_field(4, _int_field(1, gap) + _int_field(2, tf))
        for gap, tf in zip(gaps, tfs.tolist(), strict=True)
    )
    return (
        _bytes_field(1, term.encode("utf-8"))
        + _int_field(2, len(docs))
        + _int_field(3, int(tfs.sum()))
        + postings
    )


def doc_record_reference(docid: int, collection_docid: str, length: int) -> bytes:
    return _int_field(1, docid) + _bytes_field(2, collection_docid.encode("utf-8")) + _int_field(3, length)


def export_ciff_reference(index_dir: Path, out: Path) -> None:
    """The pure-Python CIFF export ``lsr export`` had before (uint impacts as tfs), message by message."""
    index = _load(index_dir)
    tfs = integer_converter(index, None)(index.impacts)
    keep = tfs >= 1
    term_of = np.repeat(np.arange(index.n_terms), np.diff(index.term_ptr))
    per_term = np.bincount(term_of[keep], minlength=index.n_terms)
    doc_ids = np.asarray(index.doc_ids)
    lengths = np.bincount(doc_ids[keep], weights=tfs[keep], minlength=index.n_docs).astype(np.int64)
    header = CiffHeader(
        int((per_term > 0).sum()),
        index.n_docs,
        int(tfs[keep].sum()),
        float(lengths.mean()),
        f"lsr export of {index.path}",
    )
    vocab, keys, ptr = index.vocab, index.doc_keys, index.term_ptr
    with open(out, "wb") as f:
        f.write(_delimited(header.encode()))
        for t in np.flatnonzero(per_term).tolist():
            a, b = int(ptr[t]), int(ptr[t + 1])
            mask = keep[a:b]
            f.write(_delimited(postings_list_reference(vocab[t], doc_ids[a:b][mask], tfs[a:b][mask])))
        for d in range(index.n_docs):
            f.write(_delimited(doc_record_reference(d, keys[d], int(lengths[d]))))


def _varint_at(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields_of(data: bytes) -> dict[int, Any]:
    """A message's fields (the last of each number; postings lists' field 4 as a list)."""
    out: dict[int, Any] = {}
    pos = 0
    while pos < len(data):
        key, pos = _varint_at(data, pos)
        value: Any
        if key & 7 == 0:
            value, pos = _varint_at(data, pos)
        elif key & 7 == 2:
            size, pos = _varint_at(data, pos)
            value, pos = data[pos : pos + size], pos + size
        else:  # fixed64 (the header's average length)
            value, pos = data[pos : pos + 8], pos + 8
        if key >> 3 == 4:
            out.setdefault(4, []).append(value)
        else:
            out[key >> 3] = value
    return out


def read_ciff_reference(path: Path) -> tuple[list[str], list[list[int]], list[list[int]], list[str]]:
    """The message-by-message Python CIFF reader ``lsr index --ciff`` had before: terms, per term docids
    and tfs, collection docids."""
    data = path.read_bytes()
    messages, pos = [], 0
    while pos < len(data):
        size, pos = _varint_at(data, pos)
        messages.append(data[pos : pos + size])
        pos += size
    header = _fields_of(messages[0])
    n_lists = int(header.get(2, 0))
    terms, docs, tfs = [], [], []
    for message in messages[1 : 1 + n_lists]:
        fields = _fields_of(message)
        postings = [_fields_of(p) for p in fields.get(4, [])]
        terms.append(fields.get(1, b"").decode("utf-8"))
        docs.append(np.cumsum([p.get(1, 0) for p in postings]).tolist())
        tfs.append([p.get(2, 0) for p in postings])
    keys = [_fields_of(m).get(2, b"").decode("utf-8") for m in messages[1 + n_lists :]]
    return terms, docs, tfs, keys


def _best(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def run(index: Path, work: Path, repeat: int, reference: bool = True) -> list[dict[str, Any]]:
    """Every writer (and the readers); ``reference=False`` leaves out the old Python writer and reader (too
    slow for large indexes: about 11 us a posting)."""
    rows: list[dict[str, Any]] = []
    ref = work / "reference.ciff"
    if reference:
        seconds = _best(lambda: export_ciff_reference(index, ref), repeat)
        rows.append({"writer": "ciff, pure Python (before)", "seconds": seconds, "bytes": ref.stat().st_size})
    for to in EXPORT_FORMATS:
        if to == "bmp":
            try:
                import bmp  # noqa: F401
            except ImportError:
                continue
        out = work / f"out.{to}"
        export_index(index, to, out, overwrite=True)  # numba compiles (cached) once, outside the timing
        seconds = _best(partial(export_index, index, to, out, overwrite=True), repeat)
        row: dict[str, Any] = {
            "writer": f"{to} (lsr export --to {to})",
            "seconds": seconds,
            "bytes": out.stat().st_size,
        }
        if to == "ciff" and reference:
            row["same_bytes"] = _digest(out) == _digest(ref)
        rows.append(row)
    if not reference:
        return rows + read_rows(work / "out.ciff", repeat, reference)
    before = rows[0]["seconds"]
    for row in rows:
        row["x_before"] = round(before / row["seconds"], 1)
    return rows + read_rows(work / "out.ciff", repeat, reference)


def read_rows(ciff: Path, repeat: int, reference: bool = True) -> list[dict[str, Any]]:
    """Reading the CIFF file back: the old Python reader against read_ciff (numba), the same postings."""
    from lsr.ciff import read_ciff

    if not reference:
        seconds = _best(partial(read_ciff, ciff), repeat)
        return [
            {
                "writer": "ciff read (lsr index --ciff's read_ciff)",
                "seconds": seconds,
                "bytes": ciff.stat().st_size,
            }
        ]
    old = read_ciff_reference(ciff)
    new = read_ciff(ciff)
    same = (
        new.terms,
        [d.tolist() for d, _ in new.postings],
        [t.tolist() for _, t in new.postings],
        new.doc_ids,
    )
    before = _best(partial(read_ciff_reference, ciff), repeat)
    after = _best(partial(read_ciff, ciff), repeat)
    size = ciff.stat().st_size
    return [
        {"writer": "ciff read, pure Python (before)", "seconds": before, "bytes": size, "x_before": 1.0},
        {
            "writer": "ciff read (lsr index --ciff's read_ciff)",
            "seconds": after,
            "bytes": size,
            "x_before": round(before / after, 1),
            "same_postings": same == old,
        },
    ]


def scifact_index(work: Path) -> Path:
    from lsr.cli import main

    out = work / "scifact-bm25-uint8"
    args = ["index", "--corpus", str(SCIFACT), "--encoder", "bm25", "--set", "index.impact_dtype=uint8"]
    assert main([*args, "--out", str(out), "--quiet"]) == 0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, help="an index to export (default: SciFact BM25 uint8, built)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--no-reference",
        action="store_true",
        help="leave out the old Python writer and reader (large indexes)",
    )
    parser.add_argument("--out", type=Path, help="JSON results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lsr-export-bench-") as tmp:
        work = Path(tmp)
        index = args.index or scifact_index(work)
        meta = json.loads((index / "meta.json").read_text())
        rows = run(index, work, args.repeat, not args.no_reference)
    print(f"index {index}: {meta['n_docs']} docs, {meta['n_postings']} postings, {meta['impacts']['dtype']}")
    print("| writer | seconds | MB | x before |")
    print("|---|---|---|---|")
    for row in rows:
        same = (
            " (same bytes)"
            if row.get("same_bytes")
            else " (same postings)"
            if row.get("same_postings")
            else ""
        )
        ratio = row.get("x_before", "-")
        print(f"| {row['writer']}{same} | {row['seconds']:.3f} | {row['bytes'] / 1e6:.1f} | {ratio} |")
    if args.out:
        result = {
            "index": str(index),
            "n_docs": meta["n_docs"],
            "n_postings": meta["n_postings"],
            "impact_dtype": meta["impacts"]["dtype"],
            "repeat": args.repeat,
            "reference": not args.no_reference,
            "rows": rows,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load": os.getloadavg()},
        }
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
