"""What ``bench run`` would do, without doing it: the resolved settings, each method's
hyper-parameters and every expanded cell, as text. Reads nothing on disk but the cards."""

from __future__ import annotations

from typing import Any

import yaml

from bench.spec import CellSpec

PRECEDENCE = "defaults < preset < --config < --hparams < flags < --set"


def describe(config: dict[str, Any], cells: list[CellSpec]) -> str:
    """The resolved configuration (YAML), each method's hyper-parameters and each dataset's
    options as the cells hold them, then one line per cell: method | dataset | rate | seed |
    cell hash."""
    lines = [f"# resolved settings ({PRECEDENCE})"]
    lines += yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=96).splitlines()
    lines.append("# hyper-parameters per method (after hparams.* and the variants)")
    for method in dict.fromkeys(cell.method for cell in cells):
        hparams = next(dict(cell.hparams) for cell in cells if cell.method == method)
        shown = ", ".join(f"{k}={v}" for k, v in hparams.items()) or "its defaults"
        lines.append(f"{method}: {shown}")
    lines.append("# dataset options (the card's defaults, then the settings)")
    for dataset in dict.fromkeys(cell.dataset for cell in cells):
        shown = ", ".join(f"{k}={v}" for k, v in dataset.options)
        lines.append(f"{dataset.name}: {shown}")
    frozen = {dict(cell.frozen_backbone).get("name") for cell in cells} - {None}
    if frozen:
        lines.append(f"# frozen backbone: {', '.join(sorted(frozen))} (features cached once)")
    lines.append(f"# {len(cells)} cells: method | dataset | rate | seed | cell hash")
    lines += [f"{cell.label} | {cell.hash}" for cell in cells]
    return "\n".join(lines)
