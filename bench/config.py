"""Run configuration: defaults < preset < YAML file < tuned hparams < command-line flags <
``--set key=value``.

A preset is a YAML config shipped with the package (``bench/presets/<name>.yaml``, e.g.
``kedr-paper``), read like a config file and applied first, so that ``--config``, flags and
``--set`` adjust it. Every key is checked against :data:`DEFAULTS`; ``hparams.<method>.<name>`` and
``dataset_options.<dataset>.<name>`` are checked against the method's constructor and the
dataset card. ``expand`` turns a configuration into the grid of :class:`CellSpec`.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, fields
from importlib.resources import files
from pathlib import Path
from typing import Any

from bench.data import get_card
from bench.encoders import EncoderArgs
from bench.errors import ConfigError, UnknownNameError
from bench.files import parse_yaml, read_mapping
from bench.interface import METHODS, check_hparams, hparam_names
from bench.seeds import axis_levels, factorial, with_data_seed
from bench.spec import CellSpec, DatasetRef, MissingSpec, TrainSpec, flatten

DEFAULTS: dict[str, Any] = {
    "experiment": "default",
    "results_dir": "results",
    "methods": ["all"],
    "datasets": ["synthetic-retina"],
    "rates": [0.2, 0.4, 0.6, 0.8],
    "seeds": [0, 1, 2],
    "seed_axes": [],  # e.g. [init, masks, data]: vary these apart, as a factorial (bench.seeds)
    "missing": {f.name: f.default for f in fields(MissingSpec) if f.name != "rate"},
    "train": asdict(TrainSpec()),
    "hparams": {},  # method (or '*' for every method that accepts it) -> {name: value}
    "dataset_options": {},  # dataset -> {option: value}
    "frozen_backbone": {"name": None, "pretrained": None},  # features computed once, cached
    "retry_failed": False,
    "tracking_uri": None,  # None: $BENCH_TRACKING_URI, else <results_dir>/mlflow.db
}
FREE_FORM = ("hparams", "dataset_options")  # their sub-keys are checked later


def parse_value(text: str, where: str = "the value") -> Any:
    """``'1e-3'`` -> 0.001, ``'3'`` -> 3, ``'[a, b]'`` -> list, ``'true'`` -> True; text that
    is not valid YAML is a ConfigError naming ``where``."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return parse_yaml(text, where)


def _check_keys(tree: dict[str, Any], where: str) -> None:
    valid = sorted(flatten({k: v for k, v in DEFAULTS.items() if k not in FREE_FORM}))
    for key in flatten(tree):
        root = key.split(".")[0]
        if root in FREE_FORM:
            continue
        if key not in valid and root not in ("methods", "datasets", "rates", "seeds", "seed_axes"):
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


