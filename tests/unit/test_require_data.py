"""tests/conftest.py: with LSR_REQUIRE_DATA=1 a test skipped for missing staged data fails; others skip."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]

SAMPLE = """
import pytest


def test_needs_scifact(scifact):
    pass


def test_skips_for_its_own_data():
    pytest.skip("needs ../shared/data/msmarco/dl-pool")


def test_skips_for_a_missing_package():
    pytest.importorskip("no_such_package_lsr")


@pytest.mark.xfail(reason="a known failure, not a skip")
def test_xfail():
    raise AssertionError
"""


def run_sample(tmp_path: Path, require: str | None) -> str:
    (tmp_path / "tests").mkdir()
    shutil.copy(TESTS / "conftest.py", tmp_path / "tests" / "conftest.py")
    (tmp_path / "tests" / "test_sample.py").write_text(SAMPLE)
    env = {k: v for k, v in os.environ.items() if k not in ("LSR_REQUIRE_DATA", "LSR_DL_POOL")}
    env["LSR_SHARED_DATA"] = str(tmp_path / "no-data")
    if require is not None:
        env["LSR_REQUIRE_DATA"] = require
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-rA",
        "-p",
        "no:cacheprovider",
        "--rootdir",
        str(tmp_path),
        "tests",
    ]
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    return out.stdout


def test_missing_data_skips_by_default(tmp_path):
    out = run_sample(tmp_path, None)
    assert "3 skipped, 1 xfailed" in out, out


def test_missing_data_fails_when_required(tmp_path):
    out = run_sample(tmp_path, "1")
    assert "1 failed, 1 skipped, 1 xfailed, 1 error" in out, out
    assert "ERROR tests/test_sample.py::test_needs_scifact" in out  # the fixture's skip, at setup
    assert "FAILED tests/test_sample.py::test_skips_for_its_own_data" in out
    assert "SKIPPED [1] tests/test_sample.py" in out and "no_such_package_lsr" in out
    assert (
        f"LSR_REQUIRE_DATA=1, and this test skipped for missing data: BEIR SciFact not found at {tmp_path}"
        in out
    )
