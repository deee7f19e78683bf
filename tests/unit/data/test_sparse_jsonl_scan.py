"""lsr.data.sparse_jsonl_scan: the numba scanner gives what orjson parsing gives, or defers to it."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from lsr.data.sparse_jsonl_chunk import parse_lines
from lsr.data.sparse_jsonl_scan import scan_records


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
