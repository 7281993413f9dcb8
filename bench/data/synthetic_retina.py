"""Adapter of the ``synthetic-retina`` card: generate once, cache, split.

The generator (``bench.data.synthetic``) is pure numpy; this module fixes the splits
from the card's options and caches the arrays under ``<cache_dir>/`` keyed by them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.data import LoadedDataset, Split, save_arrays_atomically
from bench.data.cards import Card
from bench.data.synthetic import generate
from bench.errors import ConfigError
from bench.interface import DatasetInfo

GENERATOR_VERSION = 2  # bump when the generator's output changes, to refresh caches


def _cache_path(cache_dir: Path, options: dict[str, Any]) -> Path:
    key = json.dumps({**options, "version": GENERATOR_VERSION}, sort_keys=True)
    return cache_dir / f"synthetic-retina-{hashlib.sha256(key.encode()).hexdigest()[:12]}.npz"


def _arrays(options: dict[str, Any], cache_dir: Path) -> dict[str, np.ndarray]:
    path = _cache_path(cache_dir, options)
    if path.is_file():
        with np.load(path) as cached:
            return {k: cached[k] for k in cached.files}
    samples = generate(
        n=int(options["n_train"]) + int(options["n_test"]),
        seed=int(options["data_seed"]),
        image_size=int(options["image_size"]),
        modalities=int(options["modalities"]),
        label_noise=float(options["label_noise"]),
        difficulty=float(options["difficulty"]),
    )
    arrays = {f"images_{m}": x for m, x in enumerate(samples.images)}
    arrays["labels"] = samples.labels
    save_arrays_atomically(path, arrays)
    return arrays


def load(card: Card, options: dict[str, Any], info: DatasetInfo, cache_dir: Path) -> LoadedDataset:
    n_train, n_test = int(options["n_train"]), int(options["n_test"])
    n_val = round(float(options["val_fraction"]) * n_train)
    if not 0 < n_val < n_train or n_test < 1:
        raise ConfigError(
            f"synthetic-retina split sizes are invalid (n_train={n_train}, n_test={n_test}, "
            f"val_fraction={options['val_fraction']}): keep 0 < val_fraction < 1, n_test >= 1"
        )
    arrays = _arrays(options, cache_dir)
    images = [torch.from_numpy(arrays[f"images_{m}"]) for m in range(info.num_modalities)]
    labels = torch.from_numpy(arrays["labels"]).long()
    bounds = {
        "train": (0, n_train - n_val),
        "val": (n_train - n_val, n_train),
        "test": (n_train, n_train + n_test),
    }
    splits = {
        name: Split(tuple(x[lo:hi] for x in images), labels[lo:hi])
        for name, (lo, hi) in bounds.items()
    }
    return LoadedDataset(info, splits["train"], splits["val"], splits["test"])
