"""The reproduction matrix: expected numbers per (system, dataset, metric), checked by ``lsr eval --matrix``.

``eval/matrix.yaml`` holds ``rows``, each with ``system``, ``dataset``, ``metric``, ``expected``,
``tolerance`` and ``tier`` (``ci``: CPU-cheap, runs in CI; ``gpu``: needs a GPU; ``long``: minutes
to hours), optionally ``set`` (config overrides for that row) and ``note``. Every row is validated
(system, dataset, metric, tier, numbers) before any work; then the rows of the chosen tier run, each
(system, dataset, set) once. A measured value outside ``expected +- tolerance`` fails the run:
``REGRESSION`` below, ``CHANGED`` above (update the expected value if the change is intended).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from lsr.config import EvalConfig, load_config
from lsr.errors import ConfigError
from lsr.eval.datasets import resolve_dataset
from lsr.eval.metrics import parse_metric
from lsr.eval.record import Evaluation
from lsr.eval.suite import ConfigBase, check_pair, evaluate_pair
from lsr.eval.systems import parse_system

TIERS = ("ci", "gpu", "long")
FIELDS = {"system", "dataset", "metric", "expected", "tolerance", "tier", "set", "note"}
REPO = Path(__file__).resolve().parents[1]
DEFAULT_MATRIX = REPO / "eval" / "matrix.yaml"


@dataclass(frozen=True)
class Row:
    system: str
    dataset: str
    metric: str
    expected: float
    tolerance: float
    tier: str
    set: tuple[str, ...] = ()
    note: str = ""
    line: int = 0


def _fix_path(spec: str, root: Path) -> str:
    """A relative model/index/run path in a row is taken from the repository root when not found here."""
    name, sep, rest = spec.partition(":")
    target = rest if sep else spec
    if not target or Path(target).exists() or not (root / target).exists() or Path(target).is_absolute():
        return spec
    return f"{name}:{root / target}" if sep else str(root / target)


def load_matrix(path: str | Path) -> list[Row]:
    """Read and check the shape of every row (types, fields, tier).

    Raises:
        ConfigError: a malformed file or row (the message names the row).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no matrix file {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list) or not data["rows"]:
        raise ConfigError(f"{path}: expected a mapping with a non-empty list 'rows'")
    root = path.resolve().parent.parent
    rows = []
    for i, item in enumerate(data["rows"], start=1):
        where = f"{path} row {i}"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: expected a mapping, got {item!r}")
        unknown = sorted(set(item) - FIELDS)
        missing = sorted({"system", "dataset", "metric", "expected", "tolerance", "tier"} - set(item))
        if unknown or missing:
            raise ConfigError(
                f"{where}: unknown field(s) {unknown}, missing {missing}; fields: {sorted(FIELDS)}"
            )
        for key in ("expected", "tolerance"):
            if isinstance(item[key], bool) or not isinstance(item[key], (int, float)):
                raise ConfigError(f"{where}: {key} must be a number, got {item[key]!r}")
        if item["tolerance"] < 0:
            raise ConfigError(f"{where}: tolerance must be >= 0, got {item['tolerance']!r}")
        if item["tier"] not in TIERS:
            raise ConfigError(f"{where}: tier {item['tier']!r} is not one of {list(TIERS)}")
        sets = item.get("set") or []
        if not isinstance(sets, list) or not all(isinstance(s, str) for s in sets):
            raise ConfigError(f"{where}: set must be a list of 'section.key=value' strings")
        rows.append(
            Row(
                _fix_path(str(item["system"]), root),
                _fix_path(str(item["dataset"]), root),
                str(item["metric"]),
                float(item["expected"]),
                float(item["tolerance"]),
                item["tier"],
                tuple(sets),
                str(item.get("note", "")),
                i,
            )
        )
    return rows


def validate(rows: list[Row], path: str | Path = "matrix") -> None:
    """Resolve every row's system, dataset and metric (and their combination) before any work.

    Raises:
        ConfigError: the first row that names something that does not exist, with its row number.
    """
    for row in rows:
        where = f"{path} row {row.line} ({row.system} on {row.dataset}, {row.metric})"
        try:
            system = parse_system(row.system)
            dataset = resolve_dataset(row.dataset)
            parse_metric(row.metric)
            check_pair(system, dataset)
            load_config(None, list(row.set))
        except (ConfigError, FileNotFoundError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from None


def run_matrix(
    rows: list[Row],
    tier: str | None,
    base: ConfigBase,
    cache_dir: Path,
    progress: bool = False,
) -> tuple[list[dict[str, Any]], list[Evaluation]]:
    """Run the rows of ``tier`` (all rows when None); returns (checked rows, the suite's evaluations)."""
    chosen = [r for r in rows if tier is None or r.tier == tier]
    groups: dict[tuple[str, str, tuple[str, ...]], list[Row]] = {}
    for r in chosen:
        groups.setdefault((r.system, r.dataset, r.set), []).append(r)
    checked, results = [], []
    for (system_spec, dataset_spec, sets), group in groups.items():
        metrics = list(dict.fromkeys([*EvalConfig().metrics, *(r.metric for r in group)]))
        group_base = replace(base, overrides=(*base.overrides, *sets, f"eval.metrics={json.dumps(metrics)}"))
        res = evaluate_pair(
            parse_system(system_spec), resolve_dataset(dataset_spec), group_base, cache_dir, progress
        )
        results.append(res)
        for r in group:
            measured = res.metrics.get(r.metric)
            if measured is None:
                status = "MISSING"
            elif measured < r.expected - r.tolerance:
                status = "REGRESSION"
            elif measured > r.expected + r.tolerance:
                status = "CHANGED"
            else:
                status = "ok"
            checked.append(
                {
                    "system": r.system,
                    "dataset": r.dataset,
                    "metric": r.metric,
                    "tier": r.tier,
                    "expected": r.expected,
                    "tolerance": r.tolerance,
                    "measured": measured,
                    "status": status,
                    "set": list(r.set),
                    "note": r.note,
                    "eval_seconds": res.info.get("eval_seconds"),
                }
            )
    return checked, results


def format_matrix(checked: list[dict[str, Any]]) -> str:
    header = ["system", "dataset", "metric", "expected", "tol", "measured", "diff", "status"]
    table = [header]
    for c in checked:
        m = c["measured"]
        table.append(
            [
                Path(c["system"]).name if "/" in c["system"] and ":" not in c["system"] else c["system"],
                Path(c["dataset"]).name,
                c["metric"],
                f"{c['expected']:.4f}",
                f"{c['tolerance']:.4f}",
                "-" if m is None else f"{m:.4f}",
                "-" if m is None else f"{m - c['expected']:+.4f}",
                c["status"],
            ]
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = [
        "  ".join(
            c.ljust(w) if j < 3 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in table
    ]
    lines.insert(1, "-" * len(lines[0]))
    bad = [c for c in checked if c["status"] != "ok"]
    lines.append(
        f"{len(checked) - len(bad)} of {len(checked)} rows reproduce" + (f"; {len(bad)} FAIL" if bad else "")
    )
    return "\n".join(lines)
