"""Seed axes: which seed drives which source of a cell's randomness.

A cell's randomness has three sources, each an *axis* a grid may vary on its own:

- ``init``: model initialisation and the order of training batches (and every other draw
  of the training loop): the cell's ``seed``;
- ``masks``: the missingness masks (:mod:`bench.protocol`): ``CellSpec.mask_seed`` when the
  grid separates the axes, else the cell's ``seed``;
- ``data``: the samples themselves: the dataset's own seed option, the first of
  :data:`DATA_SEED_OPTIONS` its card has (synthetic-retina's ``data_seed`` draws new
  training, validation and test samples from the generator; a real card's ``split_seed``
  draws a new seeded split), else fixed.

By default (no axes) one seed drives init and masks together and the data stay the card's,
as they always have, and cell hashes are unchanged. A grid with ``seed_axes`` is the full
factorial of the listed axes, each ranging over the seeds; an axis not listed is held at
one value (init and masks: the first seed; data: the card's default). Such cells carry
their axis seeds as run tags (:data:`AXIS_TAGS`), so that runs differing only in their mask
or data seed are told apart (:data:`REPLICATE_COLUMNS`) and the variance can be split by
axis (:mod:`bench.report.variance`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bench.errors import ConfigError
from bench.spec import DATA_SEED_OPTIONS, CellSpec, data_seed_option

SEED_AXES = ("init", "masks", "data")
AXIS_TAGS = {"masks": "seed_masks", "data": "seed_data"}  # init is the cell's `seed` tag
REPLICATE_COLUMNS = ("seed", *AXIS_TAGS.values())


def axis_levels(
    axes: Sequence[str] | Mapping[str, Sequence[int]], seeds: Sequence[int]
) -> dict[str, list[int | None]]:
    """The seeds each axis takes in the factorial: a listed axis ranges over ``seeds`` (or,
    for a mapping, over its own list), an unlisted one is held at ``seeds[0]`` (init, masks)
    or at the card's default, None (data)."""
    given = dict(axes) if isinstance(axes, Mapping) else dict.fromkeys(axes)
    unknown = sorted(set(given) - set(SEED_AXES))
    if unknown:
        raise ConfigError(
            f"unknown seed axis {', '.join(map(repr, unknown))}: choose from "
            f"{', '.join(SEED_AXES)}, e.g. --seed-axes init,masks,data"
        )
    levels: dict[str, list[int | None]] = {
        "init": [seeds[0]],
        "masks": [seeds[0]],
        "data": [None],
    }
    for axis, values in given.items():
        values = list(seeds) if values is None else list(values)
        if not values or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in values
        ):
            raise ConfigError(
                f"seed axis {axis!r} needs non-negative integer seeds, got {values!r}: "
                f"write e.g. seed_axes: {{{axis}: [0, 1, 2]}}"
            )
        levels[axis] = values
    return levels


def factorial(levels: Mapping[str, list[int | None]]) -> list[tuple[int, int, int | None]]:
    """Every (init, masks, data) seed triple of the factorial over ``levels``."""
    return list(itertools.product(levels["init"], levels["masks"], levels["data"]))


def with_data_seed(options: Mapping[str, Any], dataset: str, seed: int | None) -> dict[str, Any]:
    """``options`` with the dataset's seed option set to ``seed`` (unchanged for None)."""
    if seed is None:
        return dict(options)
    option = data_seed_option(options)
    if option is None:
        raise ConfigError(
            f"dataset {dataset!r} has no seed option ({' or '.join(DATA_SEED_OPTIONS)}) to vary: "
            "drop 'data' from seed_axes for it"
        )
    return {**options, option: seed}


def axis_tags(spec: CellSpec) -> dict[str, str]:
    """The run tags of a cell whose grid separates the seed axes (none otherwise): its mask
    seed and its data seed (empty when the dataset has no seed option)."""
    if spec.mask_seed is None:
        return {}
    data = spec.data_seed
    return {
        AXIS_TAGS["masks"]: str(spec.mask_seed),
        AXIS_TAGS["data"]: "" if data is None else str(data),
    }


def replicate_columns(columns: Iterable[str]) -> list[str]:
    """The columns of a runs frame that identify a replicate of a (method, dataset, rate):
    the seed, and the axis seeds where the frame has them."""
    present = set(columns)
    return [c for c in REPLICATE_COLUMNS if c in present]
