"""lsr.data.sparse_jsonl_scan: the numba scanner gives what orjson parsing gives, or defers to it."""

from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pytest

from lsr.data.sparse_jsonl import iter_sparse_jsonl, iter_sparse_rows
from lsr.data.sparse_jsonl_chunk import parse_lines
from lsr.data.sparse_jsonl_scan import scan_records
from lsr.errors import DataFormatError


def _buffer(text: str | bytes) -> np.ndarray:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return np.frombuffer(data + b"\n", dtype=np.uint8)


def _rows(chunk):
    """A parsed chunk as ``(ids, [[(term, float32 weight), ...] per row])``, independent of term order."""
    ids, terms, local, weights, lengths = chunk
    ends = np.cumsum(lengths)
    rows = []
    for start, end in zip(ends - lengths, ends, strict=True):
        rows.append([(terms[t], float(w)) for t, w in zip(local[start:end], weights[start:end], strict=True)])
    assert sorted(terms) == sorted(set(terms))  # every term once
    return ids, rows


def _same_as_json(text: str) -> None:
    scanned = scan_records(_buffer(text))
    assert scanned is not None, "the scanner deferred a record of the shape it reads"
    want = parse_lines(text.encode("utf-8").split(b"\n"))
    assert _rows(scanned) == _rows(want)
    assert set(scanned[1]) == set(want[1])  # zero-weight terms are terms of the chunk too


def _number_text(rng: np.random.Generator) -> str:
    kind = rng.integers(6)
    value = float(rng.lognormal(-1.0, 2.0)) * (-1 if rng.random() < 0.1 else 1)
    if kind == 0:
        return repr(float(f"{value:.12g}"))  # Python's shortest round trip of a 12-digit value
    if kind == 1:
        return f"{value:.5f}"
    if kind == 2:
        return f"{value:.6e}"
    if kind == 3:
        return str(int(rng.integers(0, 10**6)))
    if kind == 4:
        return f"{value:.3E}".replace("E-0", "E-").replace("E+0", "e+")
    return "0" if rng.random() < 0.5 else "0.000"


def _record(rng: np.random.Generator, i: int) -> str:
    terms = rng.choice(200, size=int(rng.integers(0, 12)), replace=False)
    names = [f"w{t}" if t % 17 else f"é{t}" for t in terms]  # some non-ASCII terms
    sep = [", ", ",", " ,\t"][int(rng.integers(3))]
    colon = [": ", ":", " :  "][int(rng.integers(3))]
    vector = "{" + sep.join(f'"{n}"{colon}{_number_text(rng)}' for n in names) + "}"
    doc_id = json.dumps(f"d{i}") if i % 4 else str(i * 7 - 3)
    fields = [f'"id"{colon}{doc_id}', f'"vector"{colon}{vector}']
    extra = ['"contents": "a \\"quoted\\" text\\n\\u00e9"', '"score": -1.5e3', '"ok": true']
    extra += ['"x": null', '"f": false']
    fields += [extra[int(k)] for k in rng.choice(len(extra), size=int(rng.integers(0, 3)), replace=False)]
    order = rng.permutation(len(fields))
    return " {" + sep.join(fields[k] for k in order) + "}\r"


@pytest.mark.parametrize("seed", range(6))
def test_scanned_records_equal_orjson_parsing(seed):
    rng = np.random.default_rng(seed)
    lines = [_record(rng, i) for i in range(300)]
    lines.insert(17, "   ")  # blank lines are skipped
    _same_as_json("\n".join(lines))


def test_weights_are_the_correctly_rounded_floats():
    rng = np.random.default_rng(7)
    values = np.concatenate([rng.lognormal(0, 3, 2000), rng.random(2000), [5e-324 * 1e300, 0.1, 0.3, 1 / 3]])
    texts = [repr(float(v)) for v in values if len(repr(float(v)).replace(".", "").lstrip("0")) <= 17]
    texts += [f"{v:.9f}" for v in values] + [f"{v:.14e}" for v in values[:500]]
    line = '{"id": "a", "vector": {' + ", ".join(f'"t{i}": {t}' for i, t in enumerate(texts)) + "}}"
    scanned = scan_records(_buffer(line))
    if scanned is None:  # some of the texts have > 15 digits: check the ones the scanner takes, one a record
        got = {}
        for i, t in enumerate(texts):
            one = scan_records(_buffer('{"id": "a", "vector": {"t": ' + t + "}}"))
            if one is not None:
                got[i] = one[3][0] if len(one[3]) else np.float32(0)
        assert len(got) > len(texts) // 2
    else:
        got = dict(zip((int(t[1:]) for t in np.asarray(scanned[1])[scanned[2]]), scanned[3], strict=True))
    for i, w in got.items():
        want = np.float32(float(texts[i]))
        assert struct.pack("<f", w) == struct.pack("<f", want), texts[i]


