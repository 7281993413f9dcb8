"""Tiny copies of each real dataset's exact on-disk layout, written by the tests themselves.

Each builder writes a few small random images (Pillow) or npz files with the release's
column names, file naming, npz keys and file-name case quirks, and returns the expected
per-split, per-class counts. The ``break_*`` helpers make the bad copies.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

SPLITS = ("train", "val", "test")

DERM_COLUMNS = [
    "case_num", "diagnosis", "seven_point_score", "pigment_network", "streaks",
    "pigmentation", "regression_structures", "dots_and_globules", "blue_whitish_veil",
    "vascular_structures", "level_of_diagnostic_difficulty", "elevation", "location", "sex",
    "management", "clinic", "derm", "case_id", "notes",
]  # fmt: skip
DERM_DIAGNOSES = [  # (meta.csv diagnosis, class key)
    ("basal cell carcinoma", "bcc"),
    ("clark nevus", "nev"),
    ("reed or spitz nevus", "nev"),
    ("melanoma (in situ)", "mel"),
    ("melanoma (more than 1.5 mm)", "mel"),
    ("dermatofibroma", "misc"),
    ("vascular lesion", "misc"),
    ("seborrheic keratosis", "sk"),
    ("blue nevus", "nev"),
    ("melanoma", "mel"),
]


def write_image(path: Path, size: tuple[int, int] = (24, 18), mode: str = "RGB", seed: int = 0):
    """A small random image; the format follows the suffix (any case)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def corrupt(path: Path) -> Path:
    """Replace a file with bytes that no decoder accepts (keeps its name)."""
    path.write_bytes(b"this is not an image \x00\x01\x02" * 8)
    return path


def counts(pairs: list[tuple[str, str]]) -> dict[str, Counter]:
    """{split: Counter(class)} from (split, class) pairs."""
    out = {split: Counter() for split in SPLITS}
    for split, label in pairs:
        out[split][label] += 1
    return out


# -- Derm7pt release_v0 -------------------------------------------------------------------


def build_derm7pt(root: Path, n_train: int = 10, n_valid: int = 5, n_test: int = 5):
    """``root/release_v0`` with meta.csv, the three index files and images/<SUB>/<file>.

    Every third case's clinic file is named in meta.csv with another case than on disk
    (``Nel003.jpg`` in meta.csv, ``NEL003.JPG`` on disk), as in the release.
    """
    release = root / "release_v0"
    rows, expected = [], []
    total = n_train + n_valid + n_test
    order = ["train"] * n_train + ["val"] * n_valid + ["test"] * n_test
    for i in range(total):
        diagnosis, key = DERM_DIAGNOSES[i % len(DERM_DIAGNOSES)]
        sub = ["NEL", "Aal", "Fal"][i % 3]
        if i % 3 == 0:
            clinic_meta, clinic_disk = f"{sub}/{sub.title()}{i:03d}.jpg", f"{sub}{i:03d}.JPG"
        else:
            clinic_meta = clinic_disk = f"{sub}/{sub}{i:03d}.jpg"
            clinic_disk = Path(clinic_disk).name
        derm_meta = f"{sub}/{sub}d{i:03d}.JPG"
        write_image(release / "images" / sub / clinic_disk, (24, 18), seed=2 * i)
        write_image(release / "images" / derm_meta, (20, 20), seed=2 * i + 1)
        row = dict.fromkeys(DERM_COLUMNS, "")
        row.update(case_num=str(i + 1), diagnosis=diagnosis, clinic=clinic_meta, derm=derm_meta)
        row.update(case_id=f"case_{i + 1}", sex="female", location="back")
        rows.append([row[c] for c in DERM_COLUMNS])
        expected.append((order[i], key))
    write_csv(release / "meta" / "meta.csv", DERM_COLUMNS, rows)
    starts = {"train": 0, "val": n_train, "test": n_train + n_valid}
    sizes = {"train": n_train, "val": n_valid, "test": n_test}
    for split, name in (("train", "train"), ("val", "valid"), ("test", "test")):
        indexes = [[j] for j in range(starts[split], starts[split] + sizes[split])]
        write_csv(release / "meta" / f"{name}_indexes.csv", ["indexes"], indexes)
    return release, counts(expected)


