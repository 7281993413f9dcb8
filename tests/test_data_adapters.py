"""Real-dataset adapters on tiny fixture copies of each exact layout; the decoded cache."""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.data import images, load_dataset
from bench.data.mmc_amd import eye_id
from bench.data.verify import scan_dataset
from bench.errors import ConfigError, DataError
from bench.spec import DatasetRef
from tests.data_fixtures import (
    SPLITS,
    build_csv,
    build_derm7pt,
    build_fairvision,
    build_mmc_meta,
    build_mmc_release,
    corrupt,
    derm_image,
    set_derm_diagnosis,
    write_image,
)

SIZE = 16


def load(name: str, cache: Path, **options):
    return load_dataset(DatasetRef.of(name, {"image_size": SIZE, **options}), cache)


def split_counts(data) -> dict[str, Counter]:
    return {s: Counter(data.info.classes[i] for i in data.split(s).labels.tolist()) for s in SPLITS}


def files_in(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


# -- Derm7pt ------------------------------------------------------------------------------


def test_derm7pt_loads_the_official_splits_in_five_groups(tmp_path):
    release, expected = build_derm7pt(tmp_path / "d")
    data = load("derm7pt", tmp_path / "cache", root=str(release))
    assert data.info.classes == ("bcc", "nev", "mel", "misc", "sk")
    assert data.info.modalities == ("clinic", "derm")
    assert split_counts(data) == expected  # valid_indexes.csv is the val split
    clinic, derm = data.train.images
    assert clinic.shape == (10, 3, SIZE, SIZE) and derm.shape == (10, 3, SIZE, SIZE)
    assert clinic.dtype == torch.uint8 and data.train.labels.dtype == torch.int64
    assert clinic.is_contiguous() and clinic.float().std() > 0


def test_derm7pt_root_may_be_the_parent_given_by_the_environment(tmp_path, monkeypatch):
    _, expected = build_derm7pt(tmp_path / "d")
    monkeypatch.setenv("BENCH_DATA_DERM7PT", str(tmp_path / "d"))
    assert split_counts(load("derm7pt", tmp_path / "cache")) == expected


def test_without_a_root_the_error_says_where_to_get_the_data(tmp_path, monkeypatch):
    monkeypatch.delenv("BENCH_DATA_DERM7PT", raising=False)
    with pytest.raises(DataError) as err:
        load("derm7pt", tmp_path / "cache")
    message = str(err.value)
    assert "\n" not in message
    assert "derm.cs.sfu.ca" in message and "--data-root derm7pt=" in message
    assert "BENCH_DATA_DERM7PT" in message


def test_a_missing_root_folder_is_a_one_line_error(tmp_path):
    with pytest.raises(DataError, match="does not exist") as err:
        load("harvard-glaucoma", tmp_path / "cache", root=str(tmp_path / "nowhere"))
    assert "\n" not in str(err.value) and "--data-root harvard-glaucoma=" in str(err.value)


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda r: derm_image(r, 4, "derm").unlink(), r"missing_file images/Aal/Aald004\.JPG"),
        (lambda r: set_derm_diagnosis(r, 2, "actinic keratosis"), "unknown_label.*actinic"),
        (lambda r: corrupt(derm_image(r, 1, "clinic")), r"cannot decode image .*Aal001\.jpg"),
    ],
    ids=["missing-image", "unknown-diagnosis", "corrupt-image"],
)
def test_a_bad_derm7pt_copy_fails_in_one_line_and_leaves_no_cache(tmp_path, damage, expected):
    release, _ = build_derm7pt(tmp_path / "d")
    damage(release)
    with pytest.raises(DataError, match=expected) as err:
        load("derm7pt", tmp_path / "cache", root=str(release))
    assert "\n" not in str(err.value)
    assert files_in(tmp_path / "cache") == []


