"""What an adapter finds in a copy on disk: samples, and the problems that it names.

A disk adapter scans its layout into a :class:`Scan`: the samples it found (id, class,
split, one file per modality) and the :class:`Problem` list (missing or corrupt files,
unknown labels, duplicate ids, paths leaving the manifest's folder...). Every kind of
problem is declared once in :data:`PROBLEM_KINDS` with whether it blocks loading.
:class:`ScanLog` holds the checks that every row-by-row layout repeats (a new id, a known
label, a file on disk, a split), so that an adapter states only what its layout is.
``Scan.load`` refuses a scan with a blocking problem in one line; ``bench data verify``
prints them all (:mod:`bench.data.verify`).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.data.dataset import LoadedDataset
from bench.data.images import SPLITS, Decoder, materialise
from bench.errors import DataError
from bench.interface import DatasetInfo

log = logging.getLogger("bench.data")


@dataclass(frozen=True)
class ProblemKind:
    meaning: str
    blocking: bool  # True: the copy cannot be loaded until it is fixed
    drops_samples: bool = False  # non-blocking, but some samples are not used


PROBLEM_KINDS = {
    "missing_file": ProblemKind("a file the index names is not on disk", True),
    "corrupt_image": ProblemKind("a file that cannot be decoded", True),
    "unknown_label": ProblemKind("a label outside the card's classes", True),
    "duplicate_id": ProblemKind("two samples with one id", True),
    "path_escape": ProblemKind("a manifest path that leaves the manifest's folder", True),
    "bad_index": ProblemKind("a split index out of range or in two splits", True),
    "bad_split": ProblemKind("a split name other than train, val or test", True),
    "split_overlap": ProblemKind("one eye/case in two splits", True),
    "empty_split": ProblemKind("a split without a usable sample", True),
    "unpaired": ProblemKind("an image without its other modality (not used)", False, True),
    "absent_modality": ProblemKind("a sample without a file for a modality (skipped)", False, True),
    "unassigned": ProblemKind("a sample in no split (not used)", False, True),
    "label_mismatch": ProblemKind("two label sources that disagree", False),
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


@dataclass(frozen=True)
class Problem:
    kind: str  # a key of PROBLEM_KINDS
    where: str  # the file or index row
    detail: str

    def __post_init__(self) -> None:
        if self.kind not in PROBLEM_KINDS:
            raise ValueError(
                f"unknown problem kind {self.kind!r}: use one of {', '.join(PROBLEM_KINDS)}"
            )

    @property
    def blocking(self) -> bool:
        return PROBLEM_KINDS[self.kind].blocking


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


class ScanLog:
    """The problems of one scan, and the checks that every row-by-row layout repeats.

    An adapter walks its index (table rows, listed files, npz files) and asks of each entry:
    is its id new (:meth:`new_id`), is its label a class (:meth:`label`), is its file on disk
    (:meth:`file`), is it in a split (:meth:`split`)? Each check records the standard
    problem and returns what the sample keeps. ``where`` names the entry for the user
    (``meta.csv row 4 (case 5)``).
    """

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self._first_seen: dict[str, str] = {}

    def add(self, kind: str, where: str, detail: str) -> None:
        self.problems.append(Problem(kind, where, detail))

    def new_id(self, sample_id: str, where: str) -> bool:
        """True for an id not seen before; else a ``duplicate_id`` problem (an empty id too)."""
        if not sample_id:
            self.add("duplicate_id", where, "has an empty id")
            return False
        if sample_id in self._first_seen:
            self.add("duplicate_id", where, f"has the id of {self._first_seen[sample_id]}")
            return False
        self._first_seen[sample_id] = where
        return True

    def label(self, key: str | None, where: str, given: str, expected: str) -> str | None:
        """``key``, the class of an entry; None (what the layout gave, ``given``, maps to no
        class) records an ``unknown_label`` problem listing the ``expected`` values."""
        if key is None:
            self.add("unknown_label", where, f"{given} is none of {expected}")
        return key

    def file(self, path: Path | None, named: str, where: str) -> Path | None:
        """``path`` when it is a file; else None and a ``missing_file`` problem for the file
        as the index names it (``named``)."""
        if path is not None and path.is_file():
            return path
        self.add("missing_file", named, f"named by {where}: not on disk")
        return None

    def split(self, split: str | None, where: str, why: str) -> str:
        """``split``, or '' and a non-blocking ``unassigned`` problem saying ``why``."""
        if not split:
            self.add("unassigned", where, why)
            return ""
        return split


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
        """Decode (once, cached) the usable samples into a :class:`LoadedDataset`; a warning
        counts the samples that non-blocking problems keep out (unpaired, unassigned...)."""
        self.raise_if_blocking()
        dropped: dict[str, set[str]] = defaultdict(set)
        for problem in self.problems:
            if PROBLEM_KINDS[problem.kind].drops_samples:
                dropped[problem.kind].add(problem.where)
        for kind, places in sorted(dropped.items()):
            log.warning(
                "%s at %s: %d x %s, %s; `bench data verify %s` lists them",
                self.dataset,
                self.root,
                len(places),
                kind,
                PROBLEM_KINDS[kind].meaning,
                self.dataset,
            )
        index = {key: i for i, key in enumerate(self.classes)}
        splits: dict[str, tuple[list[tuple[Path, ...]], list[int]]] = {
            name: ([], []) for name in SPLITS
        }
        for sample in self.usable():
            sources, labels = splits[sample.split]
            sources.append(tuple(p for p in sample.sources if p is not None))
            labels.append(index[str(sample.label)])
        return materialise(info, splits, self.decoders, self.cache_key, cache_dir)


def read_table(
    path: Path, required: Sequence[str], dataset: str, header_only: bool = False
) -> pd.DataFrame:
    """A CSV as strings (nothing parsed as NaN); a missing column is a one-line DataError.
    ``header_only`` reads no row (the cheap check before a run)."""
    try:
        frame = pd.read_csv(
            path, dtype=str, keep_default_na=False, nrows=0 if header_only else None
        )
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise DataError(f"{dataset}: cannot read {path}: {err}; restore the file") from err
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(
            f"{dataset}: {path} lacks column(s) {', '.join(missing)} (it has "
            f"{', '.join(frame.columns) or 'none'}): is this the right file?"
        )
    return frame
