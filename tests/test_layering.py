"""Data flows one way: the harness reaches the methods only through its registries."""

from __future__ import annotations

import ast
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_bench_never_imports_methods_outside_its_benchmarks():
    offenders = {
        str(path.relative_to(BENCH)): sorted(
            m for m in imported_modules(path) if m == "methods" or m.startswith("methods.")
        )
        for path in BENCH.rglob("*.py")
        if "benchmarks" not in path.relative_to(BENCH).parts
    }
    assert {path: mods for path, mods in offenders.items() if mods} == {}
