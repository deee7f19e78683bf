"""The scaled-down run of benchmarks/live_equivalence.py: synthetic SPLADE-like documents in several
segments, 10% deleted, then merged: the exact and safe top-k (ids and scores) equal a fresh index
of the survivors, before and after the merge (the benchmark runs the same check on 1M documents)."""

from __future__ import annotations

from benchmarks.live_equivalence import check
from benchmarks.synthetic import SyntheticConfig, generate


def test_deleted_and_merged_equals_fresh_index_of_survivors(tmp_path):
    coll = generate(SyntheticConfig(n_docs=3000, n_terms=2000, n_queries=40, chunk_docs=1000, threads=1))
    result = check(coll.docs, coll.vocab, coll.queries, tmp_path, n_segments=6, k=10)
    assert result["deleted"] == 300
    for stage in ("segments", "merged"):
        assert result[stage] == {"exact": 40, "safe": 40}