def test_the_decoded_cache_is_reused_and_refreshed_when_a_file_changes(tmp_path, monkeypatch):
    release, _ = build_derm7pt(tmp_path / "d")
    cache = tmp_path / "cache"
    first = load("derm7pt", cache, root=str(release))
    stacks = sorted(p.name for p in files_in(cache))
    assert len(stacks) == 2 and all(name.endswith(".npy") for name in stacks)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the cache is valid")

    with monkeypatch.context() as patch:
        patch.setattr("bench.data.derm7pt.decode_image", no_decoding)
        again = load("derm7pt", cache, root=str(release))
    assert torch.equal(again.test.images[1], first.test.images[1])

    changed = derm_image(release, 0, "derm")
    write_image(changed, (20, 20), seed=999)
    os.utime(changed, ns=(1_000_000_000, 1_000_000_000))
    fresh = load("derm7pt", cache, root=str(release))
    assert len(files_in(cache)) == 3  # the derm stack decoded afresh, the clinic one reused
    assert not torch.equal(fresh.train.images[1][0], first.train.images[1][0])
    assert torch.equal(fresh.train.images[1][1:], first.train.images[1][1:])


# -- the decoded cache --------------------------------------------------------------------


def _sources(folder: Path, n: int) -> list[Path]:
    return [write_image(folder / f"i{i}.png", (12, 12), seed=i) for i in range(n)]


def test_a_failed_cache_build_leaves_no_file_behind(tmp_path):
    sources = _sources(tmp_path / "img", 6)
    calls = []

    def crash_midway(path: Path) -> np.ndarray:
        calls.append(path)
        if len(calls) == 4:
            raise RuntimeError("killed while decoding")
        return images.decode_image(path, 8, 3)

    with pytest.raises(RuntimeError):
        images.cached_stack(sources, crash_midway, (3, 8, 8), {"dataset": "t"}, tmp_path / "c")
    assert files_in(tmp_path / "c") == []
    stack = images.cached_stack(
        sources, lambda p: images.decode_image(p, 8, 3), (3, 8, 8), {"dataset": "t"}, tmp_path / "c"
    )
    assert stack.shape == (6, 3, 8, 8) and isinstance(stack, np.memmap)


def test_a_damaged_cache_file_is_not_trusted(tmp_path, caplog):
    sources = _sources(tmp_path / "img", 3)

    def decode(path: Path) -> np.ndarray:
        return images.decode_image(path, 8, 1)

    good = np.array(images.cached_stack(sources, decode, (1, 8, 8), {}, tmp_path / "c"))
    (path,) = files_in(tmp_path / "c")
    path.write_bytes(path.read_bytes()[:100])  # truncated, as by a full disk
    with caplog.at_level(logging.WARNING, logger="bench.data"):
        again = images.cached_stack(sources, decode, (1, 8, 8), {}, tmp_path / "c")
    assert np.array_equal(again, good) and "decoding again" in caplog.text


def test_clahe_raises_local_contrast_and_keeps_a_flat_image_flat():
    rng = np.random.default_rng(0)
    dull = (100 + rng.integers(0, 12, (64, 48))).astype(np.uint8)
    out = images.clahe(dull)
    assert out.shape == dull.shape and out.dtype == np.uint8
    assert out.std() > 2 * dull.std()
    flat = images.clahe(np.full((40, 40), 77, np.uint8))
    assert flat.max() - flat.min() == 0


def test_the_median_filter_removes_salt_noise():
    image = np.full((20, 20), 50, np.uint8)
    image[5, 7] = image[12, 3] = 255
    from PIL import Image

    out = np.asarray(images.preprocess(Image.fromarray(image), "median3"))
    assert (out == 50).all()


# -- MMC-AMD ------------------------------------------------------------------------------


def test_mmc_amd_release_pairs_each_oct_with_its_eyes_fundus(tmp_path):
    root, first, _ = build_mmc_release(tmp_path / "VisualSearch")
    data = load("mmc-amd", tmp_path / "cache", root=str(root))
    assert data.info.classes == ("normal", "dry_amd", "wet_amd", "pcv")
    assert split_counts(data) == first
    assert data.train.images[0].shape[1] == 3 and data.train.images[1].shape[1] == 1
    scan = scan_dataset("mmc-amd", root, {})
    for sample in scan.usable():
        fundus, oct_scan = sample.sources
        assert eye_id(fundus.name) == eye_id(oct_scan.name) == sample.id
        assert fundus.name.startswith("f-") and oct_scan.name.startswith("o-")


