"""`bench data verify`: counts per split and class, and every problem of a bad copy named."""

from __future__ import annotations

import argparse
import shutil

import pytest

from bench.cli.data import add_parser as add_data_parser
from bench.data.verify import render, verify
from bench.errors import DataError
from tests.data_fixtures import (
    build_csv,
    build_derm7pt,
    build_fairvision,
    build_mmc_release,
    corrupt,
    derm_image,
    set_derm_diagnosis,
    write_csv,
    write_image,
)


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="bench")
    add_data_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["data", "verify", *argv])
    return args.func(args)


def kinds(report) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for problem in report.problems:
        found.setdefault(problem.kind, []).append(f"{problem.where}: {problem.detail}")
    return found


def test_a_clean_copy_is_usable_and_its_counts_are_printed(tmp_path, capsys):
    release, expected = build_derm7pt(tmp_path / "d")
    assert run_cli("derm7pt", "--root", str(release)) == 0
    out = capsys.readouterr().out
    assert "usable (20 usable samples)" in out and "no problems found" in out
    header = next(line for line in out.splitlines() if line.startswith("| split"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "split", "bcc", "nev", "mel", "misc", "sk", "total",
    ]  # fmt: skip
    val_row = next(line for line in out.splitlines() if line.startswith("| val"))
    assert val_row.split("|")[-2].strip() == "5"
    report = verify("derm7pt", release)
    assert report.counts.loc["train", "nev"] == expected["train"]["nev"]


def test_each_problem_of_a_bad_derm7pt_copy_is_named(tmp_path, capsys):
    release, _ = build_derm7pt(tmp_path / "d")
    derm_image(release, 4, "derm").unlink()  # a pair with one side absent on disk
    bad = corrupt(derm_image(release, 7, "clinic"))
    set_derm_diagnosis(release, 2, "actinic keratosis")
    write_csv(release / "meta" / "test_indexes.csv", ["indexes"], [[15], [16], [17], [18], [99]])
    report = verify("derm7pt", release)
    found = kinds(report)
    assert not report.usable
    assert any("Aald004.JPG" in line for line in found["missing_file"])
    assert found["corrupt_image"] == [next(x for x in found["corrupt_image"] if bad.name in x)]
    assert any("actinic keratosis" in line for line in found["unknown_label"])
    assert any("row 99 is outside" in line for line in found["bad_index"])
    assert any("is in no index file" in line for line in found["unassigned"])  # row 19
    assert run_cli("derm7pt", "--root", str(release)) == 1
    out = capsys.readouterr().out
    assert "NOT usable" in out and "missing_file" in out and bad.name in out


def test_quick_verify_skips_decoding(tmp_path):
    release, _ = build_derm7pt(tmp_path / "d")
    corrupt(derm_image(release, 3, "derm"))
    assert verify("derm7pt", release, decode=False).usable
    assert not verify("derm7pt", release).usable


def test_unpaired_mmc_amd_images_are_reported_without_blocking(tmp_path):
    root, _, _ = build_mmc_release(tmp_path / "VS")
    report = verify("mmc-amd", root)
    assert report.usable
    unpaired = kinds(report)["unpaired"]
    assert len(unpaired) == 2
    assert any("eye w-0900-r: has 1 fundus" in line for line in unpaired)
    assert any("eye d-0901: has 1 OCT" in line for line in unpaired)
    assert int(report.counts.loc["total", "total"]) == 16
    assert "unpaired" in render(report)


def test_mmc_amd_listed_image_missing_on_disk_and_wrong_annotation(tmp_path):
    root, _, _ = build_mmc_release(tmp_path / "VS")
    (root / "mmc-amd" / "ImageData" / "oct-median3x3-448x448" / "o-p-0103-l_000.jpg").unlink()
    annotations = root / "mmc-amd-splitA-val" / "annotations" / "cfp.txt"
    annotations.write_text(annotations.read_text().replace("f-h-0102 0", "f-h-0102 3"))
    found = kinds(verify("mmc-amd", root))
    assert any(
        line.startswith("o-p-0103-l_000.jpg: named by mmc-amd-splitA-test/ImageSets/oct.txt")
        for line in found["missing_file"]
    )
    assert any("says 3" in line for line in found["label_mismatch"])


def test_csv_problems_escape_duplicate_and_absent(tmp_path):
    manifest, _ = build_csv(tmp_path / "c")
    write_image(tmp_path / "outside.png", (16, 16))
    lines = manifest.read_text().splitlines()
    lines[2] = lines[2].replace("img/s1_m1.jpg", "../outside.png")
    lines[3] = lines[3].replace("s2,", "s3,", 1)  # duplicate id s3
    lines[5] = lines[5].replace("img/s4_m2.png", "")  # absent in the source data
    manifest.write_text("\n".join(lines) + "\n")
    report = verify("csv", manifest)
    found = kinds(report)
    assert any(
        "line 3 (id s1)" in line and "../outside.png" in line for line in found["path_escape"]
    )
    assert any(
        line == "manifest line 5 (id s3): has the id of manifest line 4 (id s3)"
        for line in found["duplicate_id"]
    )
    assert all(p.blocking is False for p in report.problems if p.kind == "absent_modality")
    assert not report.usable


def test_csv_with_only_absent_modalities_is_still_usable(tmp_path):
    manifest, _ = build_csv(tmp_path / "c")
    lines = manifest.read_text().splitlines()
    lines[1] = lines[1].replace("img/s0_m1.jpg", "")
    manifest.write_text("\n".join(lines) + "\n")
    report = verify("csv", manifest)
    assert report.usable and list(kinds(report)) == ["absent_modality"]
    assert int(report.counts.loc["total", "total"]) == 17


def test_fairvision_duplicate_id_across_folders(tmp_path):
    root, _ = build_fairvision(tmp_path / "g")
    shutil.copy(root / "Training" / "data_00001.npz", root / "Test" / "data_00001.npz")
    (root / "Validation" / "data_00014.npz").write_bytes(b"PK\x03\x04 broken zip")
    found = kinds(verify("harvard-glaucoma", root, {"split": "folders"}))
    assert any(
        line.endswith(
            "Test/data_00001.npz: has the id of " + str(root / "Training" / "data_00001.npz")
        )
        for line in found["duplicate_id"]
    )
    assert any("data_00014.npz" in line for line in found["corrupt_image"])


def test_a_missing_root_folder_raises_for_exit_status_2(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        run_cli("derm7pt", "--root", str(tmp_path / "absent"))


def test_options_reach_the_adapter(tmp_path, capsys):
    root, _, every = build_mmc_release(tmp_path / "VS")
    assert run_cli("mmc-amd", "--root", str(root), "--option", "pairs=all", "--quick") == 0
    total = sum(sum(c.values()) for c in every.values())
    assert f"({total} usable samples)" in capsys.readouterr().out
