"""Frozen, hashable specifications: a cell of the grid is one :class:`CellSpec`.

The cell's stable hash identifies it in the tracking store: a FINISHED run carrying the
hash means the cell is done. The device and the data's folder (dataset option ``root``)
say where a cell runs, not what it is, so they are left out of the hash: a grid started
on CPU can be resumed on GPU, and a dataset copy can move.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from bench.errors import ConfigError

MECHANISMS = ("mcar", "mnar-class", "released")
MODALITY_CHOICES = ("either", "m1", "m2", "m3")
APPLY_TO = ("both", "train", "test")
OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("cosine", "none")
DEVICES = ("auto", "cpu", "cuda", "mps")
HASH_VERSION = 1
DATA_SEED_OPTIONS = ("data_seed", "split_seed")  # a dataset option that seeds its samples


def _choice(value: str, valid: tuple[str, ...], what: str) -> None:
    if value not in valid:
        raise ConfigError(f"{what} {value!r} is not valid: choose one of {', '.join(valid)}")


def _frozen(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return _frozen_items(value)
    return value


def _frozen_items(mapping: dict[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    """A hashable, order-independent form of a mapping (lists become tuples)."""
    return tuple(sorted((k, _frozen(v)) for k, v in (mapping or {}).items()))


@dataclass(frozen=True)
class MissingSpec:
    """How modalities go missing (:mod:`bench.protocol`; bench/README.md, "Evaluation protocol")."""

    rate: float = 0.0
    mechanism: str = "mcar"
    modality: str = "either"
    apply_to: str = "both"

    def __post_init__(self) -> None:
        if not isinstance(self.rate, int | float) or not (0.0 <= self.rate < 1.0):
            raise ConfigError(
                f"missing rate {self.rate!r} is outside [0, 1): give a fraction such as 0.4"
            )
        _choice(self.mechanism, MECHANISMS, "missingness mechanism")
        _choice(self.modality, MODALITY_CHOICES, "missing modality")
        _choice(self.apply_to, APPLY_TO, "apply_to")


@dataclass(frozen=True)
class TrainSpec:
    """The shared training recipe. ``monitor`` is the validation metric for model selection."""

    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    scheduler: str = "cosine"
    patience: int = 0  # epochs without improvement before stopping; 0 = never stop early
    monitor: str = "f1_macro"
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    amp: bool = True  # mixed precision, used on CUDA only
    device: str = field(default="auto", compare=False)

    def __post_init__(self) -> None:
        from bench.metrics import metric_keys

        for name in ("epochs", "batch_size", "patience"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"train.{name} must be a non-negative integer, got {value!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("train.epochs and train.batch_size must be at least 1")
        for name in ("lr", "weight_decay", "grad_clip"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"train.{name} must be a finite number >= 0, got {value!r}")
        _choice(self.optimizer, OPTIMIZERS, "train.optimizer")
        _choice(self.scheduler, SCHEDULERS, "train.scheduler")
        _choice(self.monitor, metric_keys(), "train.monitor")
        _choice(self.device, DEVICES, "device")


@dataclass(frozen=True)
class DatasetRef:
    """A dataset by name, with its generation or loading options (``image_size``...)."""

    name: str
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, name: str, options: dict[str, Any] | None = None) -> DatasetRef:
        return cls(name, _frozen_items(options))


@dataclass(frozen=True)
class CellSpec:
    """One cell: method x dataset x missingness x seed, with its training recipe.

    ``seed`` drives model initialisation, batch order and, unless ``mask_seed`` is given
    (a grid that varies the seed axes apart, :mod:`bench.seeds`), the missingness masks.
    ``method_version`` is the method class's ``version``: a method whose results changed gets
    new cell hashes, so that runs of its earlier code are not taken for done.
    """

    method: str
    dataset: DatasetRef
    missing: MissingSpec
    train: TrainSpec
    seed: int
    hparams: tuple[tuple[str, Any], ...] = ()
    frozen_backbone: tuple[tuple[str, Any], ...] = ()  # (name, pretrained) when features are frozen
    mask_seed: int | None = None  # the masks' own seed when the grid separates the seed axes
    method_version: int = 1  # the method's ``version`` (bench.interface.Method): its code's era

    def __post_init__(self) -> None:
        seeds = {"seed": self.seed, "mask_seed": self.mask_seed}
        for name, value in seeds.items():
            if value is None and name == "mask_seed":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{name} {value!r} is not a non-negative integer")

    @property
    def masks_seed(self) -> int:
        """The seed of the missingness masks: ``mask_seed`` if set, else ``seed``."""
        return self.seed if self.mask_seed is None else self.mask_seed

    @property
    def data_seed(self) -> Any:
        """The value of the dataset's seed option (:data:`DATA_SEED_OPTIONS`), else None."""
        options = dict(self.dataset.options)
        option = data_seed_option(options)
        return None if option is None else options[option]

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (for params, YAML and hashing)."""
        out = asdict(self)
        out["dataset"] = {"name": self.dataset.name, "options": dict(self.dataset.options)}
        out["hparams"] = dict(self.hparams)
        out["frozen_backbone"] = dict(self.frozen_backbone)
        if not self.frozen_backbone:
            del out["frozen_backbone"]  # keeps the hashes of ordinary cells as they were
        if self.mask_seed is None:
            del out["mask_seed"]  # likewise for cells whose seed drives the masks too
        if self.method_version == 1:
            del out["method_version"]  # and for methods whose results never changed
        return out

    @property
    def hash(self) -> str:
        """Stable 16-hex-digit identity over every field that changes the result."""
        identity = self.to_dict()
        for f in fields(TrainSpec):
            if not f.compare:
                identity["train"].pop(f.name)
        identity["dataset"]["options"].pop("root", None)
        identity["hash_version"] = HASH_VERSION
        blob = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        axes = "" if self.mask_seed is None else f" masks={self.mask_seed} data={self.data_seed}"
        return (
            f"{self.method} | {self.dataset.name} | r={self.missing.rate:g} | "
            f"seed={self.seed}{axes}"
        )


def data_seed_option(options: Any) -> str | None:
    """The option (among ``options``' names) that seeds a dataset's samples or split, or None."""
    names = set(options)
    return next((name for name in DATA_SEED_OPTIONS if name in names), None)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{'a': {'b': 1}}`` -> ``{'a.b': 1}``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out