def test_mmc_amd_pairs_all_uses_every_b_scan(tmp_path):
    root, _, every = build_mmc_release(tmp_path / "VisualSearch")
    data = load("mmc-amd", tmp_path / "cache", root=str(root), pairs="all")
    assert split_counts(data) == every


def test_mmc_amd_without_val_folder_carves_val_from_train_by_eye(tmp_path):
    root, first, _ = build_mmc_release(tmp_path / "VS", with_val=False)
    scan = scan_dataset("mmc-amd", root, {"pairs": "all"})
    usable = scan.usable()
    by_split = Counter(s.split for s in {s.group: s for s in usable}.values())
    assert by_split["test"] == sum(first["test"].values())
    assert by_split["train"] + by_split["val"] == sum(first["train"].values())
    assert by_split["val"] == round(0.2 * sum(first["train"].values()))
    eyes = {}
    for sample in usable:
        assert eyes.setdefault(sample.group, sample.split) == sample.split


def test_mmc_amd_without_split_files_makes_a_seeded_stratified_eye_split(tmp_path):
    root, _, _ = build_mmc_release(tmp_path / "VS", splits=False)
    data = load("mmc-amd", tmp_path / "cache", root=str(root))
    sizes = {s: len(data.split(s)) for s in SPLITS}
    assert sizes == {"train": 10, "val": 3, "test": 3}  # 16 paired eyes, 0.2 then 0.2
    one = {s.id: s.split for s in scan_dataset("mmc-amd", root, {}).usable()}
    same = {s.id: s.split for s in scan_dataset("mmc-amd", root, {}).usable()}
    other = {s.id: s.split for s in scan_dataset("mmc-amd", root, {"split_seed": 1}).usable()}
    assert one == same and one != other


def test_mmc_amd_meta_csv_layout_maps_its_label_names(tmp_path):
    root, sizes = build_mmc_meta(tmp_path / "m")
    data = load("mmc-amd", tmp_path / "cache", root=str(root))
    assert len(data.train) + len(data.val) == sizes["train+val"] and len(data.val) > 0
    # test rows 12..15 are Normal, dryAMD, PCV, wetAMD
    assert data.test.labels.tolist() == [0, 1, 3, 2]


def test_mmc_amd_applies_clahe_and_median_only_where_not_done_upstream(tmp_path):
    from bench.data.mmc_amd import _decode

    done = write_image(tmp_path / "cfp-clahe-448x448" / "f-h-0001.jpg", (32, 32), seed=1)
    raw = write_image(tmp_path / "fundus" / "f-h-0001.jpg", (32, 32), seed=1)
    kwargs = {"channels": 3, "step": "clahe", "marker": "clahe"}
    assert np.array_equal(
        _decode(done, SIZE, mode="auto", **kwargs), images.decode_image(done, SIZE, 3)
    )
    assert np.array_equal(
        _decode(raw, SIZE, mode="auto", **kwargs), images.decode_image(raw, SIZE, 3, "clahe")
    )
    assert np.array_equal(
        _decode(done, SIZE, mode="paper", **kwargs), images.decode_image(done, SIZE, 3, "clahe")
    )


# -- Harvard-FairVision glaucoma ----------------------------------------------------------


def test_fairvision_default_is_a_seeded_stratified_resplit(tmp_path):
    root, _ = build_fairvision(tmp_path / "g")
    data = load("harvard-glaucoma", tmp_path / "cache", root=str(root))
    assert data.info.classes == ("no_glaucoma", "glaucoma")
    assert {s: len(data.split(s)) for s in SPLITS} == {"train": 13, "val": 3, "test": 4}
    assert data.test.labels.tolist().count(1) == 2  # stratified: half of the test eyes
    assert data.train.images[0].shape == (13, 1, SIZE, SIZE)


