"""The same answers from two code trees over HTTP: ``lsr serve`` of this tree and of ``--compare-src``
(another commit's tree, as in ``benchmarks.http_bench``) on the same SciFact indexes, each sent the
same requests (every test query, then edge cases: empty, stopwords only, punctuation, added tokens,
control characters, accents, CJK, emoji, a lone surrogate, huge queries; paging and fields; malformed
and invalid bodies; vectors; a batch); the status and body of each must match byte for byte, less
``took_ms``.

    mkdir -p /tmp/lsr-before && git archive COMMIT | tar -x -C /tmp/lsr-before
    python -m benchmarks.http_same_answers --compare-src /tmp/lsr-before --queries ../shared/data/beir/scifact
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from benchmarks.http_bench import SCIFACT, build_indexes, source_layout, with_pythonpath

EDGE = [
    "",
    "   ",
    "the of and a",
    ".,;:!?",
    "[MASK] cells",
    "x[SEP]y",
    "tab\tnew\nline",
    "ctrl\x01char",
    "café naïve Übermensch",
    "北京 大学 vitamin",
    "emoji 🙂 \u200b",
    "a" * 300,
    " ".join(["vitamin"] * 200),
    "vitamin " * 300,
    "COVID-19 p<0.05 IL-6 3.5mg",
    "Don't STOP!!! cells' cell's",
    "\ud800 surrogate",
]
INVALID = [b'{"query": "x", "k": 2.5}', b'{"query": null}', b'["x"]', b'{"query": "x"', b"{}"]


def serve(indexes: dict[str, str], port: int, pythonpath: Path | None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "lsr.cli", "serve", "--port", str(port), "--quiet", "--no-access-log"]
    for name, path in indexes.items():
        cmd += ["--index", f"{name}={path}"]
    out = subprocess.DEVNULL
    env = with_pythonpath(pythonpath)
    return subprocess.Popen(cmd, env=env, cwd=tempfile.gettempdir(), stdout=out, stderr=out)


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"lsr serve on port {port} exited ({proc.returncode})")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"lsr serve on port {port} not ready within {timeout:g} s")


def post(port: int, path: str, body: bytes) -> tuple[int, str]:
    """Status and body (``took_ms`` left out) of one POST."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req) as r:
            status, data = r.status, r.read()
    except urllib.error.HTTPError as exc:
        status, data = exc.code, exc.read()
    answer = json.loads(data)
    answer.pop("took_ms", None)
    return status, json.dumps(answer)


def requests(index: str, texts: list[str]) -> list[tuple[str, bytes]]:
    out = []
    for text in [*texts, *EDGE]:
        for extra in ({}, {"k": 7, "from": 3, "fields": ["title", "text"]}):
            out.append(("/v1/search", json.dumps({"index": index, "query": text, **extra}).encode()))
    vector = json.dumps({"index": index, "vector": {"cell": 1.5, "zzz-unknown": 2}}).encode()
    batch = json.dumps({"index": index, "queries": [{"id": str(i), "query": t} for i, t in enumerate(EDGE)]})
    for body in [*INVALID, vector, batch.encode()]:
        out += [("/v1/search", body), ("/v1/search/batch", body)]
    return out


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.http_same_answers", description=__doc__)
    p.add_argument("--compare-src", type=Path, required=True, help="the other commit's source tree")
    p.add_argument("--encoders", default="bm25,inference-free")
    p.add_argument("--build-dir", type=Path, default=Path(tempfile.gettempdir()) / "lsr-http-bench")
    p.add_argument("--queries", type=Path, default=SCIFACT)
    p.add_argument("--split", default="test")
    p.add_argument("--port", type=int, default=8830)
    args = p.parse_args()
    from lsr.data.corpus import load_queries

    texts = list(load_queries(str(args.queries), args.split).values())
    indexes = build_indexes(args.build_dir, args.queries, args.encoders.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        other = source_layout(args.compare_src, Path(tmp))
        procs = [serve(indexes, args.port, None), serve(indexes, args.port + 1, other)]
        try:
            for i, proc in enumerate(procs):
                wait_ready(args.port + i, proc)
            n, differ, statuses = compare(args.port, [r for name in indexes for r in requests(name, texts)])
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait()
    print(f"{n - differ} of {n} requests answered the same (status, body less took_ms); statuses {statuses}")
    return 1 if differ else 0


def compare(port: int, sent: list[tuple[str, bytes]]) -> tuple[int, int, dict[int, int]]:
    """Each request to ``port`` and ``port + 1``: (requests, how many differ, statuses here)."""
    differ, statuses = 0, dict[int, int]()
    for path, body in sent:
        here, there = post(port, path, body), post(port + 1, path, body)
        statuses[here[0]] = statuses.get(here[0], 0) + 1
        if here != there:
            differ += 1
            print(f"differ: {path} {body[:80]!r}: {here[0]} {here[1][:200]} / {there[0]} {there[1][:200]}")
    return len(sent), differ, statuses


if __name__ == "__main__":
    sys.exit(main())
