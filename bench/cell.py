"""Run one cell: load data, draw masks, build the method, fit, predict the test split once,
score it and record everything in the tracking store (ARCHITECTURE.md, How data flows)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.data import LoadedDataset, load_dataset
from bench.data.features import frozen_features
from bench.interface import build_method
from bench.metrics import compute_metrics
from bench.protocol import SPLITS, presence_mask
from bench.runtime import resolve_device, seed_everything
from bench.spec import CellSpec, DatasetRef
from bench.tracking import Tracker, write_yaml
from bench.train import EpochRecord, MaskedSplit, Predictions, fit, predict

log = logging.getLogger(__name__)


@dataclass
class CellResult:
    spec: CellSpec
    status: str  # FINISHED, FAILED, SKIPPED
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0


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
            spec.seed,
            labels=data.split(split).labels.numpy(),
            batch_size=spec.train.batch_size,
        )
        for split in SPLITS
    }


def predictions_frame(
    preds: Predictions, labels: np.ndarray, present: np.ndarray, info_classes: tuple[str, ...]
) -> pd.DataFrame:
    """One row per test sample: label, prediction, probabilities, presence, confidences."""
    frame = pd.DataFrame({"index": np.arange(len(labels)), "label": labels})
    frame["pred"] = preds.probs.argmax(axis=1)
    for k, name in enumerate(info_classes):
        frame[f"prob_{name}"] = preds.probs[:, k]
    for m in range(present.shape[1]):
        frame[f"present_m{m + 1}"] = present[:, m]
    for branch, values in preds.confidences.items():
        frame[f"conf_{branch}"] = values
    return frame


def run_cell(
    spec: CellSpec, tracker: Tracker, experiment_id: str, datasets: DatasetCache
) -> CellResult:
    """Train and evaluate one cell; a failure is recorded with its reason, never raised."""
    started = time.perf_counter()
    device = resolve_device(spec.train.device)
    run_id = tracker.start(experiment_id, spec, str(device))
    try:
        data = datasets.for_cell(spec, device)
        masks = cell_masks(spec, data)
        splits = {s: MaskedSplit(data.split(s), torch.from_numpy(masks[s])) for s in SPLITS}
        if device.type == "cuda":
            splits = {s: split.pinned() for s, split in splits.items()}
        seed_everything(spec.seed)
        hparams = dict(spec.hparams)
        if spec.frozen_backbone:
            hparams.update(backbone="features", feature_dim=int(data.train.images[0].shape[1]))
        method = build_method(spec.method, data.info, hparams)

        def on_epoch(record: EpochRecord) -> None:
            values = {f"train/{k}": v for k, v in record.loss_parts.items()}
            values.update({f"val/{k}": v for k, v in record.val.items()})
            values.update({"train/loss": record.train_loss, "train/lr": record.lr})
            tracker.log_metrics(run_id, values, step=record.step)

        history = fit(
            method, splits["train"], splits["val"], spec.train, device, spec.seed, on_epoch
        )
        preds = predict(method, splits["test"], device, spec.train.batch_size, spec.train.amp)
        y_test = data.test.labels.numpy()
        metrics = compute_metrics(preds.probs, y_test)

        def write_artifacts(folder: Path) -> None:
            predictions_frame(preds, y_test, masks["test"], data.info.classes).to_csv(
                folder / "predictions.csv", index=False
            )
            np.savez(folder / "masks.npz", **masks)
            write_yaml(folder / "config.yaml", {"cell_hash": spec.hash, **spec.to_dict()})

        tracker.finish(
            run_id,
            metrics,
            write_artifacts,
            {"best_epoch": history.best_epoch, "seconds": round(time.perf_counter() - started, 2)},
        )
        return CellResult(spec, "FINISHED", metrics, seconds=time.perf_counter() - started)
    except KeyboardInterrupt as err:
        tracker.fail(run_id, err, status="KILLED")
        raise
    except Exception as err:  # the cell fails with its reason; the grid goes on
        log.debug("cell %s failed", spec.label, exc_info=True)
        tracker.fail(run_id, err)
        return CellResult(
            spec,
            "FAILED",
            error=f"{type(err).__name__}: {err}",
            seconds=time.perf_counter() - started,
        )
