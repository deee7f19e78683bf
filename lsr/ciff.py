"""CIFF, the Common Index File Format (Lin et al., SIGIR 2020), that PISA, Anserini and JASS exchange
indexes in: written from an lsr index and read into one, with the protobuf wire format coded here (no
protobuf dependency).

A CIFF file is a sequence of varint-length-delimited protobuf messages: one ``Header``, then
``num_postings_lists`` ``PostingsList`` messages (term, df, cf, postings of gap-encoded docids and tfs),
then ``num_docs`` ``DocRecord`` messages (docid, collection docid, length). For learned sparse indexes
the tf is the integer impact.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from lsr.errors import DataFormatError

# field numbers of ciff.proto (io.osirrc.ciff)
HEADER = {"version": 1, "num_postings_lists": 2, "num_docs": 3, "total_postings_lists": 4, "total_docs": 5}
HEADER_TERMS, HEADER_AVG_LENGTH, HEADER_DESCRIPTION = 6, 7, 8


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _int_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value) if value else b""  # proto3 leaves zeros out


def _bytes_field(number: int, data: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _delimited(message: bytes) -> bytes:
    return _varint(len(message)) + message


@dataclass
class CiffHeader:
    num_postings_lists: int
    num_docs: int
    total_terms: int
    average_doclength: float
    description: str = ""
    version: int = 1

    def encode(self) -> bytes:
        values = {
            "version": self.version,
            "num_postings_lists": self.num_postings_lists,
            "num_docs": self.num_docs,
            "total_postings_lists": self.num_postings_lists,
            "total_docs": self.num_docs,
        }
        body = b"".join(_int_field(HEADER[name], value) for name, value in values.items())
        body += _int_field(HEADER_TERMS, self.total_terms)
        body += _varint(HEADER_AVG_LENGTH << 3 | 1) + struct.pack("<d", self.average_doclength)
        return body + (
            _bytes_field(HEADER_DESCRIPTION, self.description.encode()) if self.description else b""
        )


def postings_list(term: str, docs: np.ndarray, tfs: np.ndarray) -> bytes:
    """One PostingsList message: docids gap-encoded (ascending), tfs >= 1."""
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


def doc_record(docid: int, collection_docid: str, length: int) -> bytes:
    return _int_field(1, docid) + _bytes_field(2, collection_docid.encode("utf-8")) + _int_field(3, length)


def export_ciff(
    index_dir: str | Path, out: str | Path, quantize: float | None = None, description: str = ""
) -> dict[str, int]:
    """Write an lsr index as CIFF. Integer impacts (uint8, uint16) are the tfs; float32 impacts need
    ``quantize``: tf = round(weight x quantize), postings that round to 0 left out.

    Raises:
        ValueError: float32 impacts without ``quantize``.
    """
    from lsr.index import Index

    index = Index.load(index_dir, blockmax=False)
    weights = np.asarray(index.impacts)
    if quantize is not None:
        tfs = np.rint(weights.astype(np.float64) * float(index.scale) * quantize).astype(np.int64)
    elif weights.dtype.kind == "f":
        raise ValueError(f"{index_dir} has float32 impacts: give a quantization factor (--quantize 100)")
    else:
        tfs = weights.astype(np.int64)
    keep = tfs >= 1
    term_of = np.repeat(np.arange(index.n_terms), np.diff(index.term_ptr))
    per_term = np.bincount(term_of[keep], minlength=index.n_terms)
    doc_ids = np.asarray(index.doc_ids)
    lengths = np.bincount(doc_ids[keep], weights=tfs[keep], minlength=index.n_docs).astype(np.int64)
    header = CiffHeader(
        int((per_term > 0).sum()), index.n_docs, int(tfs[keep].sum()), float(lengths.mean()), description
    )
    vocab, keys, ptr = index.vocab, index.doc_keys, index.term_ptr
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")  # complete or not at all
    with open(tmp, "wb") as f:
        f.write(_delimited(header.encode()))
        for t in np.flatnonzero(per_term).tolist():
            a, b = int(ptr[t]), int(ptr[t + 1])
            mask = keep[a:b]
            f.write(_delimited(postings_list(vocab[t], doc_ids[a:b][mask], tfs[a:b][mask])))
        for d in range(index.n_docs):
            f.write(_delimited(doc_record(d, keys[d], int(lengths[d]))))
    os.replace(tmp, out)
    return {"postings_lists": header.num_postings_lists, "docs": header.num_docs, "postings": int(keep.sum())}


# --- reading ------------------------------------------------------------------------------------------


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise DataFormatError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """``(field number, value)``: an int for varints and fixed64, bytes for length-delimited fields."""
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
            yield number, value
        elif wire == 2:
            size, pos = _read_varint(data, pos)
            yield number, data[pos : pos + size]
            pos += size
        elif wire == 1:
            yield number, int.from_bytes(data[pos : pos + 8], "little")
            pos += 8
        else:
            raise DataFormatError(f"unsupported protobuf wire type {wire}")


def _messages(f: BinaryIO, path: Path) -> Iterator[bytes]:
    data = f.read()
    pos = 0
    while pos < len(data):
        size, pos = _read_varint(data, pos)
        if pos + size > len(data):
            raise DataFormatError(f"{path}: truncated CIFF message at byte {pos}")
        yield data[pos : pos + size]
        pos += size


def _next(messages: Iterator[bytes], path: Path, what: str) -> bytes:
    message = next(messages, None)
    if message is None:
        raise DataFormatError(f"{path}: the file ends before {what} (a CIFF file from PISA, Anserini, lsr?)")
    return message


@dataclass
class CiffIndex:
    """A CIFF file read whole: terms, and per term (docids, tfs); documents' collection ids."""

    terms: list[str] = field(default_factory=list)
    postings: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    doc_ids: list[str] = field(default_factory=list)
    num_docs: int = 0


