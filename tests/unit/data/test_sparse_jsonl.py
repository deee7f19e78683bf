"""lsr.data.sparse_jsonl: the {"id", "vector": {term: weight}} interchange format."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from lsr.data.sparse_jsonl import is_sparse_jsonl, iter_sparse_jsonl, parse_vector, write_sparse_jsonl
from lsr.errors import DataFormatError
from lsr.index.sparse import SparseBatch


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_iter_sparse_jsonl_reads_ids_vectors_and_contents(tmp_path):
    path = write_lines(
        tmp_path / "v.jsonl",
        [
            '{"id": "d1", "vector": {"a": 1, "b": 0.5}}',
            "",
            '{"_id": "d2", "vector": {}, "contents": "some text"}',
            '{"id": 3, "vector": {"caf\\u00e9": 2.25}}',
        ],
    )
    records = list(iter_sparse_jsonl(path))
    assert records == [("d1", {"a": 1.0, "b": 0.5}, ""), ("d2", {}, "some text"), ("3", {"café": 2.25}, "")]
    assert all(type(w) is float for _, vec, _ in records for w in vec.values())


def test_zero_weights_are_dropped(tmp_path):
    path = write_lines(tmp_path / "v.jsonl", ['{"id": "d1", "vector": {"a": 0, "b": 1.5, "c": 0.0}}'])
    assert list(iter_sparse_jsonl(path)) == [("d1", {"b": 1.5}, "")]


@pytest.mark.parametrize(
    ("weight_json", "shown"),
    [
        ("NaN", "nan"),
        ("-1", "-1"),
        ("-0.5", "-0.5"),
        ("Infinity", "inf"),
        ("1e400", "inf"),  # overflows to inf when parsed
        ("1" + "0" * 400, "1000"),  # an int too large for a float
        ('"0.3"', "'0.3'"),
        ("true", "True"),
        ("null", "None"),
        ("[1]", "[1]"),
    ],
)
def test_bad_weight_names_file_line_and_term(tmp_path, weight_json, shown):
    path = write_lines(
        tmp_path / "v.jsonl",
        [
            '{"id": "d1", "vector": {"ok": 1.0}}',
            '{"id": "d2", "vector": {"ok": 1.0, "bad_term": ' + weight_json + "}}",
        ],
    )
    with pytest.raises(DataFormatError) as exc:
        list(iter_sparse_jsonl(path))
    msg = str(exc.value)
    assert f"{path}:2" in msg
    assert "'bad_term'" in msg
    assert shown in msg


@pytest.mark.parametrize(
    "record", ['{"id": "d1"}', '{"id": "d1", "vector": [1, 2]}', '{"id": "d1", "vector": "a:1"}']
)
def test_missing_or_non_object_vector(tmp_path, record):
    path = write_lines(tmp_path / "v.jsonl", [record])
    with pytest.raises(DataFormatError, match=f"{path}:1.*'vector'"):
        list(iter_sparse_jsonl(path))


@pytest.mark.parametrize(
    "record", ['{"vector": {"a": 1}}', '{"id": "d 1", "vector": {"a": 1}}', '{"id": "", "vector": {"a": 1}}']
)
def test_bad_or_missing_id(tmp_path, record):
    path = write_lines(tmp_path / "v.jsonl", [record])
    with pytest.raises(DataFormatError, match=f"{path}:1"):
        list(iter_sparse_jsonl(path))


def test_parse_vector_uses_where_in_messages():
    assert parse_vector({"vector": {"a": 2, "z": 0}}, "here") == {"a": 2.0}
    with pytest.raises(DataFormatError, match=r"^somewhere:9: weight of term 'x'"):
        parse_vector({"vector": {"x": -3}}, "somewhere:9")


def test_is_sparse_jsonl_detection(tmp_path):
    vec = write_lines(tmp_path / "v.jsonl", ["", '{"id": "d1", "vector": {"a": 1}}'])  # blank first line
    corpus = write_lines(tmp_path / "corpus.jsonl", ['{"_id": "d1", "text": "hello"}'])
    listvec = write_lines(tmp_path / "l.jsonl", ['{"id": "d1", "vector": [1]}'])
    empty = write_lines(tmp_path / "empty.jsonl", [])
    wrong_ext = write_lines(tmp_path / "v.tsv", ['{"id": "d1", "vector": {"a": 1}}'])
    gz = tmp_path / "v.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        f.write('{"id": "d1", "vector": {"a": 1}}\n')

    assert is_sparse_jsonl(vec) is True
    assert is_sparse_jsonl(str(vec)) is True
    assert is_sparse_jsonl(gz) is True
    assert is_sparse_jsonl(corpus) is False
    assert is_sparse_jsonl(listvec) is False
    assert is_sparse_jsonl(empty) is False
    assert is_sparse_jsonl(wrong_ext) is False
    assert is_sparse_jsonl(tmp_path) is False  # a directory
    assert is_sparse_jsonl(tmp_path / "missing.jsonl") is False
    assert is_sparse_jsonl("beir/scifact/test") is False  # an ir_datasets id


def test_is_sparse_jsonl_only_reads_the_first_record(tmp_path):
    path = write_lines(tmp_path / "v.jsonl", ['{"id": "d1", "vector": {"a": 1}}', "{broken"])
    assert is_sparse_jsonl(path) is True


VOCAB = ["a", "b", "é"]


def write_records(path, records, **kwargs):
    """``(id, {term: weight})`` records through the CSR writer."""
    records = list(records)
    index = {t: i for i, t in enumerate(VOCAB)}
    batch = SparseBatch.from_rows([([index[t] for t in v], list(v.values())) for _, v in records])
    return write_sparse_jsonl(path, [i for i, _ in records], [batch], VOCAB, **kwargs)


def test_write_then_read_round_trip(tmp_path):
    path = tmp_path / "out.jsonl"
    records = [("d1", {"a": 1.0, "b": 0.5}), ("d2", {"é": 2.0}), ("d3", {})]
    assert write_records(path, iter(records)) == 3
    assert is_sparse_jsonl(path)
    assert [(i, v) for i, v, _ in iter_sparse_jsonl(path)] == records
    assert json.loads(path.read_text(encoding="utf-8").splitlines()[1]) == {"id": "d2", "vector": {"é": 2.0}}


def test_write_refuses_existing_path_without_overwrite(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text("KEEP\n", encoding="utf-8")
    with pytest.raises(FileExistsError, match="overwrite"):
        write_records(path, [("d1", {"a": 1.0})])
    assert path.read_text(encoding="utf-8") == "KEEP\n"
    assert write_records(path, [("d1", {"a": 1.0})], overwrite=True) == 1
    assert [r[0] for r in iter_sparse_jsonl(path)] == ["d1"]


def test_write_failure_leaves_no_partial_file(tmp_path):
    path = tmp_path / "out.jsonl"

    def batches():
        yield SparseBatch.from_rows([([0], [1.0])])
        raise RuntimeError("encoder crashed")

    with pytest.raises(RuntimeError):
        write_sparse_jsonl(path, ["d1", "d2"], batches(), VOCAB)
    assert list(tmp_path.iterdir()) == []


def test_write_rounds_to_six_digits(tmp_path):
    vocab = ["x", "y", "z"]
    batch = SparseBatch(
        np.array([0, 2], dtype=np.int64),
        np.array([0, 2], dtype=np.int32),
        np.array([0.1234567891, 2.0], dtype=np.float32),
    )
    write_sparse_jsonl(tmp_path / "v.jsonl", ["d1"], [batch], vocab)
    got = json.loads((tmp_path / "v.jsonl").read_text(encoding="utf-8"))["vector"]
    assert got == {"x": 0.123457, "z": 2.0}


def _reference_read(path, vocab: dict[str, int], grow: bool, chunk_rows: int):
    """read_sparse_jsonl's contract, plainly: new terms sorted per chunk of records, rows by term id,
    weights <= 0 and (without growing) unknown terms dropped."""
    with open(path, "rb") as f:
        records = [json.loads(line) for line in f if line.strip()]
    rows = []
    for c in range(0, len(records), chunk_rows):
        vectors = [r["vector"] for r in records[c : c + chunk_rows]]
        if grow:
            for term in sorted(set().union(*vectors) - vocab.keys()):
                vocab[term] = len(vocab)
        rows += [sorted((vocab[t], w) for t, w in v.items() if t in vocab and w > 0) for v in vectors]
    return [str(r["id"]) for r in records], rows, vocab


def _random_jsonl(path, rng: np.random.Generator, n: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            terms = rng.choice(60, size=int(rng.integers(0, 9)), replace=False)
            vector = {f"w{t}": float(rng.choice([0.0, 0.25, 1.5, 2.0, 1e-3])) for t in terms}
            f.write(json.dumps({"vector": vector, "id": i if i % 3 else f"d{i}", "contents": "x\ny"}) + "\n")
            if rng.random() < 0.1:
                f.write("  \n")
            if i == 20:  # JSON whitespace may be a bare carriage return
                f.write('{"id": "cr",\r"vector": {"w1": 0.5,\r"w2": 1.0}}\r\n')


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("grow", [True, False])
def test_read_sparse_jsonl_equals_its_contract_for_any_workers(tmp_path, monkeypatch, workers, grow):
    from lsr.data import sparse_jsonl

    monkeypatch.setattr(sparse_jsonl, "_READ_CHUNK_ROWS", 12)
    monkeypatch.setattr(sparse_jsonl, "_READ_PIECE_ROWS", 4)
    rng = np.random.default_rng(workers)
    path = tmp_path / "docs.jsonl"
    _random_jsonl(path, rng, 53)
    start = {"w3": 0, "w10": 1, "zz": 2}
    want_ids, want_rows, want_vocab = _reference_read(path, dict(start), grow, 12)
    ids, batch, vocab = sparse_jsonl.read_sparse_jsonl(path, dict(start), grow_vocab=grow, workers=workers)
    assert ids == want_ids
    assert vocab == want_vocab and list(vocab.values()) == list(range(len(vocab)))
    batch.validate(len(vocab))
    got_rows = [list(zip(*(a.tolist() for a in batch.row(i)), strict=True)) for i in range(len(batch))]
    assert got_rows == [[(t, float(np.float32(w))) for t, w in row] for row in want_rows]


def test_read_sparse_jsonl_of_an_empty_file(tmp_path):
    from lsr.data.sparse_jsonl import read_sparse_jsonl

    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    ids, batch, vocab = read_sparse_jsonl(tmp_path / "empty.jsonl")
    assert ids == [] and len(batch) == 0 and batch.nnz == 0 and vocab == {}
