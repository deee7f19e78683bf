"""lsr.data.corpus: corpora and queries from BEIR folders, JSONL/TSV files and ir_datasets ids."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lsr.data.corpus import Doc, load_queries, open_corpus
from lsr.errors import DataFormatError, DatasetUnavailableError

BEIR_TINY = Path(__file__).resolve().parents[2] / "data" / "beir-tiny"

TINY_DOCS = [
    Doc("d1", "Cats", "The cat sat on the mat."),
    Doc("d2", "", "A dog and a cat."),
    Doc("d3", "Dogs", "Dogs chase cats."),
]


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


# --- corpora -----------------------------------------------------------------------------------


def test_beir_folder_with_corpus_jsonl():
    assert list(open_corpus(BEIR_TINY)) == TINY_DOCS
    assert list(open_corpus(str(BEIR_TINY))) == TINY_DOCS


def test_beir_folder_with_corpus_jsonl_gz(tmp_path):
    folder = tmp_path / "beir"
    folder.mkdir()
    with gzip.open(folder / "corpus.jsonl.gz", "wb") as f:
        f.write((BEIR_TINY / "corpus.jsonl").read_bytes())
    assert list(open_corpus(folder)) == TINY_DOCS


def test_jsonl_file_directly():
    assert list(open_corpus(BEIR_TINY / "corpus.jsonl")) == TINY_DOCS


def test_gzipped_jsonl_file_directly(tmp_path):
    path = tmp_path / "docs.jsonl.gz"
    with gzip.open(path, "wb") as f:
        f.write((BEIR_TINY / "corpus.jsonl").read_bytes())
    assert list(open_corpus(path)) == TINY_DOCS


def test_folder_without_corpus_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="corpus.jsonl"):
        open_corpus(tmp_path)


def test_id_and_contents_field_variants(tmp_path):
    path = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"_id": "a", "title": "T", "text": "body a"},
            {"id": "b", "contents": "body b"},  # pyserini style: id + contents, no title
            {"id": 7, "text": "body c", "title": None},  # numeric id becomes a string; null title is empty
        ],
    )
    assert list(open_corpus(path)) == [
        Doc("a", "T", "body a"),
        Doc("b", "", "body b"),
        Doc("7", "", "body c"),
    ]


def test_text_is_preferred_over_contents(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"_id": "a", "text": "from text", "contents": "other"}])
    assert list(open_corpus(path)) == [Doc("a", "", "from text")]


def test_doc_contents_joins_title_and_text():
    assert Doc("a", "Title", "body").contents == "Title body"
    assert Doc("a", "", "body").contents == "body"


def test_corpus_streams_and_is_re_iterable(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"_id": "a", "text": "x"}, {"_id": "b", "text": "y"}])
    corpus = open_corpus(path)
    assert not isinstance(corpus, (list, tuple))
    first = [d.id for d in corpus]
    second = [d.id for d in corpus]
    assert first == second == ["a", "b"]
    # each pass reads the source again
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"_id": "c", "text": "z"}) + "\n")
    assert [d.id for d in corpus] == ["a", "b", "c"]


def test_corpus_is_lazy(tmp_path):
    """A bad line late in the file only fails when the stream reaches it."""
    path = tmp_path / "c.jsonl"
    path.write_text('{"_id": "a", "text": "x"}\n{"_id": "b", "text": "y"}\n{not json\n', encoding="utf-8")
    it = iter(open_corpus(path))
    assert next(it).id == "a"
    assert next(it).id == "b"
    with pytest.raises(DataFormatError, match=f"{path}:3"):
        next(it)


def test_malformed_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "c.jsonl"
    # line 2 is blank and still counted
    path.write_text('{"_id": "a", "text": "x"}\n\n{"_id": "b", "text": \n', encoding="utf-8")
    with pytest.raises(DataFormatError) as exc:
        list(open_corpus(path))
    assert f"{path}:3" in str(exc.value)
    assert "malformed JSON" in str(exc.value)


def test_malformed_line_in_gzip_names_file_and_line(tmp_path):
    path = tmp_path / "c.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write('{"_id": "a", "text": "x"}\n[1, 2]\n')
    with pytest.raises(DataFormatError, match=f"{path}:2.*JSON object"):
        list(open_corpus(path))


@pytest.mark.parametrize(
    ("record", "fields"),
    [
        ({"_id": "a", "title": "t"}, ("'text'", "'contents'")),  # neither text nor contents
        ({"title": "t", "text": "x"}, ("'id'", "'_id'")),
    ],
)
def test_missing_field(tmp_path, record, fields):
    path = write_jsonl(tmp_path / "c.jsonl", [{"_id": "ok", "text": "fine"}, record])
    with pytest.raises(DataFormatError) as exc:
        list(open_corpus(path))
    msg = str(exc.value)
    assert f"{path}:2" in msg and "missing field" in msg
    assert any(field in msg for field in fields), msg


@pytest.mark.parametrize("title", [5, 0, False, ["a"], {"x": 1}])
def test_non_string_title(tmp_path, title):
    path = write_jsonl(tmp_path / "c.jsonl", [{"_id": "a", "title": title, "text": "x"}])
    with pytest.raises(DataFormatError) as exc:
        list(open_corpus(path))
    assert f"{path}:1" in str(exc.value) and "title" in str(exc.value)


def test_non_string_text(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"_id": "a", "text": ["x"]}])
    with pytest.raises(DataFormatError, match=f"{path}:1.*'text'"):
        list(open_corpus(path))


@pytest.mark.parametrize("doc_id", ["d 1", "d\t1", " d1", "", True])
def test_bad_doc_id(tmp_path, doc_id):
    path = write_jsonl(tmp_path / "c.jsonl", [{"_id": "ok", "text": "x"}, {"_id": doc_id, "text": "y"}])
    with pytest.raises(DataFormatError, match=f"{path}:2"):
        list(open_corpus(path))


# --- queries -----------------------------------------------------------------------------------


def test_queries_from_beir_folder_keep_file_order():
    assert load_queries(BEIR_TINY) == {"q1": "cat on a mat", "q2": "dogs", "q3": "fish"}
    assert list(load_queries(BEIR_TINY)) == ["q1", "q2", "q3"]


def test_queries_from_jsonl_file(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [{"_id": "1", "text": "a b"}, {"id": 2, "text": "c"}])
    assert load_queries(path) == {"1": "a b", "2": "c"}


def test_queries_from_gzipped_jsonl_file(tmp_path):
    path = tmp_path / "q.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(json.dumps({"_id": "q1", "text": "hello"}) + "\n")
    assert load_queries(path) == {"q1": "hello"}


def test_queries_from_tsv(tmp_path):
    path = tmp_path / "q.tsv"
    path.write_text("q1\thello world\n\nq2\ttab\tinside\n", encoding="utf-8")
    assert load_queries(path) == {"q1": "hello world", "q2": "tab\tinside"}


def test_tsv_query_without_tab(tmp_path):
    path = tmp_path / "q.tsv"
    path.write_text("q1\tok\nq2 no tab here\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=f"{path}:2"):
        load_queries(path)


def test_query_missing_text_field(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [{"_id": "q1", "query": "wrong key"}])
    with pytest.raises(DataFormatError, match=f"{path}:1.*'text'"):
        load_queries(path)


def test_split_filter_uses_qrels_of_that_split():
    assert load_queries(BEIR_TINY, split="test") == {"q1": "cat on a mat", "q2": "dogs"}
    assert load_queries(BEIR_TINY, split="dev") == {"q3": "fish"}


def test_missing_split_lists_available_splits():
    with pytest.raises(FileNotFoundError) as exc:
        load_queries(BEIR_TINY, split="train")
    msg = str(exc.value)
    assert "'train'" in msg and "dev" in msg and "test" in msg


@pytest.mark.parametrize("fmt", ["jsonl", "tsv"])
def test_duplicate_query_id(tmp_path, fmt):
    if fmt == "jsonl":
        path = write_jsonl(
            tmp_path / "q.jsonl",
            [{"_id": "q1", "text": "a"}, {"_id": "q9", "text": "b"}, {"_id": "q1", "text": "c"}],
        )
    else:
        path = tmp_path / "q.tsv"
        path.write_text("q1\ta\nq9\tb\nq1\tc\n", encoding="utf-8")
    with pytest.raises(DataFormatError) as exc:
        load_queries(path)
    assert "duplicate" in str(exc.value) and "'q1'" in str(exc.value) and str(path) in str(exc.value)


def test_folder_without_queries_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="queries.jsonl"):
        load_queries(tmp_path)


# --- neither a local path nor a loadable ir_datasets id ----------------------------------------


@pytest.mark.parametrize("loader", [open_corpus, load_queries])
def test_unknown_spec_names_the_local_folder_alternative(monkeypatch, tmp_path, loader):
    monkeypatch.setenv("IR_DATASETS_HOME", str(tmp_path / "irds"))
    with pytest.raises(DatasetUnavailableError) as exc:
        loader("no-such-dataset/really-not")
    msg = str(exc.value)
    assert "no-such-dataset/really-not" in msg
    assert "local BEIR folder" in msg


def test_missing_local_file_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("IR_DATASETS_HOME", str(tmp_path / "irds"))
    missing = tmp_path / "nope" / "corpus.jsonl"
    with pytest.raises(DatasetUnavailableError, match="local BEIR folder") as exc:
        open_corpus(missing)
    assert str(missing) in str(exc.value)


_OFFLINE_PROBE = textwrap.dedent(
    """
    import json, socket, sys

    def _offline(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "network disabled by the test")

    socket.getaddrinfo = _offline
    socket.socket.connect = _offline
    socket.socket.connect_ex = _offline

    from lsr.data.corpus import load_queries, open_corpus
    from lsr.errors import DatasetUnavailableError

    out = {}
    for what, call in (("corpus", lambda: next(iter(open_corpus("beir/scifact/test")))),
                       ("queries", lambda: load_queries("beir/scifact/test"))):
        try:
            call()
            out[what] = "no error"
        except DatasetUnavailableError as exc:
            out[what] = "DatasetUnavailableError: " + str(exc)
        except BaseException as exc:
            out[what] = type(exc).__name__ + ": " + str(exc)
    print("RESULT " + json.dumps(out))
    """
)


def test_known_ir_datasets_id_offline_says_use_a_local_folder(tmp_path):
    """A real ir_datasets id on a machine without network: a clear error, quickly.

    Runs in a subprocess whose sockets are disabled, so the test is offline even on
    a machine with internet, and with IR_DATASETS_HOME in tmp_path.
    """
    pytest.importorskip("ir_datasets")
    env = {**os.environ, "IR_DATASETS_HOME": str(tmp_path / "irds")}
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _OFFLINE_PROBE], env=env, capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        pytest.skip("ir_datasets did not fail within 20 s with the network disabled")
    elapsed = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    for what in ("corpus", "queries"):
        assert result[what].startswith("DatasetUnavailableError: "), result[what]
        assert "beir/scifact/test" in result[what]
        assert "could not load" in result[what]  # a known id whose download failed, not an unknown id
        assert "local BEIR folder" in result[what]
    assert elapsed < 15, f"offline failure took {elapsed:.1f}s"
    shutil.rmtree(tmp_path / "irds", ignore_errors=True)


def test_split_with_a_queries_file_is_refused(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [{"_id": "q1", "text": "a"}])
    with pytest.raises(ValueError, match="applies to a BEIR folder only"):
        load_queries(path, split="test")


def test_utf8_bom_is_tolerated(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"_id": "a", "text": "x"}).encode() + b"\n")
    assert list(open_corpus(path)) == [Doc("a", "", "x")]


def test_invalid_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(b'{"_id": "a", "text": "x"}\n{"_id": "b", "text": "\xff\xfe"}\n')
    with pytest.raises(DataFormatError, match=r"corpus.jsonl:2: not valid UTF-8"):
        list(open_corpus(path))
