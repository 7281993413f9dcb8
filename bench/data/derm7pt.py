"""Adapter ``derm7pt`` (card ``derm7pt``): clinical + dermoscopic pairs, 5 diagnosis groups.

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

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from bench.data.adapter import DiskAdapter, register_adapter
from bench.data.cards import Card
from bench.data.images import CaseInsensitiveFinder, decode_image
from bench.data.scan import Sample, Scan, ScanLog, read_table
from bench.data.splits import index_splits
from bench.errors import ConfigError, DataError

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
    groups = card.meta.get("diagnoses")
    if not isinstance(groups, dict) or set(groups) - set(card.classes):
        raise ConfigError(
            f"dataset card {card.path} needs diagnoses: a map from each class key "
            f"({', '.join(card.classes)}) to its meta.csv diagnosis strings"
        )
    return {
        diagnosis.strip().lower(): key
        for key, diagnoses in groups.items()
        for diagnosis in diagnoses
    }


@register_adapter("derm7pt")
class Derm7pt(DiskAdapter):
    """The Derm7pt release: meta.csv, its official index files, images/<SUB>/<file>."""

    def __init__(self, card: Card, options: Mapping[str, Any]) -> None:
        super().__init__(card, options)
        self.groups = diagnosis_groups(card)

    def check_layout(self, root: Path) -> None:
        release = release_dir(root)
        read_table(release / "meta" / "meta.csv", ["diagnosis", *IMAGE_COLUMNS], self.name, True)
        for filename in INDEX_FILES.values():
            read_table(release / "meta" / filename, ["indexes"], self.name, True)

    def scan(self, root: Path) -> Scan:
        release = release_dir(root)
        meta = read_table(release / "meta" / "meta.csv", ["diagnosis", *IMAGE_COLUMNS], self.name)
        log = ScanLog()
        split_of = index_splits(release / "meta", INDEX_FILES, len(meta), self.name, log)
        finder = CaseInsensitiveFinder()
        samples = []
        for row, record in enumerate(meta.to_dict("records")):
            case = str(record.get("case_num", "")).strip() or str(row)
            where = f"meta.csv row {row} (case {case})"
            log.new_id(case, where)
            diagnosis = str(record["diagnosis"])
            label = log.label(
                self.groups.get(diagnosis.strip().lower()),
                where,
                f"diagnosis {diagnosis!r}",
                "the card's diagnosis groups",
            )
            sources = []
            for column in IMAGE_COLUMNS:
                relative = str(record[column]).strip()
                found = finder.find(release / "images" / relative) if relative else None
                sources.append(log.file(found, f"images/{relative}", f"{where} ({column})"))
            split = log.split(split_of.get(row), where, "is in no index file")
            samples.append(Sample(case, label, split, tuple(sources)))
        decoders = tuple(
            partial(decode_image, channels=int(m["channels"]))
            for m in self.card.modalities[: len(IMAGE_COLUMNS)]
        )
        classes = tuple(self.card.classes)
        return Scan(self.name, release, classes, IMAGE_COLUMNS, samples, log.problems, decoders)
