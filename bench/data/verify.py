"""What a dataset copy on disk holds, and what is wrong with it.

Every adapter of a real dataset scans its layout into a :class:`Scan`: the samples it found
(id, class, split, one file per modality) and the :class:`Problem` list (missing or corrupt
files, unknown labels, duplicate ids, paths leaving the manifest's folder...). ``load``
refuses a scan with a blocking problem in one line; ``bench data verify NAME --root PATH``
(``bench.cli.data``) also decodes every file and prints the whole list with the
per-split, per-class counts.

Where the files are: the card option ``root`` (the CLI maps ``--data-root NAME=PATH`` onto
``dataset_options.NAME.root``), else the environment variable ``BENCH_DATA_<NAME>``
(upper case, ``-`` as ``_``).
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from importlib import import_module
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.data import LoadedDataset
from bench.data.cards import Card, get_card
from bench.data.images import SPLITS, Decoder, materialise
from bench.errors import ConfigError, DataError
from bench.interface import DatasetInfo

# kind -> what it means; verify prints these, load refuses the blocking ones
PROBLEM_KINDS = {
    "missing_file": "a file the index names is not on disk",
    "corrupt_image": "a file that cannot be decoded",
    "unknown_label": "a label outside the card's classes",
    "duplicate_id": "two samples with one id",
    "path_escape": "a manifest path that leaves the manifest's folder",
    "bad_index": "a split index out of range or in two splits",
    "bad_split": "a split name other than train, val or test",
    "split_overlap": "one eye/case in two splits",
    "empty_split": "a split without a usable sample",
    "unpaired": "an image without its other modality (not used)",
    "absent_modality": "a sample without a file for a modality (skipped)",
    "unassigned": "a sample in no split (not used)",
    "label_mismatch": "two label sources that disagree",
}
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
MAX_LISTED = 50


@dataclass(frozen=True)
class Problem:
    kind: str  # a key of PROBLEM_KINDS
    where: str  # the file or index row
    detail: str
    blocking: bool = True


@dataclass(frozen=True)
class Sample:
    id: str
    label: str | None  # class key; None when unknown
    split: str  # train, val, test, or "" while unassigned
    sources: tuple[Path | None, ...]  # one file per modality; None when absent
    group: str = ""  # kept together by seeded splits (an eye); defaults to id

    @property
    def unit(self) -> str:
        return self.group or self.id


@dataclass
class Scan:
    """The samples and problems an adapter found in one copy on disk."""

    dataset: str
    root: Path
    classes: tuple[str, ...]  # class keys in label order
    modalities: tuple[str, ...]
    samples: list[Sample]
    problems: list[Problem]
    decoders: tuple[Decoder, ...]  # (file, size) -> (C, size, size) uint8, per modality
    cache_key: dict[str, Any] = field(default_factory=dict)  # options that change pixels

    def usable(self) -> list[Sample]:
        """Samples with a known class, a split and every modality's file."""
        return [
            s
            for s in self.samples
            if s.label in self.classes and s.split in SPLITS and all(s.sources)
        ]

    def issues(self) -> list[Problem]:
        """The adapter's problems plus the split checks every layout shares."""
        found = list(self.problems)
        usable = self.usable()
        splits_of: dict[str, set[str]] = defaultdict(set)
        for sample in usable:
            splits_of[sample.unit].add(sample.split)
        for unit, names in sorted(splits_of.items()):
            if len(names) > 1:
                found.append(Problem("split_overlap", unit, f"is in {' and '.join(sorted(names))}"))
        present = Counter(s.split for s in usable)
        for name in SPLITS:
            if not present[name]:
                found.append(Problem("empty_split", name, "has no usable sample"))
        return found

    def raise_if_blocking(self) -> None:
        blocking = [p for p in self.issues() if p.blocking]
        if blocking:
            first = blocking[0]
            raise DataError(
                f"{self.dataset} at {self.root}: {len(blocking)} blocking problem(s), first: "
                f"{first.kind} {first.where}: {first.detail}; run `bench data verify "
                f"{self.dataset} --root {self.root}` for the full list"
            )

    def load(self, info: DatasetInfo, cache_dir: Path) -> LoadedDataset:
        """Decode (once, cached) the usable samples into a :class:`LoadedDataset`."""
        self.raise_if_blocking()
        index = {key: i for i, key in enumerate(self.classes)}
        splits: dict[str, tuple[list[tuple[Path, ...]], list[int]]] = {
            name: ([], []) for name in SPLITS
        }
        for sample in self.usable():
            sources, labels = splits[sample.split]
            sources.append(tuple(p for p in sample.sources if p is not None))
            labels.append(index[str(sample.label)])
        return materialise(info, splits, self.decoders, self.cache_key, cache_dir)


# -- where the data is --------------------------------------------------------------------


def env_var(name: str) -> str:
    return "BENCH_DATA_" + re.sub(r"[^A-Z0-9]", "_", name.upper())


