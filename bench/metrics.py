"""Evaluation metrics from saved class probabilities.

Every metric is a pure function of ``probs`` (float array (n, K), rows sum to 1: pass
probabilities, never logits) and integer labels ``y`` (n,) in [0, K). Inputs are validated
once at the boundary (``ConfigError``) and computed in float64, vectorised over samples.

The predicted class is ``argmax(probs, axis=1)`` (the first maximum on ties) and its
probability is the top-label confidence. Storage keeps every value as a fraction in
[0, 1], except ``nll`` (unbounded, >= 0) and the kappas (in [-1, 1]). A metric that is
undefined for the given labels is NaN: ``auroc`` when y holds a single class, ``kappa``
and ``kappa_quadratic`` when y and the predictions are all one and the same class.

Label-set conventions (scikit-learn 1.9 semantics, except where noted):

- F1 averages over the classes present in y or in the predictions (``f1_score`` with its
  default ``labels``); a class predicted but absent from y has F1 = 0 (zero_division=0).
- Both kappas use all K classes as ordinal positions 0..K-1 (``cohen_kappa_score`` with
  ``labels=range(K)``); scikit-learn's default uses only the labels present, which changes
  the quadratic weights when an inner class is absent from both y and the predictions.
- AUROC averages over the classes present in y (scikit-learn raises instead).

Each metric is one :class:`MetricSpec` in the registry :data:`METRICS` (entry-point group
``bench.metrics``), as lm-evaluation-harness registers a metric with its
``higher_is_better``: :func:`compute_metrics`, model selection, Optuna's direction,
``bench results`` columns, the report's tables, definitions and published-number mapping
all read it when they run, so adding a metric is one :func:`register_metric` call.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from bench.errors import ConfigError
from bench.registry import Registry

ROW_SUM_TOLERANCE = 1e-3
NLL_CLIP = 1e-12
ECE_BINS = 15  # Guo et al. 2017
ECE10_BINS = 10  # netcal's default


def _validate(probs: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check the (probs, y) contract and return float64 probabilities and int64 labels."""
    p = np.asarray(probs)
    labels = np.asarray(y)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] == 0:
        raise ConfigError(
            f"probs must be a 2-D array (n, K) with n >= 1 and K >= 1, got shape {p.shape}"
        )
    if not (np.issubdtype(p.dtype, np.floating) or np.issubdtype(p.dtype, np.integer)):
        raise ConfigError(f"probs must be a real-valued (float) array, got dtype {p.dtype}")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ConfigError(
            f"labels y must be a 1-D integer array, got shape {labels.shape} "
            f"and dtype {labels.dtype}"
        )
    n, k = p.shape
    if labels.shape[0] != n:
        raise ConfigError(f"length mismatch: probs has {n} rows but y has {labels.shape[0]} labels")
    if labels.min() < 0 or labels.max() >= k:
        raise ConfigError(
            f"labels out of range: expected classes in [0, {k}) for K={k}, "
            f"got labels from {labels.min()} to {labels.max()}"
        )
    p = p.astype(np.float64, copy=False)
    finite = np.isfinite(p)
    if not finite.all():
        raise ConfigError(
            f"probs must be finite, got {np.count_nonzero(~finite)} non-finite (NaN/inf) entries"
        )
    if p.min() < 0:
        raise ConfigError(
            f"probs must be non-negative probabilities (not logits), got minimum {p.min():.6g}"
        )
    deviation = np.abs(p.sum(axis=1) - 1.0)
    worst = int(np.argmax(deviation))
    if deviation[worst] > ROW_SUM_TOLERANCE:
        raise ConfigError(
            f"probs rows must sum to 1 within {ROW_SUM_TOLERANCE:g} (pass probabilities, "
            f"not logits), got row {worst} summing to {p[worst].sum():.6g}"
        )
    return p, labels.astype(np.int64, copy=False)