def derm_image(release: Path, row: int, column: str) -> Path:
    """The on-disk file of a meta.csv row's ``clinic`` or ``derm`` image (case-insensitive)."""
    with (release / "meta" / "meta.csv").open() as fh:
        record = list(csv.DictReader(fh))[row]
    wanted = release / "images" / record[column]
    return next(p for p in wanted.parent.iterdir() if p.name.lower() == wanted.name.lower())


def set_derm_diagnosis(release: Path, row: int, diagnosis: str) -> None:
    path = release / "meta" / "meta.csv"
    with path.open() as fh:
        records = list(csv.reader(fh))
    records[row + 1][DERM_COLUMNS.index("diagnosis")] = diagnosis
    write_csv(path, records[0], records[1:])


# -- MMC-AMD ------------------------------------------------------------------------------

MMC_LETTERS = {"h": "normal", "d": "dry_amd", "p": "pcv", "w": "wet_amd"}


def mmc_eyes(per_class: int = 4) -> list[tuple[str, str, int]]:
    """(eye id, split, number of OCT B-scans): eyes 0, 1 train, 2 val, 3+ test per class."""
    eyes = []
    for letter in "hdpw":
        for j in range(per_class):
            side = ["-l", "-r", "", "-l"][j % 4]
            eye = f"{letter}-{100 + j:04d}{side}"
            split = ["train", "train", "val", "test"][min(j, 3)]
            eyes.append((eye, split, 1 + j % 3))
    return eyes


