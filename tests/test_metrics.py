"""bench.metrics: cross-checks against scikit-learn and torchmetrics, hand-computed cases,
input validation and reliability bins."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    cohen_kappa_score,
    f1_score,
    log_loss,
    roc_auc_score,
)
from torchmetrics.functional.classification import multiclass_calibration_error

from bench.errors import ConfigError
from bench.metrics import (
    adaptive_calibration_error,
    compute_metrics,
    expected_calibration_error,
    metric_keys,
    metric_spec,
    reliability_bins,
)

TOL = 1e-9
# MLflow keys test/<key> and bench results columns of runs already recorded: fixed, in order
KEYS_OF_EXISTING_RUNS = (
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
# (seed, K, labels sampled from the probabilities?): uniform labels give chance-level metrics,
# sampled labels give a model that is informative and roughly calibrated.
CASES = [(seed, k, sampled) for seed in (0, 1, 2) for k in (2, 4) for sampled in (False, True)]


def random_case(seed: int, k: int, sampled: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = 200 + 150 * seed
    probs = rng.dirichlet(np.full(k, 0.7), size=n)
    if sampled:
        cumulative = np.cumsum(probs, axis=1)
        y = np.minimum((rng.random(n)[:, None] > cumulative).sum(axis=1), k - 1)
    else:
        y = rng.integers(0, k, size=n)
    assert set(np.unique(y)) == set(range(k)), "every class must appear for sklearn's AUROC"
    return probs, y


def case_id(case: tuple[int, int, bool]) -> str:
    seed, k, sampled = case
    return f"seed{seed}-K{k}-{'sampled' if sampled else 'uniform'}"


# ---------------------------------------------------------------- cross-checks


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_matches_sklearn(case: tuple[int, int, bool]) -> None:
    seed, k, sampled = case
    probs, y = random_case(seed, k, sampled)
    pred = probs.argmax(axis=1)
    labels = np.arange(k)
    got = compute_metrics(probs, y)
    auroc = (
        roc_auc_score(y, probs[:, 1])
        if k == 2
        else roc_auc_score(y, probs, multi_class="ovr", average="macro", labels=labels)
    )
    expected = {
        "accuracy": accuracy_score(y, pred),
        "f1_macro": f1_score(y, pred, average="macro", zero_division=0),
        "f1_weighted": f1_score(y, pred, average="weighted", zero_division=0),
        "kappa": cohen_kappa_score(y, pred, labels=labels),
        "kappa_quadratic": cohen_kappa_score(y, pred, labels=labels, weights="quadratic"),
        "auroc": auroc,
        "nll": log_loss(y, probs, labels=labels),
        "brier": brier_score_loss(y, probs, labels=labels, scale_by_half=True),
    }
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=TOL), key


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_brier_is_half_the_multiclass_sum(case: tuple[int, int, bool]) -> None:
    seed, k, sampled = case
    probs, y = random_case(seed, k, sampled)
    multiclass_sum = ((probs - np.eye(k)[y]) ** 2).sum(axis=1).mean()
    brier = compute_metrics(probs, y)["brier"]
    assert brier == pytest.approx(multiclass_sum / 2, abs=TOL)
    if k == 2:  # the K=2 sum is twice the binary Brier score of the positive class
        assert brier == pytest.approx(brier_score_loss(y, probs[:, 1]), abs=TOL)


def away_from_edges(probs: np.ndarray, n_bins: int) -> bool:
    confidence = probs.max(axis=1)
    edges = np.linspace(0, 1, n_bins + 1)
    return bool(np.abs(confidence[:, None] - edges[None, :]).min() > 1e-6)


@pytest.mark.parametrize("n_bins", [15, 10])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_ece_matches_torchmetrics(case: tuple[int, int, bool], n_bins: int) -> None:
    # torchmetrics bins are [lo, hi) with confidence 1.0 in an extra bin, ours (lo, hi] with
    # 1.0 in the last bin, and it works in float32. The two agree whenever no confidence is
    # 1.0 or within float32 rounding of an edge; continuous Dirichlet draws (asserted here)
    # stay clear of both.
    seed, k, sampled = case
    probs, y = random_case(seed, k, sampled)
    assert away_from_edges(probs, n_bins)
    reference = multiclass_calibration_error(
        torch.from_numpy(probs), torch.from_numpy(y), num_classes=k, n_bins=n_bins, norm="l1"
    ).item()
    assert expected_calibration_error(probs, y, n_bins=n_bins) == pytest.approx(reference, abs=1e-6)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_compute_metrics_calibration_keys(case: tuple[int, int, bool]) -> None:
    probs, y = random_case(*case)
    got = compute_metrics(probs, y)
    assert got["ece"] == expected_calibration_error(probs, y, n_bins=15)
    assert got["ece10"] == expected_calibration_error(probs, y, n_bins=10)
    assert got["aece"] == adaptive_calibration_error(probs, y, n_bins=15)


def test_keys_directions_and_ranges() -> None:
    probs, y = random_case(0, 4, True)
    got = compute_metrics(probs, y)
    assert tuple(got) == metric_keys() == KEYS_OF_EXISTING_RUNS
    lower = {key for key in got if not metric_spec(key).higher_is_better}
    assert lower == {"nll", "brier", "ece", "ece10", "aece"}
    assert all(isinstance(value, float) for value in got.values())
    for key, value in got.items():
        if key.startswith("kappa"):
            assert -1 <= value <= 1
        elif key == "nll":
            assert value >= 0
        else:
            assert 0 <= value <= 1, key


def test_float32_is_computed_in_float64() -> None:
    probs, y = random_case(1, 4, True)
    probs32 = probs.astype(np.float32)
    assert compute_metrics(probs32, y) == compute_metrics(probs32.astype(np.float64), y)


# ------------------------------------------------------------- label-set edge cases


def test_class_absent_from_labels_and_predictions() -> None:
    rng = np.random.default_rng(7)
    probs = rng.dirichlet(np.ones(4), size=300)
    probs[:, 2] = 0.0  # class 2 is never predicted ...
    probs /= probs.sum(axis=1, keepdims=True)
    y = rng.choice([0, 1, 3], size=300)  # ... nor present in y
    pred = probs.argmax(axis=1)
    got = compute_metrics(probs, y)
    # F1 averages over the classes that occur (sklearn's default labels).
    assert got["f1_macro"] == pytest.approx(f1_score(y, pred, average="macro"), abs=TOL)
    # Kappa keeps the K ordinal positions: sklearn needs labels=range(K); with its default
    # labels (0, 1, 3) it would place class 3 at distance 2 from 0 instead of 3.
    quadratic = cohen_kappa_score(y, pred, labels=np.arange(4), weights="quadratic")
    assert got["kappa_quadratic"] == pytest.approx(quadratic, abs=TOL)
    assert got["kappa_quadratic"] != pytest.approx(
        cohen_kappa_score(y, pred, weights="quadratic"), abs=1e-6
    )
    # AUROC: mean of the one-vs-rest AUROCs of the classes present in y.
    per_class = [roc_auc_score(y == c, probs[:, c]) for c in (0, 1, 3)]
    assert got["auroc"] == pytest.approx(np.mean(per_class), abs=TOL)


def test_predicted_class_absent_from_labels_scores_zero_f1() -> None:
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.1, 0.2, 0.7]])
    y = np.array([0, 1, 1])
    got = compute_metrics(probs, y)
    assert got["f1_macro"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert got["f1_macro"] == pytest.approx(f1_score(y, probs.argmax(axis=1), average="macro"))


def test_single_class_gives_nan_auroc_and_kappa() -> None:
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4]])
    got = compute_metrics(probs, np.zeros(3, dtype=int))
    assert math.isnan(got["auroc"])
    assert math.isnan(got["kappa"]) and math.isnan(got["kappa_quadratic"])
    assert got["accuracy"] == 1.0


def test_auroc_with_tied_scores() -> None:
    probs = np.array([[0.5, 0.5], [0.5, 0.5], [0.3, 0.7], [0.7, 0.3], [0.3, 0.7]])
    y = np.array([0, 1, 1, 0, 0])
    assert compute_metrics(probs, y)["auroc"] == pytest.approx(roc_auc_score(y, probs[:, 1]))


# ------------------------------------------------------------- hand-computed ECE


def test_perfectly_calibrated_has_zero_ece() -> None:
    # 4 samples at confidence 0.75 (3 correct) and 10 at 0.7 (7 correct).
    probs = np.array([[0.75, 0.25]] * 4 + [[0.3, 0.7]] * 10)
    y = np.array([0, 0, 0, 1] + [1] * 7 + [0] * 3)
    assert expected_calibration_error(probs, y) == pytest.approx(0, abs=1e-12)
    assert expected_calibration_error(probs, y, n_bins=10) == pytest.approx(0, abs=1e-12)


# Confidences 0.95 (correct), 0.95 (wrong), 0.68 (correct), 0.62 (wrong).
HAND_PROBS = np.array([[0.95, 0.05], [0.95, 0.05], [0.32, 0.68], [0.62, 0.38]])
HAND_Y = np.array([0, 1, 1, 1])


def test_hand_computed_ece() -> None:
    # 15 bins: {0.95, 0.95} in (14/15, 1], 0.68 in (10/15, 11/15], 0.62 in (9/15, 10/15]:
    # 2/4 * |0.5 - 0.95| + 1/4 * |1 - 0.68| + 1/4 * |0 - 0.62| = 0.225 + 0.08 + 0.155
    assert expected_calibration_error(HAND_PROBS, HAND_Y) == pytest.approx(0.46)
    # 10 bins: 0.62 and 0.68 share (0.6, 0.7]: 0.225 + 2/4 * |0.5 - 0.65|
    assert expected_calibration_error(HAND_PROBS, HAND_Y, n_bins=10) == pytest.approx(0.3)


def test_hand_computed_adaptive_ece() -> None:
    # Sorted (stable): 0.62 (wrong), 0.68 (correct), 0.95 (correct), 0.95 (wrong).
    # 2 bins of 2: 2/4 * |0.5 - 0.65| + 2/4 * |0.5 - 0.95| = 0.075 + 0.225
    assert adaptive_calibration_error(HAND_PROBS, HAND_Y, n_bins=2) == pytest.approx(0.3)
    # 3 bins, array_split sizes 2, 1, 1: 0.075 + 1/4 * |1 - 0.95| + 1/4 * |0 - 0.95|
    assert adaptive_calibration_error(HAND_PROBS, HAND_Y, n_bins=3) == pytest.approx(0.325)


def test_adaptive_ece_extremes() -> None:
    probs, y = random_case(2, 4, True)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    one_bin = abs(correct.mean() - confidence.mean())
    per_sample = np.abs(correct - confidence).mean()
    assert adaptive_calibration_error(probs, y, n_bins=1) == pytest.approx(one_bin, abs=TOL)
    assert adaptive_calibration_error(probs, y, n_bins=len(y)) == pytest.approx(per_sample, abs=TOL)
    assert adaptive_calibration_error(probs, y, n_bins=len(y) + 5) == pytest.approx(
        per_sample, abs=TOL
    )


def test_confidence_one_is_in_the_last_bin() -> None:
    probs = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(probs, np.array([0, 1])) == 0.0
    assert expected_calibration_error(probs, np.array([1, 1])) == pytest.approx(0.5)
    bins = reliability_bins(probs, np.array([0, 1]))
    assert bins["count"].tolist() == [0] * 14 + [2]
    assert bins["upper"][-1] == 1.0


def test_bins_are_closed_on_the_right() -> None:
    bins = reliability_bins(np.array([[0.5, 0.5]]), np.array([0]), n_bins=10)
    assert np.flatnonzero(bins["count"]).tolist() == [4]  # 0.5 is in (0.4, 0.5]
    assert (bins["lower"][4], bins["upper"][4]) == pytest.approx((0.4, 0.5))


# ------------------------------------------------------------- reliability bins


@pytest.mark.parametrize("n_bins", [15, 10])
@pytest.mark.parametrize("case", CASES[:4], ids=case_id)
def test_reliability_bins_reproduce_ece(case: tuple[int, int, bool], n_bins: int) -> None:
    probs, y = random_case(*case)
    bins = reliability_bins(probs, y, n_bins=n_bins)
    assert all(len(values) == n_bins for values in bins.values())
    assert bins["count"].sum() == len(y)
    filled = bins["count"] > 0
    assert np.isnan(bins["accuracy"][~filled]).all()
    gap = np.abs(bins["accuracy"][filled] - bins["confidence"][filled])
    weighted = (bins["count"][filled] * gap).sum() / len(y)
    assert weighted == pytest.approx(expected_calibration_error(probs, y, n_bins), abs=TOL)
    assert np.array_equal(bins["lower"][1:], bins["upper"][:-1])


# ------------------------------------------------------------- validation

GOOD_PROBS = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
GOOD_Y = np.array([0, 2])
PUBLIC = [compute_metrics, expected_calibration_error, adaptive_calibration_error, reliability_bins]


def _with(row: int, values: list[float]) -> np.ndarray:
    probs = GOOD_PROBS.copy()
    probs[row] = values
    return probs


BAD_INPUTS = {
    "1-D probs": (np.array([0.7, 0.3]), np.array([0]), "2-D"),
    "empty": (np.zeros((0, 3)), np.zeros(0, dtype=int), "2-D"),
    "length": (GOOD_PROBS, np.array([0, 1, 2]), "length mismatch"),
    "label high": (GOOD_PROBS, np.array([0, 3]), r"out of range.*\[0, 3\)"),
    "label negative": (GOOD_PROBS, np.array([-1, 0]), "out of range"),
    "float labels": (GOOD_PROBS, np.array([0.0, 2.0]), "integer"),
    "nan": (_with(0, [np.nan, 0.5, 0.5]), GOOD_Y, "finite"),
    "inf": (_with(1, [np.inf, 0.0, 0.0]), GOOD_Y, "finite"),
    "negative": (_with(0, [1.2, -0.1, -0.1]), GOOD_Y, "non-negative"),
    "logits": (_with(1, [0.5, 0.5, 0.5]), GOOD_Y, "sum to 1"),
    "string probs": (GOOD_PROBS.astype(str), GOOD_Y, "real-valued"),
}


@pytest.mark.parametrize("function", PUBLIC, ids=lambda f: f.__name__)
@pytest.mark.parametrize("bad", BAD_INPUTS.values(), ids=list(BAD_INPUTS))
def test_bad_input_raises_config_error(function, bad: tuple[np.ndarray, np.ndarray, str]) -> None:
    probs, y, match = bad
    with pytest.raises(ConfigError, match=match):
        function(probs, y)


def test_row_sum_tolerance() -> None:
    compute_metrics(GOOD_PROBS * (1 + 9e-4), GOOD_Y)
    with pytest.raises(ConfigError, match=r"sum to 1 within 0\.001"):
        compute_metrics(GOOD_PROBS * (1 + 2e-3), GOOD_Y)


@pytest.mark.parametrize("n_bins", [0, -3, 2.5, True])
def test_bad_n_bins(n_bins) -> None:
    with pytest.raises(ConfigError, match="n_bins"):
        expected_calibration_error(GOOD_PROBS, GOOD_Y, n_bins=n_bins)


def test_error_messages_are_one_line() -> None:
    for probs, y, _ in BAD_INPUTS.values():
        with pytest.raises(ConfigError) as error:
            compute_metrics(probs, y)
        assert "\n" not in str(error.value)
