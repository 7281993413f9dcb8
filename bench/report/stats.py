"""Statistics over seeds and paired cells: summaries, bootstrap intervals, robustness, and
the pairwise comparison of every method against a reference method (bench/README.md,
"Evaluation protocol").

- Confidence intervals: nonparametric bootstrap of the mean over seeds (Efron 1979,
  "Bootstrap methods: another look at the jackknife"; Efron & Tibshirani 1993), percentile
  intervals from ``scipy.stats.bootstrap`` with a fixed seed. Fewer than
  :data:`MIN_SEEDS_FOR_CI` seeds give no interval.
- Paired test: Wilcoxon signed-rank (Wilcoxon 1945, "Individual comparisons by ranking
  methods") over the (dataset, rate, seed) cells both methods finished, zero differences
  dropped (``zero_method="wilcox"``), p-values adjusted over the methods compared with Holm's
  step-down procedure (Holm 1979, "A simple sequentially rejective multiple test procedure").
- Probability of improvement over paired cells, P(X > Y) + 0.5 P(X = Y) (the paired analogue
  of Agarwal et al. 2021, "Deep RL at the edge of the statistical precipice").
- Robustness: area under the metric-vs-missing-rate curve by the trapezoid rule, divided by
  the span of the rates, so it is the curve's mean level over that span.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import integrate, stats

from bench.seeds import replicate_columns

MIN_SEEDS_FOR_CI = 3
CONFIDENCE = 0.95
N_RESAMPLES = 9999
BOOTSTRAP_SEED = 0
TIE_TOLERANCE = 1e-12  # metrics are exact fractions of test counts; this absorbs float noise
DIFFERENCE_DECIMALS = 12
EXACT_MAX_PAIRS = 50


def bootstrap_ci(
    values: np.ndarray,
    confidence: float = CONFIDENCE,
    n_resamples: int = N_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    method: str = "percentile",
) -> tuple[float, float] | None:
    """Bootstrap ``confidence`` interval of the mean of ``values`` (one per seed), or None
    when there are fewer than :data:`MIN_SEEDS_FOR_CI` values.

    ``method`` is ``"percentile"`` or ``"BCa"`` as in ``scipy.stats.bootstrap``; the
    resampling is seeded, so the interval is reproducible.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size < MIN_SEEDS_FOR_CI:
        return None
    if np.all(x == x[0]):  # every resample has the same mean; BCa would divide by zero
        return float(x[0]), float(x[0])
    result = stats.bootstrap(
        (x,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method=method,
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def summarise(frame: pd.DataFrame, metrics: tuple[str, ...]) -> pd.DataFrame:
    """Per (dataset, method, rate, metric): n seeds, mean, sample std (ddof 1), bootstrap CI."""
    rows = []
    for (dataset, method, rate), part in frame.groupby(["dataset", "method", "rate"], sort=True):
        for metric in metrics:
            values = part[metric].to_numpy(dtype=np.float64)
            values = values[np.isfinite(values)]
            ci = bootstrap_ci(values)
            rows.append(
                {
                    "dataset": dataset,
                    "method": method,
                    "rate": rate,
                    "metric": metric,
                    "n": int(values.size),
                    "mean": float(values.mean()) if values.size else math.nan,
                    "std": float(values.std(ddof=1)) if values.size > 1 else math.nan,
                    "ci_low": ci[0] if ci else math.nan,
                    "ci_high": ci[1] if ci else math.nan,
                }
            )
    return pd.DataFrame(rows)


def normalised_auc(rates: np.ndarray, values: np.ndarray) -> float:
    """Trapezoid area under ``values`` over ``rates`` divided by the rate span (a mean level);
    NaN with fewer than two rates."""
    r = np.asarray(rates, dtype=np.float64)
    if r.size < 2:
        return math.nan
    return float(integrate.trapezoid(np.asarray(values, dtype=np.float64), r) / (r[-1] - r[0]))


def robustness(frame: pd.DataFrame, metrics: tuple[str, ...]) -> pd.DataFrame:
    """Per (dataset, method, metric): normalised AUC of each seed's metric-vs-rate curve over
    the rates every method of the dataset has, then mean and std over the seeds that have
    all of them."""
    rows = []
    replicate = replicate_columns(frame.columns)
    for dataset, part in frame.groupby("dataset", sort=True):
        shared = set.intersection(*(set(g["rate"]) for _, g in part.groupby("method")))
        rates = np.array(sorted(shared))
        for method, runs in part.groupby("method", sort=True):
            for metric in metrics:
                curves = runs.pivot(index=replicate, columns="rate", values=metric)
                curves = curves[rates].dropna() if rates.size else curves.iloc[:0]
                aucs = np.array([normalised_auc(rates, c) for c in curves.to_numpy()])
                aucs = aucs[np.isfinite(aucs)]
                rows.append(
                    {
                        "dataset": dataset,
                        "method": method,
                        "metric": metric,
                        "rates": " ".join(f"{r:g}" for r in rates),
                        "n": int(aucs.size),
                        "mean": float(aucs.mean()) if aucs.size else math.nan,
                        "std": float(aucs.std(ddof=1)) if aucs.size > 1 else math.nan,
                    }
                )
    return pd.DataFrame(rows)


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values: with p sorted ascending, the i-th (1-based)
    adjusted value is max_{j <= i} min(1, (m - j + 1) p_(j)). NaNs are left out of the family
    and stay NaN."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full_like(p, np.nan)
    valid = np.flatnonzero(np.isfinite(p))
    m = valid.size
    order = valid[np.argsort(p[valid], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


def win_tie_loss(x: np.ndarray, y: np.ndarray, higher_is_better: bool = True) -> tuple[int, ...]:
    """Counts of paired cells where x is better than, equal to, and worse than y."""
    diff = np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    if not higher_is_better:
        diff = -diff
    tie = np.abs(diff) <= TIE_TOLERANCE
    return int(np.sum(~tie & (diff > 0))), int(np.sum(tie)), int(np.sum(~tie & (diff < 0)))


def probability_of_improvement(
    x: np.ndarray, y: np.ndarray, higher_is_better: bool = True
) -> float:
    """P(x better than y) + 0.5 P(x = y) over paired cells; NaN when there are none."""
    wins, ties, losses = win_tie_loss(x, y, higher_is_better)
    n = wins + ties + losses
    return (wins + 0.5 * ties) / n if n else math.nan


def wilcoxon_signed_rank(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank test of paired x, y: (statistic, p).

    Zero differences are dropped (``zero_method="wilcox"``); tied |differences| share their
    mid-rank. The statistic is min(T+, T-), T+ the rank sum of the positive differences. Up
    to :data:`EXACT_MAX_PAIRS` differences the p-value is exact: T+ over all 2^n equally
    likely sign patterns, counted by dynamic programming over doubled (integer) ranks, which
    is what scipy's ``method="exact"`` computes without ties and its permutation method with
    ties (scipy enumerates the 2^n patterns only up to n = 13, then approximates). Beyond,
    scipy's normal approximation with continuity correction. With no nonzero difference p = 1;
    with no pairs both are NaN.
    """
    diff = np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    if diff.size == 0:
        return math.nan, math.nan
    diff = np.round(diff, DIFFERENCE_DECIMALS)  # equal metrics may differ by float noise
    diff = diff[diff != 0]
    if diff.size == 0:
        return 0.0, 1.0
    if diff.size > EXACT_MAX_PAIRS:
        result = stats.wilcoxon(diff, zero_method="wilcox", method="asymptotic")
        return float(result.statistic), float(result.pvalue)
    doubled = np.rint(2 * stats.rankdata(np.abs(diff))).astype(np.int64)
    counts = np.zeros(int(doubled.sum()) + 1)
    counts[0] = 1.0
    for rank in doubled:  # counts[k]: sign patterns whose doubled T+ is k
        counts = counts + np.concatenate([np.zeros(rank), counts[:-rank]])
    t_plus = int(doubled[diff > 0].sum())
    less = counts[: t_plus + 1].sum() / counts.sum()
    greater = counts[t_plus:].sum() / counts.sum()
    statistic = min(t_plus, int(doubled.sum()) - t_plus) / 2
    return float(statistic), float(min(1.0, 2 * min(less, greater)))


def compare_to_reference(
    frame: pd.DataFrame, reference: str, metric: str, higher_is_better: bool
) -> pd.DataFrame:
    """Every other method against ``reference`` on ``metric`` over the (dataset, rate, seed)
    cells both finished (with seed axes, a cell's axis seeds are part of its seed): n,
    wins/ties/losses and P(improvement) of the method, median difference (method -
    reference), Wilcoxon statistic and p, Holm-adjusted p."""
    cell = ["dataset", "rate", *replicate_columns(frame.columns)]
    table = frame.pivot(index=cell, columns="method", values=metric)
    rows = []
    for method in sorted(m for m in table.columns if m != reference):
        pair = table[[method, reference]].dropna()
        x, y = pair[method].to_numpy(), pair[reference].to_numpy()
        wins, ties, losses = win_tie_loss(x, y, higher_is_better)
        statistic, p = wilcoxon_signed_rank(x, y)
        rows.append(
            {
                "method": method,
                "reference": reference,
                "metric": metric,
                "n": len(pair),
                "wins": wins,
                "ties": ties,
                "losses": losses,
                "prob_improvement": probability_of_improvement(x, y, higher_is_better),
                "median_difference": float(np.median(x - y)) if len(pair) else math.nan,
                "statistic": statistic,
                "p_value": p,
            }
        )
    out = pd.DataFrame(
        rows,
        columns=[
            "method",
            "reference",
            "metric",
            "n",
            "wins",
            "ties",
            "losses",
            "prob_improvement",
            "median_difference",
            "statistic",
            "p_value",
        ],
    )
    out["p_holm"] = holm(out["p_value"].to_numpy()) if len(out) else []
    return out


def default_reference(frame: pd.DataFrame, requested: str | None, primary: str) -> str:
    """``requested`` if given, else ``kedr`` if it ran, else the method with the best mean
    ``primary`` metric over its cells (the first by name on a tie)."""
    if requested:
        return requested
    methods = set(frame["method"])
    if "kedr" in methods:
        return "kedr"
    means = frame.groupby("method")[primary].mean().sort_index()
    return str(means.idxmax())
