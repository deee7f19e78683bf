"""Flags that several commands share (``lsr`` and its ``lsr eval`` modes): one definition each."""

from __future__ import annotations

import argparse


def common_flags(p: argparse.ArgumentParser) -> None:
    """``--config``, ``--set`` (repeatable) and ``--quiet``: every command takes them."""
    p.add_argument(
        "--config",
        metavar="FILE|NAME",
        help="YAML config file, or a shipped config name (bm25, toy); defaults otherwise",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set encoder.bm25.k1=1.2 (repeatable)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars, warnings and errors only")


def search_mode_flags(p: argparse.ArgumentParser) -> None:
    """``--mode``, ``--alpha``, ``--beta``: the sparse kernels (config ``search.*``)."""
    p.add_argument(
        "--mode",
        choices=("exact", "safe", "approx"),
        help="search.mode: exact scores every posting; safe uses block-max pruning with "
        "identical results; approx prunes further with --alpha/--beta",
    )
    p.add_argument(
        "--alpha",
        type=float,
        help="search.alpha in (0, 1], approx: stop when the k-th score "
        "exceeds alpha x the best block bound left",
    )
    p.add_argument(
        "--beta",
        type=float,
        help="search.beta in (0, 1], approx: keep this fraction of each query's terms, heaviest first",
    )
