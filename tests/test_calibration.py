"""Temperature scaling (bench/calibration.py): the fit, and how a cell applies and records it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.optimize import minimize_scalar

from bench.calibration import (
    TEMPERATURE_RANGE,
    fit_temperature,
    logits_from,
    scale_probabilities,
    scaled_nll,
)
from bench.cell import DatasetCache, run_cell
from bench.metrics import compute_metrics
from bench.spec import CellSpec, MissingSpec, TrainSpec
from bench.tracking import Tracker


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def predictions(n: int, k: int, sharpness: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities whose logits are ``sharpness`` times those of a calibrated model."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)) * 2.0
    labels = np.array([rng.choice(k, p=p) for p in softmax(logits)])
    return softmax(sharpness * logits).astype(np.float32), labels


def nll_at(probs: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    return scaled_nll(logits_from(probs), labels, 1 / temperature)


@pytest.mark.parametrize("sharpness, seed", [(3.0, 0), (0.4, 1), (1.0, 2)])
def test_the_fitted_temperature_minimises_the_validation_nll(sharpness, seed):
    probs, labels = predictions(400, 5, sharpness, seed)
    fit = fit_temperature(probs, labels)
    search = minimize_scalar(
        lambda log_t: nll_at(probs, labels, np.exp(log_t)),
        bounds=tuple(np.log(TEMPERATURE_RANGE)),
        method="bounded",
        options={"xatol": 1e-9},
    )
    assert fit.temperature == pytest.approx(np.exp(search.x), rel=1e-4)
    grid = np.exp(np.linspace(*np.log(TEMPERATURE_RANGE), 4001))
    assert fit.val_nll_scaled <= min(nll_at(probs, labels, t) for t in grid) + 1e-12
    assert fit.val_nll == pytest.approx(compute_metrics(probs, labels)["nll"], rel=1e-6)
    scaled = scale_probabilities(probs, fit.temperature)
    assert compute_metrics(scaled, labels)["nll"] == pytest.approx(fit.val_nll_scaled, rel=1e-5)


def test_over_confident_predictions_are_softened_and_under_confident_sharpened():
    assert fit_temperature(*predictions(600, 4, 3.0, 3)).temperature > 1.5
    assert fit_temperature(*predictions(600, 4, 0.3, 4)).temperature < 0.6


def test_scaling_divides_the_logits_and_keeps_every_argmax():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(50, 3)) * 4
    probs = softmax(logits).astype(np.float32)
    scaled = scale_probabilities(probs, 2.5)
    np.testing.assert_allclose(scaled, softmax(logits / 2.5), rtol=1e-4, atol=1e-6)
    assert (scaled.argmax(1) == probs.argmax(1)).all() and scaled.dtype == np.float32
    np.testing.assert_allclose(scale_probabilities(probs, 1.0), probs, rtol=1e-5, atol=1e-7)


def test_degenerate_validation_sets_give_a_temperature_in_range():
    uniform = np.full((10, 4), 0.25, np.float32)
    assert fit_temperature(uniform, np.arange(10) % 4).temperature == 1.0
    perfect = np.eye(4, dtype=np.float32)[np.arange(12) % 4] * 0.9 + 0.025
    assert fit_temperature(perfect, np.arange(12) % 4).temperature == pytest.approx(
        TEMPERATURE_RANGE[0]
    )


# in a cell --------------------------------------------------------------------------------


class FixedData(DatasetCache):
    """A dataset cache that serves one given dataset."""

    def __init__(self, cache_dir, data) -> None:
        super().__init__(cache_dir)
        self.data = data

    def for_cell(self, spec, device):
        return self.data


def run_and_read(tmp_path, spec, data, name):
    tracker = Tracker(tmp_path / name)
    experiment = tracker.experiment_id("e")
    result = run_cell(spec, tracker, experiment, FixedData(tmp_path / "cache", data))
    assert result.status == "FINISHED", result.error
    (run,) = tracker.runs(experiment)
    frames = {
        stem: pd.read_csv(tracker.artifact_path(run.run_id, f"{stem}.csv"))
        for stem in ("predictions", "predictions_ts", "predictions_val")
    }
    return run, frames


def test_a_cell_fits_on_validation_never_reads_test_labels_and_stores_both_sets(
    tmp_path, tiny_ref, tiny_data
):
    spec = CellSpec("late-fusion", tiny_ref, MissingSpec(0.4), TrainSpec(epochs=2), 0)
    run, frames = run_and_read(tmp_path, spec, tiny_data, "a")
    test = tiny_data.test
    flipped = (test.labels + 1) % tiny_data.info.num_classes
    shuffled = replace(tiny_data, test=replace(test, labels=flipped))
    again, frames_again = run_and_read(tmp_path, spec, shuffled, "b")

    temperature = run.metrics["calibration/temperature"]
    assert again.metrics["calibration/temperature"] == temperature
    columns = [c for c in frames["predictions"] if c.startswith("prob_")]
    np.testing.assert_array_equal(
        frames_again["predictions_ts"][columns], frames["predictions_ts"][columns]
    )
    val = frames["predictions_val"]
    refit = fit_temperature(val[columns].to_numpy(np.float32), val["label"].to_numpy())
    assert refit.temperature == pytest.approx(temperature, rel=1e-6)
    assert len(val) == len(tiny_data.val) and len(frames["predictions_ts"]) == len(test)
    raw = frames["predictions"][columns].to_numpy(np.float32)
    np.testing.assert_allclose(
        frames["predictions_ts"][columns], scale_probabilities(raw, temperature), atol=1e-6
    )
    for key in ("ece", "nll", "f1_macro"):
        assert f"test_ts/{key}" in run.metrics and f"test/{key}" in run.metrics
    assert run.metrics["test_ts/f1_macro"] == pytest.approx(run.metrics["test/f1_macro"])
    assert torch.equal(shuffled.val.labels, tiny_data.val.labels)
