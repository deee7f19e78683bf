"""lsr.data.formats: every corpus shape a user brings (CSV, TSV, Parquet, text folders, Hugging Face
save_to_disk folders, stdin, documents in memory) gives the same documents, and bad input is named."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lsr.cli import main
from lsr.data.corpus import Doc, open_corpus
from lsr.data.formats import CorpusSource, Fields, InMemoryCorpus, detect_format
from lsr.errors import DataFormatError

DOCS = [
    Doc("d1", "Cats", "The cat sat on the mat."),
    Doc("d2", "", "A dog and a cat."),
    Doc("d3", "Dogs", 'Dogs chase cats, "quoted"\tand tabbed.'),
]


def write_table(path: Path, delimiter: str, header=("id", "title", "text"), rows=None) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows if rows is not None else [(d.id, d.title, d.text) for d in DOCS])
    return path


def test_csv_and_tsv_by_suffix(tmp_path):
    assert list(open_corpus(write_table(tmp_path / "c.csv", ","))) == DOCS
    assert list(open_corpus(write_table(tmp_path / "c.tsv", "\t"))) == DOCS


def test_column_names_given_and_several_text_columns(tmp_path):
    rows = [(d.id, d.title, d.text, "extra") for d in DOCS]
    path = write_table(tmp_path / "c.csv", ",", ("pid", "heading", "body", "notes"), rows)
    fields = Fields.parse("pid", "heading", "body,notes")
    docs = list(open_corpus(CorpusSource(str(path), "auto", fields)))
    assert docs == [Doc(d.id, d.title, f"{d.text} extra") for d in DOCS]
    with pytest.raises(DataFormatError, match=r"c\.csv \(header\): no id field: .*--id-field"):
        list(open_corpus(path))


def test_quoted_fields_may_hold_newlines_and_gzip_works(tmp_path):
    import gzip

    path = tmp_path / "c.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([("id", "text"), ("a", "two\nlines"), ("b", "one")])
    assert list(open_corpus(path)) == [Doc("a", "", "two\nlines"), Doc("b", "", "one")]


def test_format_flag_overrides_the_suffix(tmp_path):
    path = write_table(tmp_path / "docs.txt", "\t")
    assert list(open_corpus(CorpusSource(str(path), "tsv"))) == DOCS


def test_malformed_table_rows_are_named(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("id,text\nd1,fine\nd2\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"c\.csv:3: the row has another number of fields"):
        list(open_corpus(path))
    path.write_bytes(b"id,text\nd1,ok\nd2,\xff\xfe bad\n")
    with pytest.raises(DataFormatError, match=r"c\.csv:3: not valid UTF-8"):
        list(open_corpus(path))
    path.write_text("id,text\nd 1,space in id\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"c\.csv:2: id 'd 1'"):
        list(open_corpus(path))


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table(
        {"_id": [d.id for d in DOCS], "title": [d.title for d in DOCS], "text": [d.text for d in DOCS]}
    )
    pq.write_table(table, tmp_path / "c.parquet", row_group_size=2)
    assert list(open_corpus(tmp_path / "c.parquet")) == DOCS
    bad = pa.table({"_id": ["d1", None], "text": ["a", "b"]})
    pq.write_table(bad, tmp_path / "bad.parquet")
    with pytest.raises(DataFormatError, match=r"bad\.parquet: row 2: id field '_id' must be a string"):
        list(open_corpus(tmp_path / "bad.parquet"))


def test_parquet_without_pyarrow_names_the_package(tmp_path, monkeypatch):
    path = tmp_path / "c.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(DataFormatError, match="needs the pyarrow package: pip install pyarrow"):
        list(open_corpus(path))


def test_folder_of_text_files(tmp_path):
    (tmp_path / "notes" / "sub").mkdir(parents=True)
    (tmp_path / "notes" / "a.txt").write_text("alpha text", encoding="utf-8")
    (tmp_path / "notes" / "sub" / "b.md").write_text("# beta", encoding="utf-8")
    (tmp_path / "notes" / "skip.bin").write_bytes(b"\x00")
    assert detect_format(tmp_path / "notes") == "txt"
    assert list(open_corpus(tmp_path / "notes")) == [Doc("a", "", "alpha text"), Doc("sub/b", "", "# beta")]
    (tmp_path / "notes" / "c.txt").write_bytes(b"\xff")
    with pytest.raises(DataFormatError, match=r"c\.txt: not valid UTF-8"):
        list(open_corpus(tmp_path / "notes"))


def test_empty_folder_lists_the_shapes(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"corpus\.jsonl.*Parquet.*save_to_disk"):
        open_corpus(tmp_path)


def test_hugging_face_save_to_disk_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    records = {"_id": [d.id for d in DOCS], "title": [d.title for d in DOCS], "text": [d.text for d in DOCS]}
    ds = datasets.Dataset.from_dict(records)
    ds.save_to_disk(str(tmp_path / "ds"))
    assert detect_format(tmp_path / "ds") == "hf"
    assert list(open_corpus(tmp_path / "ds")) == DOCS
    datasets.DatasetDict({"corpus": ds, "queries": ds}).save_to_disk(str(tmp_path / "dd"))
    assert list(open_corpus(tmp_path / "dd")) == DOCS  # the split named corpus
    datasets.DatasetDict({"a": ds, "b": ds}).save_to_disk(str(tmp_path / "ab"))
    with pytest.raises(DataFormatError, match=r"splits \['a', 'b'\]; give one split's folder"):
        open_corpus(tmp_path / "ab")


def test_in_memory_documents():
    docs = InMemoryCorpus([{"id": "x", "text": "one"}, ("y", "two"), ("z", "T", "three"), "four"])
    assert list(docs) == [
        Doc("x", "", "one"),
        Doc("y", "", "two"),
        Doc("z", "T", "three"),
        Doc("3", "", "four"),
    ]
    with pytest.raises(DataFormatError, match="document 1: expected a dict"):
        InMemoryCorpus(["ok", 42])
    with pytest.raises(DataFormatError, match="duplicate document id 'a'"):
        InMemoryCorpus([("a", "x"), ("a", "y")])


def jsonl(docs: list[Doc]) -> str:
    return "".join(json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n" for d in docs)


def test_cli_csv_corpus_indexes_like_jsonl(tmp_path):
    (tmp_path / "c.jsonl").write_text(jsonl(DOCS), encoding="utf-8")
    for name in ("c.jsonl", "c.csv"):
        if name.endswith(".csv"):
            write_table(tmp_path / name, ",")
        args = ["index", "--corpus", str(tmp_path / name), "--encoder", "bm25", "--quiet"]
        assert main([*args, "--out", str(tmp_path / f"i-{name}")]) == 0
    from lsr.searcher import Plan, Searcher

    hits = [
        [(h.doc_id, round(h.score, 5)) for h in s.hits(s.search("cat dogs", Plan(k=3)))]
        for s in (Searcher(tmp_path / "i-c.jsonl"), Searcher(tmp_path / "i-c.csv"))
    ]
    assert hits[0] == hits[1] and len(hits[0]) == 3


def test_cli_jsonl_on_stdin(tmp_path):
    out = tmp_path / "v.jsonl"
    cmd = [sys.executable, "-m", "lsr.cli", "encode", "--encoder", "bm25", "--corpus", "-", "--out", str(out)]
    done = subprocess.run(
        [*cmd, "--format", "jsonl", "--quiet"], input=jsonl(DOCS), text=True, capture_output=True
    )
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["d1", "d2", "d3"]
    bad = subprocess.run(
        cmd + ["--overwrite"], input='{"_id": "a", "text": "x"}\nnot json\n', text=True, capture_output=True
    )
    assert bad.returncode == 2 and "<stdin>:2: malformed JSON" in bad.stderr


def test_an_unknown_suffix_is_read_as_jsonl_and_the_error_lists_the_shapes(tmp_path):
    path = tmp_path / "docs.xlsx"
    path.write_bytes(b"PK\x03\x04 not json")
    with pytest.raises(
        DataFormatError, match=r"docs\.xlsx:1: malformed JSON.*read as JSONL.*Parquet.*--corpus-format"
    ):
        list(open_corpus(path))


def test_a_folder_of_parquet_files_like_a_hub_snapshot(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    (tmp_path / "hub" / "data").mkdir(parents=True)
    for i, part in enumerate((DOCS[:2], DOCS[2:])):
        table = pa.table(
            {"_id": [d.id for d in part], "title": [d.title for d in part], "text": [d.text for d in part]}
        )
        pq.write_table(table, tmp_path / "hub" / "data" / f"train-{i:05d}.parquet")
    assert detect_format(tmp_path / "hub") == "parquet"
    assert list(open_corpus(tmp_path / "hub")) == DOCS
