"""The lean request path (lsr.service.lean): the same answers as FastAPI's own handler for valid and
invalid bodies alike, one write per response, the body deadline, and the cached metric children."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient

BODIES: list[tuple[str | None, bytes]] = [  # (content type, body)
    ("application/json", b'{"query": "cat dog"}'),
    ("application/json", b'{"index": "if", "query": "cat", "k": 3, "fields": ["title", "text"]}'),
    ("application/json; charset=utf-8", b'{"query": "cat", "k": 2.0, "from": 1}'),
    ("application/json", b'{"vector": {"cat": 1.5, "zzz-unknown": 2}}'),
    ("application/json", b'{"query": "cat", "mode": "safe"}'),
    ("application/json", b'{"query": "cat", "k": 0}'),  # 422 from the service's own check
    ("application/json", b'{"query": "cat", "k": 2.5}'),  # 422 from pydantic
    ("application/json", b'{"query": "cat", "extra": 1}'),
    ("application/json", b'{"query": null}'),
    ("application/json", b'{"query": "cat", "vector": {"cat": 1}}'),
    ("application/json", b'{"query": "   "}'),
    ("application/json", b'{"index": "nope", "query": "cat"}'),  # 404
    ("application/json", b'{"query": "cat", "alpha": 0.5}'),  # 400: alpha outside approx
    ("application/json", b'{"query": "cat", "rerank": "dense"}'),  # 400: no dense stage
    ("application/json", b'{"query": "cat"'),  # malformed JSON
    ("application/json", b'["cat"]'),
    ("application/json", b"\xff\xfe"),
    ("application/json", b"NaN"),
    ("application/json", b""),
    ("text/plain", b'{"query": "cat"}'),  # 415
    (None, b'{"query": "cat"}'),
    ("application/vnd.api+json", b'{"query": "cat"}'),
]
BATCH_BODIES: list[tuple[str | None, bytes]] = [
    ("application/json", b'{"queries": [{"id": "a", "query": "cat"}, {"vector": {"dog": 1}}], "k": 2}'),
    ("application/json", b'{"queries": []}'),
    ("application/json", b'{"queries": [{"query": "cat", "bad": 1}]}'),
    ("text/plain", b'{"queries": [{"query": "cat"}]}'),
]


def _settings(index):
    from lsr.config import ServiceConfig

    return ServiceConfig(indexes={"if": str(index)}, log_requests=False, api_key_env="LSR_TEST_NO_KEY")


def _answers(app, path: str, bodies: list[tuple[str | None, bytes]]) -> list[tuple[int, dict]]:
    out = []
    with TestClient(app) as client:
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the app did not get ready"
            time.sleep(0.05)
        for content_type, body in bodies:
            headers = {"content-type": content_type} if content_type else {}
            r = client.post(path, content=body, headers=headers)
            answer = r.json()
            answer.pop("took_ms", None)  # a timing
            out.append((r.status_code, answer))
    return out


@pytest.mark.parametrize("path, bodies", [("/v1/search", BODIES), ("/v1/search/batch", BATCH_BODIES)])
def test_the_lean_path_answers_as_fastapis_handler(tiny_if_index, monkeypatch, path, bodies):
    """Each body, valid or not, gets the same status and answer with the lean handler as without it
    (FastAPI's handler alone); both valid and error answers occur."""
    from lsr.service import app as service_app

    lean = _answers(service_app.create_app(_settings(tiny_if_index)), path, bodies)
    monkeypatch.setattr(service_app, "make_lean", lambda *args: None)
    plain = _answers(service_app.create_app(_settings(tiny_if_index)), path, bodies)
    assert lean == plain
    statuses = {status for status, _ in lean}
    assert 200 in statuses and statuses & {400, 415, 422}


def test_the_direct_path_answers_labels_and_fails_as_the_router_does(tiny_if_index, monkeypatch):
    """A POST /v1/search goes to the direct handler (before the router) for any body; its answers are
    counted under the route's path, and an unexpected error is the same 500 as through the router."""
    from lsr.service import app as service_app

    app = service_app.create_app(_settings(tiny_if_index))
    service = app.state.service
    direct = service.direct["/v1/search"]
    calls: list[int] = []

    async def counted(*args):
        calls.append(1)
        await direct(*args)

    service.direct["/v1/search"] = counted
    bodies = [
        ("application/json", b'{"query": "cat"}'),
        ("application/json", b'{"index": "nope", "query": "cat"}'),  # 404 from the endpoint
        ("application/json", b'{"query": "cat", "k": 2.5}'),  # 422: FastAPI's, through the router
    ]
    assert [status for status, _ in _answers(app, "/v1/search", bodies)] == [200, 404, 422]
    assert len(calls) == 3
    text = service.metrics.render().decode()
    for index, status in (("if", 200), ("-", 404), ("-", 422)):  # index: set by the endpoint only
        assert f'lsr_requests_total{{endpoint="/v1/search",index="{index}",status="{status}"}} 1.0' in text

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(service_app.Service, "search_one", boom)
    failed = []
    for patch_lean in (False, True):
        if patch_lean:
            monkeypatch.setattr(service_app, "make_lean", lambda *args: None)
        with TestClient(
            service_app.create_app(_settings(tiny_if_index)), raise_server_exceptions=False
        ) as client:
            deadline = time.monotonic() + 60
            while client.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, "the app did not get ready"
                time.sleep(0.05)
            r = client.post("/v1/search", json={"query": "cat"})
            failed.append((r.status_code, r.json()))
    assert (
        failed[0]
        == failed[1]
        == (500, {"error": {"status": 500, "message": "internal error: RuntimeError: boom"}})
    )


def test_a_valid_body_skips_fastapis_handler_and_an_invalid_one_reaches_it():
    from pydantic import BaseModel

    from lsr.service.lean import lean_handler

    class Body(BaseModel):
        q: str

    calls: list[str] = []

    async def fallback(scope, receive, send):
        calls.append("fallback:" + (await receive())["body"].decode())

    async def endpoint(body, request):
        calls.append(f"endpoint:{body.q}")
        from starlette.responses import Response

        return Response(b"ok")

    async def run(content_type: bytes, body: bytes) -> None:
        scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"content-type", content_type)]}
        sent = []

        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message):
            sent.append(message)

        await lean_handler(fallback, Body, endpoint)(scope, receive, send)

    asyncio.run(run(b"application/json", b'{"q": "x"}'))
    asyncio.run(run(b"Application/JSON; charset=utf-8", b'{"q": "y"}'))
    asyncio.run(run(b"application/json", b'{"q": 1}'))  # invalid: FastAPI answers, with the body replayed
    asyncio.run(run(b"text/plain", b'{"q": "z"}'))
    assert calls == ["endpoint:x", "endpoint:y", 'fallback:{"q": 1}', 'fallback:{"q": "z"}']


