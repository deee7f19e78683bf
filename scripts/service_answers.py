"""Start ``lsr serve`` on the snapshot indexes, send a fixed set of requests, write the answers.

Used by ``scripts/answer_snapshot.sh``: timings (``took_ms``, load times) and paths are dropped, so two
versions of lsr can be compared answer by answer.

    python scripts/service_answers.py INDEX_DIR OUT.json --queries BEIR_FOLDER [--port 8765]
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

NAMES = ("bm25", "splade", "inference-free", "hybrid")
DROPPED = ("took_ms", "loaded_at", "load_seconds", "path")
BAD = (
    {"index": "nope", "query": "x"},
    {"query": ""},
    {"query": "x", "k": 0},
    {"index": "bm25", "query": "x", "rerank": "dense"},
)


def strip(x: Any) -> Any:
    """The answer without timings and paths."""
    if isinstance(x, dict):
        return {k: strip(v) for k, v in x.items() if k not in DROPPED}
    if isinstance(x, list):
        return [strip(v) for v in x]
    return x


def wait_ready(url: str, seconds: float = 300) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {seconds} s")


def ask(url: str, texts: list[str]) -> dict[str, Any]:
    """Every request of the snapshot: name -> [status, answer]."""
    answers: dict[str, Any] = {}

    def post(key: str, path: str, body: dict[str, Any]) -> None:
        r = httpx.post(f"{url}{path}", json=body, timeout=60)
        answers[key] = [r.status_code, strip(r.json())]

    for name in NAMES:
        for mode in ("exact", "safe", "approx"):
            for i, q in enumerate(texts):
                post(
                    f"{name}/{mode}/{i}",
                    "/v1/search",
                    {"index": name, "query": q, "k": 10, "mode": mode, "alpha": 0.9},
                )
        batch = [{"id": str(i), "query": q} for i, q in enumerate(texts)]
        post(
            f"{name}/batch",
            "/v1/search/batch",
            {"index": name, "queries": batch, "k": 5, "fields": ["title", "text"]},
        )
    for i, q in enumerate(texts):
        post(f"hybrid/rerank/{i}", "/v1/search", {"index": "hybrid", "query": q, "k": 10, "rerank": "dense"})
    post(
        "bm25/vector",
        "/v1/search",
        {"index": "bm25", "vector": {"cancer": 1.5, "cell": 0.5, "zzzunknown": 1.0}, "k": 5},
    )
    for bad in BAD:
        post("bad/" + json.dumps(bad), "/v1/search", bad)
    for key, path in (("indexes", "/v1/indexes"), ("doc", "/v1/docs/4983?index=splade")):
        r = httpx.get(f"{url}{path}", timeout=60)
        answers[key] = [r.status_code, strip(r.json())]
    return answers


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("indexes", type=Path, help="a folder holding bm25/, splade/, inference-free/, hybrid/")
    p.add_argument("out", type=Path)
    p.add_argument(
        "--queries", type=Path, required=True, help="a BEIR folder: its first 20 queries are asked"
    )
    p.add_argument("--port", type=int, default=8765)
    args = p.parse_args()
    cmd = ["lsr", "serve", "--port", str(args.port), "--quiet", "--no-access-log"]
    cmd += [arg for name in NAMES for arg in ("--index", f"{name}={args.indexes / name}")]
    with gzip.open(args.queries / "queries.jsonl.gz", "rt") as f:
        texts = [json.loads(line)["text"] for line in f][:20]
    proc = subprocess.Popen(cmd)
    url = f"http://127.0.0.1:{args.port}"
    try:
        wait_ready(url)
        answers = ask(url, texts)
    finally:
        proc.terminate()
        proc.wait(20)
    args.out.write_text(json.dumps(answers, indent=1, sort_keys=True))
    print(f"{len(answers)} service answers -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
