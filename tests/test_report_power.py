"""Power, minimum detectable effect and seeds needed of the paired t-test over seeds."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from bench.errors import ConfigError
from bench.report.power import (
    minimum_detectable_effect,
    paired_difference,
    paired_t_power,
    seeds_needed,
)


@pytest.mark.parametrize("n", [3, 5, 10, 30])
@pytest.mark.parametrize("effect", [-0.5, 0.3, 1.0, 1.5])
def test_power_matches_statsmodels(n, effect):
    power_analysis = pytest.importorskip("statsmodels.stats.power")
    expected = power_analysis.TTestPower().power(
        effect_size=effect, nobs=n, alpha=0.05, alternative="two-sided"
    )
    assert paired_t_power(effect * 2.5, 2.5, n) == pytest.approx(expected, abs=1e-6)


def test_power_of_a_large_effect_is_one_not_nan():
    # scipy's noncentral t gives NaN for the far tail here; statsmodels returns NaN too
    assert paired_t_power(2.0 * 2.5, 2.5, 30) == pytest.approx(1.0)


def test_simulated_power_at_the_reported_mde_is_eighty_percent():
    rng = np.random.default_rng(0)
    sigma, n, designs = 3.0, 5, 2000
    mde = minimum_detectable_effect(sigma, n)
    differences = rng.normal(mde, sigma, size=(designs, n))
    rejected = stats.ttest_1samp(differences, 0.0, axis=1).pvalue < 0.05
    assert rejected.mean() == pytest.approx(0.80, abs=0.03)


def test_simulated_size_at_zero_effect_is_alpha():
    rng = np.random.default_rng(1)
    differences = rng.normal(0.0, 2.0, size=(2000, 6))
    rejected = stats.ttest_1samp(differences, 0.0, axis=1).pvalue < 0.05
    assert paired_t_power(0.0, 2.0, 6) == pytest.approx(0.05, abs=1e-9)
    assert rejected.mean() == pytest.approx(0.05, abs=0.015)


def test_mde_inverts_the_power_and_shrinks_with_seeds():
    mdes = [minimum_detectable_effect(4.0, n) for n in (3, 5, 10, 40)]
    assert all(a > b for a, b in itertools.pairwise(mdes))
    for n, mde in zip((3, 5, 10, 40), mdes, strict=True):
        assert paired_t_power(mde, 4.0, n) == pytest.approx(0.8, abs=1e-8)
    assert minimum_detectable_effect(0.0, 5) == 0.0


def test_seeds_needed_is_the_smallest_design_with_enough_power():
    n = seeds_needed(2.0, 5.0)
    assert paired_t_power(2.0, 5.0, n) >= 0.8 > paired_t_power(2.0, 5.0, n - 1)
    assert seeds_needed(2.0, 0.0) == 2
    assert seeds_needed(0.0, 5.0) is None


def test_paired_difference_interval_and_tests():
    a = np.array([0.80, 0.82, 0.79, 0.85, 0.81])
    b = np.array([0.78, 0.80, 0.78, 0.80, 0.80])
    result = paired_difference(a, b)
    d = a - b
    assert result.mean == pytest.approx(d.mean())
    assert result.sd == pytest.approx(d.std(ddof=1))
    assert result.t_p == pytest.approx(stats.ttest_rel(a, b).pvalue)
    interval = stats.t.interval(0.95, 4, loc=d.mean(), scale=stats.sem(d))
    assert (result.ci_low, result.ci_high) == pytest.approx(interval)
    assert result.wilcoxon_p == pytest.approx(0.0625)  # all 5 positive: 2 / 2^5
    assert result.mde == pytest.approx(minimum_detectable_effect(result.sd, 5))


def test_bad_designs_are_one_line_errors():
    with pytest.raises(ConfigError, match="at least 2"):
        paired_t_power(1.0, 1.0, 1)
    with pytest.raises(ConfigError, match="standard deviation"):
        minimum_detectable_effect(float("nan"), 5)
    with pytest.raises(ConfigError, match="at least 2 paired seeds"):
        paired_difference(np.array([0.5, np.nan]), np.array([0.4, 0.4]))
