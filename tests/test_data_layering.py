"""The data layer sits under the run configuration: ``bench/data`` never imports the config,
the CLI or anything that runs, tracks or reports cells (data flows one way)."""

from __future__ import annotations

import ast
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "bench" / "data"
HIGHER = ("bench.config", "bench.cli", "bench.cell", "bench.executors", "bench.train")
HIGHER += ("bench.tune", "bench.tracking", "bench.results", "bench.report")
LOWER_THAN = tuple(f"{name}." for name in HIGHER)  # and their submodules


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_bench_data_imports_no_higher_layer():
    offenders = {
        path.name: sorted(m for m in imported(path) if m in HIGHER or m.startswith(LOWER_THAN))
        for path in sorted(DATA.glob("*.py"))
    }
    assert {name: mods for name, mods in offenders.items() if mods} == {}
