"""Splits of a scanned copy: official index files, and seeded, stratified, unit-level splits.

Splits are fixed by the card's options (``split_seed``, ``test_fraction``,
``val_fraction``), never by a cell's seed, and drawn per unit (an eye, a case) so that no
unit is in two splits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.options import fraction, integer
from bench.data.scan import Sample, ScanLog, read_table

SEEDED_SPLIT_OPTIONS = ("split_seed", "test_fraction", "val_fraction")


def check_seeded_split_options(options: dict[str, Any], dataset: str) -> None:
    """The options of :func:`assign_splits`: a seed and two fractions in (0, 1)."""
    integer(options, "split_seed", dataset, 0)
    for name in SEEDED_SPLIT_OPTIONS[1:]:
        fraction(options, name, dataset)


def stratified_holdout(
    units: Sequence[str], labels: Sequence[str], share: float, seed: int, stream: int
) -> set[str]:
    """Units (eyes, cases) drawn for a held-out part, stratified by label.

    round(share * n) units in all, shared among classes by largest remainder so that
    every class keeps its proportion; deterministic in (seed, stream) and independent of
    the order of ``units``.
    """
    by_class: dict[str, list[str]] = defaultdict(list)
    for unit, label in sorted(zip(units, labels, strict=True)):
        by_class[label].append(unit)
    classes = sorted(by_class)
    exact = [share * len(by_class[c]) for c in classes]
    take = [int(np.floor(e)) for e in exact]
    extra = round(share * len(units)) - sum(take)
    by_remainder = sorted(range(len(classes)), key=lambda i: (take[i] - exact[i], classes[i]))
    for i in by_remainder[: max(0, extra)]:
        take[i] += 1
    rng = np.random.default_rng([seed, stream])
    held: set[str] = set()
    for name, count in zip(classes, take, strict=True):
        members = by_class[name]
        held.update(members[j] for j in rng.permutation(len(members))[:count])
    return held


def assign_splits(
    samples: list[Sample], options: dict[str, Any], dataset: str, *, test: bool
) -> list[Sample]:
    """Seeded, stratified, unit-level splits.

    ``test=True``: every sample is unassigned; ``test_fraction`` of the units become test
    and ``val_fraction`` of the rest validation. ``test=False``: the layout gave train and
    test; ``val_fraction`` of the training units become validation (unless a val split
    exists already). Unknown labels stay where they are (they block loading anyway).
    """
    seed = int(options["split_seed"])
    out = list(samples)

    def units_of(split: str) -> dict[str, str]:
        found: dict[str, str] = {}
        for s in out:
            if s.split == split and s.label is not None:
                found.setdefault(s.unit, s.label)
        return found

    if test:
        pool = units_of("")
        held = stratified_holdout(
            list(pool), list(pool.values()), fraction(options, "test_fraction", dataset), seed, 0
        )
        out = [replace(s, split="test" if s.unit in held else "train") for s in out]
    if test or not any(s.split == "val" for s in out):
        pool = units_of("train")
        held = stratified_holdout(
            list(pool), list(pool.values()), fraction(options, "val_fraction", dataset), seed, 1
        )
        out = [replace(s, split="val") if s.split == "train" and s.unit in held else s for s in out]
    return out


def index_splits(
    folder: Path, files: dict[str, str], rows: int, dataset: str, log: ScanLog
) -> dict[int, str]:
    """Row -> split from index files (column ``indexes``: row numbers of the main table)."""
    split_of: dict[int, str] = {}
    for split, filename in files.items():
        path = folder / filename
        if not path.is_file():
            log.add("missing_file", str(path), f"the {split} index is missing")
            continue
        for line, value in enumerate(read_table(path, ["indexes"], dataset)["indexes"], 2):
            where = f"{filename} line {line}"
            try:
                row = int(str(value).strip())
            except ValueError:
                log.add("bad_index", where, f"{value!r} is not a row number")
                continue
            if not 0 <= row < rows:
                log.add("bad_index", where, f"row {row} is outside the table (0..{rows - 1})")
            elif row in split_of:
                log.add("bad_index", where, f"row {row} is in {split_of[row]} and {split}")
            else:
                split_of[row] = split
    return split_of
