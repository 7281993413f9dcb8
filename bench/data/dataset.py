"""Datasets in memory: three labelled splits of uint8 images plus a :class:`DatasetInfo`."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench.interface import DatasetInfo


@dataclass(frozen=True)
class Split:
    """One split: ``images[m]`` is a uint8 tensor (n, C_m, H, W); ``labels`` int64 (n,)."""

    images: tuple[torch.Tensor, ...]
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class LoadedDataset:
    info: DatasetInfo
    train: Split
    val: Split
    test: Split

    def split(self, name: str) -> Split:
        return {"train": self.train, "val": self.val, "test": self.test}[name]


def save_arrays_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an .npz so that a crash never leaves a half-written cache file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
