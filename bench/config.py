"""Run configuration: defaults < YAML file < command-line flags < ``--set key=value``.

Every key is checked against :data:`DEFAULTS`; ``hparams.<method>.<name>`` and
``dataset_options.<dataset>.<name>`` are checked against the method's constructor and the
dataset card. ``expand`` turns a configuration into the grid of :class:`CellSpec`.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import yaml

from bench.data import get_card
from bench.errors import ConfigError
from bench.interface import METHODS, check_hparams, hparam_names
from bench.spec import CellSpec, DatasetRef, MissingSpec, TrainSpec, flatten

DEFAULTS: dict[str, Any] = {
    "experiment": "default",
    "results_dir": "results",
    "methods": ["all"],
    "datasets": ["synthetic-retina"],
    "rates": [0.2, 0.4, 0.6, 0.8],
    "seeds": [0, 1, 2],
    "missing": {f.name: f.default for f in fields(MissingSpec) if f.name != "rate"},
    "train": asdict(TrainSpec()),
    "hparams": {},  # method (or '*' for every method that accepts it) -> {name: value}
    "dataset_options": {},  # dataset -> {option: value}
    "frozen_backbone": {"name": None, "pretrained": None},  # features computed once, cached
    "retry_failed": False,
    "tracking_uri": None,  # None: $BENCH_TRACKING_URI, else <results_dir>/mlflow.db
}
FREE_FORM = ("hparams", "dataset_options")  # their sub-keys are checked later


def parse_value(text: str) -> Any:
    """``'1e-3'`` -> 0.001, ``'3'`` -> 3, ``'[a, b]'`` -> list, ``'true'`` -> True."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return yaml.safe_load(text)


def _check_keys(tree: dict[str, Any], where: str) -> None:
    valid = sorted(flatten({k: v for k, v in DEFAULTS.items() if k not in FREE_FORM}))
    for key in flatten(tree):
        root = key.split(".")[0]
        if root in FREE_FORM:
            continue
        if key not in valid and root not in ("methods", "datasets", "rates", "seeds"):
            raise ConfigError(
                f"unknown config key {key!r} in {where}: valid keys are "
                + ", ".join(valid + [f"{k}.<name>.<key>" for k in FREE_FORM])
            )


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist: check the path")
    with path.open() as fh:
        raw = yaml.safe_load(fh) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values")
    _check_keys(raw, str(path))
    return raw


def load_hparams_file(path: str | Path) -> dict[str, Any]:
    """The ``hparams`` and ``train`` keys of a file for ``bench run --hparams``."""
    data = load_config_file(path)
    extra = sorted(set(data) - {"hparams", "train"})
    if extra:
        raise ConfigError(
            f"--hparams file {path} holds {', '.join(extra)}: it may hold only hparams and "
            "train; pass the rest with --config"
        )
    return data


def parse_assignments(items: list[str], flag: str, example: str) -> dict[str, Any]:
    """``['a=1', 'b=x']`` -> ``{'a': 1, 'b': 'x'}`` (values as :func:`parse_value`), for flat
    ``KEY=VALUE`` flags such as ``bench profile --set``; ``example`` shows the form."""
    parsed = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} needs KEY=VALUE, like {example}: got {item!r}")
        parsed[key.strip()] = parse_value(text)
    return parsed


def apply_sets(config: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` assignments."""
    for item in assignments:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r} is not key=value: write e.g. --set train.lr=3e-4")
        tree: dict[str, Any] = {}
        node = tree
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = parse_value(text)
        _check_keys(tree, "--set")
        config = _merge(config, tree)
    return config


def resolve(file: str | None, flags: dict[str, Any], sets: list[str]) -> dict[str, Any]:
    config = copy.deepcopy(DEFAULTS)
    if file:
        config = _merge(config, load_config_file(file))
    config = _merge(config, {k: v for k, v in flags.items() if v is not None})
    return apply_sets(config, sets)


def expand_methods(selectors: list[str]) -> list[str]:
    out: list[str] = []
    for selector in selectors:
        names = METHODS.defaults() if selector == "all" else METHODS.expand(selector)
        out += [n for n in names if n not in out]
    return out


def _as_list(value: Any, what: str) -> list[Any]:
    items = value if isinstance(value, list | tuple) else [value]
    if not items:
        raise ConfigError(f"{what} is empty: give at least one")
    return list(items)


def _hparams_for(method: str, hparams: dict[str, Any]) -> dict[str, Any]:
    cls, fixed = METHODS.resolve(method)
    accepted = set(hparam_names(cls)) - set(fixed)
    shared = {k: v for k, v in (hparams.get("*") or {}).items() if k in accepted}
    base = method.partition(":")[0]
    return {**shared, **(hparams.get(base) or {}), **(hparams.get(method) or {})}


def expand(config: dict[str, Any]) -> list[CellSpec]:
    """Every (method, dataset, rate, seed) cell, validated before anything runs."""
    methods = expand_methods([str(m) for m in _as_list(config["methods"], "methods")])
    hparams = config["hparams"] or {}
    for key in hparams:
        if key != "*":
            METHODS.resolve(key) if ":" in key else METHODS.entry(key)
    for key in hparams.get("*") or {}:
        if not any(key in hparam_names(METHODS.resolve(m)[0]) for m in methods):
            raise ConfigError(f"no selected method has a hyper-parameter {key!r}: check hparams.*")
    per_method = {m: _hparams_for(m, hparams) for m in methods}
    for method, values in per_method.items():
        check_hparams(method, values)

    datasets = []
    for name in _as_list(config["datasets"], "datasets"):
        card = get_card(str(name))
        options = card.resolve_options((config["dataset_options"] or {}).get(card.name) or {})
        datasets.append(DatasetRef.of(card.name, options))

    frozen = config["frozen_backbone"] or {}
    frozen_items = tuple(sorted(frozen.items())) if frozen.get("name") else ()
    if frozen_items:
        for method, values in per_method.items():
            clash = sorted({"backbone", "feature_dim", "pretrained"} & set(values))
            if clash:
                raise ConfigError(
                    f"{method} sets {', '.join(clash)} but frozen_backbone.name is set: the "
                    "frozen backbone decides them; drop one of the two"
                )
    train = TrainSpec(**config["train"])
    missing = [
        MissingSpec(rate=_rate(r), **config["missing"]) for r in _as_list(config["rates"], "rates")
    ]
    seeds = [_seed(s) for s in _as_list(config["seeds"], "seeds")]
    return [
        CellSpec(
            method,
            dataset,
            miss,
            train,
            seed,
            tuple(sorted(per_method[method].items())),
            frozen_items,
        )
        for dataset in datasets
        for miss in missing
        for method in methods
        for seed in seeds
    ]


def _rate(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"missing rate {value!r} is not a number: give fractions like 0.2,0.4")
    return float(value)


def _seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"seed {value!r} is not a non-negative integer: give e.g. --seeds 0,1,2")
    return value
