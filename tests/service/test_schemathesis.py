"""schemathesis ``--checks all`` against ``/openapi.json`` of a running ``lsr serve``: every answer is one
the document promises (status, body schema, headers, Allow on 405, the API key scheme), schema-valid
requests are served (or answered 400/404: schemathesis.toml says why) and invalid ones refused. Loopback
only, an API key, bounded examples and a fixed seed (CI reruns the same cases; run the CLI with another
--seed to explore). The server serves a copy of the SciFact BM25 index: the run writes and deletes
documents through the live routes.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from service_helpers import API_KEY, free_port, wait_ready

HERE = Path(__file__).resolve().parent
REQUIRED = os.environ.get("LSR_REQUIRE_DATA") == "1"  # CI: schemathesis is in the dev extra
EXAMPLES = 25  # per operation and phase: about a minute here (2 cores)


@pytest.fixture
def served(scifact_bm25_index, tmp_path):
    if importlib.util.find_spec("schemathesis") is None:
        if REQUIRED:
            pytest.fail("schemathesis is not installed (the dev extra holds it)")
        pytest.skip("schemathesis is not installed (pip install -e '.[dev]')")
    index = tmp_path / "bm25"
    shutil.copytree(scifact_bm25_index, index)
    key_file = tmp_path / "api-key"
    key_file.write_text(API_KEY + "\n")
    port = free_port()
    cmd = [sys.executable, "-m", "lsr.cli", "serve", "--index", f"bm25={index}", "--port", str(port)]
    cmd += ["--api-key-file", str(key_file), "--threads", "2", "--set", "service.warmup=false"]
    log = tmp_path / "server.log"
    env = {k: v for k, v in os.environ.items() if k != "LSR_API_KEY"}
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, 90, proc, log)
        yield url, log
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_schemathesis_checks_all_find_nothing(served, tmp_path):
    url, log = served
    cmd = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(HERE / "schemathesis.toml")]
    cmd += ["run", f"{url}/openapi.json", "--checks", "all", "--max-examples", str(EXAMPLES)]
    cmd += ["--seed", "1", "--workers", "1", "--header", f"X-API-Key: {API_KEY}"]
    cmd += ["--generation-database", "none", "--request-timeout", "30"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    out = done.stdout + done.stderr
    server_errors = [line for line in log.read_text().splitlines() if "unexpected error" in line]
    assert done.returncode == 0, f"{out[-6000:]}\nserver log: {server_errors[:5]}"
    assert "passed" in out and "failed" not in out.split("SUMMARY")[-1]
