"""Sharded serving over HTTP: ``lsr serve`` on one index against ``lsr serve --ray`` on 4 shards of the
same corpus, at the same concurrency (issue 16's serving target: the sharded service adds at most 3 ms
to p99 at concurrency 8), with 1 or more replicas per shard (``--replicas 1,2,4``) and router processes
(``--router-workers 1,2``): a copy of the shards and its own ``lsr serve --ray --replicas N --workers W``
each.

    python -m benchmarks.sharded_http_bench --corpus ../shared/data/beir/scifact --ray 127.0.0.1:6391 \\
        --concurrency 1,8 --duration 10 --repeat 3 --out benchmarks/results/sharded-http.json

Builds one index and a 4-shard index (hash split) of the first ``--docs`` documents with ``--encoder``
(bm25 by default) in a temporary folder, starts both services (``python -m lsr.cli serve``, loopback
ports), checks that the two answer the test queries identically (ids and scores, no partial answer),
then measures each concurrency level ``--repeat`` times, the services in turn (the order reverses
every repeat), with the load script's client (``lsr.service.load``: text queries, top-10,
keep-alive connections, all on this machine). The table gives QPS, p50 and p99 of each run and what
the sharded service adds (p50 and p99, sharded minus single, per repeat); the JSON also holds the
1-minute load average around each run and the router's shard calls per query, and every row the
server's CPU per query (the ``lsr serve`` process and its workers, from ``/proc``: for a sharded
service the router's CPU, its shard actors being Ray's processes). The Ray cluster at ``--ray`` must
be running; the shards' Serve applications are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from lsr.config import load_config
from lsr.data.corpus import load_queries, open_corpus
from lsr.encoders import encoder_overrides
from lsr.pipeline import build_index_from_vectors, encode_corpus
from lsr.service.load import raw_level
from lsr.sharded import build_sharded

SINGLE = "single"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", required=True, help="a BEIR folder (corpus and test queries)")
    p.add_argument("--ray", required=True, metavar="ADDRESS", help="a running Ray cluster (HOST:PORT)")
    p.add_argument("--docs", type=int, default=100_000, help="first N documents (all of SciFact: 5,183)")
    p.add_argument("--encoder", default="bm25")
    p.add_argument("--concurrency", default="1,8")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument(
        "--replicas", default="1", help="replicas per shard, one sharded service each (e.g. 1,2,4)"
    )
    p.add_argument(
        "--router-workers", default="1", help="lsr serve --workers of each sharded service (1,2): routers"
    )
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sharded-http-"))
    servers: list[subprocess.Popen] = []
    try:
        single, sharded = build(args, root)
        setups: dict[str, tuple[Path, list[str]]] = {SINGLE: (single, [])}
        for r in [int(x) for x in args.replicas.split(",")]:
            for w in [int(x) for x in args.router_workers.split(",")]:
                # a path of its own: its own Serve applications
                copy = shutil.copytree(sharded, root / f"four-x{r}-w{w}")
                extra = ["--ray", args.ray, "--replicas", str(r), "--workers", str(w)]
                setups[f"4 shards x{r}, Ray" + (f", {w} routers" if w > 1 else "")] = (copy, extra)
        urls, pids = {}, {}
        for setup, (path, extra) in setups.items():
            server, urls[setup] = start(path, extra, root / f"{len(servers)}.log")
            servers.append(server)
            pids[setup] = server.pid
        texts = [t for t in load_queries(args.corpus, "test").values() if t.strip()]
        same = compare(urls, texts)
        runs = measure(args, urls, pids, texts)
        result = {"args": {k: str(v) for k, v in vars(args).items()}, "identical_top10": same, "runs": runs}
        result["summary"] = summary(runs)
        print_table(result)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"results -> {args.out}")
    finally:
        for server in servers:
            server.terminate()
            server.wait(30)
        for copy in root.glob("four-x*"):
            undeploy(args.ray, copy)
        shutil.rmtree(root, ignore_errors=True)


def build(args: argparse.Namespace, root: Path) -> tuple[Path, Path]:
    config = load_config(None, encoder_overrides(args.encoder))
    docs = list(itertools.islice(open_corpus(args.corpus), args.docs))
    encode_corpus(config, docs, root / "vectors")
    build_index_from_vectors(config, root / "vectors", root / "one")
    build_sharded(config, root / "vectors", root / "four", 4)
    return root / "one", root / "four"


def start(index: Path, extra: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    """``lsr serve`` on a free loopback port, once ``/readyz`` says ready."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "lsr.cli", "serve", "--index", f"sf={index}", "--port", str(port)]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("LSR_API_KEY", None)
    with open(log, "wb") as out:
        server = subprocess.Popen([*cmd, *extra, "--no-access-log"], stdout=out, stderr=out, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"lsr serve {' '.join(extra)} exited: {log.read_text()[-2000:]}")
        try:
            if _json(f"{url}/readyz").get("ready"):
                return server, url
        except (OSError, ValueError):  # not listening yet, or 503 (loading)
            pass
        time.sleep(0.5)
    server.terminate()
    raise SystemExit(f"lsr serve {' '.join(extra)} not ready after 300 s: {log.read_text()[-2000:]}")


def compare(urls: dict[str, str], texts: list[str]) -> str:
    """How many queries every service answers with the same top-10 (ids and scores; none partial)."""
    same = 0
    for q in texts:
        hits = []
        for url in urls.values():
            body = _json(f"{url}/v1/search", {"query": q, "k": 10})
            hits.append(None if body.get("partial") else [(h["id"], h["score"]) for h in body["hits"]])
        same += hits[0] is not None and all(h == hits[0] for h in hits)
    return f"{same}/{len(texts)}"


