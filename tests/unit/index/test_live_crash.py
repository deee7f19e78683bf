"""Crash safety: a writer killed with SIGKILL at random points during adds, deletes and merges leaves
the index at its last committed generation, with every acknowledged write in it, no half-written
segment visible, and stray files removed by the next writer. ``LSR_CRASH_TRIALS`` sets the number
of trials (CI: 6; ``python scripts/live_fault.py`` runs 100)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from corpora import random_corpus

from lsr.index import BuildOptions, build_index
from lsr.index.manifest import LEASE_DIR, LOCK_FILE, ROOT_SEGMENT, generations, read_manifest
from lsr.index.segments import SegmentedIndex, open_index
from lsr.index.writer import IndexWriter

WRITER = Path(__file__).with_name("live_crash_writer.py")
TRIALS = int(os.environ.get("LSR_CRASH_TRIALS", "6"))
FIRST = int(os.environ.get("LSR_CRASH_FIRST", "0"))  # seed of the first trial (scripts/live_fault.py)
N_TERMS = 25


def _expected(lines: list[str], base: list[str]) -> tuple[int, list[str], list[str] | None]:
    """(last acknowledged generation, live ids after the acknowledged writes, live ids if the write in
    flight also committed; None if none was in flight)."""
    live = dict.fromkeys(base)
    gen, pending = 0, None
    for line in lines:
        if line.startswith("BEGIN "):
            pending = json.loads(line[6:])
        elif line.startswith("ACK "):
            _apply(live, pending)
            gen, pending = int(line[4:]), None
    after = None
    if pending is not None:
        after = dict(live)
        _apply(after, pending)
    return gen, sorted(live), sorted(after) if after is not None else None


def _apply(live: dict, op: dict | None) -> None:
    if op is None or op["op"] not in ("add", "delete"):
        return
    for key in op["ids"]:
        live.pop(key, None)
        if op["op"] == "add":
            live[key] = None


def _run_and_kill(path: Path, seed: int, delay: float) -> list[str]:
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(path), str(seed)], stdout=subprocess.PIPE, text=True, bufsize=1
    )
    lines: list[str] = []
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "READY"
    reader = threading.Thread(target=lambda: lines.extend(line.strip() for line in proc.stdout), daemon=True)
    reader.start()
    time.sleep(delay)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    reader.join(timeout=5)
    return lines


def _live_ids(path: Path) -> list[str]:
    index = open_index(path)
    if not isinstance(index, SegmentedIndex):
        return sorted(index.doc_keys)
    try:
        return sorted(index.doc_keys[d] for d in np.flatnonzero(index.live_mask))
    finally:
        index.close()


@pytest.mark.parametrize("trial", range(FIRST, FIRST + TRIALS))
def test_sigkill_during_writes_keeps_acknowledged_writes(tmp_path, trial):
    rng = np.random.default_rng(1000 + trial)
    corpus = random_corpus(rng, n_docs=40, n_terms=N_TERMS, max_nnz=6, integer=False)
    base = [f"d{i}" for i in range(40)]
    path = tmp_path / "live"
    vocab = [f"t{i}" for i in range(N_TERMS)]
    build_index(
        lambda: [corpus], N_TERMS, base, vocab, path, BuildOptions(impact_dtype="uint8", block_size=4)
    )
    lines = _run_and_kill(path, trial, float(rng.uniform(0.3, 2.5)))
    acked_gen, acked, in_flight = _expected(lines, base)
    gen = (generations(path) or [0])[-1]
    live = _live_ids(path)
    if gen == acked_gen:
        assert live == acked
    else:  # the write in flight committed before the kill, unacknowledged
        assert gen == acked_gen + 1 and in_flight is not None and live == in_flight
    with IndexWriter(path):  # the next writer cleans up
        pass
    _assert_clean(path)


def _assert_clean(path: Path) -> None:
    gens = generations(path)
    kept = [read_manifest(path, g) for g in gens]
    assert len(kept) <= 2
    allowed = {LOCK_FILE, LEASE_DIR} | {f"segments_{g}.json" for g in gens}
    for manifest in kept:
        assert manifest is not None
        allowed |= manifest.files
    names = {p.name for p in path.iterdir()}
    root_files = {
        "meta.json",
        "term_ptr.npy",
        "doc_ids.npy",
        "impacts.npy",
        "ids.txt",
        "vocab.json",
        "blockmax",
    }
    if not kept or any(ROOT_SEGMENT in {s.name for s in m.segments} for m in kept if m is not None):
        allowed |= root_files
    assert names <= allowed, sorted(names - allowed)