def resolve_root(card: Card, options: dict[str, Any]) -> Path:
    """The copy's location: option ``root``, else ``BENCH_DATA_<NAME>``; it must exist."""
    value = options.get("root") or os.environ.get(env_var(card.name))
    place = card.meta.get("data_root", "its folder")
    if not value:
        raise DataError(
            f"dataset {card.name!r} is not on this machine: obtain it from "
            f"{card.meta.get('url', 'its publisher')} ({card.meta.get('access', 'see its card')}), "
            f"then pass --data-root {card.name}=PATH to {place} (bench data verify: --root "
            f"PATH) or set {env_var(card.name)}"
        )
    root = Path(str(value)).expanduser().absolute()
    if not root.exists():
        raise DataError(
            f"{card.name} root {root} does not exist: pass --data-root {card.name}=PATH to {place}"
        )
    return root


# -- option checks and seeded splits ------------------------------------------------------


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


def stratified_holdout(
    units: Sequence[str], labels: Sequence[str], share: float, seed: int, stream: int
) -> set[str]:
    """Units (eyes, cases) drawn for a held-out part, stratified by label.

    round(share * n) units in all, shared among classes by largest remainder so that
    every class keeps its proportion; deterministic in (seed, stream) and independent of
    the order of ``units``.
    """
    by_class: dict[str, list[str]] = defaultdict(list)
    for unit, label in sorted(zip(units, labels, strict=True)):
        by_class[label].append(unit)
    classes = sorted(by_class)
    exact = [share * len(by_class[c]) for c in classes]
    take = [int(np.floor(e)) for e in exact]
    extra = round(share * len(units)) - sum(take)
    by_remainder = sorted(range(len(classes)), key=lambda i: (take[i] - exact[i], classes[i]))
    for i in by_remainder[: max(0, extra)]:
        take[i] += 1
    rng = np.random.default_rng([seed, stream])
    held: set[str] = set()
    for name, count in zip(classes, take, strict=True):
        members = by_class[name]
        held.update(members[j] for j in rng.permutation(len(members))[:count])
    return held


def assign_splits(
    samples: list[Sample], options: dict[str, Any], dataset: str, *, test: bool
) -> list[Sample]:
    """Seeded, stratified, unit-level splits.

    ``test=True``: every sample is unassigned; ``test_fraction`` of the units become test
    and ``val_fraction`` of the rest validation. ``test=False``: the layout gave train and
    test; ``val_fraction`` of the training units become validation (unless a val split
    exists already). Unknown labels stay where they are (they block loading anyway).
    """
    seed = int(options["split_seed"])
    out = list(samples)

    def units_of(split: str) -> dict[str, str]:
        found: dict[str, str] = {}
        for s in out:
            if s.split == split and s.label is not None:
                found.setdefault(s.unit, s.label)
        return found

    if test:
        pool = units_of("")
        held = stratified_holdout(
            list(pool), list(pool.values()), fraction(options, "test_fraction", dataset), seed, 0
        )
        out = [replace(s, split="test" if s.unit in held else "train") for s in out]
    if test or not any(s.split == "val" for s in out):
        pool = units_of("train")
        held = stratified_holdout(
            list(pool), list(pool.values()), fraction(options, "val_fraction", dataset), seed, 1
        )
        out = [replace(s, split="val") if s.split == "train" and s.unit in held else s for s in out]
    return out


def read_table(path: Path, required: Sequence[str], dataset: str) -> pd.DataFrame:
    """A CSV as strings (nothing parsed as NaN); a missing column is a one-line DataError."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DataError(f"{dataset}: cannot read {path}: {err}; restore the file") from err
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(
            f"{dataset}: {path} lacks column(s) {', '.join(missing)} (it has "
            f"{', '.join(frame.columns)}): is this the right file?"
        )
    return frame


def index_splits(
    folder: Path, files: dict[str, str], rows: int, dataset: str, problems: list[Problem]
) -> dict[int, str]:
    """Row -> split from index files (column ``indexes``: row numbers of the main table)."""
    split_of: dict[int, str] = {}
    for split, filename in files.items():
        path = folder / filename
        if not path.is_file():
            problems.append(Problem("missing_file", str(path), f"the {split} index is missing"))
            continue
        for line, value in enumerate(read_table(path, ["indexes"], dataset)["indexes"], 2):
            where = f"{filename} line {line}"
            try:
                row = int(str(value).strip())
            except ValueError:
                problems.append(Problem("bad_index", where, f"{value!r} is not a row number"))
                continue
            if not 0 <= row < rows:
                problems.append(
                    Problem("bad_index", where, f"row {row} is outside the table (0..{rows - 1})")
                )
            elif row in split_of:
                problems.append(
                    Problem("bad_index", where, f"row {row} is in {split_of[row]} and {split}")
                )
            else:
                split_of[row] = split
    return split_of


# -- verify -------------------------------------------------------------------------------


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
    card = get_card(name)
    overrides = dict(options or {})
    if root is not None:
        overrides["root"] = str(root)
    resolved = card.resolve_options(overrides)
    adapter = import_module(f"bench.data.{card.adapter}")
    if not hasattr(adapter, "scan"):
        raise ConfigError(f"dataset {name!r} is generated, not read from disk: nothing to verify")
    return adapter.scan(card, resolved, resolve_root(card, resolved))


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
                "meaning": PROBLEM_KINDS.get(kind, ""),
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
