"""Every reader on random and mutated bytes: it reads them or raises our error with a message (CI subset;
scripts/fuzz_long.py runs 100,000+ inputs per target). Each crash found is a regression case below."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml
from fuzz_targets import TARGETS, Target, all_targets, check
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lsr.config import load_config
from lsr.errors import ConfigError

FUZZ = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None
)


@pytest.fixture(scope="module")
def targets(tmp_path_factory) -> tuple[dict[str, Target], Path]:
    work = tmp_path_factory.mktemp("fuzz")
    return all_targets(work), work


NAMES = [*TARGETS, "meta-index", "meta-blockmax", "meta-vectors"]


@pytest.mark.parametrize("name", NAMES)
def test_seed_is_read(targets, name):
    found, work = targets
    assert check(found[name], work, found[name].seed) is None
    found[name].run(work, found[name].seed)  # the valid seed is read, not refused


@pytest.mark.parametrize("name", NAMES)
def test_mutated_input_is_read_or_refused_with_our_error(targets, name):
    found, work = targets
    target = found[name]

    @FUZZ
    @given(st.randoms(use_true_random=False))
    def run(rnd: random.Random) -> None:
        data = target.mutator(target.seed, rnd)
        bug = check(target, work, data)
        assert bug is None, f"{name}: {bug!r} on {data[:300]!r}"

    run()


@pytest.mark.parametrize("name", NAMES)
def test_random_bytes_are_read_or_refused_with_our_error(targets, name):
    found, work = targets

    @settings(FUZZ, max_examples=50)
    @given(st.binary(max_size=300))
    def run(data: bytes) -> None:
        bug = check(found[name], work, data)
        assert bug is None, f"{name}: {bug!r} on {data[:300]!r}"

    run()


# --- regression cases: inputs the fuzzer found crashing, each now our error --------------------------

REGRESSIONS = [
    ("queries-tsv", b"q1\tcat o\xee mat\n"),  # UnicodeDecodeError from the text reader
    ("qrels", b"query-id\tcorpus-\xe9d\tscore\nq1\td1\t1\n"),
    ("trec-run", b"q1 Q0 d1 1 2.5 l\xf3r\n"),
    ("config-yaml", b"search:\n  k: \xff\n"),
    ("config-set", b"search.k=" + b'{"a":' * 3000),  # RecursionError in YAML
    ("corpus-jsonl", b"[" * 5000 + b"\n"),  # RecursionError in json
    ("meta-index", b'{"format": "lsr-index", "format_version": 1}'),  # KeyError on fields
    ("meta-index", b"[" * 5000),
    ("config-yaml", b"encoder:\n  bm25:\n    " + b"[" * 5000 + b"k1: 1.5\n"),  # seconds in pure-Python YAML
    # bytes that are not UTF-8 in a skipped key (reduced from the long run's find): the byte scanner read
    # the record, the JSON parser refuses it
    ("sparse-jsonl", b'{"id": "d1", "vector": {"cat": 1.5}, "\x9aontents": "x"}\n'),
]


@pytest.mark.parametrize(("name", "data"), REGRESSIONS)
def test_regressions(targets, name, data):
    found, work = targets
    assert check(found[name], work, data) is None


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML without libyaml")
def test_deep_yaml_is_refused_by_libyaml_at_its_nesting_limit(tmp_path):
    """The pure-Python loader took seconds (10+ on a loaded machine: a fuzz hang) to refuse thousands of
    unclosed brackets; libyaml's loader refuses them at its nesting limit, naming it."""
    path = tmp_path / "deep.yaml"
    path.write_bytes(b"encoder:\n  bm25:\n    " + b"[" * 5000)
    with pytest.raises(ConfigError, match="nesting depth"):
        load_config(path)


def test_fuzz_long_splits_a_targets_inputs_over_jobs_and_merges_them(tmp_path):
    """scripts/fuzz_long.py --jobs 2: each target's inputs split over two processes with their own
    seeds, merged into one row per target."""
    import json
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "scripts" / "fuzz_long.py"
    out = tmp_path / "fuzz.json"
    cmd = [sys.executable, str(script), "-n", "41", "--jobs", "2", "--json", str(out), "--work",
           str(tmp_path), "--crashes", str(tmp_path / "crashes"), "queries-tsv", "qrels"]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    rows = json.loads(out.read_text())["rows"]
    assert [(r["target"], r["inputs"], r["jobs"], r["bugs"], r["hangs"]) for r in rows] == [
        ("queries-tsv", 41, 2, {}, 0),
        ("qrels", 41, 2, {}, 0),
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["fuzz.json"]  # the work folder is removed