def measure(
    args: argparse.Namespace, urls: dict[str, str], pids: dict[str, int], texts: list[str]
) -> list[dict[str, Any]]:
    runs = []
    base = {"index": "sf", "k": 10, "mode": "exact"}
    for url in urls.values():  # warm-up: connections, the shards' first calls
        asyncio.run(raw_level(url, {}, base, texts, 4, 5, 200, 0, None))
    for c in [int(x) for x in args.concurrency.split(",")]:
        for rep in range(args.repeat):
            order = list(urls) if rep % 2 == 0 else list(urls)[::-1]
            for setup in order:
                load = os.getloadavg()[0]
                calls, cpu = shard_calls(urls[setup]), process_cpu_s(pids[setup])
                level = asyncio.run(raw_level(urls[setup], {}, base, texts, c, args.duration, 10**6, 0, None))
                calls, cpu = shard_calls(urls[setup]) - calls, process_cpu_s(pids[setup]) - cpu
                row = {"concurrency": c, "repeat": rep, "setup": setup, **level}
                row["server_cpu_ms_per_query"] = round(cpu / max(level["ok"], 1) * 1e3, 3)
                row["loadavg_1m_start_end"] = [round(load, 2), round(os.getloadavg()[0], 2)]
                if setup != SINGLE and "routers" not in setup:  # /metrics is one worker's with several
                    row["shard_calls_per_query"] = round(calls / max(level["ok"], 1), 3)
                runs.append(row)
                print(_line(row), flush=True)
    return runs


def _json(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """GET (or POST ``body`` to) ``url``; the JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read())


def shard_calls(url: str) -> float:
    """The router's shard calls so far (``lsr_shard_calls_total`` in /metrics; 0 for one index)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
        text = r.read().decode()
    lines = [line for line in text.splitlines() if line.startswith("lsr_shard_calls")]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def process_cpu_s(pid: int) -> float:
    """CPU seconds of process ``pid`` and its live descendants (``lsr serve``: the router, or its
    ``--workers`` routers), from ``/proc``; 0 where ``/proc`` is missing (not Linux)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    stats: dict[int, tuple[int, float]] = {}  # pid -> (parent, cpu seconds)
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        stats[int(entry.parent.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    children: dict[int, list[int]] = {}
    for p, (parent, _) in stats.items():
        children.setdefault(parent, []).append(p)
    todo, total = [pid], 0.0
    while todo:
        p = todo.pop()
        total += stats.get(p, (0, 0.0))[1]
        todo.extend(children.get(p, []))
    return total


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per concurrency and setup: the median over repeats of QPS, p50 and p99, and for a sharded setup
    what it added to the single service's p50/p99 in each repeat."""
    out: dict[str, Any] = {}
    metrics = ("qps", "p50_ms", "p99_ms", "server_cpu_ms_per_query")
    for c in sorted({r["concurrency"] for r in runs}):
        rows = [r for r in runs if r["concurrency"] == c]
        setups = list(dict.fromkeys(r["setup"] for r in rows))
        by = {s: sorted((r for r in rows if r["setup"] == s), key=lambda r: r["repeat"]) for s in setups}
        level: dict[str, Any] = {"loadavg_1m": [r["loadavg_1m_start_end"][0] for r in rows]}
        for s in setups:
            level[s] = {m: float(np.median([r[m] for r in by[s]])) for m in metrics}
            if s != SINGLE:
                pairs = list(zip(by[SINGLE], by[s], strict=True))
                for m in ("p50_ms", "p99_ms"):
                    level[s][f"added_{m}"] = [round(b[m] - a[m], 3) for a, b in pairs]
        out[str(c)] = level
    return out


def _line(r: dict[str, Any]) -> str:
    calls = f" {r['shard_calls_per_query']:.2f} calls/q" if "shard_calls_per_query" in r else ""
    return (
        f"c={r['concurrency']} #{r['repeat']} {r['setup']:14} {r['qps']:8.1f} q/s p50 {r['p50_ms']:8.3f} "
        f"p99 {r['p99_ms']:8.3f} ms errors {r['errors']} server CPU {r['server_cpu_ms_per_query']:.3f} ms/q "
        f"load {r['loadavg_1m_start_end'][0]:.1f}{calls}"
    )


def print_table(result: dict[str, Any]) -> None:
    print(f"identical top-10 (single vs every sharded service): {result['identical_top10']}")
    print(
        "| concurrency | setup | QPS | p50 ms | p99 ms | added p50 ms | added p99 ms | server CPU ms/q "
        "| load avg |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for c, s in result["summary"].items():
        load = ", ".join(f"{x:.1f}" for x in s["loadavg_1m"])
        for setup, m in s.items():
            if setup == "loadavg_1m":
                continue
            added = ["-", "-"]
            if setup != SINGLE:
                added = [", ".join(f"{x:+.1f}" for x in m[f"added_{q}_ms"]) for q in ("p50", "p99")]
            print(
                f"| {c} | {setup} | {m['qps']:.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | "
                f"{added[0]} | {added[1]} | {m['server_cpu_ms_per_query']:.3f} | {load} |"
            )


def undeploy(address: str, path: Path) -> None:
    """Delete the shards' Serve applications (the router that deployed them has exited)."""
    if not (path / "sharded.json").is_file():
        return
    from lsr.ray_encode import connect
    from lsr.ray_serve import undeploy_sharded

    connect(address)
    undeploy_sharded(path)


if __name__ == "__main__":
    main()
