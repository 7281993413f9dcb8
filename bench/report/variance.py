"""Where the variance of a metric comes from: the seed axes of a factorial grid, and the
finite test set.

**Variance components.** A grid that varies the seed axes apart (:mod:`bench.seeds`) runs
every combination of the levels of its axes F (init, masks, data) once. Each metric value
is modelled as a balanced, crossed random-effects design with one observation per cell,

    y = mu + sum over non-empty S ⊆ F of a_S + e,   a_S ~ (0, sigma2_S), e ~ (0, sigma2_e),

in which the interaction of all the axes cannot be told from the error: the effect S = F
is the residual, sigma2_F + sigma2_e. With n_f levels of axis f and N = prod n_f runs, the
effect of S is the inclusion-exclusion of the marginal means,
e_S = sum over T ⊆ S of (-1)^(|S|-|T|) mean over the axes not in T, with sum of squares
SS_S = (N / prod_{f in S} n_f) sum e_S^2, df_S = prod_{f in S} (n_f - 1), MS_S = SS_S / df_S
(the ANOVA table of the full factorial). Its expected mean square is
E[MS_S] = sum over T ⊇ S of (prod_{f not in T} n_f) sigma2_T, so the ANOVA (method of
moments) estimator is the Moebius inversion

    sigma2_S = (1 / prod_{f not in S} n_f) sum over T ⊇ S of (-1)^(|T|-|S|) MS_T,

unbiased, and truncated at 0 when negative (Searle, Casella & McCulloch, "Variance
Components", 1992, ch. 4; Montgomery, "Design and Analysis of Experiments", ch. 13). The
variance of one run is the sum of the components, and each axis's share is its component
over that sum. A grid whose seed drives every axis at once (no seed axes) has one factor,
``seed``, and its one component is the sample variance over seeds.

**Test-set sampling.** The test set is one finite sample: the variance of a run's metric
over bootstrap resamples of its saved test predictions (Efron & Tibshirani, "An
Introduction to the Bootstrap", 1993) estimates the variance it would have over test sets
of the same size, the model fixed. With the data axis
fixed every run is scored on the same test set, so that variance is *not* part of the
spread over seeds; with the data axis varied (synthetic-retina draws a new test set with
each data seed) it is inside the data component.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.errors import ConfigError
from bench.metrics import metric_spec
from bench.report.tables import DASH, Table, rate_label
from bench.seeds import AXIS_TAGS

AXIS_COLUMNS = {"init": "seed", **AXIS_TAGS}  # frame column of each seed axis
COUPLED = "seed"  # the one factor of a grid whose seed drives every axis
TEST_RESAMPLES = 1000
TEST_BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Component:
    """One effect of the decomposition: the axes it is made of (all of them: the
    ``residual``, their interaction and the run-to-run noise together), its degrees of
    freedom and mean square, the ANOVA estimate of its variance (``raw``, may be negative)
    and the estimate truncated at 0 (``variance``), with its ``share`` of the sum of the
    truncated components."""

    effect: tuple[str, ...]
    df: int
    mean_square: float
    raw: float
    variance: float
    share: float
    residual: bool

    @property
    def name(self) -> str:
        return " x ".join(self.effect) + (" (residual)" if self.residual else "")


def _subsets(k: int) -> list[tuple[int, ...]]:
    return [s for size in range(1, k + 1) for s in itertools.combinations(range(k), size)]


def _effect(values: np.ndarray, subset: tuple[int, ...]) -> np.ndarray:
    """e_S: the inclusion-exclusion of the marginal means over the axes in ``subset``."""
    k = values.ndim
    total = np.zeros(tuple(values.shape[i] for i in subset))
    for size in range(len(subset) + 1):
        for kept in itertools.combinations(subset, size):
            dropped = tuple(i for i in range(k) if i not in kept)
            marginal = values.mean(axis=dropped, keepdims=True)
            marginal = marginal.reshape([values.shape[i] if i in kept else 1 for i in subset])
            total = total + (-1) ** (len(subset) - size) * marginal
    return total


def decompose(values: np.ndarray, axes: tuple[str, ...]) -> list[Component]:
    """The variance components of a full factorial ``values`` (one dimension per axis of
    ``axes``, at least 2 levels each, one finite value per cell): main effects first, then
    the interactions, each in the order of ``axes``; the last is the residual."""
    y = np.asarray(values, dtype=np.float64)
    if y.ndim != len(axes) or y.ndim == 0:
        raise ConfigError(f"need one array dimension per axis: got shape {y.shape} for {axes}")
    if min(y.shape) < 2 or not np.isfinite(y).all():
        raise ConfigError(
            f"a variance decomposition needs at least 2 levels of every axis and a finite "
            f"value in every cell: got shape {y.shape} ({', '.join(axes)})"
        )
    k, n = y.ndim, y.size
    subsets = _subsets(k)
    mean_squares = {}
    for subset in subsets:
        effect = _effect(y, subset)
        df = math.prod(y.shape[i] - 1 for i in subset)
        mean_squares[subset] = (float((effect**2).sum()) * n / effect.size / df, df)
    raw = {}
    for subset in subsets:
        supersets = [t for t in subsets if set(subset) <= set(t)]
        outside = math.prod(y.shape[i] for i in range(k) if i not in subset)
        raw[subset] = (
            sum((-1) ** (len(t) - len(subset)) * mean_squares[t][0] for t in supersets) / outside
        )
    kept = {s: max(0.0, v) for s, v in raw.items()}
    total = sum(kept.values())
    return [
        Component(
            effect=tuple(axes[i] for i in subset),
            df=mean_squares[subset][1],
            mean_square=mean_squares[subset][0],
            raw=raw[subset],
            variance=kept[subset],
            share=kept[subset] / total if total > 0 else math.nan,
            residual=len(subset) == k,
        )
        for subset in subsets
    ]


def varied_axes(part: pd.DataFrame) -> tuple[str, ...]:
    """The seed axes that take more than one value among ``part``'s runs; ``(seed,)`` for
    runs of a grid without seed axes."""
    tags = [c for c in AXIS_TAGS.values() if c in part.columns]
    if all((part[c].astype(str) == "").all() for c in tags):
        return (COUPLED,)
    return tuple(axis for axis, col in AXIS_COLUMNS.items() if part[col].nunique() > 1)


def factorial_array(part: pd.DataFrame, axes: tuple[str, ...], metric: str) -> np.ndarray | None:
    """``part``'s metric as an array with one dimension per axis, or None when the runs do
    not fill the factorial exactly once."""
    columns = [AXIS_COLUMNS.get(axis, axis) for axis in axes]
    levels = [sorted(part[c].unique()) for c in columns]
    if len(part) != math.prod(len(v) for v in levels) or part.duplicated(columns).any():
        return None
    values = np.full([len(v) for v in levels], np.nan)
    index = tuple(
        part[c].map({v: i for i, v in enumerate(lv)}).to_numpy()
        for c, lv in zip(columns, levels, strict=True)
    )
    values[index] = part[metric].to_numpy(dtype=np.float64)
    return values if np.isfinite(values).all() else None


def bootstrap_test_variance(
    predictions: pd.DataFrame,
    metric: str,
    resamples: int = TEST_RESAMPLES,
    seed: int = TEST_BOOTSTRAP_SEED,
) -> float:
    """Variance of ``metric`` over bootstrap resamples of one run's test predictions
    (``predictions.csv``: ``label`` and ``prob_*`` columns), the model fixed."""
    spec = metric_spec(metric)
    probs = predictions[[c for c in predictions.columns if c.startswith("prob_")]].to_numpy()
    labels = predictions["label"].to_numpy(dtype=np.int64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(labels), size=(resamples, len(labels)))
    scores = np.array([spec.compute(probs[i], labels[i], **spec.params) for i in draws])
    scores = scores[np.isfinite(scores)]
    return float(scores.var(ddof=1)) if scores.size > 1 else math.nan


def seed_variance(
    frame: pd.DataFrame,
    metric: str,
    predictions: Callable[[str], pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Per (dataset, method, rate): the runs, the axes varied, the spread over them (sample
    SD, ddof 1), the test-set sampling SD (root of the mean bootstrap variance of its runs,
    when ``predictions`` reads a run's predictions by run id) and, for a full factorial,
    each component's SD and share; all in the metric's shown units (points for a metric in
    %). ``note`` says why a decomposition is missing."""
    scale = 100.0 if metric_spec(metric).display == "percent" else 1.0
    rows = []
    for (dataset, method, rate), part in frame.groupby(["dataset", "method", "rate"], sort=True):
        part = part[np.isfinite(part[metric].to_numpy(dtype=np.float64))]
        axes = varied_axes(part)
        values = part[metric].to_numpy(dtype=np.float64)
        row = {
            "dataset": dataset,
            "method": method,
            "rate": rate,
            "metric": metric,
            "runs": len(part),
            "axes": " x ".join(axes),
            "sd_over_seeds": scale * float(values.std(ddof=1)) if len(values) > 1 else math.nan,
            "sd_test_bootstrap": math.nan,
            "note": "",
        }
        if predictions is not None and len(part):
            variances = [bootstrap_test_variance(predictions(r), metric) for r in part["run_id"]]
            row["sd_test_bootstrap"] = scale * math.sqrt(float(np.nanmean(variances)))
        array = factorial_array(part, axes, metric) if axes and axes != (COUPLED,) else None
        if axes == (COUPLED,):
            row["note"] = "one seed drives every axis: nothing to split"
        elif array is None:
            row["note"] = "the runs do not fill the factorial of the seed axes once each"
        else:
            for component in decompose(array, axes):
                row[f"sd[{component.name}]"] = scale * math.sqrt(component.variance)
                row[f"share[{component.name}]"] = component.share
        rows.append(row)
    return pd.DataFrame(rows)


