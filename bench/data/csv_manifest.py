"""Adapter ``csv-manifest`` (card ``csv``): your own cohort, from a manifest CSV.

The card's ``root`` is the manifest file. Columns: ``id``, ``label`` (any strings), one path
column per modality (option ``modality_columns``, default ``m1,m2``) and optionally
``split`` (train / val / test; training, valid, validation, testing are accepted).

Paths are relative to the manifest's folder and must stay inside it: an absolute path or a
``..`` that climbs out of it is refused (checked on the path as written, so a symbolic link
placed inside the folder on purpose is followed). Classes: option ``classes`` (its order is
the label order) or the sorted distinct labels. Option ``channels``: 1 (grey) or 3 (RGB)
per modality.

An empty path means that the modality is absent in the source data. The harness's presence
masks model only the protocol's missingness, so ``load`` skips such samples (a warning
gives their count) and ``bench data verify`` lists them.

Splits: the ``split`` column when it has values (rows without one are not used; with no
val rows, validation is carved from train); else a seeded stratified split
(``test_fraction``, then ``val_fraction`` of the rest, from ``split_seed``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from bench.data.adapter import DiskAdapter, register_adapter
from bench.data.cards import Card
from bench.data.images import decode_image
from bench.data.options import names
from bench.data.scan import SPLIT_ALIASES, Sample, Scan, ScanLog, read_table
from bench.data.splits import SEEDED_SPLIT_OPTIONS, assign_splits, check_seeded_split_options
from bench.errors import ConfigError, DataError
from bench.interface import DatasetInfo


def modality_channels(options: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    columns = names(options["modality_columns"])
    if not columns or len(set(columns)) != len(columns) or {"id", "label", "split"} & set(columns):
        raise ConfigError(
            f"csv option modality_columns={options['modality_columns']!r} must name distinct "
            "path columns other than id, label and split, e.g. fundus,oct"
        )
    channels = names(options["channels"])
    if len(channels) == 1:
        channels = channels * len(columns)
    if len(channels) != len(columns) or any(c not in ("1", "3") for c in channels):
        raise ConfigError(
            f"csv option channels={options['channels']!r} must give 1 or 3 for each of "
            f"{', '.join(columns)}, e.g. {','.join(['3'] * len(columns))}"
        )
    return tuple(columns), tuple(int(c) for c in channels)


def inside(folder: Path, written: str) -> Path | None:
    """``folder / written`` when the written path stays inside ``folder``, else None."""
    if Path(written).is_absolute():
        return None
    normal = os.path.normpath(written)
    if normal == os.pardir or normal.startswith(os.pardir + os.sep):
        return None
    return folder / normal


@register_adapter("csv-manifest")
class CsvManifest(DiskAdapter):
    """Your own cohort: a manifest CSV whose rows name one image per modality."""

    OPTIONS = ("modality_columns", "channels", "classes", *SEEDED_SPLIT_OPTIONS)

    def __init__(self, card: Card, options: Mapping[str, Any]) -> None:
        super().__init__(card, options)
        self.columns, self.channels = modality_channels(self.options)
        check_seeded_split_options(self.options, self.name)

    def manifest(self, root: Path, header_only: bool = False) -> pd.DataFrame:
        if not root.is_file():
            raise DataError(
                f"csv: root {root} is not a file: pass --data-root csv=PATH to the manifest CSV"
            )
        return read_table(root, ["id", "label", *self.columns], self.name, header_only)

    def classes(self, table: pd.DataFrame, root: Path) -> tuple[str, ...]:
        """Option ``classes`` (its order is the label order), else the sorted labels."""
        found = tuple(names(self.options["classes"])) or tuple(
            sorted({str(v).strip() for v in table["label"]} - {""})
        )
        if not found:
            raise DataError(
                f"csv: the manifest {root} has no labelled row: add rows with a label "
                "(or list the classes in dataset_options.csv.classes)"
            )
        return found

    def info(self) -> DatasetInfo:
        """Classes and modalities from the manifest and the options, not from the card."""
        root = self.root()
        return DatasetInfo(
            name=self.name,
            classes=self.classes(self.manifest(root), root),
            modalities=self.columns,
            channels=self.channels,
            image_size=self.image_size,
        )

    def check_layout(self, root: Path) -> None:
        self.manifest(root, header_only=True)

    def scan(self, root: Path) -> Scan:
        table = self.manifest(root)
        classes = self.classes(table, root)
        has_split = "split" in table.columns and any(str(v).strip() for v in table["split"])
        folder = root.parent
        log = ScanLog()
        samples = []
        for line, record in enumerate(table.to_dict("records"), 2):
            sample_id = str(record["id"]).strip()
            where = f"manifest line {line} (id {sample_id or '?'})"
            log.new_id(sample_id, where)
            written_label = str(record["label"]).strip()
            label = log.label(
                written_label if written_label in classes else None,
                where,
                f"label {written_label!r}",
                ", ".join(classes),
            )
            sources = tuple(
                _source(folder, where, c, str(record[c]).strip(), log) for c in self.columns
            )
            split = ""
            if has_split:
                written = str(record["split"]).strip()
                split = SPLIT_ALIASES.get(written.lower(), "")
                if not written:
                    log.split(None, where, "has no split")
                elif not split:
                    log.add("bad_split", where, f"split {written!r} is none of train, val, test")
            samples.append(Sample(sample_id or f"line {line}", label, split, sources))
        samples = assign_splits(samples, self.options, self.name, test=not has_split)
        decoders = tuple(partial(decode_image, channels=c) for c in self.channels)
        return Scan(self.name, root, classes, self.columns, samples, log.problems, decoders)


def _source(folder: Path, where: str, column: str, written: str, log: ScanLog) -> Path | None:
    if not written:
        log.add("absent_modality", where, f"no {column} image (skipped)")
        return None
    path = inside(folder, written)
    if path is None:
        log.add(
            "path_escape",
            where,
            f"{column} path {written!r} leaves the manifest's folder {folder}: move the file "
            "under it and write the path relative to the manifest",
        )
        return None
    return log.file(path, written, f"{where} ({column})")
