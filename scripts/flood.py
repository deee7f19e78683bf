"""A connection flood against ``lsr serve`` on loopback: does it shed, keep answering health checks, stay
bounded in memory and recover?

    python scripts/flood.py --connections 256 --seconds 20 --json reports/flood.json

Starts ``lsr serve`` (a BM25 index over BEIR SciFact from ../shared/data, built into --work once; or
--index PATH) with --threads and --max-in-flight, then for --seconds keeps --connections concurrent
connections each posting searches back to back (SciFact test queries, k=100), while a separate
connection polls /healthz every 20 ms (on the main port, or with --health-port PORT the server's
health port, answered off the request loop). Reports: answers by status (5xx other than 503: target 0),
/healthz p50/p99/max during the flood (target p99 <= 100 ms), the server's RSS before, at its peak
during and after, and the time from the flood's end until a search answers 200 in under 4x its
quiet latency (target <= 2 s). Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import subprocess
import sys
import time
from collections import Counter
from multiprocessing import Process, Queue
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SCIFACT = REPO.parent / "shared" / "data" / "beir" / "scifact"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def build_index(work: Path) -> Path:
    out = work / "scifact-bm25"
    if not (out / "meta.json").is_file():
        cmd = ["lsr", "index", "--corpus", str(SCIFACT), "--encoder", "bm25", "--out", str(out), "--quiet"]
        subprocess.run(cmd, check=True)
    return out


def start_server(args: argparse.Namespace, index: Path, log: Path) -> subprocess.Popen:
    cmd = [
        sys.executable, "-m", "lsr.cli", "serve", "--index", f"scifact={index}", "--host", "127.0.0.1",
        "--port", str(args.port), "--threads", str(args.threads), "--no-access-log", "--quiet",
        *(["--max-in-flight", str(args.max_in_flight)] if args.max_in_flight else []),
        *(["--health-port", str(args.health_port)] if args.health_port else []),
    ]  # fmt: skip
    env = {**os.environ, "LSR_API_KEY": ""}
    env.pop("LSR_API_KEY")
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    if args.server_cpus:
        os.sched_setaffinity(proc.pid, args.server_cpus)  # its threads, started later, inherit it
    return proc


async def wait_ready(url: str, proc: subprocess.Popen, deadline_s: float = 120) -> None:
    end = time.monotonic() + deadline_s
    async with httpx.AsyncClient() as client:
        while time.monotonic() < end:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode}")
            try:
                if (await client.get(f"{url}/readyz", timeout=2)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError("the server did not become ready")


async def flooder(client: httpx.AsyncClient, url: str, queries: list[str], stop: float, statuses: Counter,
                  i: int) -> None:  # fmt: skip
    n = i
    while time.monotonic() < stop:
        n += 1
        try:
            r = await client.post(f"{url}/v1/search", json={"query": queries[n % len(queries)], "k": 100})
            statuses[r.status_code] += 1
        except httpx.HTTPError as exc:  # a flood does not wait out Retry-After
            statuses[type(exc).__name__] += 1


async def flood_all(url: str, queries: list[str], connections: int, seconds: float) -> Counter:
    statuses: Counter = Counter()
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        await asyncio.gather(*(flooder(client, url, queries, stop, statuses, i) for i in range(connections)))
    return statuses


def flood_process(
    url: str, queries: list[str], connections: int, seconds: float, out: Queue, cpus: set[int]
) -> None:
    """The flood, in its own process: the health prober's timings are not the flood client's."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    out.put(dict(asyncio.run(flood_all(url, queries, connections, seconds))))


async def prober(url: str, stop: float, ms: list[float]) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            r = await client.get(f"{url}/healthz")
            ms.append((time.perf_counter() - t0) * 1e3 if r.status_code == 200 else float("inf"))
            await asyncio.sleep(0.02)


async def rss_sampler(pid: int, stop: float, samples: list[float]) -> None:
    while time.monotonic() < stop:
        samples.append(rss_mb(pid))
        await asyncio.sleep(0.25)


async def search_ms(client: httpx.AsyncClient, url: str, query: str) -> tuple[int, float]:
    t0 = time.perf_counter()
    r = await client.post(f"{url}/v1/search", json={"query": query, "k": 100})
    return r.status_code, (time.perf_counter() - t0) * 1e3


async def quiet_latency(url: str, queries: list[str]) -> float:
    async with httpx.AsyncClient(timeout=10) as client:
        ms = [(await search_ms(client, url, q))[1] for q in queries[:50]]
    return float(np.median(ms))


async def recovery_seconds(url: str, query: str, quiet_ms: float, flood_end: float) -> float:
    """From the flood's end until a search answers 200 within 4x the quiet median latency."""
    async with httpx.AsyncClient(timeout=10) as client:
        while True:
            status, ms = await search_ms(client, url, query)
            if status == 200 and ms <= max(4 * quiet_ms, 5.0):
                return time.monotonic() - flood_end
            await asyncio.sleep(0.01)