def build_mmc_release(root: Path, splits: bool = True, with_val: bool = True):
    """The upstream VisualSearch folder: ``mmc-amd/ImageData`` and, beside it,
    ``mmc-amd-splitA-{train,val,test}/{ImageSets,annotations}``; plus one fundus-only and
    one OCT-only eye (unpaired). Returns (root, expected first-pair counts, all-pair counts).
    """
    data = root / "mmc-amd" / "ImageData"
    cfp, oct_dir = data / "cfp-clahe-448x448", data / "oct-median3x3-448x448"
    listed: dict[str, dict[str, list[str]]] = {s: {"cfp": [], "oct": []} for s in SPLITS}
    first, every = [], []
    for n, (eye, split, scans) in enumerate(mmc_eyes()):
        label = MMC_LETTERS[eye[0]]
        write_image(cfp / f"f-{eye}.jpg", (20, 20), seed=n)
        listed[split]["cfp"].append(f"f-{eye}")
        for k in range(scans):
            write_image(oct_dir / f"o-{eye}_{k:03d}.jpg", (22, 16), mode="L", seed=100 + n)
            listed[split]["oct"].append(f"o-{eye}_{k:03d}")
            every.append((split, label))
        first.append((split, label))
    write_image(cfp / "f-w-0900-r.jpg", (20, 20), seed=900)  # fundus only
    write_image(oct_dir / "o-d-0901_000.jpg", (22, 16), mode="L", seed=901)  # OCT only
    listed["train"]["cfp"].append("f-w-0900-r")
    listed["train"]["oct"].append("o-d-0901_000")
    if splits:
        for split in SPLITS if with_val else ("train", "test"):
            folder = root / f"mmc-amd-splitA-{split}"
            for name in ("cfp", "oct"):
                ids = listed[split][name]
                (folder / "ImageSets").mkdir(parents=True, exist_ok=True)
                (folder / "ImageSets" / f"{name}.txt").write_text("\n".join(ids) + "\n")
                (folder / "annotations").mkdir(parents=True, exist_ok=True)
                lines = [f"{i} {'hdpw'.index(i.split('-')[1])}" for i in ids]
                (folder / "annotations" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return root, counts(first), counts(every)


def build_mmc_meta(root: Path, n: int = 16):
    """``meta/meta.csv`` (CFP, OCT, MMC_label) with ``meta/{train,test}_set.csv``; images in
    ``images/``. Rows 0..n*3/4-1 are train, the rest test. Returns (root, {split: total})."""
    names = ["Normal", "dryAMD", "PCV", "wetAMD"]
    rows = []
    for i in range(n):
        letter = "hdpw"[i % 4]
        fundus, oct_name = f"images/f-{letter}-{i:04d}.jpg", f"images/o-{letter}-{i:04d}_000.jpg"
        write_image(root / fundus, (20, 20), seed=i)
        write_image(root / oct_name, (20, 20), mode="L", seed=50 + i)
        rows.append([fundus, oct_name, names[i % 4]])
    write_csv(root / "meta" / "meta.csv", ["CFP", "OCT", "MMC_label"], rows)
    cut = n * 3 // 4
    write_csv(root / "meta" / "train_set.csv", ["indexes"], [[i] for i in range(cut)])
    write_csv(root / "meta" / "test_set.csv", ["indexes"], [[i] for i in range(cut, n)])
    return root, {"train+val": cut, "test": n - cut}


# -- Harvard-FairVision glaucoma ----------------------------------------------------------

OCT_SHAPE = (5, 12, 10)  # (B-scans, depth, width); the release has 200 x 200 x 200


def write_npz(path: Path, glaucoma: int, seed: int) -> Path:
    """A data_<id>.npz with the release's keys; B-scan i of the volume is filled with 10 * i."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    volume = np.stack([np.full(OCT_SHAPE[1:], 10 * i, np.uint8) for i in range(OCT_SHAPE[0])])
    np.savez_compressed(
        path,
        glaucoma=np.array(glaucoma),
        slo_fundus=rng.integers(0, 256, (12, 12), dtype=np.uint8),
        oct_bscans=volume,
        race=np.array(1),
        male=np.array(0),
        hispanic=np.array(0),
        maritalstatus=np.array(1),
        language=np.array(0),
    )
    return path


def build_fairvision(
    root: Path, folders: tuple[str, str, str] = ("Training", "Validation", "Test")
):
    """20 eyes: 12 / 4 / 4 in the three folders, labels alternating 0 / 1; plus the summary
    CSV ``data_summary.csv`` (filename, use, glaucoma yes/no) matching the folders."""
    sizes = (12, 4, 4)
    rows, expected, ident = [], [], 1
    for split, folder, size in zip(SPLITS, folders, sizes, strict=True):
        for _ in range(size):
            label = ident % 2
            write_npz(root / folder / f"data_{ident:05d}.npz", label, ident)
            use = {"train": "training", "val": "validation", "test": "test"}[split]
            rows.append([f"data_{ident:05d}.npz", use, "yes" if label else "no"])
            expected.append((split, "glaucoma" if label else "no_glaucoma"))
            ident += 1
    write_csv(root / "data_summary.csv", ["filename", "use", "glaucoma"], rows)
    return root, counts(expected)


# -- csv manifest -------------------------------------------------------------------------


def build_csv(root: Path, n: int = 18, split_column: bool = True):
    """``root/manifest.csv`` (id, label, m1, m2[, split]) over ``root/img/``; labels a/b/c;
    m2 files are PNG. Returns (manifest, expected counts)."""
    rows, expected = [], []
    for i in range(n):
        label = "abc"[i % 3]
        m1, m2 = f"img/s{i}_m1.jpg", f"img/s{i}_m2.png"
        write_image(root / m1, (16, 16), seed=i)
        write_image(root / m2, (16, 16), mode="L", seed=200 + i)
        split = "train" if i < n // 2 else ("val" if i < 3 * n // 4 else "test")
        rows.append([f"s{i}", label, m1, m2] + ([split] if split_column else []))
        expected.append((split, label))
    header = ["id", "label", "m1", "m2"] + (["split"] if split_column else [])
    return write_csv(root / "manifest.csv", header, rows), counts(expected)