def _check_bins(n_bins: int) -> None:
    if not isinstance(n_bins, int | np.integer) or isinstance(n_bins, bool) or n_bins < 1:
        raise ConfigError(f"n_bins must be a positive integer, got {n_bins!r}")


def _top_label(p: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predicted class (first argmax), its confidence, and correctness (1.0 / 0.0) per sample."""
    pred = np.argmax(p, axis=1)
    confidence = p[np.arange(p.shape[0]), pred]
    return pred, confidence, (pred == labels).astype(np.float64)


def _equal_width_bin(confidence: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Bin edges ``linspace(0, 1, n_bins + 1)`` and each sample's bin, bins being (lo, hi].

    A confidence of exactly 1.0 falls in the last bin, one of 0 in the first.
    """
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.searchsorted(edges, confidence, side="left") - 1
    return edges, np.clip(index, 0, n_bins - 1)


def _calibration_gap(
    confidence: np.ndarray, correct: np.ndarray, index: np.ndarray, n_bins: int
) -> float:
    """sum_b |B_b|/n * |acc(B_b) - conf(B_b)| = sum_b |sum_{B_b} correct - sum_{B_b} conf| / n."""
    acc_sum = np.bincount(index, weights=correct, minlength=n_bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=n_bins)
    return float(np.abs(acc_sum - conf_sum).sum() / confidence.shape[0])


def _ece(confidence: np.ndarray, correct: np.ndarray, n_bins: int) -> float:
    _, index = _equal_width_bin(confidence, n_bins)
    return _calibration_gap(confidence, correct, index, n_bins)


def _adaptive_ece(confidence: np.ndarray, correct: np.ndarray, n_bins: int) -> float:
    n = confidence.shape[0]
    order = np.argsort(confidence, kind="stable")
    sizes = np.full(n_bins, n // n_bins)
    sizes[: n % n_bins] += 1
    index = np.repeat(np.arange(n_bins), sizes)
    return _calibration_gap(confidence[order], correct[order], index, n_bins)


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Top-label expected calibration error with ``n_bins`` equal-width bins (lo, hi] on [0, 1].

    ECE = sum_b |B_b|/n * |acc(B_b) - conf(B_b)| as a fraction (Naeini et al. 2015; Guo et
    al. 2017, "On Calibration of Modern Neural Networks", with 15 bins). A confidence of
    exactly 1.0 belongs to the last bin. torchmetrics uses [lo, hi) bins plus an extra bin
    for 1.0, so the two agree except for confidences exactly on an inner edge or at 1.0.
    """
    _check_bins(n_bins)
    p, labels = _validate(probs, y)
    _, confidence, correct = _top_label(p, labels)
    return _ece(confidence, correct, n_bins)


def adaptive_calibration_error(probs: np.ndarray, y: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Top-label ECE with adaptive (equal-mass) bins.

    Samples are sorted by confidence (stable sort) and split into ``n_bins`` groups of nearly
    equal size as ``np.array_split`` does (the first n % n_bins groups hold one extra sample;
    some groups are empty when n < n_bins); the gap formula is that of the ECE (Nguyen &
    O'Connor 2015, "Posterior Calibration and Exploratory Analysis for Natural Language
    Processing Models"; Nixon et al. 2019, "Measuring Calibration in Deep Learning", ACE).
    """
    _check_bins(n_bins)
    p, labels = _validate(probs, y)
    _, confidence, correct = _top_label(p, labels)
    return _adaptive_ece(confidence, correct, n_bins)


def reliability_bins(
    probs: np.ndarray, y: np.ndarray, n_bins: int = ECE_BINS
) -> dict[str, np.ndarray]:
    """Per-bin statistics of the equal-width top-label binning used by the ECE.

    Returns arrays of length ``n_bins``: ``lower`` and ``upper`` (the bin is (lower, upper]),
    ``count`` (int), and the mean ``confidence`` and ``accuracy`` of the bin's samples (NaN
    for an empty bin). ``sum(count * |accuracy - confidence|) / n`` over non-empty bins is
    the ECE (Guo et al. 2017, reliability diagrams).
    """
    _check_bins(n_bins)
    p, labels = _validate(probs, y)
    _, confidence, correct = _top_label(p, labels)
    edges, index = _equal_width_bin(confidence, n_bins)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, weights=confidence, minlength=n_bins) / count
        accuracy = np.bincount(index, weights=correct, minlength=n_bins) / count
    return {
        "lower": edges[:-1],
        "upper": edges[1:],
        "count": count,
        "confidence": mean_confidence,
        "accuracy": accuracy,
    }


def _kappa(confusion: np.ndarray, weights: np.ndarray) -> float:
    """Cohen's kappa 1 - sum(w * O) / sum(w * E), E the outer product of the marginals / n.

    Cohen 1960 (unweighted: w = 1 off the diagonal); Cohen 1968 (weighted). NaN when
    sum(w * E) = 0, i.e. y and the predictions are all one and the same class.
    """
    expected = np.outer(confusion.sum(axis=1), confusion.sum(axis=0)) / confusion.sum()
    denominator = float((weights * expected).sum())
    if denominator == 0.0:
        return float("nan")
    return 1.0 - float((weights * confusion).sum()) / denominator


def _positive_rank_sums(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Per row of ``scores`` (c, n): the sum of the 1-based ranks of the positive entries,
    tied scores sharing their mean rank (the Wilcoxon rank-sum statistic)."""
    c, n = scores.shape
    order = np.argsort(scores, axis=1)
    ordered = np.take_along_axis(scores, order, axis=1)
    position = np.broadcast_to(np.arange(n), (c, n))
    differs = ordered[:, 1:] != ordered[:, :-1]
    starts_tie = np.concatenate([np.ones((c, 1), dtype=bool), differs], axis=1)
    ends_tie = np.concatenate([differs, np.ones((c, 1), dtype=bool)], axis=1)
    first = np.maximum.accumulate(np.where(starts_tie, position, 0), axis=1)
    last = np.minimum.accumulate(np.where(ends_tie, position, n)[:, ::-1], axis=1)[:, ::-1]
    mean_rank = (first + last) / 2.0 + 1.0
    return (mean_rank * np.take_along_axis(positive, order, axis=1)).sum(axis=1)


def _auroc(p: np.ndarray, labels: np.ndarray) -> float:
    """Macro one-vs-rest AUROC over the classes present in y; binary AUROC of class 1 if K=2.

    Each class's AUROC is the Mann-Whitney U statistic / (n_pos * n_neg) with mean ranks for
    ties, which equals the trapezoidal area under the ROC curve (Hanley & McNeil 1982);
    one-vs-rest macro averaging as scikit-learn's ``roc_auc_score(multi_class="ovr")``
    (Provost & Domingos 2000; Fawcett 2006). NaN if y holds a single class.
    """
    n, k = p.shape
    present = np.bincount(labels, minlength=k) > 0
    if np.count_nonzero(present) < 2:
        return float("nan")
    classes = np.array([1]) if k == 2 else np.flatnonzero(present)
    scores = np.ascontiguousarray(p[:, classes].T)
    positive = classes[:, None] == labels[None, :]
    n_pos = positive.sum(axis=1).astype(np.float64)
    rank_sum = _positive_rank_sums(scores, positive)
    auc = (rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * (n - n_pos))
    return float(auc.mean())


def _confusion(p: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Counts (K, K) as float64: rows the label, columns the predicted class (first argmax)."""
    k = p.shape[1]
    pred = np.argmax(p, axis=1)
    return np.bincount(labels * k + pred, minlength=k * k).reshape(k, k).astype(np.float64)


def _accuracy(p: np.ndarray, labels: np.ndarray) -> float:
    return float(np.diag(_confusion(p, labels)).sum() / p.shape[0])


def _scored_f1(p: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class F1 = 2TP / (2TP + FP + FN) and support, for the classes in y or predicted."""
    confusion = _confusion(p, labels)
    support = confusion.sum(axis=1)
    denominator = support + confusion.sum(axis=0)
    scored = denominator > 0
    return 2.0 * np.diag(confusion)[scored] / denominator[scored], support[scored]


def _f1_macro(p: np.ndarray, labels: np.ndarray) -> float:
    f1, _ = _scored_f1(p, labels)
    return float(f1.mean())


def _f1_weighted(p: np.ndarray, labels: np.ndarray) -> float:
    f1, support = _scored_f1(p, labels)
    return float((f1 * support).sum() / p.shape[0])


def _cohen_kappa(p: np.ndarray, labels: np.ndarray) -> float:
    return _kappa(_confusion(p, labels), 1.0 - np.eye(p.shape[1]))


def _quadratic_kappa(p: np.ndarray, labels: np.ndarray) -> float:
    ordinal = np.arange(p.shape[1], dtype=np.float64)
    return _kappa(_confusion(p, labels), (ordinal[:, None] - ordinal[None, :]) ** 2)


def _nll(p: np.ndarray, labels: np.ndarray, clip: float) -> float:
    """Mean -log p[y] with p clipped below at ``clip`` (scikit-learn's ``log_loss`` clips at
    machine epsilon instead; the two differ only where p[y] < clip)."""
    return float(-np.log(np.maximum(p[np.arange(p.shape[0]), labels], clip)).mean())


def _brier(p: np.ndarray, labels: np.ndarray) -> float:
    """Mean over samples of sum_k (p_k - onehot_k)^2, divided by 2 so that it lies in [0, 1]
    (Brier 1950); for K=2 it equals the binary Brier score of class 1."""
    one_hot = np.zeros_like(p)
    one_hot[np.arange(p.shape[0]), labels] = 1.0
    return float(((p - one_hot) ** 2).sum(axis=1).mean() / 2.0)


def _top_label_ece(p: np.ndarray, labels: np.ndarray, n_bins: int) -> float:
    _, confidence, correct = _top_label(p, labels)
    return _ece(confidence, correct, n_bins)


def _top_label_adaptive_ece(p: np.ndarray, labels: np.ndarray, n_bins: int) -> float:
    _, confidence, correct = _top_label(p, labels)
    return _adaptive_ece(confidence, correct, n_bins)


# the registry --------------------------------------------------------------------------
DISPLAYS = ("percent", "raw")
REPORT_TABLES = ("main", "ece")  # the report's headline table and its calibration table
KEY_PATTERN = re.compile(r"[a-z][a-z0-9_]*")
PARAMETER_CHECKS: dict[str, Callable[[Any], None]] = {"n_bins": _check_bins}


@dataclass(frozen=True)
class MetricSpec:
    """One metric: how it is computed, which way is better, and how the report shows it.

    - ``key``: its name in MLflow (``test/<key>``, ``val/<key>``), in ``bench results``
      columns, in ``train.monitor`` and in the report's CSV files.
    - ``compute(probs, y, **params) -> float``: ``probs`` float64 (n, K) and ``y`` int64 (n,)
      as validated by :func:`compute_metrics`; ``params`` are its fixed keyword arguments
      (e.g. ``n_bins``), checked against its signature and :data:`PARAMETER_CHECKS`.
    - ``higher_is_better``: the direction for model selection, Optuna and table marks.
    - ``label``: the short column label of report tables; ``definition``: one sentence for
      the report, ``{param}`` fields filled from ``params`` (:meth:`describe`).
    - ``display``: ``percent`` (x 100, in %) or ``raw`` (the stored value).
    - ``tables``: which of :data:`REPORT_TABLES` show it besides the all-metrics table, at
      position ``order`` (lower first; unordered ones after, by registration).
    - ``reference``: the column of the published-reference CSVs holding it (``""``: none),
      whose values times ``reference_scale`` are fractions like ours (0.01 for a column in %).

    Everything is checked here, once, when the spec is made (as scikit-learn validates an
    estimator's parameters in one place); the message says what to fix.
    """

    key: str
    compute: Callable[..., float]
    higher_is_better: bool
    label: str
    definition: str
    params: Mapping[str, Any] = field(default_factory=dict)
    display: str = "percent"
    tables: tuple[str, ...] = ()
    order: int | None = None
    reference: str = ""
    reference_scale: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not KEY_PATTERN.fullmatch(self.key):
            raise ConfigError(
                f"metric key {self.key!r} is not valid: use lower-case letters, digits and "
                "underscores, starting with a letter (it names MLflow metrics and columns)"
            )
        where = f"metric {self.key!r}"
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        try:
            inspect.signature(self.compute).bind(None, None, **self.params)
        except (TypeError, ValueError) as err:
            raise ConfigError(
                f"{where}: compute must be a function (probs, y, **params) accepting params "
                f"{sorted(self.params)}: {err}"
            ) from err
        for name, value in self.params.items():
            if name in PARAMETER_CHECKS:
                PARAMETER_CHECKS[name](value)
        if not isinstance(self.higher_is_better, bool):
            raise ConfigError(f"{where}: higher_is_better must be True or False")
        for name in ("label", "definition"):
            text = getattr(self, name)
            if not isinstance(text, str) or not text.strip() or "\n" in text:
                raise ConfigError(f"{where}: {name} must be one non-empty line of text")
        try:
            self.describe()
        except (KeyError, IndexError, ValueError) as err:
            raise ConfigError(
                f"{where}: definition has a field that params do not fill ({err}): name only "
                f"params in braces ({sorted(self.params)}), or double a literal brace"
            ) from err
        if self.display not in DISPLAYS:
            raise ConfigError(
                f"{where}: display {self.display!r} is not valid: choose one of "
                + ", ".join(DISPLAYS)
            )
        unknown = sorted(set(self.tables) - set(REPORT_TABLES))
        if not isinstance(self.tables, tuple) or unknown:
            raise ConfigError(
                f"{where}: tables must be a tuple of report tables ({', '.join(REPORT_TABLES)}), "
                f"got {self.tables!r}"
            )
        if self.order is not None and (not isinstance(self.order, int) or self.order < 0):
            raise ConfigError(f"{where}: order must be None or a non-negative integer")
        if not isinstance(self.reference, str):
            raise ConfigError(f"{where}: reference must be a CSV column name or ''")
        scale = self.reference_scale
        if not isinstance(scale, int | float) or not math.isfinite(scale) or scale <= 0:
            raise ConfigError(f"{where}: reference_scale must be a finite number > 0")

    def describe(self) -> str:
        """The definition with its parameters filled in (e.g. the bin count)."""
        return self.definition.format(**self.params)


METRICS: Registry[MetricSpec] = Registry("metric", group="bench.metrics")


def register_metric(spec: MetricSpec) -> MetricSpec:
    """Add ``spec`` to :data:`METRICS`; third-party packages do this in a module named by the
    entry-point group ``bench.metrics``. Its key must be new."""
    if not isinstance(spec, MetricSpec):
        raise TypeError(f"{spec!r} must be a MetricSpec to be registered as a metric")
    return METRICS.register(spec.key)(spec)


def metric_specs() -> list[MetricSpec]:
    """Every registered metric, in registration order (the order of results and columns)."""
    return METRICS.objects()


def metric_keys() -> tuple[str, ...]:
    return tuple(spec.key for spec in metric_specs())


def metric_spec(key: str) -> MetricSpec:
    """The spec of ``key``; an unknown key is an :class:`UnknownNameError` listing the valid."""
    return METRICS.entry(key).obj


def compute_metrics(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Every registered metric of one set of predictions, keyed and ordered as
    :func:`metric_keys`; the inputs are validated once (see the module docstring)."""
    p, labels = _validate(probs, y)
    return {spec.key: float(spec.compute(p, labels, **spec.params)) for spec in metric_specs()}


# the built-in metrics, in the order of results (MLflow keys, columns): do not reorder
register_metric(
    MetricSpec(
        key="accuracy",
        compute=_accuracy,
        higher_is_better=True,
        label="Acc",
        definition=(
            "accuracy, the fraction of samples whose predicted class (the first argmax of the "
            "probabilities) is the label."
        ),
        tables=("main",),
        order=2,
        reference="accuracy",
        reference_scale=0.01,
    )
)
register_metric(
    MetricSpec(
        key="f1_macro",
        compute=_f1_macro,
        higher_is_better=True,
        label="F1",
        definition=(
            "macro-averaged F1 over the classes present in the labels or predictions, per "
            "class 2TP / (2TP + FP + FN) (van Rijsbergen 1979)."
        ),
        tables=("main",),
        order=0,
        reference="f1",
        reference_scale=0.01,
    )
)
register_metric(
    MetricSpec(
        key="f1_weighted",
        compute=_f1_weighted,
        higher_is_better=True,
        label="wF1",
        definition="F1 over the same classes averaged with their support in the labels as weights.",
    )
)
register_metric(
    MetricSpec(
        key="kappa",
        compute=_cohen_kappa,
        higher_is_better=True,
        label="κ",
        definition="Cohen's kappa, unweighted, over all classes (Cohen 1960).",
        tables=("main",),
        order=1,
        reference="kappa",
        reference_scale=0.01,
    )
)
register_metric(
    MetricSpec(
        key="kappa_quadratic",
        compute=_quadratic_kappa,
        higher_is_better=True,
        label="QWK",
        definition=(
            "Cohen's kappa with quadratic weights (i - j)^2, the classes taken as ordinal "
            "positions 0..K-1 (Cohen 1968; Fleiss & Cohen 1973)."
        ),
    )
)
register_metric(
    MetricSpec(
        key="auroc",
        compute=_auroc,
        higher_is_better=True,
        label="AUROC",
        definition=(
            "macro one-vs-rest area under the ROC curve over the classes present in the "
            "labels, for two classes the AUROC of class 1 (Hanley & McNeil 1982)."
        ),
    )
)
register_metric(
    MetricSpec(
        key="nll",
        compute=_nll,
        higher_is_better=False,
        label="NLL",
        definition="mean negative log-likelihood -log p[y], p clipped below at {clip:g}.",
        params={"clip": NLL_CLIP},
        display="raw",
    )
)
register_metric(
    MetricSpec(
        key="brier",
        compute=_brier,
        higher_is_better=False,
        label="Brier",
        definition=(
            "multi-class Brier score (Brier 1950), the mean over samples of "
            "sum_k (p_k - onehot_k)^2, halved so that it lies in [0, 1]."
        ),
    )
)
register_metric(
    MetricSpec(
        key="ece",
        compute=_top_label_ece,
        higher_is_better=False,
        label="ECE",
        definition=(
            "expected calibration error of the top-label confidence (the largest class "
            "probability) with {n_bins} equal-width bins on [0, 1], each bin (lo, hi] (a "
            "confidence of 0 goes to the first bin), ECE = sum_b |B_b| / n * "
            "|acc(B_b) - conf(B_b)| (Naeini et al. 2015; Guo et al. 2017)."
        ),
        params={"n_bins": ECE_BINS},
        tables=("ece",),
        order=3,
        reference="ece",
    )
)
register_metric(
    MetricSpec(
        key="ece10",
        compute=_top_label_ece,
        higher_is_better=False,
        label="ECE10",
        definition="the ECE with {n_bins} equal-width bins (netcal's default).",
        params={"n_bins": ECE10_BINS},
    )
)
register_metric(
    MetricSpec(
        key="aece",
        compute=_top_label_adaptive_ece,
        higher_is_better=False,
        label="AECE",
        definition=(
            "adaptive ECE, the ECE's gap over {n_bins} equal-mass bins of the sorted "
            "confidences (Nguyen & O'Connor 2015; Nixon et al. 2019)."
        ),
        params={"n_bins": ECE_BINS},
    )
)
