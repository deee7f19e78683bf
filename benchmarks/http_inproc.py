"""CPU per request of POST /v1/search in process, without an HTTP server: the ASGI app called directly
(service middleware, lean path, endpoint, the search thread and back, the JSON answer, the access log
line to /dev/null), and the search threads' part alone (``Service.search_one``: encode, search, hits).
Process CPU time (every thread) over ``--requests`` requests, one at a time, SciFact test queries
cycled; less noisy than a wrk run on a shared machine, and blind to uvicorn's own share.

    python -m benchmarks.http_inproc --compare-src before=/tmp/lsr-before --rounds 3 \\
        --out benchmarks/results/http-inproc.json

``--compare-src`` as in ``benchmarks.http_bench`` (a source tree of another commit, run as the
installed package through ``PYTHONPATH``); each (tree, index, part) runs in its own process, the trees
in turn each round, so they share the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

from benchmarks.http_bench import SCIFACT, build_indexes, source_layout, with_pythonpath

PARTS = ("app", "pool")


def one(index_dir: dict[str, str], index: str, part: str, texts: list[str], n: int) -> float:
    """ms of CPU per request of ``part`` on ``index`` (the service loaded with every index)."""
    from lsr.config import ServiceConfig
    from lsr.service import app as service_app

    app = service_app.create_app(ServiceConfig(indexes=index_dir, log_requests=True))
    for handler in logging.getLogger("lsr.service.access").handlers:  # the access log to /dev/null
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(os.devnull, "w"))
    service = app.state.service
    bodies = [json.dumps({"index": index, "k": 10, "query": t}).encode() for t in texts]

    async def post(body: bytes) -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/search",
            "raw_path": b"/v1/search",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 8000),
        }

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start" and message["status"] != 200:
                raise RuntimeError(f"status {message['status']} for {body!r}")

        await app(scope, receive, send)

    async def run() -> float:
        async with app.router.lifespan_context(app):
            while not service.ready:
                await asyncio.sleep(0.05)
            served = service.get(index)
            plan = service_app.request_plan(10, service_app.SearchParams("exact", 1.0, 1.0, 0), "none")
            for i in range(2 * len(texts)):  # warm-up: every query twice, both parts
                await post(bodies[i % len(bodies)])
                service.search_one(served, texts[i % len(texts)], None, plan, ["title"])
            start = time.process_time()
            for i in range(n):
                if part == "app":
                    await post(bodies[i % len(bodies)])
                else:
                    service.search_one(served, texts[i % len(texts)], None, plan, ["title"])
            return (time.process_time() - start) / n * 1e3

    return asyncio.run(run())


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.http_inproc", description=__doc__.split("\n\n")[0])
    p.add_argument("--encoders", default="bm25,inference-free")
    p.add_argument("--build-dir", type=Path, default=Path(tempfile.gettempdir()) / "lsr-http-bench")
    p.add_argument("--queries", type=Path, default=SCIFACT)
    p.add_argument("--split", default="test")
    p.add_argument("--requests", type=int, default=4000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--compare-src", action="append", default=[], metavar="[LABEL=]DIR")
    p.add_argument("--label", default="after")
    p.add_argument("--out", type=Path)
    p.add_argument("--child", help=argparse.SUPPRESS)  # INDEX,PART: one measurement, printed
    args = p.parse_args()
    from lsr.data.corpus import load_queries

    texts = [t for t in load_queries(str(args.queries), args.split).values() if t.strip()]
    indexes = build_indexes(args.build_dir, args.queries, args.encoders.split(","))
    if args.child:
        index, part = args.child.split(",")
        print(json.dumps({"ms": one(indexes, index, part, texts, args.requests)}))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        variants: list[tuple[str, Path | None]] = [(args.label, None)]
        for i, spec in enumerate(args.compare_src):
            label, _, src = spec.rpartition("=")
            variants.append((label or "before", source_layout(Path(src), Path(tmp) / f"src{i}")))
        rows = []
        for rnd in range(args.rounds):
            for index in indexes:
                for part in PARTS:
                    for label, pythonpath in variants:
                        ms = _child(args, index, part, pythonpath)
                        rows.append(
                            {"variant": label, "index": index, "part": part, "round": rnd, "cpu_ms": ms}
                        )
                        print(f"{label:>7} {index:>15} {part:>4} {ms:.4f} ms CPU/request", flush=True)
    table = _table(rows)
    print(table)
    if args.out:
        out = {"command": " ".join(sys.argv), "requests": args.requests, "rows": rows, "table": table}
        args.out.write_text(json.dumps(out, indent=1) + "\n")
    return 0


def _child(args: argparse.Namespace, index: str, part: str, pythonpath: Path | None) -> float:
    cmd = [sys.executable, "-m", "benchmarks.http_inproc", "--child", f"{index},{part}"]
    # the child runs in a temp dir (so that ``import lsr`` finds the tree under test): absolute paths
    cmd += ["--requests", str(args.requests), "--queries", str(Path(args.queries).resolve())]
    cmd += [
        "--split",
        args.split,
        "--encoders",
        args.encoders,
        "--build-dir",
        str(Path(args.build_dir).resolve()),
    ]
    env = with_pythonpath(pythonpath, Path(__file__).resolve().parents[1])  # the tree, then benchmarks/
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    return float(json.loads(out.stdout.strip().splitlines()[-1])["ms"])


def _table(rows: list[dict[str, Any]]) -> str:
    groups: dict[tuple[str, str, str], list[float]] = {}
    for r in rows:
        groups.setdefault((r["index"], r["part"], r["variant"]), []).append(r["cpu_ms"])
    lines = ["| index | part | code | rounds | CPU ms/request (median) | min |", "|---|---|---|---|---|---|"]
    for (index, part, variant), ms in sorted(groups.items()):
        lines.append(
            f"| {index} | {part} | {variant} | {len(ms)} | {statistics.median(ms):.3f} | {min(ms):.3f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
