"""Paired t-tests between systems and the Holm / Bonferroni corrections."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ttest_rel

from lsr.eval.significance import compare_systems, correct, letters, paired_p_value


def holm_reference(p):
    """Holm's step-down procedure written out: adjusted p_(i) = max_{j<=i} min(1, (m - j) p_(j))."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out, best = [0.0] * m, 0.0
    for j, i in enumerate(order):
        best = max(best, min(1.0, (m - j) * p[i]))
        out[i] = best
    return out


def test_corrections_against_reference():
    rng = np.random.default_rng(3)
    for _ in range(20):
        p = rng.uniform(0, 0.2, size=int(rng.integers(1, 12))).tolist()
        assert correct(p, "holm") == pytest.approx(holm_reference(p))
        assert correct(p, "bonferroni") == pytest.approx([min(1.0, x * len(p)) for x in p])
        assert correct(p, "none") == pytest.approx(p)
    assert correct([0.01, 0.04, 0.03], "holm") == pytest.approx([0.03, 0.06, 0.06])
    assert correct([], "holm") == []
    with pytest.raises(ValueError, match="sidak"):
        correct([0.1], "sidak")


def test_p_value_is_the_paired_t_test():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(size=50), rng.uniform(size=50)
    assert paired_p_value(a, b) == pytest.approx(ttest_rel(a, b).pvalue)
    assert paired_p_value(a, a.copy()) == 1.0
    with pytest.raises(ValueError):
        paired_p_value(a, b[:10])


def test_compare_systems_marks_only_clear_winners():
    rng = np.random.default_rng(1)
    qids = [f"q{i}" for i in range(200)]
    base = rng.uniform(0.2, 0.6, size=200)
    systems = {
        "weak": (qids, {"ndcg@10": base}),
        "strong": (qids, {"ndcg@10": np.clip(base + 0.2 + rng.normal(0, 0.05, 200), 0, 1)}),
        "weak-too": (qids, {"ndcg@10": np.clip(base + rng.normal(0, 0.05, 200), 0, 1)}),
    }
    out = compare_systems(systems, ["ndcg@10"], level=0.05, correction="holm")
    assert out["letters"] == {"weak": "a", "strong": "b", "weak-too": "c"}
    beats = out["metrics"]["ndcg@10"]["beats"]
    assert sorted(beats["strong"]) == ["weak", "weak-too"]
    assert beats["weak"] == [] and beats["weak-too"] == []
    assert len(out["metrics"]["ndcg@10"]["pairs"]) == 3
    with pytest.raises(ValueError, match="different queries"):
        compare_systems({"x": (qids, {}), "y": (qids[:10], {})}, ["ndcg@10"])


def test_letters_go_past_z():
    assert letters(28)[:3] == ["a", "b", "c"] and letters(28)[26:] == ["aa", "ab"]
