"""The README's Python section runs as written (against the staged SciFact, in a temporary folder)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO, SCIFACT


def python_blocks() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### Python") : text.index("### REST service")]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_readme_in_memory_example_runs(tmp_path):
    code = python_blocks()[0].replace("/tmp/py-mini", str(tmp_path / "py-mini"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    assert [line.split()[:2] for line in out.stdout.splitlines()] == [["1", "0"], ["2", "1"]]
    assert (tmp_path / "py-mini" / "meta.json").is_file()


def test_readme_python_section_runs(tmp_path):
    if not SCIFACT.is_dir():
        pytest.skip(f"needs the staged SciFact at {SCIFACT}")
    code = python_blocks()[1].replace("../shared/data/beir/scifact", str(SCIFACT))
    code = code.replace("/tmp/py-bm25", str(tmp_path / "py-bm25"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].split()[:2] == ["1", "12009265"]  # the BM25 top hit the README's service example shows
    assert lines[-1].split()[0] == "100"  # k=100 results for the first batch query
