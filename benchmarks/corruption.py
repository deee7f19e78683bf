"""Exhaustive corruption sweep: every single-byte flip and every truncation of every file of a tiny index.

Each damaged copy is (1) opened (``Index.load``, ids, vocabulary, docstore); if that passes, (2) searched
with a fixed set of queries in every mode (a crash here is the failure this sweep exists to find), then
(3) checked by ``lsr verify``. Outcomes: ``open`` (refused on open with our error), ``verify`` (opened,
found by verify), ``harmless`` (found by neither, same answers: ids, scores, stored texts) and ``wrong``
(found by neither, other answers: must be 0). A search that raises after a clean open is ``raised``.

    python -m benchmarks.corruption [--patterns ff,01,80] [--out benchmarks/results/corruption.json]

The CI test (tests/unit/index/test_corruption.py) runs the same sweep with the 0xff pattern.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lsr.index import BuildOptions, SparseBatch, build_index
from lsr.index.docstore import DocStore, DocStoreWriter
from lsr.index.io import ArtifactError
from lsr.index.search import Index
from lsr.verify import verify

N_DOCS, N_TERMS, BLOCK = 24, 8, 2
OUTCOMES = ("open", "verify", "harmless", "raised", "wrong")


def build_tiny(out: Path, seed: int = 0) -> Path:
    """A tiny uint8 index with block-max data (dense and sparse terms) and a docstore."""
    rng = np.random.default_rng(seed)
    rows = []
    for d in range(N_DOCS):
        common = [0, 1] if d % 2 == 0 else [0]
        rare = [t for t in range(2, N_TERMS) if rng.random() < (0.4 if t < 5 else 0.08)]
        terms = sorted(set(common + rare))
        rows.append((terms, rng.uniform(0.1, 3.0, len(terms)).round(3).tolist()))
    store_dir = out.parent / f".{out.name}-store"
    store_dir.mkdir(parents=True, exist_ok=True)
    store = DocStoreWriter(store_dir)
    for d in range(N_DOCS):
        store.add(f"d{d}", f"title {d}", f"text of document {d}")
    store.close()
    build_index(
        lambda: [SparseBatch.from_rows(rows)],
        N_TERMS,
        [f"d{d}" for d in range(N_DOCS)],
        [f"t{t}" for t in range(N_TERMS)],
        out,
        BuildOptions(impact_dtype="uint8", block_size=BLOCK),
        extra_files=DocStoreWriter.files(store_dir),
        overwrite=True,
    )
    shutil.rmtree(store_dir)
    return out


def queries() -> list[tuple[list[int], list[float]]]:
    single = [([t], [1.0]) for t in range(N_TERMS)]
    return [*single, ([0, 2, 5], [0.5, 1.0, 2.0]), ([1, 3, 4, 6, 7], [1.0, 0.7, 1.3, 0.2, 2.0])]


def open_all(path: Path) -> tuple[Index, Sequence[str], DocStore]:
    """What a search needs from the index in ``path``: the index, its ids (and vocabulary), its docstore."""
    index = Index.load(path)
    _ = index.vocab
    return index, index.doc_keys, DocStore(path)


def answers(opened: tuple[Index, Sequence[str], DocStore]) -> list[Any]:
    """Ids, scores and stored texts of every query in every mode."""
    index, keys, store = opened
    out = []
    for terms, weights in queries():
        for mode, alpha in (("exact", 1.0), ("safe", 1.0), ("approx", 0.5)):
            res = index.search(terms, weights, k=5, mode=mode, alpha=alpha)
            out.append(
                [
                    (keys[d], float(s), store.get(int(d))["text"])
                    for d, s in zip(res.docs, res.scores, strict=True)
                ]
            )
    return out


def mutations(
    data: bytes, patterns: list[int], truncate: bool, stride: int = 1
) -> Iterator[tuple[str, bytes]]:
    """Every ``stride``-th byte flipped with each pattern, then every ``stride``-th truncation."""
    for pos in range(0, len(data), stride):
        for pat in patterns:
            yield "flip", data[:pos] + bytes([data[pos] ^ pat]) + data[pos + 1 :]
    if truncate:
        for cut in range(0, len(data), stride):
            yield "truncate", data[:cut]


def classify(path: Path, expected: list[Any]) -> str:
    try:
        opened = open_all(path)
    except ArtifactError:
        return "open"
    try:
        got = answers(opened)
    except (ArtifactError, ValueError, IndexError, KeyError, OSError):
        got = None
    if not verify(path).ok:
        return "verify"
    if got is None:
        return "raised"
    return "harmless" if got == expected else "wrong"


def sweep(path: Path, patterns: list[int], truncate: bool = True, stride: int = 1) -> dict[str, Any]:
    """Damage every file of the index in ``path`` in place (restored after each trial); count outcomes."""
    expected = answers(open_all(path))
    rows: dict[str, Counter] = {}
    wrong: list[str] = []
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        name = str(file.relative_to(path))
        original = file.read_bytes()
        counts: Counter = Counter()
        try:
            for i, (kind, damaged) in enumerate(mutations(original, patterns, truncate, stride)):
                file.write_bytes(damaged)
                outcome = classify(path, expected)
                counts[kind] += 1
                counts[outcome] += 1
                if outcome in ("wrong", "raised"):
                    wrong.append(f"{name} {kind} #{i}: {outcome}")
        finally:
            file.write_bytes(original)
        rows[name] = counts
    return {"files": {n: dict(c) for n, c in rows.items()}, "problems": wrong}


def table(result: dict[str, Any]) -> list[str]:
    head = ["file", "bytes", "flips", "truncations", *OUTCOMES]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    total: Counter = Counter()
    for name, c in result["files"].items():
        c = Counter(c)
        total.update(c)
        size = result.get("sizes", {}).get(name, "")
        lines.append(
            f"| {name} | {size} | " + " | ".join(str(c[k]) for k in ("flip", "truncate", *OUTCOMES)) + " |"
        )
    lines.append("| **all** | | " + " | ".join(str(total[k]) for k in ("flip", "truncate", *OUTCOMES)) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patterns", default="ff,01,80", help="xor masks (hex), comma-separated")
    parser.add_argument("--work", default="/tmp/lsr-corruption", help="scratch directory")
    parser.add_argument("--out", default="benchmarks/results/corruption.json")
    args = parser.parse_args()
    patterns = [int(p, 16) for p in args.patterns.split(",")]
    path = build_tiny(Path(args.work) / "tiny")
    sizes = {str(p.relative_to(path)): p.stat().st_size for p in sorted(path.rglob("*")) if p.is_file()}
    start = time.perf_counter()
    result = sweep(path, patterns)
    result.update(patterns=args.patterns, sizes=sizes, seconds=round(time.perf_counter() - start, 1))
    print("\n".join(table(result)))
    print(f"{result['seconds']} s; problems: {result['problems'] or 'none'}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
