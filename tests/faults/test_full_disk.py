"""A full disk while building, encoding and committing a live write: simulated with the file-size limit
(RLIMIT_FSIZE in the child, SIGXFSZ ignored, so write() fails with EFBIG as it does with ENOSPC). The
command exits 2 with our error naming the artifact, leaves no temporary files, and the previous index
opens and answers as before."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lsr.api import Index
from lsr.live import LiveIndex

pytestmark = pytest.mark.faults

TINY = Path(__file__).resolve().parents[1] / "data" / "beir-tiny"
QUERIES = ["cat on a mat", "dogs", "the cat"]
LIMIT = 4096  # bytes per file: the tiny index's own files fit, a bigger corpus's docstore does not


def limited(limit: int = LIMIT) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def lsr(*args: str, cwd: Path, limit: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "lsr.cli", *args, "--quiet"]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, preexec_fn=limited if limit else None)


def answers(path: Path) -> list[list[str]]:
    index = Index.load(path)
    return [[h.doc_id for h in index.search(q, k=3)] for q in QUERIES]


def big_corpus(path: Path, n: int = 200) -> Path:
    text = "the cat sat on the mat while the dog barked " * 4
    path.write_text("".join(json.dumps({"_id": f"big{i}", "text": f"{text} {i}"}) + "\n" for i in range(n)))
    return path


@pytest.fixture
def work(tmp_path) -> Path:
    args = ("index", "--corpus", str(TINY), "--encoder", "bm25", "--out", "idx")
    built = lsr(*args, cwd=tmp_path, limit=False)
    assert built.returncode == 0, built.stderr
    big_corpus(tmp_path / "big.jsonl")
    return tmp_path


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*"))


def test_index_overwrite_on_a_full_disk_keeps_the_old_index(work):
    before = answers(work / "idx")
    r = lsr("index", "--corpus", "big.jsonl", "--encoder", "bm25", "--out", "idx", "--overwrite", cwd=work)
    assert r.returncode == 2, r.stderr
    assert "lsr index: error: writing idx failed: the file-size limit" in r.stderr
    assert "Traceback" not in r.stderr
    assert hidden(work) == [] and answers(work / "idx") == before


def test_encode_on_a_full_disk_publishes_nothing(work):
    r = lsr("encode", "--corpus", "big.jsonl", "--encoder", "bm25", "--out", "vec", cwd=work)
    assert r.returncode == 2 and "writing vec failed: the file-size limit" in r.stderr, r.stderr
    assert not (work / "vec").exists() and hidden(work) == []


def test_live_add_on_a_full_disk_leaves_the_index_as_it_was(work):
    before = answers(work / "idx")
    r = lsr("add", "--index", "idx", "--corpus", "big.jsonl", cwd=work)
    assert r.returncode == 2, r.stderr
    assert "writing idx failed: the file-size limit" in r.stderr and "Traceback" not in r.stderr
    assert answers(work / "idx") == before
    # the next write (with space again) succeeds and cleans up whatever the failed one left
    assert lsr("add", "--index", "idx", "--corpus", "big.jsonl", cwd=work, limit=False).returncode == 0
    assert LiveIndex(work / "idx").info()["n_docs"] == 3 + 200
    assert [p for p in hidden(work) if not p.startswith(".lock")] == []
