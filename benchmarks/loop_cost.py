"""What one request costs the service's event loop: the CPU a health check waits behind in a flood.

    python -m benchmarks.loop_cost --index /tmp/lsr-flood/scifact-bm25 --json OUT.json

Calls the ASGI app in this process (no sockets, no HTTP parsing: uvicorn's share comes on top), N
times each: /healthz; a search refused 503 at max_in_flight by the middleware before its body is read
(what the service does); the same refusal after routing, JSON parsing and validation (how it was
refused before: ``ServiceMiddleware._shed`` switched off); an admitted search (k=100; its kernel runs
in the search pool). Prints ms of wall time and of process CPU per request, and the ratio of the two
refusals. Under a flood of C connections a health check queues behind up to C refusals.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from lsr.config import ServiceConfig
from lsr.service.app import ServiceMiddleware, create_app

BODY = json.dumps({"query": "vitamin d deficiency and cancer risk", "k": 100}).encode()


async def call(app: Any, method: str, path: str, body: bytes = b"") -> int:
    sent: list[dict] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    headers = [
        (b"host", b"x"),
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
    ]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    await app(scope, receive, send)
    return sent[0]["status"]


async def measure(app: Any, n: int, method: str, path: str, body: bytes) -> dict[str, Any]:
    status = await call(app, method, path, body)  # warm
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(n):
        status = await call(app, method, path, body)
    return {
        "status": status,
        "wall_ms": round((time.perf_counter() - wall) * 1e3 / n, 4),
        "cpu_ms": round((time.process_time() - cpu) * 1e3 / n, 4),
    }


async def run(index: Path, n: int) -> dict[str, dict[str, Any]]:
    app = create_app(
        ServiceConfig(indexes={"s": str(index)}, warmup=False, log_requests=False, search_threads=2)
    )
    async with app.router.lifespan_context(app):
        service = app.state.service
        while not service.ready:
            await asyncio.sleep(0.05)
        admission = service.admission
        rows = {"healthz": await measure(app, n, "GET", "/healthz", b"")}
        admission.count = admission.limit  # at the limit: every search is refused
        rows["search refused unread (now)"] = await measure(app, n, "POST", "/v1/search", BODY)
        shed = ServiceMiddleware._shed
        ServiceMiddleware._shed = lambda self, scope: None  # type: ignore[method-assign]
        try:
            rows["search refused after parsing (before)"] = await measure(app, n, "POST", "/v1/search", BODY)
        finally:
            ServiceMiddleware._shed = shed  # type: ignore[method-assign]
        admission.count = 0
        rows["search admitted (k=100)"] = await measure(app, max(n // 10, 10), "POST", "/v1/search", BODY)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True, help="an index (scripts/flood.py builds one)")
    parser.add_argument("-n", type=int, default=2000, help="requests per kind")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = asyncio.run(run(args.index, args.n))
    print(f"{'request':<40} {'status':>6} {'wall ms':>8} {'cpu ms':>8}")
    for name, row in rows.items():
        print(f"{name:<40} {row['status']:>6} {row['wall_ms']:>8} {row['cpu_ms']:>8}")
    before, now = rows["search refused after parsing (before)"], rows["search refused unread (now)"]
    ratio = round(before["cpu_ms"] / max(now["cpu_ms"], 1e-9), 1)
    print(f"a refusal costs the loop {ratio}x less CPU than before")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "refusal_cpu_ratio": ratio}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
