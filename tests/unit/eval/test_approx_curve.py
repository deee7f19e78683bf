"""benchmarks.approx_curve: series per system, pruned lists' costs added, issue 18's targets (a
hand-made index_bench report)."""

from __future__ import annotations

import pytest

from benchmarks.approx_curve import fastest_at, frontier, points, targets


def _setting(label: str, recall: float, mean: float, **extra: float) -> dict:
    return {
        "setting": label,
        "recall_at_k": recall,
        "mean_ms": mean,
        "p50_ms": mean,
        "p99_ms": 2 * mean,
        **extra,
    }


REPORT = {
    "systems": [
        {
            "system": "lsr-bmp",
            "build_seconds": 10.0,
            "index_bytes": 1000,
            "settings": [
                _setting("safe", 1.0, 0.40),
                _setting("approx budget=1024", 0.99, 0.30),
                _setting("approx budget=512", 0.96, 0.15),
                _setting(
                    "approx lists=500", 0.985, 0.10, approx_lists=500, approx_seconds=1.0, approx_bytes=200
                ),
            ],
        },
        {
            "system": "seismic",
            "build_seconds": 40.0,
            "index_bytes": 4000,
            "settings": [_setting("qc=10 hf=0.9", 0.97, 0.05), _setting("qc=20 hf=0.5", 0.99, 0.60)],
        },
        {
            "system": "seismic@n_postings=500",
            "build_seconds": 20.0,
            "index_bytes": 3000,
            "settings": [_setting("qc=20 hf=0.5", 0.981, 0.50), _setting("qc=20 hf=0.3", 0.995, 0.80)],
        },
        {"system": "bmp", "status": "error", "settings": []},
    ]
}


def test_points_one_series_per_system_and_lists_with_their_costs():
    curves = points(REPORT)
    assert list(curves) == ["lsr-bmp", "lsr-bmp lists", "seismic", "seismic@n_postings=500"]
    assert [r["recall"] for r in curves["lsr-bmp"]] == [0.96, 0.99, 1.0]
    (lists,) = curves["lsr-bmp lists"]
    assert (lists["build_s"], lists["bytes"], lists["system"]) == (11.0, 1200, "lsr-bmp")


def test_fastest_at_takes_the_fastest_setting_reaching_the_recall():
    rows = points(REPORT)["lsr-bmp"]
    assert fastest_at(rows, 0.98)["setting"] == "approx budget=1024"
    assert fastest_at(rows, 0.95)["setting"] == "approx budget=512"
    assert fastest_at(rows, 1.0 + 1e-6) is None


def test_targets_take_seismic_fastest_over_all_its_builds():
    """Seismic's best at R@10 >= 0.98 is the n_postings=500 build (0.50 ms), with its bytes and build."""
    t = targets(points(REPORT))
    assert (t["seismic_at_0.98"]["system"], t["seismic_at_0.98"]["mean_ms"]) == (
        "seismic@n_postings=500",
        0.50,
    )
    assert t["latency_vs_seismic_at_0.98"] == pytest.approx(0.30 / 0.50)
    assert t["bytes_vs_seismic"] == pytest.approx(1000 / 3000)
    assert t["build_vs_seismic"] == pytest.approx(10.0 / 20.0)
    assert t["speedup_0.95_over_0.99"] == pytest.approx(0.30 / 0.15)
    lists = targets(points(REPORT), "lsr-bmp lists")
    assert lists["latency_vs_seismic_at_0.98"] == pytest.approx(0.10 / 0.50)
    assert lists["bytes_vs_seismic"] == pytest.approx(1200 / 3000)
    assert lists["speedup_0.95_over_0.99"] is None  # no lists setting reaches 0.99


def test_frontier_keeps_the_settings_nothing_beats_on_both_recall_and_time():
    rows = [
        {"recall": r, "mean_ms": t, "setting": name}
        for name, r, t in [
            ("a", 0.90, 0.10),
            ("b", 0.92, 0.30),  # beaten by c: more recall in less time
            ("c", 0.95, 0.20),
            ("d", 0.95, 0.25),  # same recall as c, slower
            ("e", 0.99, 0.50),
            ("f", 0.80, 0.12),  # beaten by a
        ]
    ]
    assert [r["setting"] for r in frontier(rows)] == ["a", "c", "e"]
    assert frontier([]) == []
