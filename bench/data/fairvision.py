"""Adapter ``fairvision`` (card ``harvard-glaucoma``): Harvard-FairVision, SLO fundus + OCT.

Luo et al., FairVision: Equitable deep learning for eye disease screening via fair identity
scaling (Harvard-FairVision30k), 2023/2024. Layout: ``root`` (or its ``Glaucoma/`` child)
holds ``Training/``, ``Validation/``, ``Test/`` (some copies: ``train/``, ``val/``,
``test/``; a flat folder is accepted too) with one ``data_<5-digit id>.npz`` per eye:

    glaucoma     0 / 1 (the label)
    slo_fundus   (H, W) scanning-laser fundus image, 200 x 200 in the release
    oct_bscans   (B, H, W) uint8 volume, 200 x 200 x 200 in the release; we assume the
                 B-scan index first (each ``oct_bscans[i]`` is one B-scan, as the release's
                 own 2-D baselines slice it) - check one volume when in doubt
    race, male, hispanic, maritalstatus, language   demographics (not read here)

The OCT modality is one 2-D image per eye (option ``oct_slice``): ``center`` (default, the
central B-scan ``B // 2``), ``mean`` (the average B-scan) or an integer B-scan index.

Splits (option ``split``): ``resplit`` (default) is the missing-modality papers' protocol,
a seeded stratified 80/20 re-split of every id found (their 1487 / 372 list of 1859 ids is
not published), validation carved from train; ``folders`` keeps the release's
Training/Validation/Test. ``split_file`` (a CSV with columns ``filename`` and ``use``:
training/validation/test, as the release's summary CSV) overrides both; ids it does not
name are not used. Labels are read from the npz files, never from the CSV.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.adapter import DiskAdapter, register_adapter
from bench.data.cards import Card
from bench.data.images import decode_array
from bench.data.options import choice
from bench.data.scan import SPLIT_ALIASES, Sample, Scan, ScanLog, read_table
from bench.data.splits import SEEDED_SPLIT_OPTIONS, assign_splits, check_seeded_split_options
from bench.errors import ConfigError, DataError

FOLDERS = {"train": ("Training", "train"), "val": ("Validation", "val"), "test": ("Test", "test")}
FILE_NAME = re.compile(r"data_(\d{5})\.npz")
LABELS = {0: "no_glaucoma", 1: "glaucoma"}
MODALITIES = ("slo", "oct")
NPZ_KEYS = ("glaucoma", "slo_fundus", "oct_bscans")
READ_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


def data_folder(root: Path) -> Path:
    """``root`` or its ``Glaucoma/`` child: the folder with the split folders (or npz files)."""
    for candidate in (root, root / "Glaucoma"):
        folders = [candidate / name for names in FOLDERS.values() for name in names]
        if any(f.is_dir() for f in folders) or any(candidate.glob("data_*.npz")):
            return candidate
    raise DataError(
        f"harvard-glaucoma: no Training/Validation/Test folders (nor data_*.npz) in {root} or "
        f"{root / 'Glaucoma'}: pass --data-root harvard-glaucoma=PATH to the glaucoma folder"
    )


def read_key(path: Path, key: str) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return np.asarray(npz[key])
    except READ_ERRORS as err:
        raise DataError(f"cannot read {key!r} from {path}: {err}; replace the file") from err


def parse_slice(value: Any) -> str | int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    if text in ("center", "mean"):
        return text
    if re.fullmatch(r"\d+", text):
        return int(text)
    raise ConfigError(
        f"harvard-glaucoma option oct_slice={value!r} is not valid: use center, mean or a "
        "B-scan index such as 100"
    )


def decode_slo(path: Path, size: int) -> np.ndarray:
    image = read_key(path, "slo_fundus")
    if image.ndim == 3 and image.shape[-1] in (1, 3):
        image = np.rint(image.mean(axis=-1)).astype(image.dtype)
    if image.ndim != 2:
        raise DataError(f"{path}: slo_fundus has shape {image.shape}, expected (H, W)")
    return decode_array(image, size)


def decode_oct(path: Path, size: int, oct_slice: str | int) -> np.ndarray:
    volume = read_key(path, "oct_bscans")
    if volume.ndim != 3:
        raise DataError(f"{path}: oct_bscans has shape {volume.shape}, expected (B, H, W)")
    if oct_slice == "mean":
        image = np.rint(volume.mean(axis=0)).astype(volume.dtype)
    else:
        index = volume.shape[0] // 2 if oct_slice == "center" else int(oct_slice)
        if not 0 <= index < volume.shape[0]:
            raise DataError(
                f"{path}: oct_slice={index} is outside its {volume.shape[0]} B-scans: "
                "choose a smaller index"
            )
        image = volume[index]
    return decode_array(image, size)


def _label(path: Path, log: ScanLog) -> str | None:
    try:
        value = read_key(path, "glaucoma").reshape(-1)
        label = LABELS.get(int(value[0])) if value.size == 1 else None
    except (DataError, ValueError, TypeError) as err:
        log.add("corrupt_image", str(path), f"no readable glaucoma label: {err}")
        return None
    return log.label(label, str(path), f"glaucoma = {value.tolist()}", "0, 1")


def _npz_files(base: Path) -> list[tuple[str, Path, str]]:
    """(id, file, split of its folder) of every ``data_<id>.npz``; split '' directly in
    ``base``."""
    places = [(base / name, split) for split, names in FOLDERS.items() for name in names]
    found = []
    for folder, split in [*places, (base, "")]:
        for path in sorted(folder.glob("data_*.npz")) if folder.is_dir() else []:
            match = FILE_NAME.fullmatch(path.name)
            if match is not None:
                found.append((match[1], path, split))
    return found


@register_adapter("fairvision")
class FairVision(DiskAdapter):
    """Harvard-FairVision: one npz per eye, in split folders or flat."""

    OPTIONS = ("split", "split_file", "oct_slice", *SEEDED_SPLIT_OPTIONS)

    def __init__(self, card: Card, options: Mapping[str, Any]) -> None:
        super().__init__(card, options)
        self.split_mode = choice(self.options, "split", ("resplit", "folders"), self.name)
        self.oct_slice = parse_slice(self.options["oct_slice"])
        check_seeded_split_options(self.options, self.name)

    def check_layout(self, root: Path) -> None:
        base = data_folder(root)
        files = _npz_files(base)
        if not files:
            raise DataError(
                f"harvard-glaucoma: no data_<5-digit id>.npz in {base} or its split folders: "
                "pass --data-root harvard-glaucoma=PATH to the glaucoma folder"
            )
        path = files[0][1]
        try:
            with np.load(path, allow_pickle=False) as npz:  # lists the keys, reads no array
                keys = set(npz.files)
        except READ_ERRORS as err:
            raise DataError(f"harvard-glaucoma: cannot open {path}: {err}; replace it") from err
        missing = [key for key in NPZ_KEYS if key not in keys]
        if missing:
            raise DataError(
                f"harvard-glaucoma: {path} lacks {', '.join(missing)} (it has "
                f"{', '.join(sorted(keys))}): is this the Harvard-FairVision glaucoma release?"
            )
        if self.options["split_file"]:
            read_table(self._split_file(root, base), ["filename", "use"], self.name, True)

    def scan(self, root: Path) -> Scan:
        base = data_folder(root)
        log = ScanLog()
        found: dict[str, tuple[Path, str]] = {}  # id -> (file, folder split)
        for key, path, split in _npz_files(base):
            if log.new_id(key, str(path)):
                found[key] = (path, split)
        samples = [
            Sample(key, _label(path, log), split, (path, path))
            for key, (path, split) in sorted(found.items())
        ]
        if self.options["split_file"]:
            samples = self._from_split_file(self._split_file(root, base), samples, log)
            samples = assign_splits(samples, self.options, self.name, test=False)
        elif self.split_mode == "folders":
            samples = [
                replace(s, split=log.split(s.split, str(s.sources[0]), "is in no split folder"))
                for s in samples
            ]
            samples = assign_splits(samples, self.options, self.name, test=False)
        else:
            unassigned = [replace(s, split="") for s in samples]
            samples = assign_splits(unassigned, self.options, self.name, test=True)
        decoders = (decode_slo, partial(decode_oct, oct_slice=self.oct_slice))
        key = {"oct_slice": self.oct_slice}
        classes = tuple(self.card.classes)
        return Scan(self.name, base, classes, MODALITIES, samples, log.problems, decoders, key)

    def _split_file(self, root: Path, base: Path) -> Path:
        given = Path(str(self.options["split_file"])).expanduser()
        path = next((p for p in (given, root / given, base / given) if p.is_file()), None)
        if path is None:
            raise DataError(
                f"harvard-glaucoma: split_file {given} not found (as given, or in {root}): "
                "give its path or set split_file to null"
            )
        return path

    def _from_split_file(self, path: Path, samples: list[Sample], log: ScanLog) -> list[Sample]:
        table = read_table(path, ["filename", "use"], self.name)
        by_id = {s.id: s for s in samples}
        split_of: dict[str, str] = {}
        for line, record in enumerate(table.to_dict("records"), 2):
            where = f"{path.name} line {line}"
            digits = re.search(r"(\d{5})", str(record["filename"]))
            split = SPLIT_ALIASES.get(str(record["use"]).strip().lower())
            if digits is None or split is None:
                log.add(
                    "bad_split",
                    where,
                    f"filename {record['filename']!r} / use {record['use']!r}: expected "
                    "data_<5 digits>.npz and training, validation or test",
                )
            elif digits[1] not in by_id:
                log.add("missing_file", f"data_{digits[1]}.npz", f"named by {where}: not on disk")
            elif digits[1] in split_of:
                log.add("duplicate_id", where, f"id {digits[1]} is listed twice")
            else:
                split_of[digits[1]] = split
        return [
            replace(
                s,
                split=log.split(split_of.get(s.id), str(s.sources[0]), f"is not in {path.name}"),
            )
            for s in samples
        ]
