"""Post-hoc temperature scaling (Guo, Pleiss, Sun, Weinberger, "On Calibration of Modern
Neural Networks", ICML 2017, Sec. 4.2), fitted on the validation split and applied to the
test split, for every method.

One scalar T > 0 divides every logit, q = softmax(z / T); the argmax, hence accuracy and
F1, does not change. T minimises the validation NLL of the kept weights (after ``fit``);
test labels are never read. Logits are recovered from the saved probabilities as
z = log p, exact because softmax is shift-invariant (softmax(log p / T) = softmax(z / T)),
with p floored at float32's smallest normal number (what a float32 softmax can hold).

Fit: with beta = 1 / T, NLL(beta) = mean_i [logsumexp_k(beta z_ik) - beta z_iy_i] is convex
(its second derivative is the variance of z_i under q_i), so dNLL/dbeta = mean_i (E_q_i[z] -
z_iy_i) is monotone and its root is found by bisection on log beta, over T in
:data:`TEMPERATURE_RANGE` (an end of the range when the root lies outside it, e.g. T -> 0
for validation predictions that are all right).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bench.metrics import compute_metrics
from bench.spec import TrainSpec
from bench.train import MaskedSplit, Predictions, predict

TEMPERATURE_RANGE = (0.01, 100.0)
BISECTION_STEPS = 100  # the bracket shrinks 2^100-fold in log beta: far below float64's step
TEST_PREFIX = "test_ts/"


@dataclass(frozen=True)
class TemperatureFit:
    """The fitted temperature and the validation NLL before (T = 1) and after scaling."""

    temperature: float
    val_nll: float
    val_nll_scaled: float


@dataclass(frozen=True)
class Calibrated:
    """A cell's temperature scaling: the fit, the raw validation predictions it was fitted
    on, and the temperature-scaled test predictions."""

    fit: TemperatureFit
    val: Predictions
    test: Predictions


def logits_from(probs: np.ndarray) -> np.ndarray:
    """z = log p in float64 (up to a per-row constant, which softmax ignores)."""
    floor = np.finfo(np.float32).tiny
    return np.log(np.maximum(np.asarray(probs, np.float64), floor))


def scale_probabilities(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T), float32 like every saved prediction."""
    z = logits_from(probs) / temperature
    z -= z.max(axis=1, keepdims=True)
    q = np.exp(z)
    return (q / q.sum(axis=1, keepdims=True)).astype(np.float32)


def scaled_nll(logits: np.ndarray, labels: np.ndarray, beta: float) -> float:
    """mean_i [logsumexp(beta z_i) - beta z_iy_i], the NLL of softmax(beta z)."""
    scaled = beta * logits
    top = scaled.max(axis=1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(scaled - top).sum(axis=1))
    return float((lse - scaled[np.arange(len(labels)), labels]).mean())


def _slope(logits: np.ndarray, labels: np.ndarray, beta: float) -> float:
    """dNLL/dbeta = mean_i (E_{softmax(beta z_i)}[z_i] - z_iy_i)."""
    scaled = beta * logits
    q = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    q /= q.sum(axis=1, keepdims=True)
    return float(((q * logits).sum(axis=1) - logits[np.arange(len(labels)), labels]).mean())


def fit_temperature(val_probs: np.ndarray, val_labels: np.ndarray) -> TemperatureFit:
    """The T in :data:`TEMPERATURE_RANGE` that minimises the NLL of softmax(log p / T) on the
    validation predictions ``val_probs`` (n, K) with labels ``val_labels`` (n,); T = 1 where
    the NLL does not depend on T (every row uniform)."""
    logits, labels = logits_from(val_probs), np.asarray(val_labels, np.int64)
    low, high = np.log(1 / TEMPERATURE_RANGE[1]), np.log(1 / TEMPERATURE_RANGE[0])  # log beta
    if np.ptp(logits, axis=1).max() == 0:
        log_beta = 0.0
    elif _slope(logits, labels, np.exp(low)) >= 0:
        log_beta = low
    elif _slope(logits, labels, np.exp(high)) <= 0:
        log_beta = high
    else:
        for _ in range(BISECTION_STEPS):
            middle = (low + high) / 2
            if _slope(logits, labels, np.exp(middle)) > 0:
                high = middle
            else:
                low = middle
        log_beta = (low + high) / 2
    beta = float(np.exp(log_beta))
    return TemperatureFit(
        temperature=1 / beta,
        val_nll=scaled_nll(logits, labels, 1.0),
        val_nll_scaled=scaled_nll(logits, labels, beta),
    )


def calibrate(
    method: torch.nn.Module,
    val: MaskedSplit,
    test: Predictions,
    device: torch.device,
    train: TrainSpec,
) -> Calibrated:
    """Fit T on ``method``'s predictions of the validation split (its kept weights) and
    scale the test predictions ``test`` with it."""
    val_preds = predict(method, val, device, train.batch_size, train.amp)
    fit = fit_temperature(val_preds.probs, val.split.labels.numpy())
    scaled = Predictions(scale_probabilities(test.probs, fit.temperature), test.confidences)
    return Calibrated(fit, val_preds, scaled)


def calibration_metrics(calibrated: Calibrated, y_test: np.ndarray) -> dict[str, float]:
    """What a run logs: ``test_ts/<metric>`` of the scaled test predictions, and
    ``calibration/temperature``, ``calibration/val_nll`` and ``calibration/val_nll_scaled``."""
    scored = compute_metrics(calibrated.test.probs, y_test)
    return {
        **{f"{TEST_PREFIX}{key}": value for key, value in scored.items()},
        "calibration/temperature": calibrated.fit.temperature,
        "calibration/val_nll": calibrated.fit.val_nll,
        "calibration/val_nll_scaled": calibrated.fit.val_nll_scaled,
    }
