"""The health port (``lsr serve --health-port PORT``): liveness and readiness probes answered on their
own thread, so they never queue behind the request event loop, yet still report that loop's health.

A heartbeat task on the event loop stamps a monotonic time every ``HEARTBEAT_S``; the probe thread
answers ``GET /healthz`` 200 while the stamp is younger than ``service.health_stale_s`` and 503 (naming
how stale) once it is older: a loop blocked or starved that long is unhealthy, one merely busy is not.
``GET /readyz`` answers what the main port's ``/readyz`` answers, computed on the probe thread from
state the app keeps (never through the event loop). A stdlib ``ThreadingHTTPServer``: no FastAPI.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

logger = logging.getLogger("lsr.service")

HEARTBEAT_S = 0.05

Probe = Callable[[], tuple[int, dict[str, Any]]]  # a route: () -> (HTTP status, JSON body)


class Heartbeat:
    """The event loop's last sign of life (``time.monotonic()``), stamped by :meth:`run` on that loop."""

    def __init__(self) -> None:
        self.last = time.monotonic()

    async def run(self) -> None:
        while True:
            self.last = time.monotonic()  # one float store: safe to read from the probe thread
            await asyncio.sleep(HEARTBEAT_S)

    def age_s(self) -> float:
        return time.monotonic() - self.last


def liveness(heartbeat: Heartbeat, stale_s: float) -> tuple[int, dict[str, Any]]:
    """200 ``{"status": "ok"}`` while the heartbeat is fresher than ``stale_s``, else 503 saying how stale."""
    age = heartbeat.age_s()
    if age < stale_s:
        return 200, {"status": "ok", "loop_lag_s": round(age, 3)}
    message = f"the request event loop has not run for {age:.2f} s (stale past {stale_s:g} s)"
    return 503, {"status": "stale", "loop_lag_s": round(age, 3), "error": message}


class HealthServer:
    """``GET /healthz`` and ``GET /readyz`` on ``host:port``, served by threads of this process."""

    def __init__(
        self,
        host: str,
        port: int,
        heartbeat: Heartbeat,
        stale_s: float,
        readiness: Probe,
    ):
        routes: dict[str, Probe] = {
            "/healthz": lambda: liveness(heartbeat, stale_s),
            "/readyz": readiness,
        }
        self.httpd = ThreadingHTTPServer((host, port), _handler(routes))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="lsr-health", daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> HealthServer:
        self.thread.start()
        logger.info("health probes on port %d (/healthz, /readyz)", self.port)
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket (the port is free when this returns)."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def _handler(routes: dict[str, Probe]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: a prober reuses its connection
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK wait

        def do_GET(self) -> None:
            status, body = _answer(routes, self.path.partition("?")[0])
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # probes every few seconds would flood the log

    return Handler


def _answer(routes: dict[str, Probe], path: str) -> tuple[int, dict[str, Any]]:
    route = routes.get(path)
    if route is None:
        return 404, _error(404, f"no route {path!r}; the health port answers /healthz and /readyz")
    try:
        return route()
    except Exception as exc:  # a probe must answer, whatever went wrong
        return 500, _error(500, f"{type(exc).__name__}: {exc}")


def _error(status: int, message: str) -> dict[str, Any]:
    return {"error": {"status": status, "message": message}}  # the main port's error shape
