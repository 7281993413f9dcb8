"""The one train / validate / predict loop that every method shares.

Model selection (best epoch, early stopping) looks at the validation split only; the test
split is predicted once, by the caller, after ``fit`` has restored the best weights.
Labels reach a method only through ``Method.loss``; ``predict`` never sees them.

A stage that declares a training-time modality dropout (``Stage.modality_dropout``) trains
on batches whose modalities are dropped by a mask drawn each epoch from the cell's dropout
stream (:mod:`bench.dropout`); every training batch carries the view before dropout as
``Batch.undropped``, and ``FitResult.dropout_masks`` keeps every epoch's mask.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch

from bench.data import Split
from bench.dropout import dropout_generator
from bench.errors import DataError, TrainingDivergedError
from bench.interface import Batch, Method, Stage
from bench.metrics import compute_metrics, metric_spec
from bench.spec import TrainSpec


@dataclass(frozen=True)
class MaskedSplit:
    """A split together with its presence mask (n, M) from the protocol."""

    split: Split
    present: torch.Tensor

    def __len__(self) -> int:
        return len(self.split)

    def pinned(self) -> MaskedSplit:
        """Page-locked copies, so host-to-GPU copies of batches run asynchronously."""
        images = tuple(x.pin_memory() for x in self.split.images)
        return MaskedSplit(Split(images, self.split.labels), self.present.pin_memory())

    def subset(self, index: torch.Tensor) -> MaskedSplit:
        images = tuple(x[index] for x in self.split.images)
        return MaskedSplit(Split(images, self.split.labels[index]), self.present[index])


@dataclass(frozen=True)
class EpochRecord:
    stage: str
    epoch: int  # within the stage, from 0
    step: int  # global epoch counter over all stages
    train_loss: float
    loss_parts: dict[str, float]
    val: dict[str, float]
    lr: float


@dataclass
class FitResult:
    """``dropout_masks``: per stage that declares a modality dropout, the (epochs, n, M) bool
    presence its training samples had in each epoch after dropout (the stage's own samples,
    in their order: the train split, or its complete pairs for a complete-only stage)."""

    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: dict[str, int] = field(default_factory=dict)  # per stage
    stopped_early: dict[str, bool] = field(default_factory=dict)
    dropout_masks: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Predictions:
    probs: np.ndarray  # float32 (n, K)
    confidences: dict[str, np.ndarray]  # branch -> float32 (n,)


def make_batch(data: MaskedSplit, index: torch.Tensor, device: torch.device) -> Batch:
    """Scale uint8 images to [-1, 1] (float inputs, e.g. cached features, pass as they are)
    and zero every absent modality."""
    present = data.present[index].to(device, non_blocking=True)
    images = []
    for m, values in enumerate(data.split.images):
        x = values[index].to(device, non_blocking=True)
        x = x.float().div_(127.5).sub_(1.0) if x.dtype == torch.uint8 else x.float()
        keep = present[:, m].view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
        images.append(x * keep)
    return Batch(tuple(images), present)


def drop_modalities(batch: Batch, keep: torch.Tensor) -> Batch:
    """``batch`` with only the (B, M) ``keep`` modalities, absent ones zeroed, and ``batch``
    itself as its undropped view."""
    images = tuple(
        x * keep[:, m].view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
        for m, x in enumerate(batch.images)
    )
    return Batch(images, keep, undropped=batch)


def _autocast(device: torch.device, enabled: bool):
    if not enabled or device.type != "cuda":
        return nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def _needs_loss_scaling(device: torch.device, amp: bool) -> bool:
    """float16 autocast needs a GradScaler; bfloat16 does not."""
    return amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()


def _optimizer(params: list[torch.nn.Parameter], spec: TrainSpec) -> torch.optim.Optimizer:
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=spec.lr, momentum=0.9, weight_decay=spec.weight_decay)
    cls = torch.optim.AdamW if spec.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=spec.lr, weight_decay=spec.weight_decay)


@torch.no_grad()
def predict(
    method: Method, data: MaskedSplit, device: torch.device, batch_size: int, amp: bool = True
) -> Predictions:
    """Class probabilities (and branch confidences) for every sample, in order."""
    method.eval()
    probs, confidences = [], {}
    for start in range(0, len(data), batch_size):
        index = torch.arange(start, min(start + batch_size, len(data)))
        with _autocast(device, amp):
            out = method(make_batch(data, index, device))
        probs.append(torch.softmax(out.logits.float(), dim=-1).cpu())
        for name, value in out.confidences.items():
            confidences.setdefault(name, []).append(value.float().reshape(-1).cpu())
    return Predictions(
        probs=torch.cat(probs).numpy(),
        confidences={k: torch.cat(v).numpy() for k, v in confidences.items()},
    )


def _stage_data(data: MaskedSplit, stage: Stage, split: str) -> MaskedSplit:
    if not stage.complete_only:
        return data
    complete = data.subset(torch.nonzero(data.present.all(dim=1)).squeeze(1))
    if len(complete) == 0:
        raise DataError(
            f"stage {stage.name!r} trains on complete pairs only, and the {split} split has none "
            "at this missing rate: lower the rate or pass --apply-to test"
        )
    return complete


def _stage_epochs(spec: TrainSpec, stage: Stage, full: MaskedSplit, seen: MaskedSplit) -> int:
    """The stage's share of the epoch budget, in passes over the data it sees. A complete-only
    stage sees fewer samples per pass; it gets as many optimiser steps as its share of the
    budget over the full split would give (at 80 % missing, 5x the passes), else a teacher
    trained on 20 % of the pairs would take 5x fewer steps than its student."""
    return max(1, round(spec.epochs * stage.epochs * len(full) / len(seen)))


def fit(
    method: Method,
    train: MaskedSplit,
    val: MaskedSplit,
    spec: TrainSpec,
    device: torch.device,
    seed: int,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> FitResult:
    """Train every stage of ``method``; keep the weights of each stage's best validation epoch.

    Raises :class:`TrainingDivergedError` as soon as a loss is NaN or infinite.
    """
    method.to(device)
    result = FitResult()
    shuffle = torch.Generator().manual_seed(seed)
    dropout_stream = dropout_generator(seed)
    higher = metric_spec(spec.monitor).higher_is_better
    step = 0
    for stage in method.stages():
        method.set_stage(stage.name)
        stage_train, stage_val = _stage_data(train, stage, "train"), _stage_data(val, stage, "val")
        epochs = _stage_epochs(spec, stage, train, stage_train)
        params = [p for p in method.parameters() if p.requires_grad]
        optimizer = _optimizer(params, spec)
        scheduler = (
            torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
            if spec.scheduler == "cosine"
            else None
        )
        scaler = torch.amp.GradScaler("cuda", enabled=_needs_loss_scaling(device, spec.amp))
        best_score, best_state, since_best = -math.inf, None, 0
        dropout, masks = stage.modality_dropout, []
        for epoch in range(epochs):
            lr = optimizer.param_groups[0]["lr"]
            keep = None
            if dropout is not None:
                keep = stage_train.present
                if epoch >= dropout.warmup_epochs(epochs):
                    keep = torch.from_numpy(dropout.keep(keep.numpy(), dropout_stream))
                masks.append(keep.numpy())
            loss_mean, parts = _train_epoch(
                method,
                stage_train,
                spec,
                device,
                optimizer,
                scaler,
                shuffle,
                keep,
                stage.name,
                epoch,
            )
            if keep is not None:
                dropped = (keep != stage_train.present).any(dim=1).float().mean()
                parts = {**parts, "dropped_fraction": float(dropped)}
            if scheduler is not None:
                scheduler.step()
            val_probs = predict(method, stage_val, device, spec.batch_size, spec.amp).probs
            val_metrics = compute_metrics(val_probs, stage_val.split.labels.numpy())
            record = EpochRecord(stage.name, epoch, step, loss_mean, parts, val_metrics, lr)
            result.history.append(record)
            if on_epoch is not None:
                on_epoch(record)
            step += 1
            score = val_metrics[spec.monitor] * (1 if higher else -1)
            if score > best_score or best_state is None:
                best_score, since_best = score, 0
                best_state = {k: v.detach().clone() for k, v in method.state_dict().items()}
                result.best_epoch[stage.name] = epoch
            else:
                since_best += 1
                if spec.patience and since_best >= spec.patience:
                    result.stopped_early[stage.name] = True
                    break
        method.load_state_dict(best_state)
        if masks:
            result.dropout_masks[stage.name] = np.stack(masks)
    return result


def _train_epoch(
    method: Method,
    data: MaskedSplit,
    spec: TrainSpec,
    device: torch.device,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    shuffle: torch.Generator,
    keep: torch.Tensor | None,
    stage: str,
    epoch: int,
) -> tuple[float, dict[str, float]]:
    """One pass over ``data``; ``keep`` (n, M), when given, is the epoch's dropout mask."""
    method.train()
    order = torch.randperm(len(data), generator=shuffle)
    total, parts_total, seen = 0.0, {}, 0
    labels = data.split.labels
    for start in range(0, len(data), spec.batch_size):
        index = order[start : start + spec.batch_size]
        if len(index) < 2 and len(data) > 1:  # a batch of one breaks BatchNorm
            continue
        batch = make_batch(data, index, device)
        if keep is None:
            batch = Batch(batch.images, batch.present, undropped=batch)
        else:
            batch = drop_modalities(batch, keep[index].to(device, non_blocking=True))
        y = labels[index].to(device, non_blocking=True)
        with _autocast(device, spec.amp):
            out = method(batch)
            loss, parts = method.loss(out, batch, y)
        if not torch.isfinite(loss):
            raise TrainingDivergedError(
                f"loss became {float(loss.detach())} in stage {stage!r}, epoch {epoch}, batch "
                f"{start // spec.batch_size}: lower train.lr or set train.grad_clip"
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        parts = {**parts, **method.after_backward()}
        if spec.grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(method.parameters(), spec.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        n = len(index)
        seen += n
        total += float(loss.detach()) * n
        for key, value in parts.items():
            parts_total[key] = parts_total.get(key, 0.0) + value * n
    seen = max(seen, 1)
    return total / seen, {k: v / seen for k, v in parts_total.items()}
