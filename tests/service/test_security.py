"""Security: reloads only from the index roots (no traversal, no symlink out), no API key or document
text in logs and errors, loopback by default, API key rotation without a restart."""

from __future__ import annotations

import logging
import os
import shutil

import httpx
import pytest
from service_helpers import serve_in_thread, wait_ready

SECRET = "rotate-me-5b1d0c"
MARKER = "confidential-patient-record-" * 8


def _app(index, key_file=None, **kw):
    from lsr.config import ServiceConfig
    from lsr.service.app import create_app

    settings = ServiceConfig(
        indexes={"if": str(index)},
        api_key_file=str(key_file) if key_file else None,
        api_key_env="LSR_TEST_NO_KEY",
        warmup=False,
        **kw,
    )
    return create_app(settings)


@pytest.fixture
def layout(tmp_path, tiny_if_index):
    """root/if (served), root/v2 (a new build inside the root), outside/if, root/escape -> outside/if."""
    shutil.copytree(tiny_if_index, tmp_path / "root" / "if")
    shutil.copytree(tiny_if_index, tmp_path / "root" / "v2")
    shutil.copytree(tiny_if_index, tmp_path / "outside" / "if")
    (tmp_path / "root" / "escape").symlink_to(tmp_path / "outside" / "if")
    return tmp_path


def test_reload_only_from_the_index_roots(layout):
    root, outside = layout / "root", layout / "outside"
    with serve_in_thread(_app(root / "if")) as url:
        wait_ready(url, 60)
        reload = f"{url}/v1/indexes/if/reload"
        for path in (outside / "if", root / "escape", f"{root}/../outside/if", "/etc", "../../outside/if"):
            r = httpx.post(reload, json={"path": str(path)}, timeout=30)
            assert r.status_code == 403, (path, r.text)
            assert "outside the index roots" in r.json()["error"]["message"]
            assert str(root) not in r.json()["error"]["message"].replace(str(path), "")  # roots not disclosed
        r = httpx.post(reload, json={"path": str(root / "missing")}, timeout=30)  # inside, but no index
        assert r.status_code == 404 and "no index at" in r.json()["error"]["message"]
        r = httpx.post(reload, json={"path": str(root / "v2")}, timeout=30)
        assert r.status_code == 200 and r.json()["path"] == str((root / "v2").resolve())
        assert httpx.post(reload, timeout=30).status_code == 200  # in place: no path, no check


def test_configured_roots_replace_the_default(layout):
    root, outside = layout / "root", layout / "outside"
    with serve_in_thread(_app(root / "if", index_roots=(str(outside),))) as url:
        wait_ready(url, 60)
        reload = f"{url}/v1/indexes/if/reload"
        assert httpx.post(reload, json={"path": str(root / "v2")}, timeout=30).status_code == 403
        assert httpx.post(reload, json={"path": str(outside / "if")}, timeout=30).status_code == 200


def test_api_key_rotates_without_restart(tmp_path, tiny_if_index):
    key_file = tmp_path / "key"
    key_file.write_text("first-key\n")
    with serve_in_thread(_app(tiny_if_index, key_file)) as url:
        wait_ready(url, 60)

        def status(key: str) -> int:
            return httpx.get(f"{url}/v1/indexes", headers={"X-API-Key": key}, timeout=10).status_code

        assert status("first-key") == 200 and status("second-key") == 401
        key_file.write_text("second-key\n")
        st = key_file.stat()
        os.utime(key_file, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # a visibly new mtime
        assert status("second-key") == 200 and status("first-key") == 401
        key_file.write_text("")  # a rotation caught half-way: the previous key stays in force
        os.utime(key_file, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
        assert status("second-key") == 200


def test_no_key_or_document_text_in_logs_or_errors(tmp_path, tiny_if_index, caplog):
    key_file = tmp_path / "key"
    key_file.write_text(SECRET)
    shutil.copytree(tiny_if_index, tmp_path / "live")
    caplog.set_level(logging.DEBUG)
    bodies = []
    with serve_in_thread(_app(tmp_path / "live", key_file, log_requests=True)) as url:
        wait_ready(url, 60)
        good, bad = {"X-API-Key": SECRET}, {"X-API-Key": SECRET[::-1]}
        bodies.append(httpx.get(f"{url}/v1/indexes", headers=bad).text)
        bodies.append(httpx.post(f"{url}/v1/search", headers=bad, json={"query": MARKER}).text)
        docs = [{"id": "", "title": "t", "text": MARKER}, {"id": "x\ty", "text": MARKER}]
        for doc in docs:  # refused documents: the error names the field, never echoes the text
            r = httpx.post(f"{url}/v1/indexes/live/docs", headers=good, json={"docs": [doc]}, timeout=30)
            assert 400 <= r.status_code < 500
            bodies.append(r.text)
        r = httpx.post(f"{url}/v1/search", headers=good, json={"query": MARKER[:200], "k": 2})
        bodies.append(r.text)
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    assert SECRET not in logged and SECRET[::-1] not in logged
    assert MARKER not in logged
    assert all(SECRET not in b and SECRET[::-1] not in b and MARKER not in b for b in bodies)


def test_serve_binds_loopback_by_default(tiny_if_index, monkeypatch):
    import uvicorn

    from lsr.cli import main
    from lsr.config import ServiceConfig

    assert ServiceConfig().host == "127.0.0.1"
    seen = {}

    class Stop(Exception):
        pass

    def fake_config(*args, **kw):
        seen.update(kw)
        raise Stop

    monkeypatch.setattr(uvicorn, "Config", fake_config)
    with pytest.raises(Stop):
        main(["serve", "--index", str(tiny_if_index), "--quiet"])
    assert seen["host"] == "127.0.0.1"
    with pytest.raises(Stop):
        main(["serve", "--index", str(tiny_if_index), "--host", "0.0.0.0", "--quiet"])
    assert seen["host"] == "0.0.0.0"
