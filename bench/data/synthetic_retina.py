"""Adapter ``synthetic-retina`` (card ``synthetic-retina``): generate once, cache, split.

The generator (``bench.data.synthetic``) is pure numpy; this module fixes the splits
from the card's options and caches the arrays under ``<cache_dir>/`` keyed by them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.data.adapter import DatasetAdapter, register_adapter
from bench.data.cards import Card
from bench.data.dataset import LoadedDataset, Split, save_arrays_atomically
from bench.data.options import integer, number
from bench.data.synthetic import check_arguments, generate
from bench.errors import ConfigError

GENERATOR_VERSION = 2  # bump when the generator's output changes, to refresh caches


def _cache_path(cache_dir: Path, options: dict[str, Any]) -> Path:
    key = json.dumps({**options, "version": GENERATOR_VERSION}, sort_keys=True)
    return cache_dir / f"synthetic-retina-{hashlib.sha256(key.encode()).hexdigest()[:12]}.npz"


@register_adapter("synthetic-retina")
class SyntheticRetina(DatasetAdapter):
    """Generated data: reads no disk but its own cache."""

    OPTIONS = (
        "modalities",
        "n_train",
        "n_test",
        "val_fraction",
        "label_noise",
        "difficulty",
        "data_seed",
    )

    def __init__(self, card: Card, options: Mapping[str, Any]) -> None:
        super().__init__(card, options)
        name = self.name
        n_train = integer(self.options, "n_train", name, 0)
        n_test = integer(self.options, "n_test", name, 0)
        integer(self.options, "data_seed", name, 0)
        n_val = round(number(self.options, "val_fraction", name) * n_train)
        if not 0 < n_val < n_train or n_test < 1:
            raise ConfigError(
                f"synthetic-retina split sizes are invalid (n_train={n_train}, n_test={n_test}, "
                f"val_fraction={self.options['val_fraction']}): keep 0 < val_fraction < 1, "
                "n_test >= 1"
            )
        check_arguments(
            n_train + n_test,
            self.image_size,
            integer(self.options, "modalities", name, 0),
            number(self.options, "label_noise", name),
            number(self.options, "difficulty", name),
        )
        self.bounds = {
            "train": (0, n_train - n_val),
            "val": (n_train - n_val, n_train),
            "test": (n_train, n_train + n_test),
        }

    def check_source(self) -> None:
        """Nothing to read: the samples are generated (the options were checked already)."""

    def load(self, cache_dir: Path) -> LoadedDataset:
        info = self.info()
        arrays = self._arrays(Path(cache_dir))
        images = [torch.from_numpy(arrays[f"images_{m}"]) for m in range(info.num_modalities)]
        labels = torch.from_numpy(arrays["labels"]).long()
        splits = {
            name: Split(tuple(x[lo:hi] for x in images), labels[lo:hi])
            for name, (lo, hi) in self.bounds.items()
        }
        return LoadedDataset(info, splits["train"], splits["val"], splits["test"])

    def _arrays(self, cache_dir: Path) -> dict[str, np.ndarray]:
        path = _cache_path(cache_dir, self.options)
        if path.is_file():
            with np.load(path) as cached:
                return {k: cached[k] for k in cached.files}
        samples = generate(
            n=self.bounds["test"][1],
            seed=int(self.options["data_seed"]),
            image_size=self.image_size,
            modalities=int(self.options["modalities"]),
            label_noise=float(self.options["label_noise"]),
            difficulty=float(self.options["difficulty"]),
        )
        arrays = {f"images_{m}": x for m, x in enumerate(samples.images)}
        arrays["labels"] = samples.labels
        save_arrays_atomically(path, arrays)
        return arrays
