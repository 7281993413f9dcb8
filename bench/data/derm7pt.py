"""Adapter of the ``derm7pt`` card: clinical + dermoscopic pairs, 5 diagnosis groups.

Kawahara et al., Seven-point checklist and skin lesion classification using multitask
multimodal neural nets, IEEE JBHI 23(2) 2019. Layout of ``release_v0.zip``::

    release_v0/meta/meta.csv                   one row per case; ``diagnosis``, and
                                               ``clinic`` / ``derm``: paths under images/
    release_v0/meta/{train,valid,test}_indexes.csv   column ``indexes``: rows of meta.csv
    release_v0/images/<SUB>/<file>             e.g. NEL/NEL025.JPG, NEL/Nel026.jpg

A path's file name is matched ignoring case within its folder (the release mixes ``.JPG``
and ``.jpg``). The card's ``diagnoses`` map groups the 20 diagnosis strings into BCC, NEV,
MEL, MISC and SK (the grouping of the Derm7pt paper and its code). The official splits are
kept: 413 train / 203 valid / 395 test; ``valid`` selects the model (the published
missing-modality code selects on test; we do not).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from bench.data import LoadedDataset
from bench.data.cards import Card
from bench.data.images import CaseInsensitiveFinder, decode_image
from bench.data.verify import Problem, Sample, Scan, index_splits, read_table, resolve_root
from bench.errors import DataError
from bench.interface import DatasetInfo

INDEX_FILES = {"train": "train_indexes.csv", "val": "valid_indexes.csv", "test": "test_indexes.csv"}
IMAGE_COLUMNS = ("clinic", "derm")  # meta.csv columns, in the card's modality order


def release_dir(root: Path) -> Path:
    """``root`` itself or its ``release_v0`` child: the folder holding meta/meta.csv."""
    for candidate in (root, root / "release_v0"):
        if (candidate / "meta" / "meta.csv").is_file():
            return candidate
    raise DataError(
        f"derm7pt: no meta/meta.csv in {root} or {root / 'release_v0'}: pass --data-root "
        "derm7pt=PATH to the unzipped release_v0 folder"
    )


def diagnosis_groups(card: Card) -> dict[str, str]:
    """Lower-cased diagnosis string -> class key, from the card's ``diagnoses``."""
    return {
        diagnosis.strip().lower(): key
        for key, diagnoses in card.meta["diagnoses"].items()
        for diagnosis in diagnoses
    }


def scan(card: Card, options: dict[str, Any], root: Path) -> Scan:
    release = release_dir(root)
    meta = read_table(release / "meta" / "meta.csv", ["diagnosis", *IMAGE_COLUMNS], card.name)
    problems: list[Problem] = []
    split_of = index_splits(release / "meta", INDEX_FILES, len(meta), card.name, problems)
    groups = diagnosis_groups(card)
    finder = CaseInsensitiveFinder()
    samples, seen = [], {}
    for row, record in enumerate(meta.to_dict("records")):
        case = str(record.get("case_num", "")).strip() or str(row)
        where = f"meta.csv row {row} (case {case})"
        if case in seen:
            problems.append(Problem("duplicate_id", where, f"case {case} is also row {seen[case]}"))
        seen.setdefault(case, row)
        label = groups.get(str(record["diagnosis"]).strip().lower())
        if label is None:
            problems.append(
                Problem(
                    "unknown_label",
                    where,
                    f"diagnosis {record['diagnosis']!r} is in none of the card's groups",
                )
            )
        sources = []
        for column in IMAGE_COLUMNS:
            relative = str(record[column]).strip()
            path = finder.find(release / "images" / relative) if relative else None
            if path is None:
                problems.append(
                    Problem(
                        "missing_file",
                        f"images/{relative}",
                        f"named by {where} ({column}) is not on disk",
                    )
                )
            sources.append(path)
        if row not in split_of:
            problems.append(Problem("unassigned", where, "is in no index file", blocking=False))
        samples.append(Sample(case, label, split_of.get(row, ""), tuple(sources)))
    decoders = tuple(
        partial(decode_image, channels=int(m["channels"]))
        for m in card.modalities[: len(IMAGE_COLUMNS)]
    )
    return Scan(card.name, release, tuple(card.classes), IMAGE_COLUMNS, samples, problems, decoders)


def load(card: Card, options: dict[str, Any], info: DatasetInfo, cache_dir: Path) -> LoadedDataset:
    return scan(card, options, resolve_root(card, options)).load(info, cache_dir)
