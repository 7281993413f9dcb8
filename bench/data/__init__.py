"""Datasets: cards, their adapters, and three labelled splits of uint8 images in memory.

``load_dataset`` reads a card (:mod:`bench.data.cards`), builds the adapter it names from
the registry :data:`ADAPTERS` with the card's resolved options, and loads the splits
(:mod:`bench.data.adapter`). Splits are fixed by the card and its options, never by the
cell's seed.
"""

from __future__ import annotations

from pathlib import Path

from bench.data.adapter import (
    ADAPTERS,
    DatasetAdapter,
    DiskAdapter,
    adapter_for,
    dataset_info,
    register_adapter,
)
from bench.data.cards import Card, all_cards, get_card, load_priors
from bench.data.dataset import LoadedDataset, Split, save_arrays_atomically
from bench.spec import DatasetRef


def load_dataset(ref: DatasetRef, cache_dir: Path) -> LoadedDataset:
    """Load the dataset a cell names, through its card's adapter."""
    return adapter_for(ref.name, dict(ref.options)).load(Path(cache_dir))


__all__ = [
    "ADAPTERS",
    "Card",
    "DatasetAdapter",
    "DiskAdapter",
    "LoadedDataset",
    "Split",
    "adapter_for",
    "all_cards",
    "dataset_info",
    "get_card",
    "load_dataset",
    "load_priors",
    "register_adapter",
    "save_arrays_atomically",
]
