"""Adapter ``mmc-amd`` (card ``mmc-amd``): colour fundus + OCT B-scan pairs, 4 classes.

Wang et al., Two-stream CNN with loose pair training for multi-modal AMD categorization,
MICCAI 2019; Learning two-stream CNN for multi-modal AMD categorization, IEEE JBHI 2022.
Two layouts are read.

The release (github.com/li-xirong/mmc-amd), ``root`` holding ``ImageData/`` (or its
``mmc-amd/`` child, the upstream ``VisualSearch`` folder)::

    ImageData/cfp-clahe-448x448/f-<y>-<id>.jpg
    ImageData/oct-median3x3-448x448/o-<y>-<id>_<NNN>.jpg
    mmc-amd-splitA-{train,val,test}/ImageSets/{cfp,oct}.txt   image names, no suffix
    mmc-amd-splitA-{train,val,test}/annotations/{cfp,oct}.txt last integer = label

The label letter ``y`` (h, d, p, w = normal, dry AMD, PCV, wet AMD) is the label; the
annotation integers are only cross-checked (index into "h d p w", the release's order).
Split folders are looked for in ``root``, beside ``ImageData`` and one level up (upstream
keeps them beside ``mmc-amd/``). Pairing follows the release's code: an OCT pairs with the
fundus image of the same eye, eye id = ``name[2:-4].split("_")[0]`` (the label letter and
the id, with its -l/-r side when there is one). Option ``pairs``: ``first`` (default) takes
one pair per eye (its first fundus and first OCT B-scan by name), which is what the
missing-modality papers count (768 eyes with both modalities = 615 + 153 pairs);
``all`` pairs every B-scan of an eye with that eye's first fundus image. Images of an eye
without the other modality are reported (``unpaired``) and not used.

The simpler layout of some repositories: ``meta/meta.csv`` (columns CFP, OCT, MMC_label in
wetAMD, dryAMD, PCV, Normal; each row a pair; paths relative to ``root``, ``root/meta``,
``root/images`` or, by file name, any ``root/ImageData/*`` folder) and
``meta/{train,test}_set.csv`` (column ``indexes``). ``pairs`` does not apply to it.

Splits (option ``split``): ``auto`` uses the layout's split files when there are some, else
a seeded eye-level stratified split (``test_fraction``, then ``val_fraction`` of the rest,
from ``split_seed``); ``official`` requires split files; ``seeded`` ignores them, which is
the papers' protocol (an 80/20 eye-level split of the paired eyes; their exact list is
not published). A layout without a validation split gets one carved from train, seeded
and stratified at eye level.

Preprocessing (option ``preprocess``): the release ships CLAHE fundus and 3 x 3
median-filtered OCT images at 448 px (its folder names say so). ``auto`` applies CLAHE to
fundus images and the median filter to OCT images whose folder name does not say that it
was done; ``paper`` always applies them; ``none`` never does.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.adapter import DiskAdapter, register_adapter
from bench.data.cards import Card
from bench.data.images import (
    IMAGE_SUFFIXES,
    SPLITS,
    CaseInsensitiveFinder,
    decode_image,
    image_files,
)
from bench.data.options import choice
from bench.data.scan import Sample, Scan, ScanLog, read_table
from bench.data.splits import (
    SEEDED_SPLIT_OPTIONS,
    assign_splits,
    check_seeded_split_options,
    index_splits,
)
from bench.errors import DataError

LETTERS = {"h": "normal", "d": "dry_amd", "p": "pcv", "w": "wet_amd"}
ANNOTATION_ORDER = "hdpw"  # the release's class order: normal, dry AMD, PCV, wet AMD
META_LABELS = {"normal": "normal", "dryamd": "dry_amd", "wetamd": "wet_amd", "pcv": "pcv"}
_META_NAMES = "wetAMD, dryAMD, PCV, Normal"
LIST_NAMES = ("cfp", "oct")  # ImageSets/annotations file names, ImageData folder prefixes
MODALITIES = ("fundus", "oct")
PREPROCESSING = (("clahe", "clahe"), ("median3", "median"))  # (step, folder-name marker)
META_INDEX_FILES = {"train": "train_set.csv", "test": "test_set.csv"}
RELEASE_FOLDERS = {"cfp": "cfp-clahe-448x448", "oct": "oct-median3x3-448x448"}


def eye_id(name: str) -> str:
    """The release's eye id: ``f-w-0123-l.jpg`` and ``o-w-0123-l_005.jpg`` -> ``w-0123-l``."""
    return Path(name).stem[2:].split("_")[0]


