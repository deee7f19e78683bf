"""``lsr serve`` under wrk: QPS and p50/p90/p99 latency of POST /v1/search with the server pinned to
a set of cores and wrk beside it, for each index and worker count, repeated; optionally the same runs
on older source trees (``--compare-src``), interleaved, so before and after share the machine's load.

    python -m benchmarks.http_bench --server-cpus 0,1 --client-cpus 2,3 --workers 1,2 --repeat 3 \\
        --out benchmarks/results/http-wrk.json

Indexes: SciFact with each of ``--encoders`` (default BM25 and the default inference-free encoder;
``splade`` the default SPLADE model), built into ``--build-dir`` when missing (``lsr index``); or
``--index NAME=DIR``. Requests: the SciFact test queries, cycled
(``benchmarks/http/search.lua``, each wrk thread from its own offset), ``{"index", "k": 10, "query"}``.
Every server (one per code tree and worker count, each on its own port) is started by this script
(``taskset -c SERVER_CPUS lsr serve ...``, its log in the output folder) and stopped at the end; the
wrk runs go round the servers in turn, ``--repeat`` rounds, under ``taskset -c CLIENT_CPUS``.
``--load-script`` also runs ``python -m lsr.service.load`` (our own asyncio client) once per server
and index at the same concurrency. Server CPU per request: the user + system CPU seconds of the
server's processes over a run, divided by the requests answered (less sensitive than QPS to other
processes on the machine).

``--compare-src [LABEL=]DIR`` (repeatable): a source tree of another commit (``git archive COMMIT |
tar -x -C DIR``); its servers run with ``PYTHONPATH`` pointing at a copy laid out as the installed
package (``lsr/`` with ``service``, ``index``, ``eval`` and ``configs`` inside).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "data" / "beir" / "scifact"
LUA = ROOT / "benchmarks" / "http" / "search.lua"
ENCODERS = ("bm25", "inference-free", "splade")
PACKAGES = ("service", "index", "eval", "configs")  # lsr.<name> lives in the repository's <name>/


def build_indexes(build_dir: Path, queries: Path, encoders: list[str]) -> dict[str, str]:
    """SciFact indexes of each encoder, built with ``lsr index`` unless present."""
    out = {}
    for encoder in encoders:
        path = build_dir / encoder
        if not (path / "meta.json").is_file():
            cmd = [sys.executable, "-m", "lsr.cli", "index", "--corpus", str(queries), "--encoder", encoder]
            subprocess.run([*cmd, "--out", str(path), "--quiet"], check=True)
        out[encoder] = str(path.resolve())  # servers run in a temp dir: absolute
    return out


def write_bodies(queries: Path, split: str, indexes: list[str], k: int, folder: Path) -> dict[str, Path]:
    """One file per index: a JSON search body per line, one per query text."""
    from lsr.data.corpus import load_queries

    texts = [t for t in load_queries(str(queries), split).values() if t.strip()]
    files = {}
    for name in indexes:
        files[name] = folder / f"bodies-{name}.jsonl"
        lines = (json.dumps({"index": name, "k": k, "query": t}) for t in texts)
        files[name].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return files


def with_pythonpath(*first: Path | None) -> dict[str, str]:
    """This process's environment with the ``first`` paths given (not None) ahead of any ``PYTHONPATH``
    already set (where the dependencies may come from)."""
    env = dict(os.environ)
    paths = [str(p) for p in first if p is not None]
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [*paths, env.get("PYTHONPATH")]))
    return env


def source_layout(src: Path, folder: Path) -> Path:
    """A PYTHONPATH entry under which ``import lsr`` finds ``src`` laid out as the installed package."""
    top = folder / "layout"
    shutil.copytree(src / "lsr", top / "lsr")
    for name in PACKAGES:
        (top / "lsr" / name).symlink_to((src / name).resolve(), target_is_directory=True)
    return top


class Server:
    """``lsr serve`` pinned with taskset, started and waited for until /readyz answers 200."""

    def __init__(
        self,
        args: argparse.Namespace,
        indexes: dict[str, str],
        workers: int,
        port: int,
        pythonpath: Path | None,
        log: Path,
    ):
        cmd = [
            "taskset",
            "-c",
            args.server_cpus,
            sys.executable,
            "-m",
            "lsr.cli",
            "serve",
            "--port",
            str(port),
        ]
        for name, path in indexes.items():
            cmd += ["--index", f"{name}={path}"]
        cmd += ["--workers", str(workers), "--quiet", *args.serve_arg]
        env = with_pythonpath(pythonpath)
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        with open(log, "wb") as f:  # the access log (one line per request) goes here too
            self.proc = subprocess.Popen(
                cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=tempfile.gettempdir()
            )

    def wait_ready(self, timeout: float = 600.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"lsr serve exited ({self.proc.returncode}); see {self.log}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            time.sleep(0.5)
        raise RuntimeError(f"lsr serve not ready within {timeout:g} s; see {self.log}")

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the server and its worker processes so far."""
        return sum(_cpu(pid) for pid in _tree(self.proc.pid))

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _tree(pid: int) -> list[int]:
    pids, i = [pid], 0
    while i < len(pids):
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{pids[i]}/task"):
                children = Path(f"/proc/{pids[i]}/task/{task}/children").read_text().split()
                pids += [int(c) for c in children]
        i += 1
    return pids