def test_fairvision_folders_split_accepts_lower_case_folder_names(tmp_path):
    root, expected = build_fairvision(tmp_path / "g", folders=("train", "val", "test"))
    data = load("harvard-glaucoma", tmp_path / "cache", root=str(root), split="folders")
    assert split_counts(data) == expected


def test_fairvision_split_file_overrides_the_resplit(tmp_path):
    root, expected = build_fairvision(tmp_path / "g")
    data = load(
        "harvard-glaucoma", tmp_path / "cache", root=str(root), split_file="data_summary.csv"
    )
    assert split_counts(data) == expected


@pytest.mark.parametrize(("oct_slice", "value"), [("center", 20), (4, 40), ("1", 10), ("mean", 20)])
def test_fairvision_oct_slice_picks_a_b_scan(tmp_path, oct_slice, value):
    root, _ = build_fairvision(tmp_path / "g")
    data = load("harvard-glaucoma", tmp_path / "cache", root=str(root), oct_slice=oct_slice)
    assert (data.test.images[1] == value).all()


def test_fairvision_rejects_an_unknown_oct_slice(tmp_path):
    root, _ = build_fairvision(tmp_path / "g")
    with pytest.raises(ConfigError, match="oct_slice"):
        load("harvard-glaucoma", tmp_path / "cache", root=str(root), oct_slice="top")


# -- csv manifest -------------------------------------------------------------------------


def test_csv_manifest_loads_its_splits_classes_and_modalities(tmp_path):
    manifest, expected = build_csv(tmp_path / "c")
    data = load("csv", tmp_path / "cache", root=str(manifest), channels="3,1")
    assert data.info.classes == ("a", "b", "c")
    assert data.info.modalities == ("m1", "m2") and data.info.channels == (3, 1)
    assert split_counts(data) == expected
    assert data.val.images[1].shape == (len(data.val), 1, SIZE, SIZE)


def test_csv_classes_option_fixes_the_label_order(tmp_path):
    manifest, _ = build_csv(tmp_path / "c")
    data = load("csv", tmp_path / "cache", root=str(manifest), classes="c,b,a")
    assert data.info.classes == ("c", "b", "a")
    assert data.train.labels[:3].tolist() == [2, 1, 0]  # rows are a, b, c


def test_csv_without_split_column_makes_a_seeded_split(tmp_path):
    manifest, _ = build_csv(tmp_path / "c", n=20, split_column=False)
    data = load("csv", tmp_path / "cache", root=str(manifest))
    assert {s: len(data.split(s)) for s in SPLITS} == {"train": 13, "val": 3, "test": 4}


def test_csv_custom_modality_columns(tmp_path):
    manifest, _ = build_csv(tmp_path / "c")
    text = manifest.read_text().replace("id,label,m1,m2", "id,label,fundus,oct", 1)
    manifest.write_text(text)
    data = load("csv", tmp_path / "cache", root=str(manifest), modality_columns="fundus,oct")
    assert data.info.modalities == ("fundus", "oct")


def test_csv_skips_samples_whose_modality_is_absent_with_a_warning(tmp_path, caplog):
    manifest, expected = build_csv(tmp_path / "c")
    lines = manifest.read_text().splitlines()
    lines[1] = lines[1].replace("img/s0_m2.png", "")  # s0: train, label a
    manifest.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger="bench.data"):
        data = load("csv", tmp_path / "cache", root=str(manifest))
    assert len(data.train) == sum(expected["train"].values()) - 1
    assert "1 x absent_modality" in caplog.text and "bench data verify csv" in caplog.text


def test_csv_path_escaping_the_manifest_folder_is_refused(tmp_path):
    manifest, _ = build_csv(tmp_path / "c")
    write_image(tmp_path / "outside.png", (16, 16))
    lines = manifest.read_text().splitlines()
    lines[3] = lines[3].replace("img/s2_m1.jpg", "../outside.png")
    manifest.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"path_escape manifest line 4 \(id s2\)") as err:
        load("csv", tmp_path / "cache", root=str(manifest))
    assert "\n" not in str(err.value)