def label_letter(name: str) -> str:
    parts = Path(name).stem.split("-")
    return parts[1].lower() if len(parts) > 2 else ""


@register_adapter("mmc-amd")
class MmcAmd(DiskAdapter):
    """The MMC-AMD release (ImageData + split folders) or its meta/meta.csv layout."""

    OPTIONS = ("split", "official_split", "pairs", "preprocess", *SEEDED_SPLIT_OPTIONS)

    def __init__(self, card: Card, options: Mapping[str, Any]) -> None:
        super().__init__(card, options)
        self.split_mode = choice(self.options, "split", ("auto", "official", "seeded"), self.name)
        self.pairs = choice(self.options, "pairs", ("first", "all"), self.name)
        self.preprocess = choice(self.options, "preprocess", ("auto", "paper", "none"), self.name)
        check_seeded_split_options(self.options, self.name)

    def check_layout(self, root: Path) -> None:
        if (root / "meta" / "meta.csv").is_file():
            read_table(root / "meta" / "meta.csv", ["CFP", "OCT", "MMC_label"], self.name, True)
            _meta_index(root / "meta", self.split_mode)
            return
        base = _release_base(root)
        for prefix in LIST_NAMES:
            _modality_folder(base / "ImageData", prefix)
        _release_split_dirs(root, base, str(self.options["official_split"]), self.split_mode)

    def scan(self, root: Path) -> Scan:
        log = ScanLog()
        if (root / "meta" / "meta.csv").is_file():
            samples = _scan_meta(root, self.options, self.split_mode, log)
        else:
            samples = _scan_release(root, self.options, self.split_mode, self.pairs, log)
        decoders = tuple(
            partial(
                _decode, channels=int(m["channels"]), step=step, marker=marker, mode=self.preprocess
            )
            for m, (step, marker) in zip(self.card.modalities, PREPROCESSING, strict=False)
        )
        return Scan(
            self.name,
            root,
            tuple(self.card.classes),
            MODALITIES,
            samples,
            log.problems,
            decoders,
            {"preprocess": self.preprocess},
        )


def _decode(path: Path, size: int, channels: int, step: str, marker: str, mode: str) -> np.ndarray:
    done = marker in path.parent.name.lower()
    apply = mode == "paper" or (mode == "auto" and not done)
    return decode_image(path, size, channels, step if apply else "none")


# -- the release layout -------------------------------------------------------------------


def _release_base(root: Path) -> Path:
    """``root`` or its ``mmc-amd`` child (the upstream VisualSearch folder): the one with
    ImageData/."""
    base = next((c for c in (root, root / "mmc-amd") if (c / "ImageData").is_dir()), None)
    if base is None:
        raise DataError(
            f"mmc-amd: neither ImageData/ nor meta/meta.csv in {root}: pass --data-root "
            "mmc-amd=PATH to the folder that holds ImageData/ (or meta/)"
        )
    return base


def _release_split_dirs(root: Path, base: Path, name: str, split_mode: str) -> dict[str, Path]:
    """The split folders to use: none when seeded, or when auto finds no train and test."""
    split_dirs = _split_dirs(root, base, name)
    complete = {"train", "test"} <= set(split_dirs)
    if split_mode == "official" and not complete:
        raise DataError(
            f"mmc-amd: split=official but no mmc-amd-{name}-train and -test folders in "
            f"{root} or beside {base}: add them or use split=seeded"
        )
    return split_dirs if complete and split_mode != "seeded" else {}


