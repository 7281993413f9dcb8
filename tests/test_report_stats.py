"""Statistics of the report against scipy and hand-worked examples."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bench.report import stats

# Darwin's Zea mays data (Fisher 1935), the example of scipy.stats.wilcoxon's documentation
ZEA_MAYS_DIFFERENCES = [6, 8, 14, 16, 23, 24, 28, 29, 41, -48, 49, 56, 60, -67, 75]


def test_wilcoxon_reproduces_the_textbook_example():
    statistic, p = stats.wilcoxon_signed_rank(np.array(ZEA_MAYS_DIFFERENCES, float), np.zeros(15))
    assert statistic == 24.0
    assert p == pytest.approx(0.041259765625)


@pytest.mark.parametrize("seed", range(5))
def test_wilcoxon_with_ties_and_zeros_matches_scipy_permutation_test(seed):
    rng = np.random.default_rng(seed)
    x = np.round(rng.uniform(0.6, 0.9, 9), 2)
    y = np.round(x + rng.choice([-0.02, 0.0, 0.01, 0.03], 9), 2)
    # differences rounded as ours are, so that float noise does not break ties for scipy
    expected = sps.wilcoxon(np.round(x - y, 12), zero_method="wilcox")  # permutation, n <= 13
    assert stats.wilcoxon_signed_rank(x, y) == pytest.approx((expected.statistic, expected.pvalue))


def test_wilcoxon_without_ties_matches_scipy_exact_distribution():
    d = np.random.default_rng(0).normal(size=30)
    expected = sps.wilcoxon(d, method="exact")
    assert stats.wilcoxon_signed_rank(d, np.zeros(30)) == pytest.approx(
        (expected.statistic, expected.pvalue)
    )


def test_wilcoxon_of_identical_pairs_is_p_one_and_of_no_pairs_nan():
    assert stats.wilcoxon_signed_rank(np.ones(4), np.ones(4)) == (0.0, 1.0)
    assert all(math.isnan(v) for v in stats.wilcoxon_signed_rank(np.array([]), np.array([])))


def test_bootstrap_ci_matches_scipy_percentile_interval():
    values = np.array([0.71, 0.75, 0.80, 0.72, 0.78])
    expected = sps.bootstrap(
        (values,), np.mean, method="percentile", n_resamples=9999, rng=np.random.default_rng(0)
    ).confidence_interval
    assert stats.bootstrap_ci(values) == pytest.approx((expected.low, expected.high))
    low, high = stats.bootstrap_ci(values)
    assert low < values.mean() < high


def test_bootstrap_ci_needs_three_seeds_and_is_reproducible():
    assert stats.bootstrap_ci(np.array([0.7, 0.8])) is None
    assert stats.bootstrap_ci(np.array([0.7, 0.8, math.nan])) is None
    assert stats.bootstrap_ci(np.array([0.5, 0.5, 0.5])) == (0.5, 0.5)
    values = np.array([0.6, 0.7, 0.9])
    assert stats.bootstrap_ci(values) == stats.bootstrap_ci(values)
    assert stats.bootstrap_ci(values, method="BCa") is not None


def test_holm_on_a_hand_example():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, max(0.04*1, 0.06) = 0.06
    adjusted = stats.holm(np.array([0.01, 0.04, 0.03, 0.005]))
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_leaves_nan_out_of_the_family():
    assert stats.holm(np.array([0.5, 0.6])) == pytest.approx([1.0, 1.0])
    adjusted = stats.holm(np.array([0.01, math.nan, 0.02]))
    assert adjusted[[0, 2]] == pytest.approx([0.02, 0.02])
    assert math.isnan(adjusted[1])
    assert stats.holm(np.array([])).size == 0


def test_win_tie_loss_and_probability_of_improvement_by_hand():
    x = np.array([0.8, 0.7, 0.6, 0.5])
    y = np.array([0.7, 0.7, 0.65, 0.4])
    assert stats.win_tie_loss(x, y) == (2, 1, 1)
    assert stats.probability_of_improvement(x, y) == pytest.approx((2 + 0.5) / 4)
    assert stats.win_tie_loss(x, y, higher_is_better=False) == (1, 1, 2)
    assert stats.probability_of_improvement(x, y, higher_is_better=False) == pytest.approx(0.375)
    assert math.isnan(stats.probability_of_improvement(np.array([]), np.array([])))


def _cells(method: str, values: list[float], rates=(0.2, 0.4), seeds=(0, 1, 2)) -> list[dict]:
    keys = [(r, s) for r in rates for s in seeds]
    return [
        {"method": method, "dataset": "d", "rate": r, "seed": s, "f1_macro": v}
        for (r, s), v in zip(keys, values, strict=True)
    ]


def test_compare_to_reference_pairs_cells_and_holm_adjusts_over_methods():
    frame = pd.DataFrame(
        _cells("ref", [0.5, 0.6, 0.7, 0.5, 0.6, 0.7])
        + _cells("a", [0.6, 0.7, 0.8, 0.6, 0.7, 0.8])
        + _cells("b", [0.4, 0.6, 0.6, 0.5], seeds=(0, 1))
    )
    out = stats.compare_to_reference(frame, "ref", "f1_macro", higher_is_better=True)
    a, b = out.set_index("method").loc["a"], out.set_index("method").loc["b"]
    assert (a["n"], a["wins"], a["ties"], a["losses"]) == (6, 6, 0, 0)
    assert a["prob_improvement"] == 1.0
    assert a["median_difference"] == pytest.approx(0.1)
    assert (b["n"], b["wins"], b["ties"], b["losses"]) == (4, 1, 1, 2)
    expected = stats.holm(out["p_value"].to_numpy())
    assert out["p_holm"].to_numpy() == pytest.approx(expected)
    assert a["p_value"] == pytest.approx(sps.wilcoxon(np.full(6, 0.1)).pvalue)


def test_normalised_auc_is_the_mean_level_of_the_curve():
    rates = np.array([0.2, 0.4, 0.6, 0.8])
    assert stats.normalised_auc(rates, np.full(4, 0.7)) == pytest.approx(0.7)
    assert stats.normalised_auc(rates, np.array([0.8, 0.7, 0.6, 0.5])) == pytest.approx(0.65)
    assert math.isnan(stats.normalised_auc(np.array([0.2]), np.array([0.7])))


def test_robustness_uses_the_rates_every_method_has():
    frame = pd.DataFrame(
        _cells("a", [0.8, 0.8, 0.8, 0.6, 0.6, 0.6, 0.0, 0.0, 0.0], rates=(0.0, 0.4, 0.8))
        + _cells("b", [0.5, 0.5, 0.5, 0.7, 0.7, 0.7])
        + _cells("b", [0.5, 0.5, 0.5], rates=(0.0,))
    )
    out = stats.robustness(frame, ("f1_macro",)).set_index("method")
    assert set(out["rates"]) == {"0 0.4"}
    assert out.loc["a", "mean"] == pytest.approx(0.7)
    assert out.loc["b", "mean"] == pytest.approx(0.6)
    assert out.loc["a", "n"] == 3


def test_default_reference_prefers_the_request_then_kedr_then_best_f1():
    frame = pd.DataFrame(_cells("a", [0.5] * 6) + _cells("b", [0.6] * 6))
    assert stats.default_reference(frame, None, "f1_macro") == "b"
    assert stats.default_reference(frame, "a", "f1_macro") == "a"
    with_kedr = pd.concat([frame, pd.DataFrame(_cells("kedr", [0.1] * 6))])
    assert stats.default_reference(with_kedr, None, "f1_macro") == "kedr"
