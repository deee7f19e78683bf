"""Load test of a running ``lsr serve``: QPS and p50/p99 latency at several concurrencies, beside an
in-process baseline (the same search work called directly on threads, no HTTP).

    python -m lsr.service.load --url http://127.0.0.1:8000 --index bm25 \\
        --queries ../shared/data/beir/scifact --concurrency 1,8,32 --duration 10 --out load.json

Each level runs for ``--duration`` seconds or ``--max-requests`` requests, whichever comes first,
with ``concurrency`` clients on one asyncio loop (httpx, keep-alive connections); query texts cycle
through the queries file. ``--reload-every S`` also POSTs a reload of the index every S seconds
during each level (errors must stay 0); ``--ingest-corpus C`` streams documents of C into a live
index during each level (upserts of ``--ingest-batch`` docs every ``--ingest-every`` seconds,
merges by the service's merge policy), to compare search latency with and without ingestion.
Loopback URLs only, unless ``--allow-remote``: this tool is for measuring, not for loading someone
else's server. The generator runs on the same machine as the server and takes CPU from it; the
printed table says so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import ipaddress
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from lsr.timing import latency_summary

LOOPBACK_NAMES = ("localhost", "ip6-localhost")


def is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def summarize(latencies_ms: list[float], errors: int, seconds: float) -> dict[str, Any]:
    ok = len(latencies_ms)
    lat = latency_summary(np.asarray(latencies_ms, dtype=np.float64))
    return {
        "requests": ok + errors,
        "ok": ok,
        "errors": errors,
        "seconds": round(seconds, 3),
        "qps": round(ok / seconds, 1) if seconds > 0 else 0.0,
        "p50_ms": round(lat["p50"], 3) if ok else None,
        "p99_ms": round(lat["p99"], 3) if ok else None,
        "mean_ms": round(lat["mean"], 3) if ok else None,
    }


async def drive_level(
    connect: Callable[[], Any],
    transport_errors: tuple[type[BaseException], ...],
    body_base: dict[str, Any],
    texts: list[str],
    concurrency: int,
    duration: float,
    max_requests: int,
    reload_every: float,
    reload_index: str | None,
    ingest: Ingest | None = None,
) -> dict[str, Any]:
    """One concurrency level: ``concurrency`` workers POST searches until the deadline or
    ``max_requests``; with ``reload_every`` > 0 one more task reloads ``reload_index`` that often;
    with ``ingest``, one more task upserts documents into ``reload_index`` (see :class:`Ingest`).

    ``connect()`` is an async context manager giving ``post(path, body) -> (status, payload bytes)``;
    each worker (and the reloader) enters it once. ``transport_errors`` count as failed requests.
    """
    state = _LevelState(deadline=time.perf_counter() + duration, max_requests=max_requests)
    start = time.perf_counter()
    tasks = [
        asyncio.create_task(_search_worker(connect, transport_errors, body_base, texts, state))
        for _ in range(concurrency)
    ]
    if reload_every > 0 and reload_index:
        tasks.append(asyncio.create_task(_reload_worker(connect, reload_index, reload_every, state)))
    if ingest is not None and reload_index:
        tasks.append(asyncio.create_task(_ingest_worker(connect, reload_index, ingest, state)))
    await asyncio.gather(*tasks)
    out = summarize(state.latencies, len(state.errors), time.perf_counter() - start)
    out["error_samples"] = state.errors[:5]
    if state.reloads:
        out["reloads"] = state.reloads
    if ingest is not None:
        out["ingest"] = _ingest_summary(state.ingests)
    return out


@dataclass
class Ingest:
    """Documents streamed in during a level: every ``every`` seconds one POST /v1/indexes/NAME/docs of
    ``batch`` documents (their texts from ``docs``, cycled), half of them new ids, half updates of
    ids sent before; the service's merge policy merges segments as they pile up."""

    docs: list[tuple[str, str]]  # (title, text)
    every: float
    batch: int
    sent: list[str] = field(default_factory=list)  # ids sent so far

    def next_batch(self) -> list[dict[str, str]]:
        """``batch`` documents: updates of distinct ids sent before (half, once there are enough),
        then new ids."""
        n_updates = min(self.batch // 2, len(self.sent))
        step = max(1, len(self.sent) // max(n_updates, 1))
        keys = self.sent[::step][:n_updates]
        while len(keys) < self.batch:
            keys.append(f"ingest-{len(self.sent)}")
            self.sent.append(keys[-1])
        total = len(self.sent) + n_updates
        return [
            {
                "id": key,
                "title": self.docs[(total + j) % len(self.docs)][0],
                "text": self.docs[(total + j) % len(self.docs)][1],
            }
            for j, key in enumerate(keys)
        ]


def _ingest_summary(ingests: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in ingests if r["status"] == 200]
    ms = np.asarray([r["ms"] for r in ok], np.float64)
    return {
        "batches": len(ingests),
        "failed": len(ingests) - len(ok),
        "docs": sum(r["docs"] for r in ok),
        "p50_ms": round(float(np.median(ms)), 1) if len(ms) else None,
        "max_ms": round(float(ms.max()), 1) if len(ms) else None,
        "generations": [ok[0]["generation"], ok[-1]["generation"]] if ok else None,
        "error_samples": [r["error"] for r in ingests if r["status"] != 200][:5],
    }


async def _ingest_worker(connect: Callable[[], Any], index: str, ingest: Ingest, state: _LevelState) -> None:
    """Upsert a batch every ``ingest.every`` seconds until the level ends (writes do not count toward
    ``max_requests``; a failed write is a failed request of the level)."""
    async with connect() as post:
        while time.perf_counter() < state.deadline and state.sent < state.max_requests:
            docs = ingest.next_batch()
            t0 = time.perf_counter()
            status, payload = await post(f"/v1/indexes/{index}/docs", {"docs": docs})
            record = {"status": status, "ms": (time.perf_counter() - t0) * 1e3, "docs": len(docs)}
            if status == 200:
                record["generation"] = json.loads(payload)["generation"]
            else:
                record["error"] = f"{status}: {payload[:200]!r}"
                state.errors.append(f"ingest {record['error']}")
            state.ingests.append(record)
            await asyncio.sleep(max(0.0, ingest.every - (time.perf_counter() - t0)))


@dataclass
class _LevelState:
    """What the tasks of one level share: the deadline, the request count and what they record."""

    deadline: float
    max_requests: int
    sent: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    reloads: list[dict[str, Any]] = field(default_factory=list)
    ingests: list[dict[str, Any]] = field(default_factory=list)


async def _search_worker(
    connect: Callable[[], Any],
    transport_errors: tuple[type[BaseException], ...],
    body_base: dict[str, Any],
    texts: list[str],
    state: _LevelState,
) -> None:
    """POST searches, cycling through ``texts``, until the deadline or ``max_requests``."""
    async with connect() as post:
        while time.perf_counter() < state.deadline:
            i = state.sent
            if i >= state.max_requests:
                return
            state.sent += 1
            body = {**body_base, "query": texts[i % len(texts)]}
            t0 = time.perf_counter()
            try:
                status, payload = await post("/v1/search", body)
                if status == 200:
                    state.latencies.append((time.perf_counter() - t0) * 1e3)
                else:
                    state.errors.append(f"{status}: {payload[:200]!r}")
            except transport_errors as exc:
                state.errors.append(f"{type(exc).__name__}: {exc}")


async def _reload_worker(
    connect: Callable[[], Any], reload_index: str, reload_every: float, state: _LevelState
) -> None:
    """POST a reload of ``reload_index`` every ``reload_every`` seconds until the level ends."""
    async with connect() as post:
        while True:
            await asyncio.sleep(reload_every)
            if time.perf_counter() >= state.deadline or state.sent >= state.max_requests:
                return
            t0 = time.perf_counter()
            status, payload = await post(f"/v1/indexes/{reload_index}/reload", {})
            generation = json.loads(payload).get("generation") if status == 200 else None
            state.reloads.append(
                {
                    "status": status,
                    "ms": round((time.perf_counter() - t0) * 1e3, 1),
                    "generation": generation,
                }
            )


async def http_level(
    url: str,
    headers: dict[str, str],
    body_base: dict[str, Any],
    texts: list[str],
    concurrency: int,
    duration: float,
    max_requests: int,
    reload_every: float,
    reload_index: str | None,
    ingest: Ingest | None = None,
) -> dict[str, Any]:
    """One concurrency level over httpx: one shared keep-alive client (see :func:`drive_level`)."""
    import httpx

    limits = httpx.Limits(max_connections=concurrency + 1, max_keepalive_connections=concurrency + 1)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60.0) as client:

        async def post(path: str, body: dict[str, Any]) -> tuple[int, bytes]:
            r = await client.post(path, json=body)
            return r.status_code, r.content

        @contextlib.asynccontextmanager
        async def connect():
            yield post

        return await drive_level(
            connect,
            (httpx.HTTPError,),
            body_base,
            texts,
            concurrency,
            duration,
            max_requests,
            reload_every,
            reload_index,
            ingest,
        )


class RawClient:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams (one connection, one request at a time):
    a few microseconds of CPU per request, so that on a small machine the generator takes as little
    CPU from the server as possible (httpx costs about 1-2 ms per request here)."""

    def __init__(self, url: str, headers: dict[str, str]):
        u = urlparse(url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.head = f"Host: {self.host}:{self.port}\r\nContent-Type: application/json\r\n{extra}"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.reader, self.writer
        data = json.dumps(body).encode()
        writer.write(
            f"POST {path} HTTP/1.1\r\n{self.head}Content-Length: {len(data)}\r\n\r\n".encode() + data
        )
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = None
            close = False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            if length is None:
                raise ConnectionError("response without Content-Length")
            payload = await reader.readexactly(length)
        except Exception:
            await self.close()
            raise
        if close:
            await self.close()
        return status, payload

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None


async def raw_level(
    url: str,
    headers: dict[str, str],
    body_base: dict[str, Any],
    texts: list[str],
    concurrency: int,
    duration: float,
    max_requests: int,
    reload_every: float,
    reload_index: str | None,
    ingest: Ingest | None = None,
) -> dict[str, Any]:
    """As :func:`http_level`, with one :class:`RawClient` connection per concurrent client."""

    @contextlib.asynccontextmanager
    async def connect():
        client = RawClient(url, headers)
        try:
            yield client.post
        finally:
            await client.close()

    return await drive_level(
        connect,
        (OSError, ConnectionError, asyncio.IncompleteReadError),
        body_base,
        texts,
        concurrency,
        duration,
        max_requests,
        reload_every,
        reload_index,
        ingest,
    )


def inprocess_level(
    served: Any,
    texts: list[str],
    k: int,
    params: Any,
    fields: list[str],
    concurrency: int,
    duration: float,
    max_requests: int,
) -> dict[str, Any]:
    """The same search work (encode, search, hits with titles) on ``concurrency`` threads, no HTTP."""
    from lsr.service.app import request_plan, search_served  # the HTTP client alone needs no index stack

    plan = request_plan(k, params, "none")
    latencies: list[float] = []
    lock = threading.Lock()
    counter = [0]
    deadline = time.perf_counter() + duration

    def worker() -> None:
        mine = []
        while time.perf_counter() < deadline:
            with lock:
                i = counter[0]
                if i >= max_requests:
                    break
                counter[0] += 1
            t0 = time.perf_counter()
            search_served(served, [(texts[i % len(texts)], None)], plan, fields)
            mine.append((time.perf_counter() - t0) * 1e3)
        with lock:
            latencies.extend(mine)

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return summarize(latencies, 0, time.perf_counter() - start)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lsr.service.load", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the service (loopback only by default)")
    p.add_argument("--index", help="index name (default: the service's first index)")
    p.add_argument("--queries", required=True, help="queries: BEIR folder, .jsonl or .tsv")
    p.add_argument("--split", help="with a BEIR folder: only the queries of qrels/<split>.tsv")
    p.add_argument("--concurrency", default="1,8,32", help="comma-separated client counts (1,8,32)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per level (10)")
    p.add_argument("--max-requests", type=int, default=100_000, help="requests per level at most")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--mode", default="exact", choices=("exact", "safe", "approx"))
    p.add_argument("--warmup", type=int, default=50, help="requests sent before measuring (50)")
    p.add_argument("--no-baseline", action="store_true", help="skip the in-process baseline")
    p.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="raw: a minimal asyncio HTTP/1.1 client (default, least CPU); httpx: httpx.AsyncClient",
    )
    p.add_argument(
        "--reload-every",
        type=float,
        default=0.0,
        metavar="S",
        help="POST /v1/indexes/INDEX/reload every S seconds during each level",
    )
    p.add_argument(
        "--ingest-corpus",
        help="stream documents in during each level: POST batches of this corpus's texts (BEIR folder "
        "or JSONL) to /v1/indexes/INDEX/docs, half new ids, half updates (a live index)",
    )
    p.add_argument("--ingest-every", type=float, default=0.5, metavar="S", help="seconds between batches")
    p.add_argument("--ingest-batch", type=int, default=20, help="documents per batch (20)")
    p.add_argument("--api-key-env", default="LSR_API_KEY", help="send the key in this variable, if set")
    p.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --url")
    p.add_argument("--label", help="a name for this run in the JSON (e.g. 'bm25, 1 worker')")
    p.add_argument("--out", help="write (or add to) this JSON file: {runs: [...]}")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not is_loopback(args.url) and not args.allow_remote:
        return _refuse(f"refusing non-loopback URL {args.url} (pass --allow-remote if you own that server)")
    import httpx

    from lsr.data.corpus import load_queries

    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    queries = load_queries(args.queries, args.split)
    texts = [t for t in queries.values() if t.strip()]
    if not texts:
        return _refuse(f"no query text in {args.queries}")
    key = os.environ.get(args.api_key_env, "")
    headers = {"X-API-Key": key} if key else {}
    info = httpx.get(f"{args.url}/v1/indexes", headers=headers, timeout=30).json()
    indexes = {i["name"]: i for i in info["indexes"]}
    name = args.index or next(iter(indexes))
    if name not in indexes:
        return _refuse(f"the service has no index {name!r}; it serves {list(indexes)}")
    level = raw_level if args.client == "raw" else http_level
    send = functools.partial(level, args.url, headers, {"index": name, "k": args.k, "mode": args.mode}, texts)
    asyncio.run(send(4, 60, args.warmup, 0, None))
    baseline = None if args.no_baseline else _baseline(name, indexes[name]["path"], texts, args.k, args.mode)
    if baseline is not None:
        baseline(2, 60, args.warmup)
    if args.ingest_corpus:  # the first write of a plain index makes it live (BM25: counts its lengths)
        asyncio.run(send(1, 0.1, 1, 0, name, _ingest(args)))
    load_start = os.getloadavg()
    rows = _measure(args, levels, name, send, baseline)
    result = _result(args, name, indexes[name], len(texts), load_start, rows)
    print(format_table([result]))
    if args.out:
        _add_run(Path(args.out), result)
    return 0


def _ingest(args: argparse.Namespace) -> Ingest | None:
    """The documents to stream in (a fresh id counter per level), None without --ingest-corpus."""
    if not args.ingest_corpus:
        return None
    from lsr.data.corpus import open_corpus

    docs = [(d.title, d.text) for d in open_corpus(args.ingest_corpus) if d.text.strip()]
    return Ingest(docs, args.ingest_every, args.ingest_batch)


def _refuse(message: str) -> int:
    print(f"load: {message}", file=sys.stderr)
    return 2


def _baseline(name: str, path: str, texts: list[str], k: int, mode: str) -> Callable[..., dict[str, Any]]:
    """The in-process baseline over a freshly loaded index: ``(concurrency, duration, max_requests)``."""
    from lsr.index import SearchParams
    from lsr.service.app import load_served_index

    served = load_served_index(name, path, 1, True)
    return functools.partial(inprocess_level, served, texts, k, SearchParams(mode), ["title"])


def _measure(
    args: argparse.Namespace,
    levels: list[int],
    name: str,
    send: Callable[..., Any],
    baseline: Callable[..., dict[str, Any]] | None,
) -> list[dict[str, Any]]:
    """Each concurrency level over HTTP (and in-process, with a baseline); prints a line per level."""
    rows = []
    for c in levels:
        http = asyncio.run(send(c, args.duration, args.max_requests, args.reload_every, name, _ingest(args)))
        row: dict[str, Any] = {"concurrency": c, "http": http}
        if baseline is not None:
            row["inprocess"] = baseline(c, args.duration, args.max_requests)
        rows.append(row)
        print(_row(name, row), flush=True)
    return rows


def _result(
    args: argparse.Namespace,
    name: str,
    index: dict[str, Any],
    n_texts: int,
    load_start: tuple[float, float, float],
    rows: list[dict[str, Any]],
) -> dict[str, Any]:
    """The JSON record of one run: its settings, the machine's load and the levels."""
    return {
        "label": args.label or name,
        "url": args.url,
        "index": index,
        "k": args.k,
        "mode": args.mode,
        "client": args.client,
        "duration_s": args.duration,
        "max_requests": args.max_requests,
        "n_query_texts": n_texts,
        "cpus": os.cpu_count(),
        "reload_every_s": args.reload_every,
        "ingest": {"corpus": args.ingest_corpus, "every_s": args.ingest_every, "batch": args.ingest_batch}
        if args.ingest_corpus
        else None,
        "loadavg_1m_start_end": [round(load_start[0], 2), round(os.getloadavg()[0], 2)],
        "note": "load generator, server and baseline share the machine's CPUs",
        "levels": rows,
    }


def _add_run(out: Path, result: dict[str, Any]) -> None:
    """Append ``result`` to the ``runs`` of the JSON file ``out`` (created if missing)."""
    data = json.loads(out.read_text()) if out.is_file() else {"runs": []}
    data["runs"].append(result)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"results -> {out}")


