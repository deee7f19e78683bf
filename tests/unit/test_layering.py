"""The package dependency direction (index <- lsr <- eval, service) and light imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_index_imports_nothing_above_it():
    for path in (REPO / "index").rglob("*.py"):
        bad = {m for m in imported_modules(path) if m.startswith("lsr") and not m.startswith("lsr.index")}
        bad |= {m for m in imported_modules(path) if m.split(".")[0] in {"torch", "transformers"}}
        assert not bad, f"{path} imports {bad}"


def test_core_does_not_import_eval_or_service():
    for path in (REPO / "lsr").rglob("*.py"):
        if path.name == "cli.py":  # the composition root
            continue
        bad = {m for m in imported_modules(path) if m.startswith(("lsr.eval", "lsr.service"))}
        assert not bad, f"{path} imports {bad}"


def test_no_generic_top_level_names_and_light_imports():
    code = (
        "import importlib.util, sys; import lsr, lsr.config, lsr.index, lsr.eval;"
        "assert all(importlib.util.find_spec(n) is None for n in ('index', 'eval', 'service', 'configs'));"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules;"
        "import lsr.config as c; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.stdout.strip() == "ok", out.stderr


def test_config_loads_without_numba_or_numpy_kernels():
    code = "import sys, lsr.config; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.stdout.strip() == "False", out.stderr
