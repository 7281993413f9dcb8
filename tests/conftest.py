"""Shared fixtures: a tiny synthetic-retina so that whole grids run in seconds on CPU."""

from __future__ import annotations

import pytest
import torch

from bench.data import load_dataset
from bench.spec import DatasetRef

TINY_OPTIONS = {"image_size": 32, "n_train": 80, "n_test": 40, "val_fraction": 0.25}
TINY_SETS = [f"dataset_options.synthetic-retina.{k}={v}" for k, v in TINY_OPTIONS.items()]


@pytest.fixture(autouse=True)
def _single_thread():
    torch.set_num_threads(1)  # two xdist workers share two cores


@pytest.fixture(scope="session")
def tiny_ref() -> DatasetRef:
    return DatasetRef.of("synthetic-retina", TINY_OPTIONS)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory, tiny_ref):
    return load_dataset(tiny_ref, tmp_path_factory.mktemp("cache"))


def run_args(results_dir, *extra: str) -> list[str]:
    """``bench run`` arguments for a fast grid on the tiny dataset."""
    args = ["run", "--results-dir", str(results_dir), "--epochs", "2", "--experiment", "t"]
    for item in TINY_SETS:
        args += ["--set", item]
    return args + list(extra)
