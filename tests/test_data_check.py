"""``DatasetAdapter.check``: the cheap pre-flight of a dataset, without decoding an image."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from bench.data import adapter_for
from bench.errors import DataError
from tests.data_fixtures import (
    DERM_COLUMNS,
    build_csv,
    build_derm7pt,
    build_fairvision,
    build_mmc_meta,
    build_mmc_release,
    write_csv,
)


@pytest.fixture
def no_decoding(monkeypatch):
    """Every image or npz array read fails the test: check must read only indexes."""

    def refuse(*args, **kwargs):
        raise AssertionError("check decoded a file")

    monkeypatch.setattr(Image, "open", refuse)
    monkeypatch.setattr("bench.data.fairvision.read_key", refuse)


def check(name: str, root, **options):
    return adapter_for(name, {"root": str(root), "image_size": 16, **options}).check()


def test_each_layout_passes_its_check_without_decoding(tmp_path, no_decoding):
    derm, _ = build_derm7pt(tmp_path / "d")
    mmc, _, _ = build_mmc_release(tmp_path / "VS")
    meta, _ = build_mmc_meta(tmp_path / "m")
    glaucoma, _ = build_fairvision(tmp_path / "g")
    manifest, _ = build_csv(tmp_path / "c")
    info = check("derm7pt", derm)
    assert info.classes == ("bcc", "nev", "mel", "misc", "sk") and info.image_size == 16
    assert check("mmc-amd", mmc, split="official").modalities == ("fundus", "oct")
    assert check("mmc-amd", meta).channels == (3, 1)
    assert check("harvard-glaucoma", glaucoma, split_file="data_summary.csv").num_classes == 2
    info = check("csv", manifest, channels="3,1")
    assert (info.classes, info.modalities, info.channels) == (("a", "b", "c"), ("m1", "m2"), (3, 1))


def test_synthetic_retina_checks_its_options_and_reads_nothing(tmp_path, no_decoding):
    info = adapter_for("synthetic-retina", {"modalities": 3}).check()
    assert info.modalities == ("fundus", "oct", "angio") and info.channels == (3, 1, 1)


def test_a_root_that_does_not_exist_fails_the_check(tmp_path):
    with pytest.raises(DataError, match="does not exist: pass --data-root derm7pt=PATH"):
        check("derm7pt", tmp_path / "nowhere")


def derm_without_the_derm_column(root):
    release, _ = build_derm7pt(root)
    columns = [c for c in DERM_COLUMNS if c != "derm"]
    write_csv(release / "meta" / "meta.csv", columns, [])
    return release


def derm_without_the_valid_index(root):
    release, _ = build_derm7pt(root)
    (release / "meta" / "valid_indexes.csv").unlink()
    return release


def mmc_with_two_fundus_folders(root):
    folder, _, _ = build_mmc_release(root)
    (folder / "mmc-amd" / "ImageData" / "cfp-raw").mkdir()
    shutil.rmtree(folder / "mmc-amd" / "ImageData" / "cfp-clahe-448x448")
    (folder / "mmc-amd" / "ImageData" / "cfp-other").mkdir()
    return folder


def glaucoma_without_oct(root):
    folder, _ = build_fairvision(root)
    for path in folder.rglob("data_*.npz"):
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files if k != "oct_bscans"}
        np.savez(path, **arrays)
    return folder


def csv_without_rows(root):
    manifest, _ = build_csv(root)
    manifest.write_text("id,label,m1,m2,split\n")
    return manifest


@pytest.mark.parametrize(
    ("name", "build", "options", "message"),
    [
        ("derm7pt", derm_without_the_derm_column, {}, r"meta\.csv lacks column\(s\) derm"),
        ("derm7pt", derm_without_the_valid_index, {}, r"cannot read .*valid_indexes\.csv"),
        ("mmc-amd", lambda r: build_mmc_release(r, splits=False)[0], {"split": "official"},
         "split=official but no mmc-amd-splitA-train and -test folders"),
        ("mmc-amd", mmc_with_two_fundus_folders, {}, "expected one cfp-\\* folder"),
        ("mmc-amd", lambda r: r.mkdir() or r, {}, "neither ImageData/ nor meta/meta.csv"),
        ("harvard-glaucoma", glaucoma_without_oct, {}, r"lacks oct_bscans"),
        ("harvard-glaucoma", lambda r: build_fairvision(r)[0], {"split_file": "x.csv"},
         "split_file x.csv not found"),
        ("csv", lambda r: build_csv(r)[0], {"modality_columns": "m1,oct"},
         r"lacks column\(s\) oct"),
        ("csv", lambda r: build_csv(r)[0].parent, {}, "is not a file"),
        ("csv", csv_without_rows, {}, "has no labelled row"),
    ],
    ids=[
        "derm-column",
        "derm-index",
        "mmc-official",
        "mmc-folders",
        "mmc-empty",
        "glaucoma-keys",
        "glaucoma-split-file",
        "csv-column",
        "csv-folder",
        "csv-empty",
    ],
)  # fmt: skip
def test_a_copy_that_cannot_run_fails_the_check_in_one_line(
    tmp_path, name, build, options, message
):
    root = build(tmp_path / "copy")
    with pytest.raises(DataError, match=message) as err:
        check(name, root, **options)
    assert "\n" not in str(err.value)