def test_make_lean_refuses_a_route_it_does_not_know():
    from fastapi import FastAPI

    from lsr.service.lean import make_lean

    async def endpoint(body, request):  # pragma: no cover - never routed
        raise AssertionError

    with pytest.raises(RuntimeError, match="/v1/nothing"):
        make_lean(FastAPI(), "/v1/nothing", object, endpoint)  # type: ignore[arg-type]


class _Transport:
    def __init__(self):
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data):
        self.writes.append(bytes(data))

    def close(self):
        self.closed = True

    def get_extra_info(self, name):
        return ("127.0.0.1", 1) if name == "peername" else None


def test_corked_transport_sends_one_steps_writes_as_one_and_flushes_on_close():
    from lsr.service.lean import CorkedTransport

    async def run() -> _Transport:
        raw = _Transport()
        t = CorkedTransport(raw, asyncio.get_running_loop())
        t.write(b"HTTP/1.1 200 OK\r\n\r\n")
        t.write(memoryview(b"body"))
        assert raw.writes == []  # not yet: at the end of this step
        await asyncio.sleep(0)
        assert raw.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
        t.write(b"last")
        t.close()  # a close sends what is pending first
        assert raw.writes[-1] == b"last" and raw.closed
        await asyncio.sleep(0)
        assert len(raw.writes) == 2  # the flush scheduled before the close sends nothing twice
        assert t.get_extra_info("peername") == ("127.0.0.1", 1)
        return raw

    asyncio.run(run())


