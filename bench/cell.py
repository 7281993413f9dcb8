"""Run one cell: load data, draw masks, build the method, fit, predict the test split once,
score it raw and after temperature scaling fitted on the validation split
(:mod:`bench.calibration`), and record everything in the tracking store. ``run_cell`` is
the only cell runner: ``bench run``'s executors call it as it is, ``bench tune`` with
:class:`CellHooks` (report every epoch to Optuna, prune, never score the test split)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.calibration import calibrate, calibration_metrics
from bench.data import LoadedDataset, load_dataset
from bench.data.features import frozen_features
from bench.failures import classify as classify_failure
from bench.interface import Method, build_method
from bench.metrics import compute_metrics
from bench.protocol import SPLITS, presence_mask
from bench.runtime import resolve_device, seed_everything
from bench.seeds import axis_tags
from bench.spec import CellSpec, DatasetRef
from bench.tracking import Tracker, write_yaml
from bench.train import EpochRecord, FitResult, MaskedSplit, Predictions, fit, predict

log = logging.getLogger(__name__)


@dataclass
class CellResult:
    """How a cell ended. ``best_epoch`` is the kept epoch of every stage; ``val_metrics`` the
    validation metrics of the epoch whose weights the cell ends with (the best of its last
    stage, by ``train.monitor``); ``metrics`` the test metrics (empty when not scored)."""

    spec: CellSpec
    status: str  # FINISHED, FAILED, SKIPPED, KILLED
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0
    run_id: str = ""
    best_epoch: dict[str, int] = field(default_factory=dict)
    val_metrics: dict[str, float] = field(default_factory=dict)
    failure: str = ""  # the bench.failures class of a FAILED or KILLED cell


class StopCell(Exception):
    """Raised by a :class:`CellHooks` ``on_epoch`` hook to end the cell early (bench tune's
    pruning): its run ends KILLED with the reason in tag ``error``, and the exception
    propagates to the caller of :func:`run_cell`."""


@dataclass(frozen=True)
class CellHooks:
    """How a caller adapts :func:`run_cell`; the defaults are ``bench run``'s cell.

    ``tags`` are added to the run's tags; ``on_start`` gets the run id before training;
    ``on_epoch`` gets every epoch's record after it is logged, and may raise
    :class:`StopCell`; ``score_test=False`` never predicts the test split (tuning).
    """

    tags: Mapping[str, str] = field(default_factory=dict)
    on_start: Callable[[str], None] | None = None
    on_epoch: Callable[[EpochRecord], None] | None = None
    score_test: bool = True


class DatasetCache:
    """Datasets loaded once per process and reused by every cell."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        self._loaded: dict[DatasetRef, LoadedDataset] = {}

    def get(self, ref: DatasetRef) -> LoadedDataset:
        if ref not in self._loaded:
            self._loaded[ref] = load_dataset(ref, self.cache_dir)
        return self._loaded[ref]

    def for_cell(self, spec: CellSpec, device: torch.device) -> LoadedDataset:
        """The cell's data: images, or frozen-backbone features when the cell asks for them."""
        if not spec.frozen_backbone:
            return self.get(spec.dataset)
        key = (spec.dataset, spec.frozen_backbone)
        if key not in self._loaded:
            frozen = dict(spec.frozen_backbone)
            self._loaded[key] = frozen_features(
                self.get(spec.dataset),
                spec.dataset,
                frozen["name"],
                frozen.get("pretrained"),
                device,
                self.cache_dir,
            )
        return self._loaded[key]


def cell_masks(spec: CellSpec, data: LoadedDataset) -> dict[str, np.ndarray]:
    """The presence mask of every split, as the protocol defines it for this cell."""
    return {
        split: presence_mask(
            spec.dataset.name,
            split,
            len(data.split(split)),
            data.info.num_modalities,
            spec.missing,
            spec.masks_seed,
            labels=data.split(split).labels.numpy(),
            batch_size=spec.train.batch_size,
        )
        for split in SPLITS
    }


def predictions_frame(
    preds: Predictions, labels: np.ndarray, present: np.ndarray, info_classes: tuple[str, ...]
) -> pd.DataFrame:
    """One row per sample: label, prediction, probabilities, presence, confidences."""
    frame = pd.DataFrame({"index": np.arange(len(labels)), "label": labels})
    frame["pred"] = preds.probs.argmax(axis=1)
    for k, name in enumerate(info_classes):
        frame[f"prob_{name}"] = preds.probs[:, k]
    for m in range(present.shape[1]):
        frame[f"present_m{m + 1}"] = present[:, m]
    for branch, values in preds.confidences.items():
        frame[f"conf_{branch}"] = values
    return frame


def cell_method(spec: CellSpec, data: LoadedDataset) -> Method:
    """The cell's method, built right after seeding with the cell's seed; on frozen
    features it is built with ``backbone='features'`` and their width."""
    seed_everything(spec.seed)
    hparams = dict(spec.hparams)
    if spec.frozen_backbone:
        hparams.update(backbone="features", feature_dim=int(data.train.images[0].shape[1]))
    return build_method(spec.method, data.info, hparams)


def epoch_metrics(record: EpochRecord) -> dict[str, float]:
    """What one epoch logs: training loss, its parts and learning rate; validation metrics."""
    values = {f"train/{k}": v for k, v in record.loss_parts.items()}
    values.update({f"val/{k}": v for k, v in record.val.items()})
    values.update({"train/loss": record.train_loss, "train/lr": record.lr})
    return values


