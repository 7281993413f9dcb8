"""What a ``bench run`` would do, in words: the resolved settings and every cell of the grid
with its hash (``bench run --dry-run`` prints :func:`describe_grid`)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from bench.spec import CellSpec

PRECEDENCE = "defaults < preset < --config < --hparams < flags < --set"


def _values(mapping: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in mapping.items())


def settings_lines(config: dict[str, Any], cells: list[CellSpec]) -> list[str]:
    """The settings every cell shares, and per method and dataset what differs."""
    first = cells[0]
    train = {k: v for k, v in first.to_dict()["train"].items()}
    missing = {k: v for k, v in first.to_dict()["missing"].items() if k != "rate"}
    lines = [
        f"settings resolved as {PRECEDENCE}",
        f"experiment: {config['experiment']!r} in {config['results_dir']}",
        f"train: {_values(train)}",
        f"missingness: {_values(missing)}",
        f"retry failed cells: {'yes' if config['retry_failed'] else 'no'}",
        "hparams per method:",
    ]
    for method, hparams in {
        repr((c.method, c.hparams)): (c.method, c.hparams) for c in cells
    }.values():
        lines.append(f"  {method}: {_values(dict(hparams)) or '(defaults)'}")
    lines.append("dataset options:")
    for ref in dict.fromkeys(c.dataset for c in cells):
        lines.append(f"  {ref.name}: {_values(dict(ref.options)) or '(none)'}")
    if first.frozen_backbone:
        lines.append(f"frozen backbone: {_values(dict(first.frozen_backbone))}")
    return lines


def cells_table(cells: list[CellSpec]) -> str:
    """One row per cell: method, dataset, rate, seed and the cell hash the store keys on."""
    frame = pd.DataFrame(
        [(c.method, c.dataset.name, c.missing.rate, c.seed, c.hash) for c in cells],
        columns=["method", "dataset", "rate", "seed", "hash"],
    )
    return frame.to_markdown(index=False, floatfmt="g")


def describe_grid(config: dict[str, Any], cells: list[CellSpec]) -> str:
    """The grid ``config`` expands to: a count line, the settings and the cells table."""
    axes = {
        "methods": len({c.method for c in cells}),
        "datasets": len({c.dataset for c in cells}),
        "rates": len({c.missing.rate for c in cells}),
        "seeds": len({c.seed for c in cells}),
    }
    count = " x ".join(f"{name} {n}" for name, n in axes.items())
    return "\n".join(
        [f"{len(cells)} cells ({count})", *settings_lines(config, cells), cells_table(cells)]
    )
