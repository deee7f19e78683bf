"""The README's Python section runs as written (against the staged SciFact, in a temporary folder)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO, SCIFACT


def python_section() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### Python") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_python_section_runs(tmp_path):
    if not SCIFACT.is_dir():
        pytest.skip(f"needs the staged SciFact at {SCIFACT}")
    code = python_section().replace("../shared/data/beir/scifact", str(SCIFACT))
    code = code.replace("/tmp/py-bm25", str(tmp_path / "py-bm25"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].split()[:2] == ["1", "12009265"]  # the BM25 top hit the README's service example shows
    assert lines[-1].split()[0] == "100"  # k=100 results for the first batch query