def read_ciff(path: str | Path) -> CiffIndex:
    """Read a CIFF file (PISA, Anserini, ``lsr export``).

    Raises:
        DataFormatError: a malformed file (the message names it and what is wrong).
    """
    path = Path(path)
    with open(path, "rb") as f:
        messages = _messages(f, path)
        header = dict(_fields(_next(messages, path, "the header")))
        n_lists, n_docs = int(header.get(2, 0)), int(header.get(3, 0))
        out = CiffIndex(num_docs=n_docs)
        for _ in range(n_lists):
            out.terms.append("")
            docs, tfs = [], []
            for number, value in _fields(_next(messages, path, "a postings list")):
                if number == 1 and isinstance(value, bytes):
                    out.terms[-1] = value.decode("utf-8")
                elif number == 4 and isinstance(value, bytes):
                    posting = dict(_fields(value))
                    docs.append(int(posting.get(1, 0)))
                    tfs.append(int(posting.get(2, 0)))
            out.postings.append(
                (np.cumsum(np.asarray(docs, dtype=np.int64)), np.asarray(tfs, dtype=np.int64))
            )
        records = {int(r.get(1, 0)): r.get(2, b"") for r in (dict(_fields(m)) for m in messages)}
    if len(records) != n_docs:
        raise DataFormatError(
            f"{path}: header says {n_docs} documents, the file has {len(records)} doc records"
        )
    out.doc_ids = [bytes(records[d]).decode("utf-8") if d in records else str(d) for d in range(n_docs)]
    return out


def ciff_rows(ciff: CiffIndex) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """Each document's ``(collection id, term ids ascending, tfs)``, from the term-major postings."""
    lengths = [len(docs) for docs, _ in ciff.postings]
    terms = np.repeat(np.arange(len(ciff.terms), dtype=np.int64), lengths)
    docs = np.concatenate([d for d, _ in ciff.postings]) if ciff.postings else np.zeros(0, np.int64)
    tfs = np.concatenate([t for _, t in ciff.postings]) if ciff.postings else np.zeros(0, np.int64)
    if docs.size and (docs.min() < 0 or docs.max() >= ciff.num_docs):
        raise DataFormatError(f"a posting names document {int(docs.max())}, the header has {ciff.num_docs}")
    order = np.lexsort((terms, docs))
    terms, docs, tfs = terms[order], docs[order], tfs[order]
    bounds = np.searchsorted(docs, np.arange(ciff.num_docs + 1))
    for d in range(ciff.num_docs):
        a, b = bounds[d], bounds[d + 1]
        keep = tfs[a:b] > 0
        yield ciff.doc_ids[d], terms[a:b][keep], tfs[a:b][keep].astype(np.float64)
