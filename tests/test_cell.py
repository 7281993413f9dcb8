"""``run_cell``, the one cell runner, and the hooks through which ``bench tune`` uses it."""

from __future__ import annotations

import pytest

import bench.cell
from bench.cell import CellHooks, DatasetCache, StopCell, run_cell
from bench.spec import CellSpec, MissingSpec, TrainSpec
from bench.tracking import Tracker


@pytest.fixture
def cell(tmp_path, tiny_ref):
    spec = CellSpec("late-fusion", tiny_ref, MissingSpec(0.4), TrainSpec(epochs=3), 0)
    tracker = Tracker(tmp_path)
    return spec, tracker, tracker.experiment_id("e"), DatasetCache(tmp_path / "cache")


def test_a_cell_reports_its_kept_epoch_and_its_validation_metrics(cell):
    spec, tracker, experiment_id, datasets = cell
    result = run_cell(spec, tracker, experiment_id, datasets)
    assert result.status == "FINISHED" and result.metrics
    (run,) = tracker.runs(experiment_id)
    assert result.run_id == run.run_id and run.test_metrics == result.metrics
    assert run.tags["best_epoch"] == str(result.best_epoch)
    history = tracker.client.get_metric_history(run.run_id, "val/f1_macro")
    kept = {m.step: m.value for m in history}[result.best_epoch["main"]]
    assert result.val_metrics["f1_macro"] == pytest.approx(kept)
    assert run.metrics["best_val/f1_macro"] == pytest.approx(kept)


def test_a_cell_records_where_its_time_went(cell):
    spec, tracker, experiment_id, datasets = cell
    run_cell(spec, tracker, experiment_id, datasets)
    (run,) = tracker.runs(experiment_id)
    phases = [float(run.tags[f"seconds_{p}"]) for p in ("data", "fit", "test")]
    assert all(p >= 0 for p in phases) and phases[1] > 0  # training takes time
    assert sum(phases) == pytest.approx(float(run.tags["seconds"]), abs=0.05)


def test_hooks_tag_the_run_see_every_epoch_and_can_skip_the_test_split(cell, monkeypatch):
    spec, tracker, experiment_id, datasets = cell

    def no_test(*args, **kwargs):
        raise AssertionError("the test split was predicted")

    monkeypatch.setattr(bench.cell, "predict", no_test)
    started, epochs = [], []
    hooks = CellHooks(
        tags={"mlflow.runName": "trial 7", "optuna_trial": "7"},
        on_start=started.append,
        on_epoch=epochs.append,
        score_test=False,
    )
    result = run_cell(spec, tracker, experiment_id, datasets, hooks)
    assert result.status == "FINISHED" and result.metrics == {}
    assert started == [result.run_id] and [r.epoch for r in epochs] == [0, 1, 2]
    (run,) = tracker.runs(experiment_id)
    assert run.tags["optuna_trial"] == "7" and run.tags["mlflow.runName"] == "trial 7"
    assert run.test_metrics == {} and "best_val/f1_macro" in run.metrics
    artifacts = {a.path for a in tracker.client.list_artifacts(run.run_id)}
    assert artifacts == {"config.yaml", "masks.npz"}


def test_a_hook_that_stops_the_cell_ends_its_run_killed_and_reraises(cell):
    spec, tracker, experiment_id, datasets = cell

    def stop_after_two(record):
        if record.step == 1:
            raise StopCell("pruned after epoch 2")

    with pytest.raises(StopCell, match="pruned after epoch 2"):
        run_cell(spec, tracker, experiment_id, datasets, CellHooks(on_epoch=stop_after_two))
    (run,) = tracker.runs(experiment_id)
    assert run.status == "KILLED" and run.tags["error"] == "StopCell: pruned after epoch 2"
    assert len(tracker.client.get_metric_history(run.run_id, "val/f1_macro")) == 2


def test_a_failing_hook_fails_the_cell_with_its_reason(cell):
    spec, tracker, experiment_id, datasets = cell

    def broken(record):
        raise RuntimeError("storage gone")

    result = run_cell(spec, tracker, experiment_id, datasets, CellHooks(on_epoch=broken))
    assert result.status == "FAILED" and result.error == "RuntimeError: storage gone"
    (run,) = tracker.runs(experiment_id)
    assert run.status == "FAILED" and run.run_id == result.run_id