def variance_table(variance: pd.DataFrame, dataset: str) -> Table:
    """Per method and rate of ``dataset``: runs, the SD over seeds beside the test-set
    bootstrap SD, and each seed axis's share where the grid is a factorial."""
    part = variance[variance["dataset"] == dataset]
    shares = [c for c in part.columns if c.startswith("share[") and part[c].notna().any()]
    rows = []
    for row in part.to_dict(orient="records"):
        rows.append(
            (
                row["method"],
                rate_label(row["rate"]),
                str(row["runs"]),
                row["axes"],
                _sd(row["sd_over_seeds"]),
                _sd(row["sd_test_bootstrap"]),
                *(DASH if math.isnan(row[c]) else f"{100 * row[c]:.0f} %" for c in shares),
            )
        )
    label = metric_spec(part["metric"].iloc[0]).label if len(part) else ""
    return Table(
        name=f"{dataset}_variance",
        title=f"{dataset}: where the variance of {label} comes from (SD in points)",
        header=(
            "method",
            "rate",
            "runs",
            "seed axes",
            "SD over seeds",
            "SD test bootstrap",
            *(c[len("share[") : -1] for c in shares),
        ),
        rows=tuple(rows),
        note=(
            "SD over seeds: sample SD (ddof 1) of the runs; SD test bootstrap: root of the "
            f"mean variance over {TEST_RESAMPLES} bootstrap resamples of each run's test "
            "predictions (the model fixed; not part of the SD over seeds unless the data axis "
            "varies); shares: ANOVA variance components of the factorial of the seed axes "
            "(random effects, truncated at 0; the residual holds the highest interaction and "
            "the run-to-run noise)."
        ),
    )


def _sd(value: float) -> str:
    return DASH if math.isnan(value) else f"{value:.2f}"
