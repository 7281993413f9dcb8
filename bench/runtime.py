"""Seeding and device choice: the two pieces of global state a run has to pin down."""

from __future__ import annotations

import random

import numpy as np
import torch

from bench.errors import ConfigError


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks cuda > mps > cpu; an explicit device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
    }
    if not available.get(name, False):
        raise ConfigError(f"device {name!r} is not available here: use --device auto or cpu")
    return torch.device(name)
