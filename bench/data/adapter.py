"""The dataset-adapter interface: how a card's data becomes three labelled splits.

Modelled on lm-evaluation-harness's ``Task`` (a base class, configured by a YAML file) and
on timm's registry of names: a card (:mod:`bench.data.cards`) names its adapter by registry
name, and the adapter is built from the card and its resolved options::

    @register_adapter("my-layout")
    class MyLayout(DiskAdapter):
        OPTIONS = ("split_seed",)          # card options read besides image_size and root
        def check_layout(self, root): ...  # cheap: index readable, columns present
        def scan(self, root): ...          # -> Scan(samples, problems, decoders)

A :class:`DiskAdapter` reads a copy on disk (``root``), scans it into samples and standard
problems (:mod:`bench.data.scan`) and decodes it through the shared cache; a generated
dataset (synthetic-retina) subclasses :class:`DatasetAdapter` directly and reads no disk.
The built-in adapters live in ``bench/data/`` (:mod:`bench.data.builtin` imports them);
another package adds its own through the entry-point group ``bench.datasets`` (its module
registers adapters on import) and points ``BENCH_DATASETS_DIR`` at its cards.
"""

from __future__ import annotations

import abc
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from bench.data.cards import Card, get_card, load_priors
from bench.data.dataset import LoadedDataset
from bench.data.options import integer
from bench.errors import ConfigError, DataError, UnknownNameError
from bench.interface import DatasetInfo
from bench.registry import Registry

if TYPE_CHECKING:
    from bench.data.scan import Scan


class DatasetAdapter(abc.ABC):
    """One kind of dataset, built from a card and its resolved options.

    ``OPTIONS`` names the card options a class reads on top of its bases' (every adapter
    reads ``image_size``, every :class:`DiskAdapter` ``root``); a card that lacks one is
    refused when the adapter is built. A subclass parses its option values in ``__init__``
    (after ``super().__init__``), so that a bad value fails there, before anything is read,
    with a one-line ConfigError.
    """

    OPTIONS: ClassVar[tuple[str, ...]] = ("image_size",)

    def __init__(self, card: Card, options: Mapping[str, Any]) -> None:
        wanted = {name for cls in type(self).__mro__ for name in vars(cls).get("OPTIONS", ())}
        missing = sorted(wanted - set(options))
        if missing:
            raise ConfigError(
                f"dataset card {card.path} lacks option(s) {', '.join(missing)} that adapter "
                f"{card.adapter!r} reads: add them, with their defaults, under options"
            )
        self.card = card
        self.options = dict(options)
        self.image_size = integer(self.options, "image_size", card.name, 1)

    @property
    def name(self) -> str:
        return self.card.name

    def info(self) -> DatasetInfo:
        """What a method may know of the dataset (names, shapes, priors), from the card."""
        return dataset_info(self.card, self.options)

    def check(self) -> DatasetInfo:
        """Check cheaply, without decoding an image, what a run of this dataset needs.

        Meant for a pre-flight before any cell starts (the option values were checked when
        the adapter was built): the source (:meth:`check_source`; for a copy on disk, that
        its root exists and its index or manifest is readable with the columns the layout
        needs), and that the classes and modalities a method will see are not empty. Raises
        a one-line :class:`~bench.errors.ConfigError` (a card or option to fix) or
        :class:`~bench.errors.DataError` (the copy on disk) that says what to fix; returns
        the :class:`DatasetInfo` the run will get. Problems of single samples (a missing or
        corrupt file, an unknown label) are left to :meth:`load` and ``bench data verify``.
        """
        self.check_source()
        info = self.info()
        if not info.classes:
            raise ConfigError(
                f"dataset {self.name!r} has no classes: list them under classes in {self.card.path}"
            )
        if not info.modalities:
            raise ConfigError(
                f"dataset {self.name!r} has no modality: list them under modalities in "
                f"{self.card.path}"
            )
        return info

    @abc.abstractmethod
    def check_source(self) -> None:
        """Check where the samples come from, cheaply (see :meth:`check`)."""

    @abc.abstractmethod
    def load(self, cache_dir: Path) -> LoadedDataset:
        """The three splits, decoded or generated once and cached under ``cache_dir``."""


class DiskAdapter(DatasetAdapter):
    """A dataset read from a copy on disk: ``scan`` lists its samples and problems, ``load``
    decodes the usable samples once through the shared cache (:mod:`bench.data.images`).

    The copy's location is the option ``root``, else ``$BENCH_DATA_<NAME>``.
    """

    OPTIONS = ("root",)

    def root(self) -> Path:
        return resolve_root(self.card, self.options)

    def check_source(self) -> None:
        self.check_layout(self.root())

    @abc.abstractmethod
    def check_layout(self, root: Path) -> None:
        """Raise a DataError unless ``root`` holds this layout's index with its columns
        (read the header only, decode nothing)."""

    @abc.abstractmethod
    def scan(self, root: Path) -> Scan:
        """Every sample found under ``root``, with every problem of the copy."""

    def load(self, cache_dir: Path) -> LoadedDataset:
        return self.scan(self.root()).load(self.info(), Path(cache_dir))


ADAPTERS: Registry[type[DatasetAdapter]] = Registry(
    "dataset adapter", base=DatasetAdapter, builtin="bench.data.builtin", group="bench.datasets"
)
register_adapter = ADAPTERS.register


def adapter_for(name: str, overrides: Mapping[str, Any] | None = None) -> DatasetAdapter:
    """The adapter of dataset card ``name``, with the card's options under ``overrides``."""
    card = get_card(name)
    try:
        adapter = ADAPTERS.entry(card.adapter).obj
    except UnknownNameError as err:
        raise ConfigError(
            f"dataset card {card.path} names adapter {card.adapter!r}, which is not registered: "
            f"use one of {', '.join(ADAPTERS.names())}, or install the package that provides it "
            "(entry-point group bench.datasets)"
        ) from err
    return adapter(card, card.resolve_options(dict(overrides or {})))


def dataset_info(card: Card, options: Mapping[str, Any]) -> DatasetInfo:
    """Names and shapes from the card: its classes, and its first ``options['modalities']``
    modalities (all of them when the card has no such option)."""
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


def env_var(name: str) -> str:
    return "BENCH_DATA_" + re.sub(r"[^A-Z0-9]", "_", name.upper())


def resolve_root(card: Card, options: Mapping[str, Any]) -> Path:
    """The copy's location: option ``root``, else ``BENCH_DATA_<NAME>``; it must exist."""
    value = options.get("root") or os.environ.get(env_var(card.name))
    place = card.meta.get("data_root", "its folder")
    if not value:
        raise DataError(
            f"dataset {card.name!r} is not on this machine: obtain it from "
            f"{card.meta.get('url', 'its publisher')} ({card.meta.get('access', 'see its card')}), "
            f"then pass --data-root {card.name}=PATH to {place} (bench data verify: --root "
            f"PATH) or set {env_var(card.name)}"
        )
    root = Path(str(value)).expanduser().absolute()
    if not root.exists():
        raise DataError(
            f"{card.name} root {root} does not exist: pass --data-root {card.name}=PATH to {place}"
        )
    return root
