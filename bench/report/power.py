"""Power of a paired comparison over seeds: what a grid can and cannot tell apart.

Two methods A and B run on the same n seeds (same masks, same data: a paired design). With
d_i = metric_A,i - metric_B,i, mean d-bar and sample standard deviation s (ddof 1), the paired
t-test (Student 1908) rejects H0: E[d] = 0 at level alpha (two-sided) when
|t| = |d-bar| sqrt(n) / s > t_{1 - alpha/2, n - 1}. Under a true mean difference delta the
statistic follows a noncentral t with n - 1 degrees of freedom and noncentrality
lambda = delta sqrt(n) / sigma, so the power is

    power(delta; sigma, n) = 1 - F_nct(t_crit; n - 1, lambda) + F_nct(-t_crit; n - 1, lambda)

(Cohen, "Statistical Power Analysis for the Behavioral Sciences", 1988, ch. 2; the same
quantity as statsmodels' ``TTestPower`` for a one-sample test of the differences). The
minimum detectable effect (MDE) of a design is the delta at which the power reaches the
target (0.8 by convention), and the seeds needed to detect a claimed delta are the smallest n
whose power reaches it, both given sigma, the standard deviation of the paired differences
(estimated from the grid's own differences; Bouthillier et al., "Accounting for variance in
machine learning benchmarks", MLSys 2021, make the same point about seed variance).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

from bench.errors import ConfigError
from bench.report.stats import wilcoxon_signed_rank

ALPHA = 0.05
TARGET_POWER = 0.8
MAX_SEEDS = 10_000


def _check(sigma: float, n: int, alpha: float) -> None:
    if not (isinstance(n, int | np.integer) and n >= 2):
        raise ConfigError(f"a paired t-test needs at least 2 pairs, got n={n!r}")
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ConfigError(f"sigma must be a finite standard deviation >= 0, got {sigma!r}")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must lie in (0, 1), got {alpha!r}")


def paired_t_power(delta: float, sigma: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test at level ``alpha`` for a true mean difference
    ``delta`` with differences of standard deviation ``sigma`` over ``n`` pairs."""
    _check(sigma, n, alpha)
    if sigma == 0:
        return 1.0 if delta != 0 else alpha
    df = n - 1
    critical = stats.t.ppf(1 - alpha / 2, df)
    noncentrality = abs(delta) * math.sqrt(n) / sigma  # the power is symmetric in delta
    near = stats.nct.sf(critical, df, noncentrality)
    # the tail opposite delta is below 1e-12 where scipy's noncentral t returns NaN for it
    far = np.nan_to_num(stats.nct.cdf(-critical, df, noncentrality), nan=0.0)
    return float(min(1.0, near + far))


def minimum_detectable_effect(
    sigma: float, n: int, power: float = TARGET_POWER, alpha: float = ALPHA
) -> float:
    """The |delta| detected with probability ``power`` by the paired t-test (two-sided,
    ``alpha``) over ``n`` pairs whose differences have standard deviation ``sigma``."""
    _check(sigma, n, alpha)
    if not alpha < power < 1:
        raise ConfigError(f"power must lie in (alpha, 1), got {power!r}")
    if sigma == 0:
        return 0.0
    # power is increasing in delta / sigma; bracket the root, then solve it
    high = 1.0
    while paired_t_power(high * sigma, sigma, n, alpha) < power:
        high *= 2
    ratio = optimize.brentq(
        lambda r: paired_t_power(r * sigma, sigma, n, alpha) - power, 0.0, high, xtol=1e-10
    )
    return float(ratio * sigma)


def seeds_needed(
    delta: float, sigma: float, power: float = TARGET_POWER, alpha: float = ALPHA
) -> int | None:
    """The smallest number of paired seeds whose test detects ``delta`` with ``power``, or
    None when not even :data:`MAX_SEEDS` would (delta = 0)."""
    if delta == 0:
        return None
    if sigma == 0:
        return 2
    if paired_t_power(delta, sigma, MAX_SEEDS, alpha) < power:
        return None
    low, high = 2, 2
    while paired_t_power(delta, sigma, high, alpha) < power:
        low, high = high, min(2 * high, MAX_SEEDS)
    while low < high:  # power grows with n: bisect on the integers
        middle = (low + high) // 2
        if paired_t_power(delta, sigma, middle, alpha) >= power:
            high = middle
        else:
            low = middle + 1
    return int(high)


@dataclass(frozen=True)
class PairedDifference:
    """A paired comparison of two methods over seeds, d_i = A_i - B_i.

    mean, sd (ddof 1), n; ci_low, ci_high: the 95 % t-interval of the mean difference;
    t_p: two-sided paired t-test p-value; wilcoxon_p: two-sided exact Wilcoxon signed-rank
    p-value; mde: the minimum detectable effect at 80 % power for this n and sd.
    """

    mean: float
    sd: float
    n: int
    ci_low: float
    ci_high: float
    t_p: float
    wilcoxon_p: float
    mde: float


def paired_difference(
    a: np.ndarray, b: np.ndarray, confidence: float = 1 - ALPHA
) -> PairedDifference:
    """Summary and tests of the paired differences ``a - b`` (NaN pairs dropped)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    d = a[keep] - b[keep]
    n = int(d.size)
    if n < 2:
        raise ConfigError(f"a paired comparison needs at least 2 paired seeds, got {n}")
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    t_p = (1.0 if mean == 0 else 0.0) if sd == 0 else float(stats.ttest_1samp(d, 0.0).pvalue)
    return PairedDifference(
        mean=mean,
        sd=sd,
        n=n,
        ci_low=mean - half,
        ci_high=mean + half,
        t_p=t_p,
        wilcoxon_p=wilcoxon_signed_rank(a[keep], b[keep])[1],
        mde=minimum_detectable_effect(sd, n),
    )
