#!/usr/bin/env python3
"""mypy over the installed layout: ``.ci/typecheck.py [PACKAGE ...]`` (default: the packages CI checks).

The checkout installs ``index/`` as ``lsr.index`` (and eval/, service/, configs/ likewise, see
``[tool.setuptools.package-dir]``) through setuptools' editable import hook, which mypy cannot follow.
So this script links the installed layout into ``build/typecheck/`` (``lsr/<each entry of lsr/>`` plus
``lsr/index -> index/`` ..., and the top-level ``benchmarks/``; rebuilt on each run, so new files are
always seen) and runs mypy there with the ``[tool.mypy]`` settings of pyproject.toml. Error paths read as
module paths (``lsr/index/search.py`` is index/search.py).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TREE = REPO / "build" / "typecheck"
PACKAGES = ("lsr", "benchmarks")  # lsr/ with index/, eval/, service/; the top-level benchmarks/
TOP_LEVEL = ("benchmarks",)  # importable from the repo root, not installed


def link_tree() -> None:
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_dir: dict[str, str] = setuptools["package-dir"]
    shutil.rmtree(TREE, ignore_errors=True)
    root = TREE / "lsr"
    root.mkdir(parents=True)
    for entry in (REPO / package_dir["lsr"]).iterdir():
        if entry.name != "__pycache__":
            (root / entry.name).symlink_to(entry)
    for name, folder in package_dir.items():
        if name != "lsr":
            (root / name.removeprefix("lsr.")).symlink_to(REPO / folder)
    for name in TOP_LEVEL:
        (TREE / name).symlink_to(REPO / name)


def main(argv: list[str]) -> int:
    link_tree()
    packages = argv or list(PACKAGES)
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml")]
    cmd += [arg for package in packages for arg in ("-p", package)]
    return subprocess.run(cmd, cwd=TREE).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
