"""The REST write endpoints on a live index (in process): upsert documents as text or vectors, delete by
id; each answer comes after the commit, and the next search sees it."""

from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient

from lsr.cli import main
from lsr.config import ServiceConfig
from lsr.service.app import create_app
from lsr.service.openapi import DeleteAnswer, UpsertAnswer


@pytest.fixture
def client(tmp_path, monkeypatch):
    monkeypatch.delenv("LSR_API_KEY", raising=False)
    corpus = tmp_path / "c.jsonl"
    docs = [
        {"_id": f"d{i}", "title": "", "text": t} for i, t in enumerate(["cat mat", "dog park", "bird song"])
    ]
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
    index = tmp_path / "idx"
    assert main(["index", "--corpus", str(corpus), "--encoder", "bm25", "--out", str(index), "--quiet"]) == 0
    settings = ServiceConfig(indexes={"t": str(index)}, warmup=False, log_requests=False)
    with TestClient(create_app(settings)) as c:
        _wait_ready(c)
        yield c


def _wait_ready(c: TestClient) -> None:
    for _ in range(100):
        if c.get("/readyz").status_code == 200:
            break
        time.sleep(0.05)


def _ids(client, query: str) -> list[str]:
    response = client.post("/v1/search", json={"query": query, "k": 10})
    assert response.status_code == 200, response.text
    return [h["id"] for h in response.json()["hits"]]


def test_upsert_and_delete(client):
    response = client.post(
        "/v1/indexes/t/docs", json={"docs": [{"id": "d9", "text": "cat owl"}, {"id": "d1", "text": "owl"}]}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["added"], body["updated"], body["generation"]) == (["d9"], ["d1"], 1)
    UpsertAnswer.model_validate(body)  # the documented answer, no undocumented key
    assert sorted(_ids(client, "owl")) == ["d1", "d9"]
    assert _ids(client, "dog") == []  # d1's old text is gone
    deleted = client.delete("/v1/indexes/t/docs/d9").json()
    assert deleted["deleted"] == ["d9"]
    DeleteAnswer.model_validate(deleted)
    spec = client.get("/openapi.json").json()
    for path, method, model in (("/v1/indexes/{name}/docs", "post", "UpsertAnswer"),
                                ("/v1/indexes/{name}/docs/{doc_id}", "delete", "DeleteAnswer")):  # fmt: skip
        responses = spec["paths"][path][method]["responses"]
        assert responses["200"]["content"]["application/json"]["schema"]["$ref"].endswith(model)
        assert {"404", "409"} <= set(responses)
    assert _ids(client, "owl") == ["d1"]
    missing = client.delete("/v1/indexes/t/docs/nope")
    assert missing.status_code == 404 and "nothing changed" in missing.json()["error"]["message"]


def test_bad_documents_are_refused(client):
    for docs, status in (
        ([], 422),
        ([{"id": "x", "text": " "}], 400),  # no text: the schema cannot say "not blank" here
        ([{"id": "x", "text": "a", "vector": {"a": 1.0}}], 422),
        ([{"id": "x", "text": "a"}, {"id": "x", "text": "b"}], 400),  # the schema cannot say "once"
        ([{"id": "a b", "text": "a"}], 422),  # whitespace in an id (the schema's pattern)
        ([{"id": "x", "vector": {"cat": 1e30}}], 422),  # outside the schema's weight range
        ([{"id": "x", "vector": {"cat": 1.0}}], 400),  # a BM25 index takes text
    ):
        response = client.post("/v1/indexes/t/docs", json={"docs": docs})
        assert response.status_code == status, (docs, response.text)
    assert _ids(client, "cat") == ["d0"]


def test_search_pages(client):
    first = client.post("/v1/search", json={"query": "cat mat dog", "k": 1}).json()["hits"]
    second = client.post("/v1/search", json={"query": "cat mat dog", "k": 1, "from": 1}).json()["hits"]
    both = client.post("/v1/search", json={"query": "cat mat dog", "k": 2}).json()["hits"]
    assert [h["id"] for h in first + second] == [h["id"] for h in both]
    assert second[0]["rank"] == 2
    bad = client.post("/v1/search", json={"query": "cat", "k": 1, "from": -1})
    assert bad.status_code == 422


def test_filter_errors_are_400(client):
    """A filter is an object by the schema; whether this index can apply it only the index knows: 400."""
    bad = client.post("/v1/search", json={"query": "cat", "filter": {"term": {"lang": "en"}}})
    assert bad.status_code == 400 and "no metadata fields" in bad.json()["error"]["message"]


def test_a_write_by_another_process_is_searchable_within_the_refresh_interval(client, tmp_path):
    """A commit made outside this worker (here: LiveIndex directly, as another worker or `lsr add`
    would) is picked up by the refresh poll (refresh_s = 0.5) without a request that writes. The
    deadline is ten refresh intervals: one second was missed (2.3 s) on a 2-core machine busy with
    two other CPU-bound processes; without the poll the document is never served."""
    from lsr.data.corpus import Doc
    from lsr.live import LiveIndex

    LiveIndex(tmp_path / "idx").add_documents([Doc("w1", "", "zebra crossing")])
    start = time.monotonic()
    while _ids(client, "zebra") != ["w1"]:
        assert time.monotonic() - start < 5.0, "the new generation was not served within 5 s"
        time.sleep(0.02)


def test_filter_indexes_within_the_configured_bytes_and_per_generation(tmp_path, monkeypatch):
    """``service.filter_index_mb`` bounds each served index's filter indexes, also after a write
    reopens it; a filtered search answered from a filter index never returns a document deleted since
    (each committed generation is opened with its own filter cache)."""
    monkeypatch.delenv("LSR_API_KEY", raising=False)
    corpus = tmp_path / "c.jsonl"
    docs = [  # 3 of 80 in English: few enough for a filter index
        {"_id": f"d{i}", "title": "", "text": "cat mat", "metadata": {"lang": "de" if i % 30 else "en"}}
        for i in range(80)
    ]
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
    index = tmp_path / "idx"
    flags = ["--set", "index.fields.lang=keyword", "--quiet"]
    assert main(["index", "--corpus", str(corpus), "--encoder", "bm25", "--out", str(index), *flags]) == 0
    settings = ServiceConfig(indexes={"t": str(index)}, warmup=False, log_requests=False, filter_index_mb=3)
    query = {"query": "cat", "k": 10, "filter": {"term": {"lang": "en"}}}
    with TestClient(create_app(settings)) as c:
        _wait_ready(c)
        service = c.app.state.service

        def eager_search() -> list[str]:
            cache = service.indexes["t"].searcher.index.filter_cache
            assert cache.max_bytes == 3 << 20
            cache.build_after, cache.min_cost = 1, 0.0  # a filter index even for this tiny index
            response = c.post("/v1/search", json=query)
            assert response.status_code == 200, response.text
            assert cache.index_bytes > 0
            return sorted(h["id"] for h in response.json()["hits"])

        assert eager_search() == ["d0", "d30", "d60"]
        assert c.delete("/v1/indexes/t/docs/d30").status_code == 200
        assert eager_search() == ["d0", "d60"]
    with pytest.raises(ValueError, match="filter_index_mb"):
        ServiceConfig(filter_index_mb=-1)
