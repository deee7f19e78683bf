"""Helpers for the service tests: free ports, readiness waits, an in-thread uvicorn server."""

from __future__ import annotations

import contextlib
import os
import random
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

API_KEY = "test-key-7f3a9c"


def free_port() -> int:
    """A free loopback port: from ``$LSR_TEST_PORTS`` ("LOW-HIGH", a range kept for this checkout on a
    shared machine) when set, else any the system gives."""
    low, _, high = os.environ.get("LSR_TEST_PORTS", "0-0").partition("-")
    ports = list(range(int(low), int(high or low) + 1))
    random.shuffle(ports)  # two calls before either port is bound rarely get the same one
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError(f"no free port in LSR_TEST_PORTS={os.environ['LSR_TEST_PORTS']}")


def wait_ready(
    url: str, deadline_s: float, proc: subprocess.Popen | None = None, log: Path | None = None
) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}:\n{log.read_text() if log else ''}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url}/readyz not ready after {deadline_s} s:\n{log.read_text() if log else ''}")


@contextlib.contextmanager
def serve_in_thread(app, deadline_s: float = 30) -> Iterator[str]:
    """Run an ASGI app under a real uvicorn server on a background thread of this process (so tests can
    hand it doctored searchers); yields its URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    end = time.monotonic() + deadline_s
    while not server.started:
        if time.monotonic() > end or not thread.is_alive():
            raise RuntimeError("the in-thread server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