def _scan_release(
    root: Path, options: dict[str, Any], split_mode: str, pairs: str, log: ScanLog
) -> list[Sample]:
    base = _release_base(root)
    folders = tuple(_modality_folder(base / "ImageData", prefix) for prefix in LIST_NAMES)
    split_dirs = _release_split_dirs(root, base, str(options["official_split"]), split_mode)
    if not split_dirs:
        samples = _pair("", image_files(folders[0]), image_files(folders[1]), pairs, log)
        return assign_splits(samples, options, "mmc-amd", test=True)
    finder = CaseInsensitiveFinder()
    samples = []
    for split, folder in split_dirs.items():
        listed = [
            _listed(folder, name, main, finder, log)
            for name, main in zip(LIST_NAMES, folders, strict=True)
        ]
        samples += _pair(split, listed[0], listed[1], pairs, log)
    return assign_splits(samples, options, "mmc-amd", test=False)


def _modality_folder(image_data: Path, prefix: str) -> Path:
    """The ``cfp-*`` (or ``oct-*``) folder; the release's own name wins among several."""
    release = RELEASE_FOLDERS[prefix]
    found = sorted(p for p in image_data.iterdir() if p.is_dir() and p.name.startswith(prefix))
    if (image_data / release).is_dir():
        return image_data / release
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise DataError(
            f"mmc-amd: expected one {prefix}-* folder in {image_data} (the release has "
            f"{release}), found {names}: keep only the one to use"
        )
    return found[0]


def _split_dirs(root: Path, base: Path, name: str) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder in dict.fromkeys((root, base, base.parent)):
        for split in SPLITS:
            candidate = folder / f"mmc-amd-{name}-{split}"
            if split not in found and candidate.is_dir():
                found[split] = candidate
    return found


def _listed(
    split_dir: Path, name: str, main: Path, finder: CaseInsensitiveFinder, log: ScanLog
) -> list[Path]:
    """The files a split's ImageSets/<name>.txt lists, cross-checked with its annotations."""
    listing = split_dir / "ImageSets" / f"{name}.txt"
    if not listing.is_file():
        log.add("missing_file", str(listing), "the split's image list is missing")
        return []
    names = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
    annotated = _annotations(split_dir / "annotations" / f"{name}.txt", len(names), log)
    local = split_dir / "ImageData" / main.name
    found = []
    for i, entry in enumerate(names):
        filename = Path(entry if Path(entry).suffix.lower() in IMAGE_SUFFIXES else f"{entry}.jpg")
        path = log.file(
            (finder.find(local / filename.name) if local.is_dir() else None)
            or finder.find(main / filename.name),
            filename.name,
            f"{split_dir.name}/ImageSets/{name}.txt (looked in {main})",
        )
        if path is None:
            continue
        letter = label_letter(filename.name)
        if annotated and letter in LETTERS and annotated[i] != ANNOTATION_ORDER.index(letter):
            log.add(
                "label_mismatch",
                filename.name,
                f"{split_dir.name}/annotations/{name}.txt says {annotated[i]}, the name says "
                f"{letter!r} ({LETTERS[letter]}); the name is used",
            )
        found.append(path)
    return found


def _annotations(path: Path, count: int, log: ScanLog) -> list[int | None]:
    if not path.is_file():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if len(lines) != count:
        log.add(
            "label_mismatch",
            str(path),
            f"has {len(lines)} lines for {count} listed images: not cross-checked",
        )
        return []
    values: list[int | None] = []
    for line in lines:
        last = line.split()[-1]
        values.append(int(last) if re.fullmatch(r"-?\d+", last) else None)
    return values


