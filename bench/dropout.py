"""Training-time modality dropout: a seeded transform of the training batches that a method's
recipe declares (through its :class:`bench.interface.Stage`), never code inside a method.

Each epoch of a stage that declares a :class:`ModalityDropout`, the training loop draws, for
every training sample, which of its present modalities it keeps; a dropped modality is
zeroed and marked absent exactly as a missing one is. A sample keeps at least one modality,
so one with a single present modality is never touched (for two modalities, only complete
pairs are dropped from). With k present modalities, the schemes are:

- ``bernoulli`` (ModDrop, Neverova et al., "ModDrop: adaptive multi-modal gesture
  recognition", IEEE TPAMI 2016): each present modality is dropped with probability ``p``;
  if all are, one of them, uniformly, is kept. A complete pair of two loses one with
  probability 1 - (1 - p)^2 (0.75 at p = 0.5).
- ``uniform-count`` (ModDrop++, Liu et al., MICCAI 2022, github.com/han-liu/ModDropPlusPlus
  ``data/ms_dataset.py``: ``random.sample(available, random.randint(0, len(available) - 1))``;
  ShaSpec's ``mode='random'``, github.com/billhhh/ShaSpec ``DualNet_SS.py``, keeps a uniform
  number 1..M of modalities): the number dropped is uniform on {0, ..., k - 1}, then which,
  uniformly. A complete pair of two loses one with probability 1/2.
- ``uniform-subset``: the kept set is uniform over the 2^k - 1 non-empty subsets of the
  present modalities (every test condition equally often; a complete pair of two loses one
  with probability 2/3).

The draws come from their own generator, seeded from the cell's seed, so that declaring a
dropout does not shift the shuffling, initialisation or any other random stream. The first
``warmup`` fraction of a stage's epochs trains on the undropped batches (ShaSpec's
full-modality phase before its random-modality phase).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bench.errors import ConfigError

STREAM = 0x6D6F6464  # mixes the cell seed into a stream of its own ("modd")

Scheme = Callable[[np.ndarray, np.random.Generator, float], np.ndarray]


def _random_ranks(present: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random order of each row's present modalities: rank 0, 1, ... (absent last)."""
    scores = np.where(present, rng.random(present.shape), np.inf)
    return np.argsort(np.argsort(scores, axis=1, kind="stable"), axis=1, kind="stable")


def bernoulli(present: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    keep = present & (rng.random(present.shape) >= p)
    rescue = _random_ranks(present, rng) == 0  # one present modality, uniformly
    none_kept = present.any(axis=1) & ~keep.any(axis=1)
    return np.where(none_kept[:, None], rescue & present, keep)


def uniform_count(present: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    count = present.sum(axis=1)
    dropped = np.floor(rng.random(len(present)) * np.maximum(count, 1)).astype(int)
    return present & (_random_ranks(present, rng) >= dropped[:, None])


def uniform_subset(present: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    count = present.sum(axis=1)
    subset = rng.integers(1, 2 ** np.maximum(count, 1))  # bits: which present ones to keep
    position = np.cumsum(present, axis=1) - 1  # j for the j-th present modality of a row
    return present & ((subset[:, None] >> np.maximum(position, 0)) & 1).astype(bool)


SCHEMES: dict[str, Scheme] = {
    "bernoulli": bernoulli,
    "uniform-count": uniform_count,
    "uniform-subset": uniform_subset,
}
NONE = "none"


@dataclass(frozen=True)
class ModalityDropout:
    """A stage's training-time modality dropout: ``scheme`` (one of :data:`SCHEMES`), its
    drop probability ``p`` (``bernoulli`` only) and ``warmup``, the fraction of the stage's
    epochs trained undropped first."""

    scheme: str = "uniform-count"
    p: float = 0.5
    warmup: float = 0.0

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ConfigError(
                f"modality dropout scheme {self.scheme!r} is not valid: choose one of "
                f"{', '.join([*SCHEMES, NONE])}"
            )
        if not 0.0 <= self.p < 1.0:
            raise ConfigError(f"modality dropout p = {self.p} is outside [0, 1): give e.g. 0.5")
        if not 0.0 <= self.warmup < 1.0:
            raise ConfigError(
                f"modality dropout warm-up {self.warmup} is outside [0, 1): give the fraction "
                "of the stage's epochs to train undropped, e.g. 0.4"
            )

    def warmup_epochs(self, epochs: int) -> int:
        return round(self.warmup * epochs)

    def keep(self, present: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(n, M) bool: the modalities each sample keeps, a subset of ``present`` that is
        non-empty wherever ``present`` is."""
        return SCHEMES[self.scheme](np.asarray(present, dtype=bool), rng, self.p)


def declared(scheme: str, p: float = 0.5, warmup: float = 0.0) -> ModalityDropout | None:
    """A method's hyper-parameter turned into its stage's dropout; ``'none'`` declares none."""
    return None if scheme == NONE else ModalityDropout(scheme, p, warmup)


def dropout_generator(seed: int) -> np.random.Generator:
    """The cell's dropout stream: independent of every other stream seeded from ``seed``."""
    return np.random.default_rng(np.random.SeedSequence([STREAM, seed]))


__all__ = ["NONE", "SCHEMES", "ModalityDropout", "declared", "dropout_generator"]
