"""Adapter of the ``csv`` card: your own cohort, from a manifest CSV.

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

import logging
import os
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from bench.data import LoadedDataset
from bench.data.cards import Card
from bench.data.images import decode_image
from bench.data.verify import (
    SPLIT_ALIASES,
    Problem,
    Sample,
    Scan,
    assign_splits,
    read_table,
    resolve_root,
)
from bench.errors import ConfigError, DataError
from bench.interface import DatasetInfo

log = logging.getLogger("bench.data")


def names(value: Any) -> list[str]:
    """A list option given as a YAML list or as comma-separated text."""
    if value is None:
        return []
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def modality_channels(options: dict[str, Any]) -> tuple[tuple[str, ...], tuple[int, ...]]:
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


def scan(card: Card, options: dict[str, Any], root: Path) -> Scan:
    if not root.is_file():
        raise DataError(
            f"csv: root {root} is not a file: pass --data-root csv=PATH to the manifest CSV"
        )
    columns, channels = modality_channels(options)
    table = read_table(root, ["id", "label", *columns], card.name)
    classes = tuple(names(options["classes"])) or tuple(
        sorted({str(v).strip() for v in table["label"]} - {""})
    )
    has_split = "split" in table.columns and any(str(v).strip() for v in table["split"])
    folder = root.parent
    problems: list[Problem] = []
    samples, seen = [], {}
    for line, record in enumerate(table.to_dict("records"), 2):
        sample_id = str(record["id"]).strip()
        where = f"manifest line {line} (id {sample_id or '?'})"
        if not sample_id:
            problems.append(Problem("duplicate_id", where, "has an empty id"))
        elif sample_id in seen:
            problems.append(Problem("duplicate_id", where, f"id also on line {seen[sample_id]}"))
        seen.setdefault(sample_id, line)
        label = str(record["label"]).strip()
        if label not in classes:
            problems.append(
                Problem("unknown_label", where, f"label {label!r} is none of {', '.join(classes)}")
            )
        sources = [_source(folder, where, c, str(record[c]).strip(), problems) for c in columns]
        split = ""
        if has_split:
            written = str(record["split"]).strip()
            split = SPLIT_ALIASES.get(written.lower(), "")
            if not written:
                problems.append(Problem("unassigned", where, "has no split", blocking=False))
            elif not split:
                problems.append(
                    Problem("bad_split", where, f"split {written!r} is none of train, val, test")
                )
        key = sample_id or f"line {line}"
        samples.append(Sample(key, label if label in classes else None, split, tuple(sources)))
    samples = assign_splits(samples, options, card.name, test=not has_split)
    decoders = tuple(partial(decode_image, channels=c) for c in channels)
    return Scan(card.name, root, classes, columns, samples, problems, decoders)


def _source(
    folder: Path, where: str, column: str, written: str, problems: list[Problem]
) -> Path | None:
    if not written:
        problems.append(
            Problem("absent_modality", where, f"no {column} image (skipped)", blocking=False)
        )
        return None
    path = inside(folder, written)
    if path is None:
        problems.append(
            Problem(
                "path_escape",
                where,
                f"{column} path {written!r} leaves the manifest's folder {folder}: move the file "
                "under it and write the path relative to the manifest",
            )
        )
        return None
    if not path.is_file():
        problems.append(Problem("missing_file", written, f"{where} {column}: not on disk"))
        return None
    return path


def load(card: Card, options: dict[str, Any], info: DatasetInfo, cache_dir: Path) -> LoadedDataset:
    found = scan(card, options, resolve_root(card, options))
    absent = {p.where for p in found.problems if p.kind == "absent_modality"}
    if absent:
        log.warning(
            "csv %s: %d sample(s) lack a modality in the source data and are skipped "
            "(presence masks model only the protocol's missingness)",
            found.root,
            len(absent),
        )
    _, channels = modality_channels(options)
    info = replace(info, classes=found.classes, modalities=found.modalities, channels=channels)
    return found.load(info, cache_dir)