async def flood(args: argparse.Namespace, proc: subprocess.Popen, url: str, queries: list[str]) -> dict:
    await wait_ready(url, proc)
    probe_url = f"http://127.0.0.1:{args.health_port or args.port}"  # the health port when there is one
    quiet_ms = await quiet_latency(url, queries)
    rss_before = rss_mb(proc.pid)
    out: Queue = Queue()
    shares = [args.connections // args.flood_procs + (i < args.connections % args.flood_procs)
              for i in range(args.flood_procs)]  # fmt: skip
    children = [
        Process(target=flood_process, args=(url, queries, n, args.seconds, out, args.client_cpus))
        for n in shares
    ]
    for child in children:
        child.start()
    await asyncio.sleep(1.0)  # let the flood ramp up
    stop = time.monotonic() + args.seconds - 1.5
    cpu0, client0, t0 = cpu_s(proc.pid), sum(cpu_s(c.pid or 0) for c in children), time.monotonic()
    health_ms: list[float] = []
    rss: list[float] = []
    await asyncio.gather(prober(probe_url, stop, health_ms), rss_sampler(proc.pid, stop, rss))
    # the share of one core each used while the prober ran (1.0: a whole core)
    busy = time.monotonic() - t0
    server_cores = (cpu_s(proc.pid) - cpu0) / busy
    client_cores = (sum(cpu_s(c.pid or 0) for c in children) - client0) / busy
    statuses: Counter = Counter()
    for _ in children:
        statuses.update(await asyncio.to_thread(out.get))
    flood_end = time.monotonic()
    for child in children:
        child.join()
    recovered = await recovery_seconds(url, queries[0], quiet_ms, flood_end)
    await asyncio.sleep(1.0)
    h = np.array(health_ms)
    other_5xx = sum(n for s, n in statuses.items() if isinstance(s, int) and s >= 500 and s != 503)
    return {
        "connections": args.connections, "flood_procs": args.flood_procs, "seconds": args.seconds,
        "threads": args.threads,
        "server_cpus": sorted(args.server_cpus), "client_cpus": sorted(args.client_cpus),
        "load_avg": os.getloadavg()[0], "answers_per_s": round(sum(statuses.values()) / args.seconds, 1),
        "max_in_flight": args.max_in_flight or 4 * args.threads,
        "answers": {str(k): v for k, v in sorted(statuses.items(), key=str)},
        "searches_per_s": round(statuses[200] / args.seconds, 1), "other_5xx": other_5xx,
        "healthz_port": args.health_port or args.port,
        "healthz_on": "health port (own thread)" if args.health_port else "main port (request loop)",
        "healthz_n": len(h), "healthz_p50_ms": round(float(np.percentile(h, 50)), 2),
        "healthz_p99_ms": round(float(np.percentile(h, 99)), 2), "healthz_max_ms": round(float(h.max()), 2),
        "server_cores": round(server_cores, 2), "flood_client_cores": round(client_cores, 2),
        "rss_before_mb": round(rss_before, 1), "rss_peak_mb": round(max(rss), 1),
        "rss_after_mb": round(rss_mb(proc.pid), 1), "quiet_search_ms": round(quiet_ms, 2),
        "recovery_s": round(recovered, 3),
    }  # fmt: skip


def cpu_set(text: str) -> set[int]:
    """``0-3,8`` -> {0, 1, 2, 3, 8}."""
    cpus: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--threads", type=int, default=2, help="the server's search threads")
    parser.add_argument("--flood-procs", type=int, default=1, help="client processes sharing the connections")
    parser.add_argument("--max-in-flight", type=int, default=0, help="server max_in_flight (0: default)")
    parser.add_argument("--port", type=int, default=18450)
    parser.add_argument(
        "--health-port", type=int, default=0, help="serve with --health-port PORT and probe /healthz there"
    )
    parser.add_argument("--server-cpus", type=cpu_set, default=set(), help="pin the server here (e.g. 0-7)")
    parser.add_argument("--client-cpus", type=cpu_set, default=set(), help="pin the flood and prober here")
    parser.add_argument("--index", type=Path, help="an index to serve (default: BM25 over SciFact)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/lsr-flood"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.client_cpus:
        os.sched_setaffinity(0, args.client_cpus)  # the prober (this process) and the flood child
    index = args.index or build_index(args.work)
    with gzip.open(SCIFACT / "queries.jsonl.gz", "rt", encoding="utf-8") as f:
        queries = [json.loads(line)["text"] for line in f]
    proc = start_server(args, index, args.work / "server.log")
    try:
        row = asyncio.run(flood(args, proc, f"http://127.0.0.1:{args.port}", queries))
    finally:
        proc.terminate()
        proc.wait(10)
    for key, value in row.items():
        print(f"{key:<18} {value}")
    if args.json:
        args.json.write_text(json.dumps(row, indent=2) + "\n")
    ok = row["other_5xx"] == 0 and row["healthz_p99_ms"] <= 100 and row["recovery_s"] <= 2
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