def _row(name: str, row: dict[str, Any]) -> str:
    h = row["http"]
    b = row.get("inprocess")
    base = f" | in-process {b['qps']:>8.1f} q/s p50 {b['p50_ms']:.2f} p99 {b['p99_ms']:.2f}" if b else ""
    reloads = f" reloads {len(h.get('reloads', []))}" if h.get("reloads") else ""
    ing = h.get("ingest")
    ingest = f" ingested {ing['docs']} docs in {ing['batches']} batches" if ing else ""
    return (
        f"{name} c={row['concurrency']:<3} {h['qps']:>8.1f} q/s p50 {h['p50_ms']} ms "
        f"p99 {h['p99_ms']} ms errors {h['errors']}{reloads}{ingest}{base}"
    )


def format_table(runs: list[dict[str, Any]]) -> str:
    """Markdown table: one row per run and concurrency, HTTP beside in-process."""
    lines = [
        f"({os.cpu_count()} CPUs shared by the server, the load generator and the in-process baseline)",
        "| run | concurrency | HTTP QPS | p50 ms | p99 ms | errors | reloads | in-process QPS | p50 ms "
        "| p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        for row in run["levels"]:
            h, b = row["http"], row.get("inprocess") or {}
            reloads = sum(1 for r in h.get("reloads", []) if r["status"] == 200)
            lines.append(
                f"| {run['label']} | {row['concurrency']} | {h['qps']:.0f} | {h['p50_ms']} | "
                f"{h['p99_ms']} | {h['errors']} | {reloads} | {b.get('qps', '-')} | "
                f"{b.get('p50_ms', '-')} | {b.get('p99_ms', '-')} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
