"""Missingness masks (bench/README.md, "Evaluation protocol").

``presence_mask`` is a pure function of (dataset, split, n, rate, mechanism, modality,
seed) (plus the labels for ``mnar-class`` and the batch size for ``released``): every
method sees exactly the same masks, so comparisons between methods are paired.

- ``mcar``: exactly round(rate * n) samples, drawn uniformly, lose one modality: the one
  named by ``modality`` (m1, m2, ...) or, for ``either``, one chosen uniformly. Never all.
- ``mnar-class``: as mcar, but a sample of class c is drawn with weight (c + 1), so later
  classes lose a modality more often while the overall rate is kept.
- ``released``: what the released KEDR code does at test time: the first int(B * rate)
  samples of every batch of B lose modality 1; no randomness. For comparison only.

``apply_to`` says which splits are masked: ``both`` (all), ``test`` (train on complete
pairs; validation follows test so model selection sees test conditions), ``train``
(validation and test complete). ``released`` masks the test split only.
"""

from __future__ import annotations

import hashlib

import numpy as np

from bench.errors import ConfigError
from bench.spec import MissingSpec

SPLITS = ("train", "val", "test")


def split_is_masked(split: str, missing: MissingSpec) -> bool:
    if missing.mechanism == "released":
        return split == "test"
    if missing.apply_to == "both":
        return True
    return (split == "train") == (missing.apply_to == "train")


def mask_seed(dataset: str, split: str, n: int, missing: MissingSpec, seed: int) -> int:
    """A 64-bit seed derived from everything the mask depends on (stable across runs)."""
    key = f"{dataset}|{split}|{n}|{missing.rate!r}|{missing.mechanism}|{missing.modality}|{seed}"
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")


def _lost_modality(
    rng: np.random.Generator, count: int, modality: str, num_modalities: int
) -> np.ndarray:
    if modality == "either":
        return rng.integers(0, num_modalities, size=count)
    index = int(modality[1:]) - 1
    if index >= num_modalities:
        raise ConfigError(
            f"missing modality {modality!r} does not exist: this dataset has "
            f"{num_modalities} modalities (m1..m{num_modalities})"
        )
    return np.full(count, index)


def presence_mask(
    dataset: str,
    split: str,
    n: int,
    num_modalities: int,
    missing: MissingSpec,
    seed: int,
    labels: np.ndarray | None = None,
    batch_size: int = 32,
) -> np.ndarray:
    """(n, M) bool: True where the sample has the modality."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    present = np.ones((n, num_modalities), dtype=bool)
    if missing.rate == 0 or not split_is_masked(split, missing):
        return present
    if missing.mechanism == "released":
        position = np.arange(n) % batch_size
        present[position < int(batch_size * missing.rate), 0] = False
        return present

    rng = np.random.default_rng(mask_seed(dataset, split, n, missing, seed))
    count = round(missing.rate * n)
    if missing.mechanism == "mcar":
        chosen = rng.choice(n, size=count, replace=False)
    else:  # mnar-class
        if labels is None or len(labels) != n:
            raise ConfigError("mechanism 'mnar-class' needs the labels of the split")
        weights = np.asarray(labels, dtype=np.float64) + 1.0
        chosen = rng.choice(n, size=count, replace=False, p=weights / weights.sum())
    present[chosen, _lost_modality(rng, count, missing.modality, num_modalities)] = False
    return present
