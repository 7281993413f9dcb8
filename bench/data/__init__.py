"""Datasets in memory: three labelled splits of uint8 images plus a :class:`DatasetInfo`.

``load_dataset`` reads a card (``datasets/<name>.yaml``), resolves its options and calls
the adapter module the card names (``bench.data.<adapter>.load``). Splits are fixed by the
card and its options, never by the cell's seed.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.data.cards import Card, all_cards, get_card, load_priors
from bench.errors import ConfigError
from bench.interface import DatasetInfo
from bench.spec import DatasetRef


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


def dataset_info(card: Card, options: dict[str, Any]) -> DatasetInfo:
    count = int(options.get("modalities", len(card.modalities)))
    modalities = card.modalities[:count]
    return DatasetInfo(
        name=card.name,
        classes=tuple(card.classes),
        modalities=tuple(m["name"] for m in modalities),
        channels=tuple(int(m["channels"]) for m in modalities),
        image_size=int(options["image_size"]),
        priors=load_priors(card),
    )


def load_dataset(ref: DatasetRef, cache_dir: Path) -> LoadedDataset:
    """Load the dataset a cell names, through its card's adapter."""
    card = get_card(ref.name)
    options = card.resolve_options(dict(ref.options))
    try:
        adapter = import_module(f"bench.data.{card.adapter}")
    except ModuleNotFoundError as err:
        raise ConfigError(
            f"dataset card {card.path} names adapter {card.adapter!r}, which does not exist "
            "in bench/data/: fix the card's 'adapter' field"
        ) from err
    return adapter.load(card, options, dataset_info(card, options), Path(cache_dir))


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


__all__ = ["Card", "LoadedDataset", "Split", "all_cards", "get_card", "load_dataset"]
