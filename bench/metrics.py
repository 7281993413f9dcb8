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
"""

from __future__ import annotations

import numpy as np

from bench.errors import ConfigError

METRIC_KEYS: tuple[str, ...] = (
    "accuracy",
    "f1_macro",
    "f1_weighted",
    "kappa",
    "kappa_quadratic",
    "auroc",
    "nll",
    "brier",
    "ece",
    "ece10",
    "aece",
)

HIGHER_IS_BETTER: dict[str, bool] = {
    "accuracy": True,
    "f1_macro": True,
    "f1_weighted": True,
    "kappa": True,
    "kappa_quadratic": True,
    "auroc": True,
    "nll": False,
    "brier": False,
    "ece": False,
    "ece10": False,
    "aece": False,
}

ROW_SUM_TOLERANCE = 1e-3
NLL_CLIP = 1e-12


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


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
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


def adaptive_calibration_error(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> float:
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


def reliability_bins(probs: np.ndarray, y: np.ndarray, n_bins: int = 15) -> dict[str, np.ndarray]:
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


def _auroc(p: np.ndarray, labels: np.ndarray, present: np.ndarray) -> float:
    """Macro one-vs-rest AUROC over the classes present in y; binary AUROC of class 1 if K=2.

    Each class's AUROC is the Mann-Whitney U statistic / (n_pos * n_neg) with mean ranks for
    ties, which equals the trapezoidal area under the ROC curve (Hanley & McNeil 1982);
    one-vs-rest macro averaging as scikit-learn's ``roc_auc_score(multi_class="ovr")``
    (Provost & Domingos 2000; Fawcett 2006). NaN if y holds a single class.
    """
    n, k = p.shape
    if np.count_nonzero(present) < 2:
        return float("nan")
    classes = np.array([1]) if k == 2 else np.flatnonzero(present)
    scores = np.ascontiguousarray(p[:, classes].T)
    positive = classes[:, None] == labels[None, :]
    n_pos = positive.sum(axis=1).astype(np.float64)
    rank_sum = _positive_rank_sums(scores, positive)
    auc = (rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * (n - n_pos))
    return float(auc.mean())


def compute_metrics(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """All metrics of ``METRIC_KEYS`` for one set of predictions (see the module docstring).

    - ``accuracy``: fraction of argmax predictions equal to y.
    - ``f1_macro`` / ``f1_weighted``: per-class F1 = 2TP / (2TP + FP + FN), averaged
      unweighted / weighted by support in y (van Rijsbergen 1979; scikit-learn ``f1_score``).
    - ``kappa`` / ``kappa_quadratic``: Cohen's kappa, unweighted (Cohen 1960) and with
      quadratic weights (i - j)^2 (Cohen 1968; Fleiss & Cohen 1973), in [-1, 1].
    - ``auroc``: macro one-vs-rest AUROC over classes present in y (binary AUROC if K=2).
    - ``nll``: mean -log p[y] with p clipped below at 1e-12 (scikit-learn ``log_loss``
      clips at machine epsilon instead; they differ only where p[y] < 1e-12).
    - ``brier``: multi-class Brier score (Brier 1950), mean over samples of
      sum_k (p_k - onehot_k)^2, DIVIDED BY 2 so that it lies in [0, 1] (the sum's maximum
      is 2); for K=2 (rows summing to 1) it equals the binary Brier score of class 1.
    - ``ece`` (15 bins), ``ece10`` (10 bins, netcal's default), ``aece`` (15 adaptive
      bins): see ``expected_calibration_error`` and ``adaptive_calibration_error``.
    """
    p, labels = _validate(probs, y)
    n, k = p.shape
    rows = np.arange(n)
    pred, confidence, correct = _top_label(p, labels)
    confusion = np.bincount(labels * k + pred, minlength=k * k).reshape(k, k).astype(np.float64)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    tp = np.diag(confusion)

    f1_denominator = support + predicted
    scored = f1_denominator > 0
    f1 = 2.0 * tp[scored] / f1_denominator[scored]

    ordinal = np.arange(k, dtype=np.float64)
    quadratic = (ordinal[:, None] - ordinal[None, :]) ** 2

    one_hot = np.zeros_like(p)
    one_hot[rows, labels] = 1.0

    return {
        "accuracy": float(tp.sum() / n),
        "f1_macro": float(f1.mean()),
        "f1_weighted": float((f1 * support[scored]).sum() / n),
        "kappa": _kappa(confusion, 1.0 - np.eye(k)),
        "kappa_quadratic": _kappa(confusion, quadratic),
        "auroc": _auroc(p, labels, support > 0),
        "nll": float(-np.log(np.maximum(p[rows, labels], NLL_CLIP)).mean()),
        "brier": float(((p - one_hot) ** 2).sum(axis=1).mean() / 2.0),
        "ece": _ece(confidence, correct, 15),
        "ece10": _ece(confidence, correct, 10),
        "aece": _adaptive_ece(confidence, correct, 15),
    }