def test_deadline_times_out_and_lets_other_cancellations_through():
    from lsr.service.app import Deadline

    async def within(seconds: float, work: float) -> str:
        try:
            with Deadline(seconds):
                await asyncio.sleep(work)
                return "done"
        except asyncio.TimeoutError:
            return "timeout"

    assert asyncio.run(within(1.0, 0.01)) == "done"
    assert asyncio.run(within(0.01, 1.0)) == "timeout"

    async def cancelled_from_outside() -> bool:
        task = asyncio.create_task(within(5.0, 5.0))
        await asyncio.sleep(0.01)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(cancelled_from_outside())


def test_metrics_count_through_the_cached_children():
    from lsr.service.metrics import Metrics

    m = Metrics()
    for status in (200, 200, 404):
        m.observe("/v1/search", "bm25", status, 0.002)
    m.searched("bm25")
    m.searched("bm25", 3)
    text = m.render().decode()
    assert 'lsr_requests_total{endpoint="/v1/search",index="bm25",status="200"} 2.0' in text
    assert 'lsr_requests_total{endpoint="/v1/search",index="bm25",status="404"} 1.0' in text
    assert 'lsr_request_latency_seconds_count{endpoint="/v1/search",index="bm25"} 3.0' in text
    assert 'lsr_queries_total{index="bm25"} 4.0' in text


def test_search_threads_default_to_the_cores_the_process_may_use(monkeypatch):
    import os

    from lsr.config import ServiceConfig

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert ServiceConfig().threads == 2 and ServiceConfig().admitted == 8
    assert ServiceConfig(search_threads=3).threads == 3
    # on Ray the search threads mostly wait for shards: one per admitted search, at most 16 x threads
    assert ServiceConfig().pool_threads == 2 and ServiceConfig(ray="local").pool_threads == 8
    assert ServiceConfig(ray="local", max_in_flight=1000).pool_threads == 32


def test_orjson_and_json_give_the_same_answer_values():
    """The response serializer (orjson when installed) and the stdlib fallback give the same JSON."""
    orjson = pytest.importorskip("orjson")
    answer = {
        "index": "bm25",
        "hits": [{"rank": 1, "id": "d1", "score": 1e-05, "title": "Ünïcode ✓ \u2028"}],
        "took_ms": 0.123,
        "ignored_terms": ['a"b', "\\"],
    }
    stdlib = json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    assert json.loads(orjson.dumps(answer)) == json.loads(stdlib) == answer


def test_search_pool_returns_results_and_errors_and_skips_cancelled_jobs():
    import threading

    from lsr.service.lean import SearchPool

    async def run() -> None:
        pool = SearchPool(1)
        gate = threading.Event()
        ran: list[str] = []

        def job(name: str) -> str:
            gate.wait(5)
            ran.append(name)
            return name.upper()

        def fail() -> None:
            raise ValueError("bad query")

        first = pool.submit(job, "a")  # holds the one thread until the gate opens
        queued = pool.submit(job, "b")
        queued.cancel()  # a request that timed out while its job was queued
        later = pool.submit(job, "c")
        gate.set()
        assert await first == "A" and await later == "C"
        with pytest.raises(ValueError, match="bad query"):
            await pool.submit(fail)
        assert ran == ["a", "c"]  # the cancelled job never ran
        pool.shutdown()

    asyncio.run(run())
