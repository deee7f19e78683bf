"""JSON Lines reading with errors that name the file and the line."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from lsr.errors import DataFormatError


def open_text(path: str | Path) -> TextIO:
    """Open a text file for reading, transparently decompressing ``.gz``."""
    path = Path(path)
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig")
    return open(path, encoding="utf-8-sig")  # tolerate a BOM


def iter_jsonl(path: str | Path, label: str | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSONL file (``label`` names it in
    errors: ``<stdin>`` for a spooled copy of stdin).

    Raises:
        DataFormatError: a line is not valid JSON or not a JSON object; the
            message gives ``file:line``.
    """
    label = label or str(path)
    with open_binary(path) as f:
        yield from jsonl_objects(f, label)


def jsonl_objects(
    lines: Iterable[bytes], label: str, first_line: int = 1
) -> Iterator[tuple[int, dict[str, Any]]]:
    """:func:`iter_jsonl` of raw lines (as a binary file iterates them) that start at line ``first_line``."""
    for line_no, line in enumerate(decoded_lines(lines, label, first_line), start=first_line):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{label}:{line_no}: malformed JSON ({exc.msg})") from None
        except RecursionError:
            raise DataFormatError(f"{label}:{line_no}: JSON nested too deeply") from None
        if not isinstance(obj, dict):
            raise DataFormatError(f"{label}:{line_no}: expected a JSON object, got {type(obj).__name__}")
        yield line_no, obj


def require_str(obj: dict[str, Any], key: str, where: str, *, allow_empty: bool = True) -> str:
    """Return ``obj[key]`` as a string or raise a :class:`DataFormatError` naming ``where``."""
    if key not in obj:
        raise DataFormatError(f"{where}: missing field {key!r} (fields: {sorted(obj)})")
    value = obj[key]
    if isinstance(value, (int, float)) and not isinstance(value, bool) and key.endswith("id"):
        value = str(value)
    if not isinstance(value, str):
        raise DataFormatError(f"{where}: field {key!r} must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise DataFormatError(f"{where}: field {key!r} is empty")
    return value


def iter_lines(path: str | Path) -> Iterator[str]:
    """The decoded lines of a text file (``.gz`` decompressed, a BOM dropped); bytes that are not UTF-8
    raise a DataFormatError naming the file and line."""
    with open_binary(path) as f:
        yield from decoded_lines(f, path)


def open_binary(path: str | Path) -> io.BufferedIOBase:
    """Open a file for reading bytes, transparently decompressing ``.gz``."""
    path = Path(path)
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def decoded_lines(f: Iterable[bytes], path: str | Path, first_line: int = 1) -> Iterator[str]:
    """Decoded lines of ``f`` (a leading BOM of line 1 dropped), numbered from ``first_line``; bytes
    that are not UTF-8 raise a DataFormatError naming the line (decoding line by line keeps the
    number exact)."""
    for line_no, raw in enumerate(f, start=first_line):
        try:
            yield raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise DataFormatError(f"{path}:{line_no}: not valid UTF-8 ({exc.reason})") from None
