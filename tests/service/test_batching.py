"""Query encoding shared by concurrent requests (lsr.service.batching): a query that finds the encoder
idle starts at once, those that come meanwhile are encoded together next; answers are the same under
concurrency as one request at a time; a query that fails in a batch fails alone."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("torch")

from fastapi.testclient import TestClient

from lsr.index.sparse import SparseBatch
from lsr.service.batching import EncodeBatcher
from lsr.service.lean import SearchPool


class SlowEncoder:
    """texts -> one term each (its length), after a pause; records each call's texts; fails on 'boom'."""

    def __init__(self, pause: float = 0.05):
        self.pause = pause
        self.calls: list[list[str]] = []
        self.lock = threading.Lock()

    def __call__(self, texts):
        with self.lock:
            self.calls.append(list(texts))
        time.sleep(self.pause)
        if any("boom" in t for t in texts):
            raise ValueError("cannot encode 'boom'")
        return SparseBatch.from_rows(([len(t)], [1.0]) for t in texts)


async def _encode_all(batcher: EncodeBatcher, texts: list[str]) -> list:
    first = asyncio.ensure_future(batcher.encode(texts[0]))
    await asyncio.sleep(0.01)  # the first starts alone; the rest come while it runs
    rest = [asyncio.ensure_future(batcher.encode(t)) for t in texts[1:]]
    return await asyncio.gather(first, *rest, return_exceptions=True)


def test_queries_that_come_while_the_encoder_is_busy_share_one_batch():
    async def run():
        pool = SearchPool(2)
        encoder = SlowEncoder()
        texts = ["a", "bb", "ccc", "dddd", "eeeee", "ffffff", "g" * 7, "h" * 8]
        out = await _encode_all(EncodeBatcher(pool, encoder, slots=1), texts)
        pool.shutdown()
        return encoder.calls, texts, out

    calls, texts, out = asyncio.run(run())
    assert calls == [texts[:1], texts[1:]]
    for text, vector in zip(texts, out, strict=True):
        assert len(vector) == 1 and vector.row(0)[0].tolist() == [len(text)]


def test_a_failing_query_fails_alone():
    async def run():
        pool = SearchPool(2)
        encoder = SlowEncoder(pause=0.02)
        texts = ["first", "a", "boom", "ccc"]
        out = await _encode_all(EncodeBatcher(pool, encoder, slots=1), texts)
        pool.shutdown()
        return encoder.calls, out

    calls, out = asyncio.run(run())
    assert calls[:2] == [["first"], ["a", "boom", "ccc"]]  # the batch failed, then each alone
    assert sorted(map(tuple, calls[2:])) == [("a",), ("boom",), ("ccc",)]
    assert isinstance(out[2], ValueError) and "boom" in str(out[2])
    assert [v.row(0)[0].tolist() for i, v in enumerate(out) if i != 2] == [[5], [1], [3]]


def test_a_request_that_timed_out_is_dropped_from_its_batch():
    async def run():
        pool = SearchPool(1)
        encoder = SlowEncoder()
        batcher = EncodeBatcher(pool, encoder, slots=1)
        first = asyncio.ensure_future(batcher.encode("first"))
        await asyncio.sleep(0.01)
        gone = asyncio.ensure_future(batcher.encode("gone"))
        kept = asyncio.ensure_future(batcher.encode("kept"))
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.gather(first, kept)
        pool.shutdown()
        return encoder.calls

    assert asyncio.run(run()) == [["first"], ["kept"]]


def test_batcher_refuses_bad_settings():
    with pytest.raises(ValueError, match="slots = 0"):
        EncodeBatcher(None, lambda texts: None, slots=0)  # type: ignore[arg-type]


# --- the service ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_splade_index(tmp_path_factory):
    pytest.importorskip("transformers")
    from tiny_models import make_mlm, write_corpus

    from lsr.cli import main

    root = tmp_path_factory.mktemp("svc-splade")
    model = make_mlm(root / "tiny-mlm")
    corpus = write_corpus(root / "corpus.jsonl")
    out = root / "splade-index"
    assert main(["index", "--corpus", str(corpus), "--encoder", f"splade:{model}", "--out", str(out)]) == 0
    return out


QUERIES = ["cat", "vitamin d cancer", "the dog sat on the mat", "coffee sleep", "cells", "fish and bird"]


def _client(index, monkeypatch, pause: float = 0.0):
    from lsr.config import ServiceConfig
    from lsr.searcher import Searcher
    from lsr.service import app as service_app

    monkeypatch.delenv("LSR_QUERY_RUNTIME", raising=False)
    encode_texts = Searcher.encode_texts

    def slow(self, texts):  # wide enough a window that concurrent requests meet
        if any("boom" in t for t in texts):
            raise ValueError("cannot encode 'boom'")
        time.sleep(pause)
        return encode_texts(self, texts)

    monkeypatch.setattr(Searcher, "encode_texts", slow)
    sizes: list[int] = []
    start = EncodeBatcher._start
    monkeypatch.setattr(
        EncodeBatcher, "_start", lambda self, batch: (sizes.append(len(batch)), start(self, batch))
    )
    settings = ServiceConfig(
        indexes={"s": str(index)}, log_requests=False, api_key_env="LSR_TEST_NO_KEY", search_threads=2
    )
    client = TestClient(service_app.create_app(settings), raise_server_exceptions=False)
    return client, sizes


def _ready(client) -> None:
    deadline = time.monotonic() + 60
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the app did not get ready"
        time.sleep(0.05)


def _search(client, query: str) -> tuple[int, dict]:
    r = client.post("/v1/search", json={"query": query, "k": 5})
    answer = r.json()
    answer.pop("took_ms", None)
    return r.status_code, answer


def test_concurrent_requests_get_the_answers_of_one_at_a_time(tiny_splade_index, monkeypatch):
    client, sizes = _client(tiny_splade_index, monkeypatch, pause=0.03)
    with client:
        _ready(client)
        served = client.app.state.service.indexes["s"]
        alone = [_search(client, q) for q in QUERIES]
        assert sizes == [1] * len(QUERIES)  # one at a time: never a wait, never a batch
        with ThreadPoolExecutor(8) as pool:  # the admission limit: 4 x 2 threads
            together = list(pool.map(lambda q: _search(client, q), QUERIES * 4))
    assert together == alone * 4
    assert all(status == 200 and answer["hits"] for status, answer in alone)
    assert max(sizes) > 1  # some requests did share an encoding
    assert served.batcher is not None


def test_a_failing_query_fails_only_its_request(tiny_splade_index, monkeypatch):
    client, sizes = _client(tiny_splade_index, monkeypatch, pause=0.03)
    with client:
        _ready(client)
        alone = [_search(client, q) for q in QUERIES]
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(lambda q: _search(client, q), [*QUERIES[:3], "boom", *QUERIES[3:]]))
    assert got[3][0] == 500
    assert got[:3] + got[4:] == alone