@pytest.mark.parametrize(
    "line",
    [
        '{"id": "a\\u00e9", "vector": {"x": 1}}',  # an escape in an id
        '{"id": "a", "vector": {"x\\n": 1}}',  # an escape in a term
        '{"id": "a", "vector": {"x": 0.1234567890123456}}',  # 16 significant digits
        '{"id": "a", "vector": {"x": 1e23}}',  # beyond Clinger's fast path
        '{"id": "a", "vector": {"x": 1, "x": 2}}',  # a term twice: JSON keeps the last
        '{"id": "a", "id": "b", "vector": {"x": 1}}',  # a key twice
        '{"id": "a", "vector": {"x": 1}, "meta": {"k": 1}}',  # a nested skipped value
        '{"id": "a", "vector": {"x": 1}, "tags": [1, 2]}',
        '{"id": -0, "vector": {"x": 1}}',  # Python prints -0 as 0
        '{"id": 1.5, "vector": {"x": 1}}',  # a float id
        '{"id": "a", "vector": {"x": 01}}',  # not JSON
        '{"id": "a", "vector": {"x": 1.}}',
        '{"id": "a", "vector": {"x": .5}}',
        '{"id": "a", "vector": {"x": 1,}}',
        '{"id": "a", "vector": {"x": 1}} x',
        '{"id": "a", "vector": {"x": 1}',
        '{"id": "a", "vector": {"x": nan}}',
        '{"id": "a"}',  # no vector
        '{"vector": {"x": 1}}',  # no id
        '{"id": "a", "vector": [1]}',
        '{"id": "a", "vector": {"x": 1}, "c": "bad \\x escape"}',
        '{"id": "a", "vector": {"x": 1}, "c": "tab\tinside"}',
        "[1, 2]",
    ],
)
def test_other_shapes_are_deferred_to_the_json_parser(line):
    ok = '{"id": "z", "vector": {"y": 2.5}}'
    assert scan_records(_buffer(ok)) is not None
    assert scan_records(_buffer(ok + "\n" + line + "\n" + ok)) is None


def test_bytes_that_are_not_utf8_are_deferred():
    assert scan_records(_buffer(b'{"id": "a\xff", "vector": {"x": 1}}')) is None
    assert scan_records(_buffer(b'{"id": "a", "vector": {"x\xc3": 1}}')) is None
    assert scan_records(_buffer(b'{"id": "a", "vector": {"x": 1}, "c": "\xff"}')) is None  # a skipped field
    assert scan_records(_buffer(b'{"id": "a", "vector": {"x": 1}, "\xe9": 1}')) is None  # a skipped key


def test_a_buffer_without_its_sentinel_is_refused():
    with pytest.raises(ValueError, match="sentinel"):
        scan_records(np.frombuffer(b'{"id": "a", "vector": {}}', dtype=np.uint8))


def test_many_terms_grow_the_table():
    rng = np.random.default_rng(3)
    lines = []
    for i in range(40):  # ~12k distinct terms, well past the first table's 1,024 slots
        terms = rng.choice(50_000, size=300, replace=False)
        lines.append(json.dumps({"id": f"d{i}", "vector": {f"term{t}": 0.5 + t % 7 for t in terms}}))
    _same_as_json("\n".join(lines))


def _record_path_rows(path):
    """iter_sparse_rows' contract, plainly: iter_sparse_jsonl's records, terms numbered on first sight,
    each row's postings by term id."""
    vocab: dict[str, int] = {}
    rows = []
    for doc_id, vector, contents in iter_sparse_jsonl(path):
        postings = sorted((vocab.setdefault(t, len(vocab)), w) for t, w in vector.items())
        rows.append((doc_id, [t for t, _ in postings], [w for _, w in postings], contents))
    return rows, vocab


def _rows_of(path):
    vocab: dict[str, int] = {}
    rows = [(d, t.tolist(), w.tolist(), c) for d, t, w, c in iter_sparse_rows(path, vocab)]
    return rows, vocab


@pytest.mark.parametrize("seed", range(3))
def test_rows_equal_the_record_path_in_any_chunks(tmp_path, monkeypatch, seed):
    from lsr.data import sparse_jsonl

    rng = np.random.default_rng(seed)
    lines = [_record(rng, i).replace("-", "") for i in range(200)]  # weights >= 0: a valid file
    lines[50] = '{"id": "esc", "vector": {"t\\u00e9rm": 1.5, "w3": 0.5}}'  # its chunk goes record by record
    lines[80] = '{"id": "c2", "contents": "first", "vector": {"w1": 1}, "contents": 5}'  # JSON keeps the last
    lines[120] = '{"id": "long", "vector": {' + ", ".join(f'"x{j}": 0.5' for j in range(300)) + "}}"
    path = tmp_path / "v.jsonl"
    path.write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")  # a BOM: the first chunk defers
    monkeypatch.setattr(sparse_jsonl, "_ROWS_CHUNK_BYTES", 2000)  # many chunks; line 121 longer than one
    scanned = []
    real = sparse_jsonl._scanned_rows
    monkeypatch.setattr(sparse_jsonl, "_scanned_rows", lambda *a: scanned.append(real(*a)) or scanned[-1])
    assert _rows_of(path) == _record_path_rows(path)
    assert scanned[0] is None and sum(rows is not None for rows in scanned) >= len(scanned) - 3
    gz = tmp_path / "v.jsonl.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert _rows_of(gz) == _record_path_rows(path)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": "a b", "vector": {"x": 1}}', r"v.jsonl:7: id 'a b' is empty or contains whitespace"),
        ('{"id": "", "vector": {"x": 1}}', r"v.jsonl:7: id '' is empty"),
        ('{"id": "a", "vector": {"x": -1}}', r"v.jsonl:7: weight of term 'x' is -1"),
        ('{"id": "a", "vector": {"x": 1e999}}', r"v.jsonl:7: weight of term 'x' is inf"),
        ('{"id": "a", "vector": {"x": 1', r"v.jsonl:7: malformed JSON"),
        ('{"id": "a", "vectors": {"x": 1}}', r"v.jsonl:7: missing or non-object field 'vector'"),
    ],
)
def test_a_bad_record_is_named_by_its_line(tmp_path, monkeypatch, line, message):
    from lsr.data import sparse_jsonl

    monkeypatch.setattr(sparse_jsonl, "_ROWS_CHUNK_BYTES", 100)
    good = [json.dumps({"id": f"d{i}", "vector": {"x": 0.5, "y": 2.0}}) for i in range(6)]
    path = tmp_path / "v.jsonl"
    path.write_text("\n".join([*good, line, *good]) + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=message):
        list(iter_sparse_rows(path, {}))