def dropout_arrays(history: FitResult) -> dict[str, np.ndarray]:
    """``masks.npz`` entries ``train_dropout_<stage>``: each epoch's (epochs, n, M) presence
    of the stage's training samples after its training-time modality dropout."""
    return {f"train_dropout_{stage}": mask for stage, mask in history.dropout_masks.items()}


def kept_validation(history: FitResult) -> dict[str, float]:
    """The validation metrics of the epoch whose weights ``fit`` keeps: the best of the
    last stage."""
    last = history.history[-1].stage
    return [r for r in history.history if r.stage == last][history.best_epoch[last]].val


def score_test(
    method: Method,
    splits: dict[str, MaskedSplit],
    data: LoadedDataset,
    masks: dict[str, np.ndarray],
    spec: CellSpec,
    device: torch.device,
) -> tuple[dict[str, float], dict[str, float], dict[str, pd.DataFrame]]:
    """The test metrics, the metrics after temperature scaling on the validation split, and
    the per-sample prediction frames saved with the run (test, test scaled, validation)."""
    preds = predict(method, splits["test"], device, spec.train.batch_size, spec.train.amp)
    y_test = data.test.labels.numpy()
    scaled = calibrate(method, splits["val"], preds, device, spec.train)
    saved = {
        name: predictions_frame(
            split_preds, data.split(split).labels.numpy(), masks[split], data.info.classes
        )
        for name, split, split_preds in (
            ("predictions", "test", preds),
            ("predictions_ts", "test", scaled.test),
            ("predictions_val", "val", scaled.val),
        )
    }
    return compute_metrics(preds.probs, y_test), calibration_metrics(scaled, y_test), saved


def run_cell(
    spec: CellSpec,
    tracker: Tracker,
    experiment_id: str,
    datasets: DatasetCache,
    hooks: CellHooks = CellHooks(),
) -> CellResult:
    """Train and evaluate one cell; a failure is recorded with its reason and its
    :mod:`bench.failures` class (tag ``failure_class``), never raised.

    A :class:`StopCell` from a hook, or Ctrl-C, ends the run KILLED and is re-raised.
    """
    started = time.perf_counter()
    marks = {}  # seconds since ``started`` at the end of each phase: where a cell's time goes
    device = resolve_device(spec.train.device)
    run_id = tracker.start(experiment_id, spec, str(device), {**axis_tags(spec), **hooks.tags})
    phase = "data"  # where a failure happened decides its class (bench.failures)
    try:
        if hooks.on_start is not None:
            hooks.on_start(run_id)
        data = datasets.for_cell(spec, device)
        masks = cell_masks(spec, data)
        used = SPLITS if hooks.score_test else ("train", "val")
        splits = {s: MaskedSplit(data.split(s), torch.from_numpy(masks[s])) for s in used}
        if device.type == "cuda":
            splits = {s: split.pinned() for s, split in splits.items()}
        marks["seconds_data"] = time.perf_counter() - started
        phase = "method"
        method = cell_method(spec, data)

        def on_epoch(record: EpochRecord) -> None:
            tracker.log_metrics(run_id, epoch_metrics(record), step=record.step)
            if hooks.on_epoch is not None:
                hooks.on_epoch(record)

        history = fit(
            method, splits["train"], splits["val"], spec.train, device, spec.seed, on_epoch
        )
        marks["seconds_fit"] = time.perf_counter() - started
        val_metrics = kept_validation(history)
        tracker.log_metrics(
            run_id, {f"best_val/{spec.train.monitor}": val_metrics[spec.train.monitor]}
        )
        metrics, saved = {}, {}
        if hooks.score_test:
            metrics, calibrated, saved = score_test(method, splits, data, masks, spec, device)
            tracker.log_metrics(run_id, calibrated)
        marks["seconds_test"] = time.perf_counter() - started

        def write_artifacts(folder: Path) -> None:
            for name, frame in saved.items():
                frame.to_csv(folder / f"{name}.csv", index=False)
            np.savez(folder / "masks.npz", **masks, **dropout_arrays(history))
            write_yaml(folder / "config.yaml", {"cell_hash": spec.hash, **spec.to_dict()})

        phase = "store"
        timing = dict(zip(marks, np.diff([0.0, *marks.values()]).round(2), strict=True))
        timing["seconds"] = round(time.perf_counter() - started, 2)
        tracker.finish(
            run_id, metrics, write_artifacts, {"best_epoch": history.best_epoch, **timing}
        )
        return CellResult(
            spec,
            "FINISHED",
            metrics,
            seconds=time.perf_counter() - started,
            run_id=run_id,
            best_epoch=history.best_epoch,
            val_metrics=val_metrics,
        )
    except (StopCell, KeyboardInterrupt) as err:
        tracker.fail(run_id, err, status="KILLED")
        raise
    except Exception as err:  # the cell fails with its reason; the grid goes on
        log.debug("cell %s failed", spec.label, exc_info=True)
        failure = classify_failure(err, phase)
        tracker.fail(run_id, err, failure=failure)
        return CellResult(
            spec,
            "FAILED",
            error=f"{type(err).__name__}: {err}",
            seconds=time.perf_counter() - started,
            run_id=run_id,
            failure=failure,
        )
