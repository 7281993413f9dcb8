"""``bench data verify``: what a copy on disk holds, and what is wrong with it.

The adapter scans the copy (:class:`~bench.data.adapter.DiskAdapter.scan`); verify adds the
split checks every layout shares, decodes every file (unless ``decode=False``) and counts
the usable samples per split and class; :func:`render` prints the counts, a table of
problem kinds and the first problems one per line. The command itself is in
:mod:`bench.cli.data`.

Where the files are: the card option ``root`` (the CLI maps ``--data-root NAME=PATH`` onto
``dataset_options.NAME.root``), else the environment variable ``BENCH_DATA_<NAME>``
(upper case, ``-`` as ``_``).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench.data.adapter import DiskAdapter, adapter_for
from bench.data.images import SPLITS
from bench.data.scan import PROBLEM_KINDS, Problem, Sample, Scan
from bench.errors import ConfigError, DataError

MAX_LISTED = 50


@dataclass
class VerifyReport:
    dataset: str
    root: Path
    classes: tuple[str, ...]
    counts: pd.DataFrame  # split x class, with totals
    problems: list[Problem]

    @property
    def usable(self) -> bool:
        return not any(p.blocking for p in self.problems)


def scan_dataset(name: str, root: str | Path | None, options: dict[str, Any] | None) -> Scan:
    """The adapter's scan of dataset ``name`` at ``root`` (else its option or variable)."""
    overrides = dict(options or {})
    if root is not None:
        overrides["root"] = str(root)
    adapter = adapter_for(name, overrides)
    if not isinstance(adapter, DiskAdapter):
        raise ConfigError(f"dataset {name!r} is generated, not read from disk: nothing to verify")
    return adapter.scan(adapter.root())


def verify(
    name: str, root: str | Path | None, options: dict[str, Any] | None = None, decode: bool = True
) -> VerifyReport:
    """Check a copy on disk against its card; ``decode`` also decodes every file."""
    scan = scan_dataset(name, root, options)
    problems = scan.issues()
    bad: set[Path] = set()
    if decode:
        for problem in _decode_problems(scan):
            problems.append(problem)
            bad.add(Path(problem.where))
    counted = [s for s in scan.usable() if not bad.intersection(p for p in s.sources if p)]
    return VerifyReport(scan.dataset, scan.root, scan.classes, _counts(scan, counted), problems)


def _decode_problems(scan: Scan) -> list[Problem]:
    jobs = sorted(
        {(m, p) for s in scan.usable() for m, p in enumerate(s.sources) if p is not None},
        key=lambda job: (job[0], str(job[1])),
    )

    def attempt(job: tuple[int, Path]) -> Problem | None:
        m, path = job
        try:
            scan.decoders[m](path, 8)
        except DataError as err:
            reason = err.__cause__ or err  # the decoder's own words, without our advice
            return Problem("corrupt_image", str(path), f"({scan.modalities[m]}) {reason}")
        return None

    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        return [p for p in pool.map(attempt, jobs) if p is not None]


def _counts(scan: Scan, samples: Sequence[Sample]) -> pd.DataFrame:
    table = pd.DataFrame(0, index=[*SPLITS, "total"], columns=[*scan.classes, "total"])
    for sample in samples:
        table.loc[sample.split, sample.label] += 1
    table.loc["total"] = table.loc[list(SPLITS)].sum()
    table["total"] = table[list(scan.classes)].sum(axis=1)
    table.index.name = "split"
    return table


def render(report: VerifyReport) -> str:
    """The counts table, a table of problem kinds, then the first problems one per line."""
    blocking = [p for p in report.problems if p.blocking]
    verdict = (
        "usable"
        if report.usable
        else f"NOT usable: {len(blocking)} blocking problem(s), fix them and verify again"
    )
    total = int(report.counts.loc["total", "total"])
    lines = [f"{report.dataset} at {report.root}: {verdict} ({total} usable samples)", ""]
    lines += [report.counts.to_markdown(), ""]
    if not report.problems:
        lines.append("no problems found")
        return "\n".join(lines)
    kinds = Counter((p.kind, p.blocking) for p in report.problems)
    summary = pd.DataFrame(
        [
            {
                "problem": kind,
                "count": n,
                "blocks loading": "yes" if block else "no",
                "meaning": PROBLEM_KINDS[kind].meaning,
            }
            for (kind, block), n in sorted(
                kinds.items(), key=lambda item: (not item[0][1], item[0][0])
            )
        ]
    )
    lines += [summary.to_markdown(index=False), ""]
    ordered = sorted(report.problems, key=lambda p: not p.blocking)
    for problem in ordered[:MAX_LISTED]:
        lines.append(f"{problem.kind}: {problem.where}: {problem.detail}")
    if len(ordered) > MAX_LISTED:
        lines.append(f"... and {len(ordered) - MAX_LISTED} more")
    return "\n".join(lines)
