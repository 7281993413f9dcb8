"""Checks of a card's option values, each failing in one line that names the fix."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from bench.errors import ConfigError


def choice(options: dict[str, Any], name: str, allowed: Sequence[str], dataset: str) -> str:
    value = str(options[name])
    if value not in allowed:
        raise ConfigError(
            f"dataset {dataset!r} option {name}={value!r} is not valid: choose one of "
            f"{', '.join(allowed)}"
        )
    return value


def fraction(options: dict[str, Any], name: str, dataset: str) -> float:
    value = options[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ConfigError(
            f"dataset {dataset!r} option {name}={value!r} must be a fraction in (0, 1), e.g. 0.2"
        )
    return float(value)


def number(options: dict[str, Any], name: str, dataset: str) -> float:
    """A finite number (the caller checks its range)."""
    value = options[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"dataset {dataset!r} option {name}={value!r} must be a finite number")
    return float(value)


def integer(options: dict[str, Any], name: str, dataset: str, minimum: int) -> int:
    value = options[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"dataset {dataset!r} option {name}={value!r} must be an integer >= {minimum}, "
            f"e.g. {max(minimum, 64) if name == 'image_size' else minimum}"
        )
    return value


def names(value: Any) -> list[str]:
    """A list option given as a YAML list or as comma-separated text."""
    if value is None:
        return []
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]