def _cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def run_wrk(args: argparse.Namespace, url: str, bodies: Path) -> dict[str, Any]:
    cmd = [
        "taskset",
        "-c",
        args.client_cpus,
        args.wrk,
        f"-t{args.wrk_threads}",
        f"-c{args.concurrency}",
        f"-d{args.duration:g}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
        "--",
        str(bodies),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    found = re.search(r"^WRK_JSON (.*)$", out, re.M)
    if found is None:
        raise RuntimeError(f"no WRK_JSON line in wrk's output:\n{out}")
    return json.loads(found.group(1))


def run_load_script(
    args: argparse.Namespace, url: str, index: str, pythonpath: Path | None
) -> dict[str, Any]:
    """One level of ``python -m lsr.service.load`` (HTTP only, no in-process baseline)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "load.json"
        cmd = [
            "taskset",
            "-c",
            args.client_cpus,
            sys.executable,
            "-m",
            "lsr.service.load",
            "--url",
            url,
            "--index",
            index,
            "--queries",
            str(Path(args.queries).resolve()),  # this runs in a temp dir
            "--split",
            args.split,
            "--k",
            str(args.k),
            "--concurrency",
            str(args.concurrency),
            "--duration",
            f"{args.duration:g}",
            "--no-baseline",
            "--out",
            str(out),
        ]
        env = with_pythonpath(pythonpath)
        subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=tempfile.gettempdir())
        return json.loads(out.read_text())["runs"][0]["levels"][0]["http"]


def measure(
    args: argparse.Namespace,
    variants: list[tuple[str, Path | None]],
    indexes: dict[str, str],
    bodies: dict[str, Path],
    folder: Path,
) -> list[dict[str, Any]]:
    """Start a server per (code, worker count), each on its own port; then ``--repeat`` rounds, each
    running wrk once per index on every server in turn (so every server sees the same machine load);
    then, with ``--load-script``, one run of it per server and index; stop them all."""
    servers: list[tuple[str, int, Path | None, Server]] = []
    try:
        for workers in [int(w) for w in args.workers.split(",")]:
            for variant, pythonpath in variants:
                log = folder / f"serve-{variant}-w{workers}.log"
                port = args.port + len(servers)
                servers.append(
                    (variant, workers, pythonpath, Server(args, indexes, workers, port, pythonpath, log))
                )
        for *_, server in servers:
            server.wait_ready()
        warm = argparse.Namespace(**{**vars(args), "duration": 2.0})
        for *_, server in servers:  # warm-up: numba dispatch, page cache, connection setup
            for name in indexes:
                run_wrk(warm, server.url, bodies[name])
        rows = []
        for rep in range(args.repeat):
            for name in indexes:
                for variant, workers, _, server in servers:
                    rows.append(_wrk_row(args, server, bodies[name], variant, name, workers, rep))
                    print(_line(rows[-1]), flush=True)
        if args.load_script:
            rows += _load_script_rows(args, servers, indexes)
        return rows
    finally:
        for *_, server in servers:
            server.stop()


def _load_script_rows(
    args: argparse.Namespace, servers: list, indexes: dict[str, str]
) -> list[dict[str, Any]]:
    rows = []
    for name in indexes:
        for variant, workers, pythonpath, server in servers:
            res = run_load_script(args, server.url, name, pythonpath)
            row = {"variant": variant, "index": name, "workers": workers, "repeat": 0}
            rows.append({**row, "client": "lsr.service.load", **res, "loadavg_1m": _load()})
            print(_line(rows[-1]), flush=True)
    return rows


def _wrk_row(
    args: argparse.Namespace, server: Server, bodies: Path, variant: str, index: str, workers: int, rep: int
) -> dict[str, Any]:
    time.sleep(0.5)  # searches of the last run's closed connections finish (they count as in flight)
    load0, cpu0 = _load(), server.cpu_seconds()
    res = run_wrk(args, server.url, bodies)
    cpu = server.cpu_seconds() - cpu0
    return {
        "variant": variant,
        "index": index,
        "workers": workers,
        "repeat": rep,
        "client": "wrk",
        **res,
        "server_cpu_ms_per_request": round(cpu / max(res["requests"], 1) * 1e3, 3),
        "loadavg_1m": load0,
    }


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _line(row: dict[str, Any]) -> str:
    cpu = row.get("server_cpu_ms_per_request")
    return (
        f"{row['variant']:>7} {row['index']:>15} w{row['workers']} {row['client']:>16} {row['qps']:8.1f} q/s "
        f"p50 {row['p50_ms']:6.2f} p99 {row['p99_ms']:6.2f} ms"
        + (f" cpu {cpu:.3f} ms/req" if cpu is not None else "")
        + f" non-200 {row.get('non_200', row.get('errors', 0))} load {row['loadavg_1m']}"
    )


def summary_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: the median over repeats of each (index, workers, client, code)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["index"], r["workers"], r["client"], r["variant"]), []).append(r)
    lines = [
        "| index | workers | client | code | runs | QPS (median) | p50 ms | p99 ms | server CPU ms/request "
        "| non-200 | load 1m |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (index, workers, client, variant), rs in sorted(groups.items()):
        cpu = _median(rs, "server_cpu_ms_per_request")
        bad = sum(r.get("non_200", r.get("errors", 0)) for r in rs)
        loads = [r["loadavg_1m"] for r in rs]
        lines.append(
            f"| {index} | {workers} | {client} | {variant} | {len(rs)} | {_median(rs, 'qps'):.0f} | "
            f"{_median(rs, 'p50_ms'):.2f} | {_median(rs, 'p99_ms'):.2f} | "
            f"{'-' if cpu is None else f'{cpu:.3f}'} | {bad} | {min(loads):.1f}-{max(loads):.1f} |"
        )
    return "\n".join(lines)


def _median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


def machine(wrk: str) -> dict[str, Any]:
    import platform

    info: dict[str, Any] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    for mod in ("uvicorn", "fastapi", "starlette", "pydantic", "uvloop", "httptools", "orjson"):
        try:
            info[mod] = __import__(mod).__version__
        except (ImportError, AttributeError):
            info[mod] = None
    info["wrk"] = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.split("\n")[0] or None
    return info


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.http_bench", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--index", action="append", metavar="NAME=DIR", help="serve this index (default: SciFact's, built)"
    )
    p.add_argument(
        "--encoders",
        default="bm25,inference-free",
        help=f"SciFact indexes to build and serve, comma-separated, of {list(ENCODERS)}",
    )
    p.add_argument(
        "--build-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "lsr-http-bench",
        help="where the SciFact indexes are built when missing",
    )
    p.add_argument(
        "--queries", type=Path, default=SCIFACT, help="BEIR folder (queries, and the corpus to index)"
    )
    p.add_argument("--split", default="test")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--server-cpus", default="0,1", help="taskset -c list for the server (0,1)")
    p.add_argument(
        "--client-cpus", help="taskset -c list for wrk (default: 2,3 with 4+ CPUs, else the server's)"
    )
    p.add_argument("--workers", default="1", help="comma-separated worker counts (1)")
    p.add_argument(
        "--serve-arg", action="append", default=[], help="one more `lsr serve` argument (repeatable)"
    )
    p.add_argument("--concurrency", type=int, default=8, help="connections (8)")
    p.add_argument("--wrk-threads", type=int, default=2)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run (10)")
    p.add_argument("--repeat", type=int, default=3, help="wrk runs per index and server (3)")
    p.add_argument("--load-script", action="store_true", help="also one run of python -m lsr.service.load")
    p.add_argument(
        "--compare-src",
        action="append",
        default=[],
        metavar="[LABEL=]DIR",
        help="a source tree of another commit, measured the same way (repeatable; LABEL default 'before')",
    )
    p.add_argument("--label", default="after", help="the name of this tree's runs")
    p.add_argument("--port", type=int, default=18390, help="the servers' port")
    p.add_argument("--wrk", default="wrk", help="the wrk binary")
    p.add_argument("--out", type=Path, help="write the JSON here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if shutil.which(args.wrk) is None:
        print(f"http_bench: no {args.wrk!r} binary (apt-get install wrk, or --wrk PATH)", file=sys.stderr)
        return 2
    if args.client_cpus is None:
        args.client_cpus = "2,3" if (os.cpu_count() or 1) >= 4 else args.server_cpus
    if args.index:
        indexes = dict(spec.split("=", 1) for spec in args.index)
    else:
        unknown = set(args.encoders.split(",")) - set(ENCODERS)
        if unknown:
            print(f"http_bench: --encoders {sorted(unknown)}: not one of {list(ENCODERS)}", file=sys.stderr)
            return 2
        indexes = build_indexes(args.build_dir, args.queries, args.encoders.split(","))
    workdir = Path(tempfile.mkdtemp(prefix="lsr-http-bench-"))
    bodies = write_bodies(args.queries, args.split, list(indexes), args.k, workdir)
    variants: list[tuple[str, Path | None]] = []
    for i, spec in enumerate(args.compare_src):
        label, _, src = spec.rpartition("=")
        variants.append((label or "before", source_layout(Path(src), workdir / f"src{i}")))
    variants.append((args.label, None))
    load_start = os.getloadavg()
    rows = measure(args, variants, indexes, bodies, workdir)
    table = summary_table(rows)
    print(table)
    result = {
        "command": " ".join(["python -m benchmarks.http_bench", *(sys.argv[1:] if argv is None else argv)]),
        "server_cpus": args.server_cpus,
        "client_cpus": args.client_cpus,
        "concurrency": args.concurrency,
        "wrk_threads": args.wrk_threads,
        "duration_s": args.duration,
        "k": args.k,
        "indexes": indexes,
        "machine": machine(args.wrk),
        "loadavg_start_end": [round(load_start[0], 2), round(os.getloadavg()[0], 2)],
        "logs": str(workdir),
        "rows": rows,
        "table": table,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"results -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