def load_config_file(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """A YAML file of config keys, checked (:func:`check_config_types`); a malformed file is a
    one-line ConfigError with the file and line (:mod:`bench.files`)."""
    raw = read_mapping(path, what)
    check_config_types(raw, f"{what} {path}")
    _check_keys(raw, f"{what} {path}")
    return raw


def presets_dir() -> Path:
    """The folder of the shipped presets (package data of ``bench``)."""
    return Path(str(files("bench"))) / "presets"


def preset_names() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.yaml"))


def load_preset(name: str) -> dict[str, Any]:
    """The shipped preset ``name``, checked like a config file."""
    path = presets_dir() / f"{name}.yaml"
    if not path.is_file():
        raise UnknownNameError(
            f"unknown preset {name!r}: choose one of {', '.join(preset_names()) or 'none'}"
        )
    return load_config_file(path, "preset")


def load_hparams_file(path: str | Path) -> dict[str, Any]:
    """The ``hparams`` and ``train`` keys of a file for ``bench run --hparams``."""
    data = load_config_file(path, "--hparams file")
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
        node[leaf] = parse_value(text, f"--set {item}")
        check_config_types(tree, f"--set {item}")
        _check_keys(tree, "--set")
        config = _merge(config, tree)
    return config


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_section(name: str, value: Any, where: str) -> None:
    """``name`` (``train``, ``missing``, ``frozen_backbone``) is a mapping whose booleans and
    strings have the type of their default; the other values are checked by the specs."""
    if not isinstance(value, dict):
        example = ", ".join(f"{k}: {v}" for k, v in list(DEFAULTS[name].items())[:2])
        raise ConfigError(
            f"{name} in {where} must be a mapping, like {name}: {{{example}}}: got {_kind(value)}"
        )
    for key, given in value.items():
        default = DEFAULTS[name].get(key)
        if isinstance(default, bool) and not isinstance(given, bool):
            raise ConfigError(f"{name}.{key} in {where} must be true or false: got {given!r}")
        if name == "frozen_backbone" and not (given is None or isinstance(given, str)):
            raise ConfigError(
                f"frozen_backbone.{key} in {where} must be a name or a path: got {given!r}"
            )
        if isinstance(default, str) and not isinstance(given, str):
            raise ConfigError(
                f"{name}.{key} in {where} must be a string like {default!r}: got {given!r}"
            )


def _check_free_form(name: str, value: Any, where: str) -> None:
    """``hparams`` / ``dataset_options``: a mapping of names to mappings of values."""
    example = "moddrop: {drop_prob: 0.5}" if name == "hparams" else "csv: {image_size: 64}"
    if not isinstance(value, dict):
        raise ConfigError(
            f"{name} in {where} must be a mapping, like {name}: {{{example}}}: got {_kind(value)}"
        )
    for owner, entries in value.items():
        if not isinstance(owner, str) or not (entries is None or isinstance(entries, dict)):
            raise ConfigError(
                f"{name}.{owner} in {where} must map option names to values, like "
                f"{name}: {{{example}}}: got {_kind(entries)}"
            )


def check_config_types(tree: dict[str, Any], where: str) -> None:
    """The shape of every key of ``tree`` (a config file, ``--set`` or the merged config),
    so that no later step meets a list where it expects a mapping; one ConfigError line."""
    for key, value in tree.items():
        if key in ("train", "missing", "frozen_backbone"):
            _check_section(key, value, where)
        elif key in FREE_FORM:
            _check_free_form(key, value, where)
        elif key in ("experiment", "results_dir") and (not isinstance(value, str) or not value):
            raise ConfigError(f"{key} in {where} must be a non-empty string: got {value!r}")
        elif key == "retry_failed" and not isinstance(value, bool):
            raise ConfigError(f"retry_failed in {where} must be true or false: got {value!r}")


def resolve(
    file: str | None, flags: dict[str, Any], sets: list[str], preset: str | None = None
) -> dict[str, Any]:
    """The run configuration, merged in the order of the module docstring (tuned hparams
    arrive among ``flags``)."""
    config = copy.deepcopy(DEFAULTS)
    if preset:
        config = _merge(config, load_preset(preset))
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
            clash = sorted({f.name for f in fields(EncoderArgs)} & set(values))
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
    replicates = _replicates(config.get("seed_axes") or [], seeds, datasets)
    return [
        CellSpec(
            method,
            data,
            miss,
            train,
            seed,
            tuple(sorted(per_method[method].items())),
            frozen_items,
            mask_seed,
            METHODS.resolve(method)[0].version,
        )
        for dataset in datasets
        for miss in missing
        for method in methods
        for seed, mask_seed, data in replicates[dataset]
    ]


def _replicates(
    axes: Any, seeds: list[int], datasets: list[DatasetRef]
) -> dict[DatasetRef, list[tuple[int, int | None, DatasetRef]]]:
    """Per dataset, each replicate's (seed, mask seed, dataset with its data seed): one per
    seed when no seed axis is given (the seed drives init and masks, as it always has), else
    the factorial of the axes (:mod:`bench.seeds`)."""
    if not axes:
        return {ref: [(seed, None, ref) for seed in seeds] for ref in datasets}
    if not isinstance(axes, list | tuple | dict):
        raise ConfigError(
            f"seed_axes must be a list such as [init, masks, data] or a mapping of axis to "
            f"seeds, got {axes!r}"
        )
    levels = axis_levels(axes if isinstance(axes, dict) else [str(a) for a in axes], seeds)
    out = {}
    for ref in datasets:
        out[ref] = [
            (
                init,
                masks,
                DatasetRef.of(ref.name, with_data_seed(dict(ref.options), ref.name, data)),
            )
            for init, masks, data in factorial(levels)
        ]
    return out


def _rate(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"missing rate {value!r} is not a number: give fractions like 0.2,0.4")
    return float(value)


def _seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"seed {value!r} is not a non-negative integer: give e.g. --seeds 0,1,2")
    return value