def _pair(
    split: str, fundus: list[Path], octs: list[Path], pairs: str, log: ScanLog
) -> list[Sample]:
    """Eye-level pairs; an eye's images all carry its label letter (it is in the eye id)."""
    by_eye: dict[str, tuple[list[Path], list[Path]]] = defaultdict(lambda: ([], []))
    for m, files in enumerate((fundus, octs)):
        for path in files:
            by_eye[eye_id(path.name)][m].append(path)
    within = f" in {split}" if split else ""
    samples = []
    for eye, (eye_fundus, eye_octs) in sorted(by_eye.items()):
        if not eye_fundus or not eye_octs:
            have, lack = ("fundus", "OCT") if eye_fundus else ("OCT", "fundus")
            files = eye_fundus or eye_octs
            log.add(
                "unpaired",
                f"eye {eye}",
                f"has {len(files)} {have} image(s) ({files[0].name}) but no {lack}{within}: "
                "not used",
            )
            continue
        first = sorted(eye_fundus)[0]
        letter = label_letter(first.name)
        label = log.label(LETTERS.get(letter), first.name, f"label letter {letter!r}", "h, d, p, w")
        chosen = sorted(eye_octs)[:1] if pairs == "first" else sorted(eye_octs)
        for oct_path in chosen:
            sample_id = eye if pairs == "first" else oct_path.stem
            samples.append(Sample(sample_id, label, split, (first, oct_path), group=eye))
    return samples


# -- the meta.csv layout ------------------------------------------------------------------


def _meta_index(meta_dir: Path, split_mode: str) -> bool:
    """Whether the meta layout's split files are used (not when seeded, or absent)."""
    has_index = all((meta_dir / f).is_file() for f in META_INDEX_FILES.values())
    if split_mode == "official" and not has_index:
        raise DataError(
            f"mmc-amd: split=official but {meta_dir} lacks train_set.csv and test_set.csv: "
            "add them or use split=seeded"
        )
    return has_index and split_mode != "seeded"


def _scan_meta(root: Path, options: dict[str, Any], split_mode: str, log: ScanLog) -> list[Sample]:
    meta_dir = root / "meta"
    table = read_table(meta_dir / "meta.csv", ["CFP", "OCT", "MMC_label"], "mmc-amd")
    use_index = _meta_index(meta_dir, split_mode)
    split_of = (
        index_splits(meta_dir, META_INDEX_FILES, len(table), "mmc-amd", log) if use_index else {}
    )
    finder = CaseInsensitiveFinder()
    samples = []
    for row, record in enumerate(table.to_dict("records")):
        where = f"meta.csv row {row}"
        raw = str(record["MMC_label"])
        label = log.label(
            META_LABELS.get(re.sub(r"[^a-z]", "", raw.lower())),
            where,
            f"MMC_label {raw!r}",
            _META_NAMES,
        )
        sources = []
        for column in ("CFP", "OCT"):
            relative = str(record[column]).strip()
            found = _meta_file(root, relative, finder) if relative else None
            sources.append(log.file(found, relative or "(empty)", f"{where} ({column})"))
        oct_name = Path(str(record["OCT"]).strip()).name
        group = eye_id(oct_name) if oct_name.lower().startswith("o-") else ""
        split = log.split(split_of.get(row), where, "is in no index file") if use_index else ""
        samples.append(Sample(str(row), label, split, tuple(sources), group=group))
    return assign_splits(samples, options, "mmc-amd", test=not use_index)


def _meta_file(root: Path, relative: str, finder: CaseInsensitiveFinder) -> Path | None:
    name = Path(relative).name
    candidates = [root / relative, root / "meta" / relative, root / "images" / relative]
    image_data = root / "ImageData"
    if image_data.is_dir():
        candidates += [folder / name for folder in sorted(image_data.iterdir()) if folder.is_dir()]
    for candidate in candidates:
        found = finder.find(candidate)
        if found is not None:
            return found
    return None
