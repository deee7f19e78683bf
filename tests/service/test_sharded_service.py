"""A sharded index served by the one service app (in process): the same answers as the single index over
the same REST API; a shard that stops answering gives 200 answers with ``partial`` and the missing
shards (documented in the OpenAPI models), and /readyz lists it, until it answers again."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient

from lsr.cli import main
from lsr.config import ServiceConfig
from lsr.index.shards import ShardedIndex
from lsr.searcher import Searcher
from lsr.service.app import create_app
from lsr.service.openapi import BatchAnswer, Ready, SearchAnswer
from lsr.sharded import ShardedSearcher

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from sharded_helpers import QUERIES, FlakyShard, write_corpus


@pytest.fixture(scope="module")
def indexes(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sharded-svc")
    corpus = write_corpus(root / "corpus.jsonl")
    out = {"one": root / "one", "four": root / "four"}
    base = ["index", "--corpus", str(corpus), "--encoder", "bm25", "--quiet"]
    assert main([*base, "--out", str(out["one"])]) == 0
    assert main([*base, "--out", str(out["four"]), "--shards", "4"]) == 0
    return out


def _client(settings: ServiceConfig, opener=None) -> TestClient:
    client = TestClient(create_app(settings, opener))
    client.__enter__()
    for _ in range(200):
        if client.get("/readyz").status_code == 200:
            break
        time.sleep(0.05)
    return client


def _hits(client: TestClient, index: str, query: str, mode: str) -> list[tuple[str, float]]:
    r = client.post("/v1/search", json={"query": query, "k": 30, "mode": mode, "index": index})
    assert r.status_code == 200, r.text
    SearchAnswer.model_validate(r.json())
    return [(h["id"], h["score"]) for h in r.json()["hits"]]


def test_sharded_index_answers_as_one(indexes, monkeypatch):
    monkeypatch.delenv("LSR_API_KEY", raising=False)
    settings = ServiceConfig(indexes={k: str(v) for k, v in indexes.items()}, log_requests=False)
    client = _client(settings)
    try:
        listed = {i["name"]: i for i in client.get("/v1/indexes").json()["indexes"]}
        assert listed["four"]["n_docs"] == listed["one"]["n_docs"] == 160
        assert listed["four"]["modes"] == ["exact", "safe", "approx"]
        for mode in ("exact", "safe"):
            for q in QUERIES[:10]:
                assert _hits(client, "four", q, mode) == _hits(client, "one", q, mode)
        batch = {"queries": [{"query": q} for q in QUERIES[:5]], "k": 10}
        a = client.post("/v1/search/batch", json={**batch, "index": "one"}).json()
        b = client.post("/v1/search/batch", json={**batch, "index": "four"}).json()
        BatchAnswer.model_validate(b)
        assert [r["hits"] for r in a["results"]] == [r["hits"] for r in b["results"]]
        doc = client.get("/v1/docs/doc0042", params={"index": "four"})
        assert doc.status_code == 200 and doc.json()["id"] == "doc0042"
    finally:
        client.__exit__(None, None, None)


def test_a_dead_shard_gives_partial_answers_not_errors(indexes, monkeypatch):
    monkeypatch.delenv("LSR_API_KEY", raising=False)
    local = ShardedIndex.open(indexes["four"])
    backends = [FlakyShard(s) for s in local.segments]

    def opener(path: str):
        return ShardedSearcher(path, backends) if path == str(indexes["four"]) else Searcher(path)

    settings = ServiceConfig(indexes={"four": str(indexes["four"])}, log_requests=False)
    client = _client(settings, opener)
    try:
        query = {"query": "vitamin cancer risk", "k": 20}
        full = client.post("/v1/search", json=query).json()
        assert "partial" not in full
        backends[2].down = True
        r = client.post("/v1/search", json=query)
        assert r.status_code == 200
        body = r.json()
        SearchAnswer.model_validate(body)
        assert body["partial"] is True and body["missing_shards"] == ["shard-002"]
        lost = set(local.segments[2].doc_keys)
        assert [h["id"] for h in full["hits"] if h["id"] not in lost][:10] == [h["id"] for h in body["hits"]][
            :10
        ]
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["missing_shards"] == {"four": ["shard-002"]}
        Ready.model_validate(ready.json())
        backends[2].down = False
        assert "missing_shards" not in client.get("/readyz").json()
        again = client.post("/v1/search", json=query).json()
        assert "partial" not in again and again["hits"] == full["hits"]
        metrics = client.get("/metrics").text.splitlines()
        calls = [line for line in metrics if line.startswith("lsr_shard_calls{")]
        assert len(calls) == 4 and 'shard="shard-002"' in calls[2] and float(calls[2].split()[-1]) >= 4
    finally:
        client.__exit__(None, None, None)
