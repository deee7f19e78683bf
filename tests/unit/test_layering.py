"""The package dependency direction (index <- lsr <- eval, service), light imports, and every third-party
import declared in pyproject.toml."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
FIRST_PARTY = {"lsr", "benchmarks"}
# import name -> distribution, where PEP 503 normalization of the import name does not give it
DISTRIBUTIONS = {
    "yaml": "pyyaml",
    "Stemmer": "pystemmer",
    "faiss": "faiss-cpu",
    "jnius": "pyjnius",
    "jnius_config": "pyjnius",
    "seismic": "pyseismic-lsr",
}
# the extra that makes a folder's modules importable (None: the base dependencies); the most specific wins
FOLDER_EXTRAS = {
    "index": None,
    "lsr": None,
    "lsr/train": "train",
    "eval": None,
    "service": "serve",
    "benchmarks": "bench",
}


def python_files(folder: str) -> list[Path]:
    """The .py files under ``folder``; an empty set fails, or every check over it would pass vacuously."""
    files = sorted((REPO / folder).rglob("*.py"))
    assert files, f"no Python files under {REPO / folder}"
    return files


def imports(path: Path) -> list[tuple[str, str]]:
    """``(absolute module, where)`` for each import of ``path``; where: "module" (a statement of the module
    body itself), "nested" (in a function, a try, ...) or "typing" (in an ``if TYPE_CHECKING`` block)."""
    found: list[tuple[str, str]] = []

    def visit(node: ast.AST, where: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((alias.name, where) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.append((child.module, where))
            elif isinstance(child, ast.If) and ast.unparse(child.test) in (
                "TYPE_CHECKING",
                "typing.TYPE_CHECKING",
            ):
                for stmt in child.body:
                    visit(stmt, "typing")
                for stmt in child.orelse:
                    visit(stmt, "nested")
            else:
                visit(child, "nested" if where == "module" else where)

    visit(ast.parse(path.read_text(), str(path)), "module")
    return found


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, type-checking-only imports included (they point one way too)."""
    return {module for module, _ in imports(path)}


def test_index_imports_nothing_above_it():
    for path in python_files("index"):
        bad = {m for m in imported_modules(path) if m.startswith("lsr") and not m.startswith("lsr.index")}
        bad |= {m for m in imported_modules(path) if m.split(".")[0] in {"torch", "transformers"}}
        assert not bad, f"{path} imports {bad}"


def test_core_does_not_import_eval_or_service():
    core = [path for path in python_files("lsr") if path.name != "cli.py"]  # cli.py: the composition root
    assert core, "lsr/ has no module but cli.py"
    for path in core:
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


def declared_distributions() -> dict[str | None, set[str]]:
    """pyproject.toml's requirements by extra (None: the base dependencies), as normalized names."""
    tomllib = pytest.importorskip("tomllib", reason="reads pyproject.toml with Python 3.11's tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    groups: dict[str | None, list[str]] = {None: project["dependencies"], **project["optional-dependencies"]}
    return {extra: {canonicalize_name(Requirement(r).name) for r in reqs} for extra, reqs in groups.items()}


def folder_extra(path: Path) -> str | None:
    relative = path.relative_to(REPO).as_posix()
    return FOLDER_EXTRAS[max((f for f in FOLDER_EXTRAS if relative.startswith(f + "/")), key=len)]


def test_every_third_party_import_is_declared():
    """A module-level import comes with the base dependencies or the folder's extra (service/: serve,
    lsr/train/: train, ...); an import in a function or a try comes with some extra (the one guarding it)."""
    declared = declared_distributions()
    anywhere = set().union(*declared.values())
    missing = []
    for folder in FOLDER_EXTRAS:
        for path in python_files(folder):
            extra = folder_extra(path)
            for module, where in imports(path):
                top = module.split(".")[0]
                if where == "typing" or top in sys.stdlib_module_names or top in FIRST_PARTY:
                    continue
                dist = canonicalize_name(DISTRIBUTIONS.get(top, top))
                if where == "nested":
                    ok, needed = dist in anywhere, "the dependencies or any extra"
                else:
                    ok = dist in declared[None] or (extra is not None and dist in declared[extra])
                    needed = "the dependencies" + (f" or the [{extra}] extra" if extra else "")
                if not ok:
                    missing.append(f"{path.relative_to(REPO)}: import {module}: {dist} is not in {needed}")
    assert not missing, "undeclared imports:\n" + "\n".join(missing)
