"""Fixtures for the service tests: a real ``lsr serve`` subprocess on a free loopback port, serving a
SciFact BM25 index and an inference-free index (a tiny random model over a tiny corpus)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "unit" / "encoders"))  # tiny_models: random tiny checkpoints

from service_helpers import API_KEY, free_port, wait_ready  # noqa: E402


@pytest.fixture(scope="session")
def tiny_if_index(tmp_path_factory) -> Path:
    """An inference-free index over tiny_models.DOCS (random tiny BERT MLM for documents)."""
    pytest.importorskip("transformers")
    from tiny_models import make_mlm, write_corpus

    from lsr.cli import main

    root = tmp_path_factory.mktemp("svc-if")
    model = make_mlm(root / "tiny-mlm")
    corpus = write_corpus(root / "corpus.jsonl")
    out = root / "if-index"
    assert (
        main(
            [
                "index",
                "--corpus",
                str(corpus),
                "--encoder",
                f"inference-free:{model}",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    return out


@pytest.fixture(scope="session")
def server(scifact_bm25_index, tiny_if_index, tmp_path_factory) -> Iterator[dict]:
    """``lsr serve`` in a subprocess: {url, headers, proc, log, bm25, if}. Killed at teardown."""
    root = tmp_path_factory.mktemp("svc")
    key_file = root / "api-key"
    key_file.write_text(API_KEY + "\n")
    log = root / "server.log"
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "lsr.cli",
        "serve",
        "--index",
        f"bm25={scifact_bm25_index}",
        "--index",
        f"if={tiny_if_index}",
        "--port",
        str(port),
        "--api-key-file",
        str(key_file),
        "--index-root",  # the tests reload copies made under their own tmp_path
        str(tmp_path_factory.getbasetemp()),
        "--max-batch",
        "100",
        "--threads",
        "2",
        "--max-query-chars",
        "500",
        "--max-query-tokens",
        "50",
    ]
    env = {k: v for k, v in os.environ.items() if k != "LSR_API_KEY"}
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, 90, proc, log)
        yield {
            "url": url,
            "headers": {"X-API-Key": API_KEY},
            "proc": proc,
            "log": log,
            "bm25": scifact_bm25_index,
            "if": tiny_if_index,
        }
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="session")
def client(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server["url"], headers=server["headers"], timeout=30) as c:
        yield c
