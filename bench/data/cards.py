"""Dataset cards: YAML files in the top-level ``datasets/`` folder (data, not code).

A card names its adapter (``bench/data/<adapter>.py``), classes, modalities, default
options, citation, licence and where to obtain the data. ``BENCH_DATASETS_DIR`` points
the harness at another folder of cards.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from bench.errors import ConfigError, UnknownNameError

REQUIRED = ("name", "summary", "adapter", "classes", "modalities", "options")


def cards_dir() -> Path:
    override = os.environ.get("BENCH_DATASETS_DIR")
    return Path(override) if override else Path(__file__).resolve().parents[2] / "datasets"


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


def _parse(path: Path) -> Card:
    with path.open() as fh:
        raw = yaml.safe_load(fh)
    missing = [key for key in REQUIRED if key not in (raw or {})]
    if missing:
        raise ConfigError(f"dataset card {path} lacks {', '.join(missing)}: add them")
    known = set(REQUIRED) | {"priors"}
    return Card(
        name=raw["name"],
        summary=raw["summary"],
        adapter=raw["adapter"],
        classes=dict(raw["classes"]),
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
        if path.name.endswith(".priors.yaml"):
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


def load_priors(card: Card) -> dict[str, dict[str, str]]:
    """Per class key: {'naive', 'step1', 'cot'} texts, or {} when the card has none."""
    if not card.priors_file:
        return {}
    path = card.path.parent / card.priors_file
    if not path.is_file():
        return {}
    with path.open() as fh:
        raw = yaml.safe_load(fh) or {}
    return {key: dict(texts) for key, texts in (raw.get("classes") or {}).items()}
