"""Dataset cards: YAML files, like lm-evaluation-harness's task configs (data, not code).

A card names its adapter by registry name (:data:`bench.data.adapter.ADAPTERS`), its
classes, modalities, default options, citation, licence and where to obtain the data. The
cards ship with the package (``datasets/`` in the repository, see :mod:`bench.resources`);
``BENCH_DATASETS_DIR`` points the harness at another folder of cards instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from bench.errors import ConfigError, UnknownNameError
from bench.files import read_mapping, read_yaml
from bench.resources import shipped_dir

REQUIRED = ("name", "summary", "adapter", "classes", "modalities", "options")


def cards_dir() -> Path:
    """``$BENCH_DATASETS_DIR`` when set, else the cards shipped with kedr-bench."""
    override = os.environ.get("BENCH_DATASETS_DIR")
    if not override:
        return shipped_dir("datasets")
    folder = Path(override).expanduser()
    if not folder.is_dir():
        raise ConfigError(
            f"BENCH_DATASETS_DIR={override} is not a folder: point it at a folder of dataset "
            "cards or unset it"
        )
    return folder


@dataclass(frozen=True)
class Card:
    """A parsed dataset card."""

    name: str
    summary: str
    adapter: str
    classes: dict[str, str]  # key -> display name, in label order
    modalities: tuple[dict[str, Any], ...]  # each {name, channels}
    options: dict[str, Any]  # defaults; a run may override any of them, and only them
    path: Path
    priors_file: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # citation, licence, obtain, ...

    def resolve_options(self, overrides: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(overrides) - set(self.options))
        if unknown:
            raise ConfigError(
                f"dataset {self.name!r} has no option {', '.join(map(repr, unknown))}: "
                f"valid options are {', '.join(sorted(self.options))}"
            )
        return {**self.options, **overrides}


def _is_modality(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and {"name", "channels"} <= set(entry)
        and isinstance(entry["channels"], int)
        and not isinstance(entry["channels"], bool)
        and entry["channels"] >= 1
    )


def _parse(path: Path) -> Card:
    raw = read_yaml(path, "dataset card")
    if not isinstance(raw, dict):
        raise ConfigError(
            f"dataset card {path} is not a YAML mapping: give it the fields {', '.join(REQUIRED)}"
        )
    missing = [key for key in REQUIRED if key not in raw]
    if missing:
        raise ConfigError(f"dataset card {path} lacks {', '.join(missing)}: add them")
    for key, kind in (("classes", dict), ("modalities", list), ("options", dict)):
        if not isinstance(raw[key], kind):
            raise ConfigError(
                f"dataset card {path}: {key} must be a {'mapping' if kind is dict else 'list'}, "
                f"got {type(raw[key]).__name__}: fix the card"
            )
    if not all(_is_modality(m) for m in raw["modalities"]):
        raise ConfigError(
            f"dataset card {path}: each modality needs a name and a number of channels, e.g. "
            "{name: fundus, channels: 3}: fix the card"
        )
    known = set(REQUIRED) | {"priors"}
    return Card(
        name=str(raw["name"]),
        summary=str(raw["summary"]),
        adapter=str(raw["adapter"]),
        classes={str(k): str(v) for k, v in raw["classes"].items()},
        modalities=tuple(raw["modalities"]),
        options=dict(raw["options"]),
        path=path,
        priors_file=raw.get("priors"),
        meta={k: v for k, v in raw.items() if k not in known},
    )


@cache
def _all_cards(folder: Path) -> dict[str, Card]:
    cards = {}
    for path in sorted(folder.glob("*.yaml")):
        if ".priors." in path.name:  # a card's priors, or priors written by bench priors
            continue
        card = _parse(path)
        cards[card.name] = card
    return cards


def all_cards() -> dict[str, Card]:
    return _all_cards(cards_dir())


def get_card(name: str) -> Card:
    cards = all_cards()
    if name not in cards:
        raise UnknownNameError(
            f"unknown dataset {name!r}: choose one of {', '.join(sorted(cards))} "
            f"(cards live in {cards_dir()})"
        )
    return cards[name]


def priors_classes(raw: dict[Any, Any], path: Path) -> dict[str, dict[str, str]]:
    """The ``classes`` of a priors document: class key -> {kind (naive, step1, cot): text};
    any other shape is a one-line ConfigError naming the file and the class."""
    classes = raw.get("classes") or {}
    if not isinstance(classes, dict):
        raise ConfigError(
            f"priors file {path}: classes must map each class key to its texts, like "
            f"classes: {{amd: {{cot: '...'}}}}: got {type(classes).__name__}"
        )
    out = {}
    for key, texts in classes.items():
        if not isinstance(texts, dict) or not all(isinstance(t, str) for t in texts.values()):
            raise ConfigError(
                f"priors file {path}: class {key!r} must map naive, step1 and cot to texts, "
                f"like {key}: {{cot: '...'}}: fix its entry"
            )
        out[str(key)] = {str(kind): text for kind, text in texts.items()}
    return out


def read_priors_file(path: str | Path) -> dict[str, dict[str, str]]:
    """Per class key: {'naive', 'step1', 'cot'} texts of the priors file ``path``."""
    path = Path(path).expanduser()
    return priors_classes(read_mapping(path, "priors file"), path)


def load_priors(card: Card) -> dict[str, dict[str, str]]:
    """Per class key: {'naive', 'step1', 'cot'} texts, or {} when the card has none."""
    if not card.priors_file:
        return {}
    path = card.path.parent / card.priors_file
    if not path.is_file():
        return {}
    return read_priors_file(path)
