"""The health port (``service.health_port``, ``lsr serve --health-port``): probes answered on their own
thread while the request event loop is blocked, /healthz there turning 503 "stale" past the limit and
200 again after, /readyz matching the main port's, bad settings refused, the port closed at shutdown."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest
from service_helpers import free_port, serve_in_thread, wait_ready

from lsr.config import ServiceConfig
from lsr.errors import ConfigError


def _settings(index, **kw) -> ServiceConfig:
    return ServiceConfig(indexes={"if": str(index)}, log_requests=False, api_key_env="LSR_TEST_NO_KEY", **kw)


def _closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_health_port_answers_while_the_loop_is_blocked_and_reports_it_stale(tiny_if_index):
    from lsr.service.app import create_app

    health_port = free_port()
    app = create_app(_settings(tiny_if_index, health_port=health_port, health_stale_s=0.5))

    @app.get("/block")
    async def block() -> dict:
        time.sleep(3.0)  # a synchronous handler: the whole event loop stops for 3 s
        return {"blocked": 3.0}

    probe = f"http://127.0.0.1:{health_port}"
    with serve_in_thread(app) as url:
        wait_ready(url, 30)
        r = httpx.get(f"{probe}/healthz", timeout=2)
        assert r.status_code == 200 and r.json()["status"] == "ok"
        assert httpx.get(f"{probe}/readyz", timeout=2).json() == httpx.get(f"{url}/readyz").json()
        assert httpx.get(f"{probe}/readyz", timeout=2).json() == {"ready": True, "indexes": ["if"]}
        r = httpx.get(f"{probe}/nope", timeout=2)
        assert r.status_code == 404 and "/healthz and /readyz" in r.json()["error"]["message"]

        blocker = threading.Thread(target=lambda: httpx.get(f"{url}/block", timeout=30))
        blocker.start()
        seen: list[tuple[float, int, str]] = []  # (seconds since the block began, status, body's status)
        t0 = time.monotonic()
        while blocker.is_alive():
            # answered although the loop is stopped (a probe waiting for the 3 s block would time out)
            r = httpx.get(f"{probe}/healthz", timeout=2)
            seen.append((time.monotonic() - t0, r.status_code, r.json()["status"]))
            if r.status_code == 503:
                assert "has not run for" in r.json()["error"] and "stale past 0.5 s" in r.json()["error"]
                assert httpx.get(f"{probe}/readyz", timeout=2).status_code == 200  # still ready
            time.sleep(0.05)
        blocker.join()
        assert seen[0][1] == 200  # fresh at first: the loop stopped less than 0.5 s ago
        stale = [t for t, status, body in seen if status == 503 and body == "stale"]
        assert len(stale) >= 10 and stale[0] >= 0.4 and seen[-1][0] >= 2.5
        time.sleep(0.2)
        r = httpx.get(f"{probe}/healthz", timeout=2)
        assert r.status_code == 200 and r.json()["status"] == "ok"  # fresh again once the loop runs
    assert _closed(health_port)  # shut down with the app


def test_health_port_readyz_says_503_while_loading(tiny_if_index):
    from lsr.service.app import create_app
    from lsr.service.app import default_opener as opener_for

    settings = _settings(tiny_if_index, health_port=free_port())
    opener = opener_for(settings)

    def slow(path):
        time.sleep(1.5)
        return opener(path)

    probe = f"http://127.0.0.1:{settings.health_port}"
    with serve_in_thread(create_app(settings, opener=slow)) as url:
        r = httpx.get(f"{probe}/readyz", timeout=2)
        assert r.status_code == 503 and r.json() == {"ready": False, "loaded": [], "error": None}
        assert httpx.get(f"{probe}/healthz", timeout=2).status_code == 200
        wait_ready(url, 30)
        assert httpx.get(f"{probe}/readyz", timeout=2).status_code == 200


def test_no_health_port_by_default():
    assert ServiceConfig().health_port == 0


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"health_port": -1}, "health_port = -1 must be a port number 1-65535 (0: off)"),
        ({"health_port": 70000}, "health_port = 70000 must be a port number"),
        ({"health_port": True}, "health_port = True must be a port number"),
        ({"health_port": "9000"}, "health_port = '9000' must be a port number"),
        ({"health_port": 8000, "port": 8000}, "health_port = 8000 is the service's own port"),
        ({"health_port": 9000, "workers": 2}, "health_port = 9000 needs workers = 1"),
        ({"health_stale_s": 0}, "health_stale_s = 0 must be a number of seconds > 0"),
        ({"health_stale_s": float("nan")}, "health_stale_s = nan must be"),
        ({"health_stale_s": float("inf")}, "health_stale_s = inf must be"),
    ],
)
def test_bad_health_settings_are_refused(kw, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ServiceConfig(**kw)


def test_serve_flag_rejects_a_bad_health_port(tiny_if_index, capsys):
    from lsr.cli import main

    code = main(["serve", "--index", str(tiny_if_index), "--port", "18601", "--health-port", "18601"])
    assert code != 0
    assert "health_port = 18601 is the service's own port" in capsys.readouterr().err
    code = main(["serve", "--index", str(tiny_if_index), "--health-port", "-5"])
    assert code != 0 and "health_port = -5 must be a port number" in capsys.readouterr().err
