"""The REST service in a real uvicorn server: results equal `lsr search`, bad input gets the right 4xx
with a message and the server keeps serving, health checks answer while a slow search runs, a
reload under load loses no request."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import shutil
import statistics
import threading
import time

import httpx
import numpy as np
import pytest
from service_helpers import API_KEY, serve_in_thread, wait_ready

from lsr.cli import main
from lsr.data.corpus import load_queries
from lsr.data.trec import read_run
from lsr.index import SearchResult
from lsr.searcher import Searcher


def assert_serving(client: httpx.Client) -> None:
    assert client.get("/healthz").status_code == 200
    r = client.post("/v1/search", json={"query": "vitamin d", "k": 3})
    assert r.status_code == 200 and len(r.json()["hits"]) == 3


def ranked(run: dict[str, float]) -> list[tuple[str, float]]:
    return sorted(run.items(), key=lambda kv: -kv[1])  # stable: the run file keeps rank order


def assert_same(hits: list[dict], expected: list[tuple[str, float]]) -> None:
    """The same documents with the same scores, by descending score. Tied documents may differ in order:
    the service answers in the searcher's order, a run file in trec_eval's (lsr eval's)."""
    want = dict(expected)
    assert len(hits) == len(expected) and {h["id"] for h in hits} == set(want)
    scores = [h["score"] for h in hits]
    np.testing.assert_allclose(scores, [want[h["id"]] for h in hits], atol=2e-6, rtol=1e-6)
    assert all(a >= b - 2e-6 for a, b in zip(scores, scores[1:], strict=False))


# --- health, listing, metrics -----------------------------------------------------------------------


def test_health_ready_metrics_and_schema_need_no_key(server):
    url = server["url"]
    assert httpx.get(f"{url}/healthz").json()["status"] == "ok"
    assert httpx.get(f"{url}/readyz").json() == {"ready": True, "indexes": ["bm25", "if"]}
    assert "/v1/search" in httpx.get(f"{url}/openapi.json").json()["paths"]
    assert httpx.get(f"{url}/metrics").status_code == 200


def test_indexes_describe_size_encoder_counts(client, server):
    indexes = {i["name"]: i for i in client.get("/v1/indexes").json()["indexes"]}
    assert list(indexes) == ["bm25", "if"]
    bm25 = indexes["bm25"]
    assert bm25["n_docs"] == 5183 and bm25["encoder"]["name"] == "bm25" and bm25["docstore"]
    assert bm25["path"] == str(server["bm25"]) and bm25["generation"] >= 1 and bm25["bytes"] > 0
    assert bm25["modes"] == ["exact", "safe", "approx"] and bm25["dense_rerank"] is False
    assert indexes["if"]["encoder"]["name"] == "inference-free" and indexes["if"]["n_docs"] == 7


# --- results equal `lsr search` -------------------------------------------------------------------


def test_batch_and_single_search_equal_lsr_search(client, server, scifact, tmp_path):
    run_file = tmp_path / "run.trec"
    assert (
        main(
            [
                "search",
                "--index",
                str(server["bm25"]),
                "--queries",
                str(scifact),
                "--split",
                "test",
                "--k",
                "10",
                "--out",
                str(run_file),
                "--quiet",
            ]
        )
        == 0
    )
    expected = read_run(run_file)
    queries = load_queries(scifact, "test")
    qids = list(queries)
    assert len(qids) == 300
    for start in range(0, len(qids), 100):
        chunk = qids[start : start + 100]
        batch = [{"id": q, "query": queries[q]} for q in chunk]
        r = client.post("/v1/search/batch", json={"index": "bm25", "k": 10, "queries": batch})
        assert r.status_code == 200, r.text
        for qid, res in zip(chunk, r.json()["results"], strict=True):
            assert res["id"] == qid
            assert_same(res["hits"], ranked(expected.get(qid, {})))
    for qid in qids[:25]:  # one by one, in both exact and safe (block-max) mode
        for mode in ("exact", "safe"):
            r = client.post("/v1/search", json={"query": queries[qid], "k": 10, "mode": mode})
            assert r.status_code == 200 and r.json()["mode"] == mode
            assert_same(r.json()["hits"], ranked(expected[qid]))


def test_approx_mode_and_fields(client):
    r = client.post(
        "/v1/search",
        json={
            "query": "vitamin d deficiency",
            "k": 5,
            "mode": "approx",
            "alpha": 0.8,
            "beta": 0.5,
            "fields": ["title", "text"],
        },
    )
    assert r.status_code == 200
    hits = r.json()["hits"]
    assert len(hits) == 5 and all(h["text"] for h in hits) and [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    doc = client.get(f"/v1/docs/{hits[0]['id']}", params={"index": "bm25"}).json()
    assert doc["title"] == hits[0]["title"] and doc["text"] == hits[0]["text"]
    # the approx budget: a budget past the collection is the safe search
    body = {"query": "vitamin d deficiency", "k": 5}
    safe = client.post("/v1/search", json={**body, "mode": "safe"}).json()["hits"]
    r = client.post("/v1/search", json={**body, "mode": "approx", "budget": 10**7})
    assert r.status_code == 200 and [h["id"] for h in r.json()["hits"]] == [h["id"] for h in safe]
    small = client.post("/v1/search", json={**body, "mode": "approx", "budget": 16})
    assert small.status_code == 200 and 0 < len(small.json()["hits"]) <= 5


def test_inference_free_text_and_vector_queries(client, server, tmp_path):
    queries = tmp_path / "q.tsv"
    queries.write_text("q1\tvitamin cancer risk\nq2\tcoffee sleep\n")
    run_file = tmp_path / "run.trec"
    assert (
        main(
            [
                "search",
                "--index",
                str(server["if"]),
                "--queries",
                str(queries),
                "--k",
                "5",
                "--out",
                str(run_file),
                "--quiet",
            ]
        )
        == 0
    )
    expected = read_run(run_file)
    for qid, text in (("q1", "vitamin cancer risk"), ("q2", "coffee sleep")):
        r = client.post("/v1/search", json={"index": "if", "query": text, "k": 5})
        assert r.status_code == 200
        assert_same(r.json()["hits"], ranked(expected[qid]))
    searcher = Searcher(server["if"])  # a pre-encoded vector searches exactly what the library would
    df = np.diff(searcher.index.term_ptr)
    t1, t2 = (searcher.index.vocab[t] for t in np.argsort(-df, kind="stable")[:2])  # terms with postings
    vector = {t1: 1.5, t2: 0.5, "not-a-term": 2.0}
    res = searcher.index.search(*searcher.encode_vectors([vector]).row(0), k=5)
    r = client.post("/v1/search", json={"index": "if", "vector": vector, "k": 5})
    assert r.status_code == 200 and r.json()["ignored_terms"] == ["not-a-term"]
    keys = searcher.index.doc_keys
    assert_same(r.json()["hits"], [(keys[d], s) for d, s in zip(res.docs, res.scores, strict=True)])
    assert len(r.json()["hits"]) == min(5, len(res.docs)) and len(res.docs) > 0


def test_docs_endpoint(client):
    r = client.get("/v1/docs/4983", params={"index": "bm25"})  # the first SciFact document
    assert r.status_code == 200 and r.json()["id"] == "4983" and r.json()["title"]


# --- bad input: the right 4xx, a message, and the server keeps serving ------------------------------

BIG = 10 * 1024 * 1024


def _chunks():
    for _ in range(BIG // 65536):
        yield b"x" * 65536


BAD = [
    # name, method, path, request kwargs, status, message fragment
    (
        "malformed json",
        "POST",
        "/v1/search",
        {"content": b'{"query": "x", "k": ', "headers": {"Content-Type": "application/json"}},
        400,
        "malformed JSON",
    ),
    ("k wrong type", "POST", "/v1/search", {"json": {"query": "x", "k": "ten"}}, 422, "k: Input should be"),
    ("query wrong type", "POST", "/v1/search", {"json": {"query": 42}}, 422, "query: Input should be"),
    ("body is a list", "POST", "/v1/search", {"json": ["vitamin"]}, 422, "body"),
    ("unknown field", "POST", "/v1/search", {"json": {"query": "x", "colour": 1}}, 422, "colour"),
    ("empty query", "POST", "/v1/search", {"json": {"query": ""}}, 422, "empty query"),
    ("blank query", "POST", "/v1/search", {"json": {"query": "   \n"}}, 422, "empty query"),
    ("no query", "POST", "/v1/search", {"json": {"k": 3}}, 422, "exactly one of 'query'"),
    (
        "query and vector",
        "POST",
        "/v1/search",
        {"json": {"query": "x", "vector": {"a": 1}}},
        422,
        "exactly one of",
    ),
    ("k = 0", "POST", "/v1/search", {"json": {"query": "x", "k": 0}}, 422, "k = 0 must lie in [1, 1000]"),
    ("k = 10^9", "POST", "/v1/search", {"json": {"query": "x", "k": 10**9}}, 422, "k = 1000000000"),
    ("k float", "POST", "/v1/search", {"json": {"query": "x", "k": 2.5}}, 422, "k: Input should be"),
    ("long query", "POST", "/v1/search", {"json": {"query": "a" * 501}}, 422, "501 characters"),
    ("many tokens", "POST", "/v1/search", {"json": {"query": "a " * 51}}, 400, "51 tokens"),
    (
        "10 MB body",
        "POST",
        "/v1/search",
        {"content": b"{" + b" " * BIG + b"}", "headers": {"Content-Type": "application/json"}},
        413,
        "exceeds the maximum",
    ),
    (
        "10 MB chunked body",
        "POST",
        "/v1/search",
        {"content": _chunks, "headers": {"Content-Type": "application/json"}},
        413,
        "exceeds the maximum",
    ),
    (
        "unknown index",
        "POST",
        "/v1/search",
        {"json": {"query": "x", "index": "nope"}},
        404,
        "unknown index 'nope'",
    ),
    (
        "unknown doc id",
        "GET",
        "/v1/docs/no-such-doc",
        {"params": {"index": "bm25"}},
        404,
        "unknown doc id 'no-such-doc'",
    ),
    ("doc of unknown index", "GET", "/v1/docs/4983", {"params": {"index": "nope"}}, 404, "unknown index"),
    (
        "vector NaN",
        "POST",
        "/v1/search",
        {"content": b'{"vector": {"vitamin": NaN}}', "headers": {"Content-Type": "application/json"}},
        422,
        "term 'vitamin' is nan",
    ),
    (
        "vector inf",
        "POST",
        "/v1/search",
        {"content": b'{"vector": {"vitamin": 1e999}}', "headers": {"Content-Type": "application/json"}},
        422,
        "is inf",
    ),
    ("vector negative", "POST", "/v1/search", {"json": {"vector": {"vitamin": -1.0}}}, 422, "is -1.0"),
    ("vector zero", "POST", "/v1/search", {"json": {"vector": {"vitamin": 0}}}, 422, "in [1e-30, 1e+06]"),
    ("vector huge", "POST", "/v1/search", {"json": {"vector": {"vitamin": 1e30}}}, 422, "is 1e+30"),
    (
        "vector string weight",
        "POST",
        "/v1/search",
        {"json": {"vector": {"vitamin": "high"}}},
        422,
        "vector.vitamin",
    ),
    (
        "vector bool weight",
        "POST",
        "/v1/search",
        {"json": {"vector": {"vitamin": True}}},
        422,
        "vector.vitamin",
    ),
    ("vector not an object", "POST", "/v1/search", {"json": {"vector": [1, 2]}}, 422, "vector"),
    ("bad mode", "POST", "/v1/search", {"json": {"query": "x", "mode": "fast"}}, 422, "mode"),
    (
        "alpha with exact",
        "POST",
        "/v1/search",
        {"json": {"query": "x", "alpha": 0.5}},
        400,
        "alpha and beta must be 1",
    ),
    (
        "budget with exact",
        "POST",
        "/v1/search",
        {"json": {"query": "x", "budget": 100}},
        400,
        "budget 0 (use mode='approx')",
    ),
    (
        "negative budget",
        "POST",
        "/v1/search",
        {"json": {"query": "x", "mode": "approx", "budget": -5}},
        422,
        "budget",
    ),
    ("budget not a number", "POST", "/v1/search", {"json": {"query": "x", "budget": "many"}}, 422, "budget"),
    (
        "alpha out of range",
        "POST",
        "/v1/search",
        {"json": {"query": "x", "mode": "approx", "alpha": 2}},
        422,
        "alpha must be a number in (0, 1]",
    ),
    ("bad field", "POST", "/v1/search", {"json": {"query": "x", "fields": ["body"]}}, 422, "fields.0"),
    ("bad rerank", "POST", "/v1/search", {"json": {"query": "x", "rerank": "cross"}}, 422, "rerank"),
    (
        "rerank without dense stage",
        "POST",
        "/v1/search",
        {"json": {"query": "x", "rerank": "dense"}},
        400,
        "index 'bm25' has no dense re-rank stage",
    ),
    (
        "rerank of a vector",
        "POST",
        "/v1/search",
        {"json": {"index": "if", "vector": {"cat": 1.0}, "rerank": "dense"}},
        400,
        "no dense",
    ),
    (
        "batch too big",
        "POST",
        "/v1/search/batch",
        {"json": {"queries": [{"query": "x"}] * 101}},
        422,
        "1 to 100 queries, got 101",
    ),
    ("empty batch", "POST", "/v1/search/batch", {"json": {"queries": []}}, 422, "got 0"),
    (
        "bad query in batch",
        "POST",
        "/v1/search/batch",
        {"json": {"queries": [{"query": "x"}, {"query": ""}]}},
        422,
        "queries[1]: empty query",
    ),
    ("reload unknown index", "POST", "/v1/indexes/nope/reload", {}, 404, "unknown index"),
    (
        "reload from outside the index roots",
        "POST",
        "/v1/indexes/bm25/reload",
        {"json": {"path": "/no/such/index"}},
        403,
        "outside the index roots",
    ),
    ("form body", "POST", "/v1/search", {"data": {"query": "x"}}, 415, "application/json"),
    ("unknown route", "GET", "/v1/nothing", {}, 404, "no route '/v1/nothing'"),
    ("wrong method", "GET", "/v1/search", {}, 405, "Method Not Allowed"),
    (
        "missing API key",
        "POST",
        "/v1/search",
        {"json": {"query": "x"}, "headers": {"X-API-Key": ""}},
        401,
        "wrong API key",
    ),
    (
        "wrong API key",
        "POST",
        "/v1/search",
        {"json": {"query": "x"}, "headers": {"X-API-Key": "guess"}},
        401,
        "wrong API key",
    ),
]


@pytest.mark.parametrize("name,method,path,kwargs,status,fragment", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_4xx_with_message(client, name, method, path, kwargs, status, fragment):
    kwargs = dict(kwargs)
    if callable(kwargs.get("content")):
        kwargs["content"] = kwargs["content"]()
    try:
        r = client.request(method, path, **kwargs)
    except httpx.WriteError:  # the server answered 413 and closed while the client still wrote
        pytest.fail(f"{name}: the server closed the connection without an answer")
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["status"] == status and fragment in error["message"], error
    assert_serving(client)


def test_no_api_key_header_is_401_but_health_stays_open(server):
    url = server["url"]
    r = httpx.post(f"{url}/v1/search", json={"query": "x"})
    assert r.status_code == 401 and "missing API key" in r.json()["error"]["message"]
    assert httpx.get(f"{url}/v1/indexes").status_code == 401
    for path in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(f"{url}{path}").status_code == 200


def test_metrics_count_requests_by_endpoint_index_status(client, server):
    client.post("/v1/search", json={"query": "vitamin", "index": "if"})
    client.post("/v1/search", json={"query": "", "index": "if"})
    text = httpx.get(f"{server['url']}/metrics").text
    assert 'lsr_requests_total{endpoint="/v1/search",index="if",status="200"}' in text
    assert 'lsr_requests_total{endpoint="/v1/search",index="if",status="422"}' in text
    assert 'lsr_request_latency_seconds_bucket{endpoint="/v1/search",index="if",le="0.05"}' in text
    assert 'lsr_index_docs{index="bm25"} 5183.0' in text


def test_one_json_log_line_per_request(client, server):
    client.get("/v1/docs/4983", params={"index": "bm25"}, headers={"X-Trace": "log-check"})
    time.sleep(0.2)
    lines = [json.loads(x) for x in server["log"].read_text().splitlines() if x.startswith("{")]
    docs = [x for x in lines if x["path"] == "/v1/docs/4983"]
    assert docs and docs[-1]["status"] == 200 and docs[-1]["index"] == "bm25" and docs[-1]["ms"] > 0


# --- reload under load ----------------------------------------------------------------------------


def test_reload_under_load_loses_no_request(client, server, tmp_path):
    copy = tmp_path / "bm25-v2"
    shutil.copytree(server["bm25"], copy)
    before = client.post("/v1/search", json={"query": "vitamin d", "k": 10}).json()
    gen0 = before["generation"]
    statuses: list[int] = []
    generations: set[int] = set()
    stop = threading.Event()

    async def hammer() -> None:
        async with httpx.AsyncClient(base_url=server["url"], headers=server["headers"], timeout=30) as c:

            async def one() -> None:
                while not stop.is_set():
                    try:
                        r = await c.post("/v1/search", json={"query": "vitamin d", "k": 10})
                        statuses.append(r.status_code)
                        generations.add(r.json().get("generation"))
                    except httpx.HTTPError:
                        statuses.append(-1)

            await asyncio.gather(*(one() for _ in range(8)))

    load = threading.Thread(target=asyncio.run, args=(hammer(),))
    load.start()
    try:
        time.sleep(0.3)
        for path in (str(copy), None, str(server["bm25"])):  # to the copy, reload in place, back
            r = client.post("/v1/indexes/bm25/reload", json={"path": path} if path else None)
            assert r.status_code == 200, r.text
            time.sleep(0.3)
    finally:
        stop.set()
        load.join(30)
    assert len(statuses) > 50
    assert statuses.count(200) == len(statuses), f"errors: {[s for s in statuses if s != 200][:5]}"
    assert {gen0 + 1, gen0 + 2, gen0 + 3} & generations  # requests were answered by the new versions
    info = {i["name"]: i for i in client.get("/v1/indexes").json()["indexes"]}["bm25"]
    assert info["generation"] == gen0 + 3 and info["path"] == str(server["bm25"])
    after = client.post("/v1/search", json={"query": "vitamin d", "k": 10}).json()
    assert after["hits"] == before["hits"]


# --- in-process servers with doctored searchers: slow searches, loading, dense rerank, CORS ---------


class SlowSearcher:
    """A real Searcher whose query encoding sleeps for queries that contain 'slow'."""

    def __init__(self, path, delay: float):
        self._inner = Searcher(path)
        self.delay = delay

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def encode(self, queries, plan):
        if any("slow" in t for t in queries.texts or []):
            time.sleep(self.delay)
        return self._inner.encode(queries, plan)


def _settings(index, **kw):
    from lsr.config import ServiceConfig

    return ServiceConfig(indexes={"if": str(index)}, log_requests=False, api_key_env="LSR_TEST_NO_KEY", **kw)


def test_a_worker_of_several_takes_connections_only_once_loaded(tiny_if_index):
    """With --workers N every worker shares one socket: one still loading must not accept (it would
    answer 503 while another worker's /readyz said ready), so its start-up waits for the load."""
    from lsr.service.app import create_app

    def opener(path):
        time.sleep(1.0)
        return Searcher(path)

    app = create_app(_settings(tiny_if_index, workers=2), opener=opener)
    t0 = time.perf_counter()
    with serve_in_thread(app) as url:
        assert time.perf_counter() - t0 >= 1.0  # started only after the slow load
        assert httpx.get(f"{url}/readyz").status_code == 200
        r = httpx.post(f"{url}/v1/search", json={"query": "cat"})
        assert r.status_code == 200, r.text


def test_health_answers_while_a_slow_search_runs_and_timeout_is_503(tiny_if_index):
    from lsr.service.app import create_app

    def opener(path):
        time.sleep(1.0)  # slow start-up: /readyz must say 503 meanwhile, /healthz 200
        return SlowSearcher(path, delay=3.0)

    app = create_app(_settings(tiny_if_index, timeout_s=1.0, search_threads=2), opener=opener)
    with serve_in_thread(app) as url:
        assert httpx.get(f"{url}/healthz").status_code == 200
        r = httpx.get(f"{url}/readyz")
        assert r.status_code == 503 and r.json()["ready"] is False
        r = httpx.post(f"{url}/v1/search", json={"query": "cat"})
        assert r.status_code == 503 and "still loading" in r.json()["error"]["message"]
        wait_ready(url, 30)
        result: dict = {}

        def slow() -> None:
            t0 = time.perf_counter()
            result["response"] = httpx.post(f"{url}/v1/search", json={"query": "slow cat"}, timeout=30)
            result["seconds"] = time.perf_counter() - t0

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.2)
        health_ms = []
        while t.is_alive():  # health checks keep answering quickly during the slow search
            t0 = time.perf_counter()
            assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
            health_ms.append((time.perf_counter() - t0) * 1e3)
            time.sleep(0.05)
        t.join()
        # answered quickly throughout (the median), and none waited for the 3 s search (the maximum;
        # a shared CI machine may stall one request for a moment, which says nothing about blocking)
        assert len(health_ms) >= 5 and statistics.median(health_ms) < 200 and max(health_ms) < 2500
        r = result["response"]
        assert r.status_code == 503 and "longer than the 1 s timeout" in r.json()["error"]["message"]
        assert result["seconds"] < 2.5  # answered at the timeout, not after the 3 s search
        assert httpx.post(f"{url}/v1/search", json={"query": "cat"}).status_code == 200
        assert "lsr_search_timeouts_total" in httpx.get(f"{url}/metrics").text


class FakeDense:
    pass


def test_dense_rerank_is_delegated_to_the_searcher(tiny_if_index):
    from lsr.service.app import create_app

    calls = []

    class DenseSearcher(SlowSearcher):
        dense = FakeDense()

        def search_batch(self, queries, plan, progress=False):
            if plan.rerank == "none":
                return self._inner.search_batch(queries, plan)
            calls.append((*queries.texts, plan.k, plan.mode, plan.rerank))
            plain = self._inner.search_batch(queries, dataclasses.replace(plan, rerank="none"))
            return [SearchResult(r.docs[::-1], r.scores[::-1]) for r in plain]  # a visibly different order

    app = create_app(_settings(tiny_if_index), opener=lambda p: DenseSearcher(p, 0.0))
    with serve_in_thread(app) as url:
        wait_ready(url, 30)
        plain = httpx.post(f"{url}/v1/search", json={"query": "vitamin cancer", "k": 3}).json()["hits"]
        r = httpx.post(f"{url}/v1/search", json={"query": "vitamin cancer", "k": 3, "rerank": "dense"})
        assert r.status_code == 200, r.text
        assert calls == [("vitamin cancer", 3, "exact", "dense")]
        assert [h["id"] for h in r.json()["hits"]] == [h["id"] for h in reversed(plain)]
        assert httpx.get(f"{url}/v1/indexes").json()["indexes"][0]["dense_rerank"] is True


def test_cors_only_when_configured(tiny_if_index, client):
    from lsr.service.app import create_app

    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in client.options("/v1/search", headers=preflight).headers
    app = create_app(_settings(tiny_if_index, cors_origins=("https://app.example",)))
    with serve_in_thread(app) as url:
        r = httpx.options(f"{url}/v1/search", headers=preflight)
        assert r.headers["access-control-allow-origin"] == "https://app.example"


# --- CLI and load script --------------------------------------------------------------------------


def test_serve_refuses_a_missing_index(tmp_path, capsys):
    assert main(["serve", "--index", str(tmp_path / "nothing")]) == 2
    assert "nothing" in capsys.readouterr().err


def test_load_script_measures_and_refuses_remote_urls(server, scifact, tmp_path, monkeypatch):
    from lsr.service import load

    assert load.main(["--url", "http://example.com:8000", "--queries", str(scifact)]) == 2
    monkeypatch.setenv("LSR_API_KEY", API_KEY)
    out = tmp_path / "load.json"
    assert (
        load.main(
            [
                "--url",
                server["url"],
                "--index",
                "bm25",
                "--queries",
                str(scifact),
                "--split",
                "test",
                "--concurrency",
                "1,4",
                "--duration",
                "5",
                "--max-requests",
                "60",
                "--warmup",
                "5",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    levels = json.loads(out.read_text())["runs"][0]["levels"]
    assert [lv["concurrency"] for lv in levels] == [1, 4]
    for lv in levels:
        assert lv["http"]["ok"] == 60 and lv["http"]["errors"] == 0 and lv["inprocess"]["ok"] == 60
        assert math.isfinite(lv["http"]["p99_ms"]) and lv["http"]["p99_ms"] >= lv["http"]["p50_ms"]


def test_searches_past_max_in_flight_are_shed_with_503_and_health_answers(tiny_if_index):
    """max_in_flight = 2 and slow searches: of 6 at once, 2 are admitted, 4 answered 503 at once with
    Retry-After; /healthz answers meanwhile; when the 2 finish, searches are admitted again."""
    from lsr.service.app import create_app

    app = create_app(
        _settings(tiny_if_index, search_threads=2, max_in_flight=2, warmup=False),
        opener=lambda p: SlowSearcher(p, delay=1.5),
    )
    with serve_in_thread(app) as url:
        wait_ready(url, 30)
        answers: list = []

        def slow() -> None:
            t0 = time.perf_counter()
            r = httpx.post(f"{url}/v1/search", json={"query": "slow cat"}, timeout=30)
            answers.append((r, time.perf_counter() - t0))

        threads = [threading.Thread(target=slow) for _ in range(6)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
        refused_unread = _shed_before_the_body(url)
        for t in threads:
            t.join()
        shed = [(r, s) for r, s in answers if r.status_code == 503]
        assert sorted(r.status_code for r, _ in answers) == [200, 200, 503, 503, 503, 503]
        assert all(r.headers["Retry-After"] == "1" and s < 1.0 for r, s in shed)
        assert "max_in_flight" in shed[0][0].json()["error"]["message"]
        assert refused_unread == [503, 503, 503, 503]
        assert httpx.post(f"{url}/v1/search", json={"query": "cat"}, timeout=30).status_code == 200
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        assert 'endpoint="/v1/search",index="-",status="503"' in metrics  # counted under its route


def _shed_before_the_body(url: str) -> list[int]:
    """While the searches in flight are at the limit, a search is refused before its body is read:
    a body that is not JSON gets 503 (not 422), and so does one that never arrives (at once, not after
    body_timeout_s); batch and explain alike."""
    import socket

    codes = [httpx.post(f"{url}/v1/search", content=b"{not json", timeout=5).status_code]
    codes += [
        httpx.post(f"{url}{path}", json={}, timeout=5).status_code
        for path in ("/v1/search/batch", "/v1/explain")
    ]
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n"
        )
        codes.append(int(sock.recv(4096).split(b" ")[1]))
    return codes


def test_a_body_trickled_past_body_timeout_is_408_and_searches_go_on(tiny_if_index):
    import socket

    from lsr.service.app import create_app

    app = create_app(_settings(tiny_if_index, search_threads=1, body_timeout_s=1.0, warmup=False))
    with serve_in_thread(app) as url:
        wait_ready(url, 30)
        host, port = url.removeprefix("http://").split(":")
        body = b'{"query": "cat"}'
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body[:1]
            )
            t0 = time.perf_counter()
            r = httpx.post(f"{url}/v1/search", json={"query": "cat"}, timeout=30)
            assert r.status_code == 200  # the one search thread is not tied up by the trickling client
            head = sock.recv(4096)
            assert head.startswith(b"HTTP/1.1 408") and time.perf_counter() - t0 < 8
