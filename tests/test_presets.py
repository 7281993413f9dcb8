"""Presets shipped with the package: ``bench run --preset NAME``, its precedence, ``--dry-run``,
and ``kedr-paper-frozen`` end to end on the Derm7pt fixture."""

from __future__ import annotations

import pytest
import yaml

from bench.cli import main
from bench.config import expand, load_preset, preset_names, resolve
from bench.errors import UnknownNameError
from bench.tracking import Tracker
from tests.data_fixtures import build_derm7pt


def test_the_paper_presets_ship_and_expand_to_valid_cells():
    assert {"kedr-paper", "kedr-paper-frozen"} <= set(preset_names())
    for name in preset_names():
        cells = expand(resolve(None, {}, [], preset=name))
        assert cells and all(cell.method == "kedr" for cell in cells)


def test_kedr_paper_holds_the_released_protocol():
    cells = expand(resolve(None, {}, [], preset="kedr-paper"))
    assert len(cells) == 4 * 5
    assert sorted({c.missing.rate for c in cells}) == [0.2, 0.4, 0.6, 0.8]
    assert sorted({c.seed for c in cells}) == [0, 1, 2, 3, 4]
    train = cells[0].train
    assert (train.epochs, train.batch_size, train.lr, train.optimizer, train.scheduler) == (
        250,
        32,
        1e-5,
        "adam",
        "cosine",
    )
    hparams = dict(cells[0].hparams)
    assert hparams["backbone"] == "resnet50.tv_in1k" and hparams["pretrained"] == "hf-cache"
    assert (hparams["w_disent"], hparams["w_conf"], hparams["w_cls"]) == (1.0, 1.0, 1.0)
    assert hparams["text_trainable"] is True
    assert dict(cells[0].dataset.options)["image_size"] == 224
    frozen = expand(resolve(None, {}, [], preset="kedr-paper-frozen"))[0]
    assert dict(frozen.frozen_backbone)["name"] == "resnet50.tv_in1k"
    assert "backbone" not in dict(frozen.hparams) and frozen.train == train


def test_config_file_flags_and_sets_override_the_preset_in_that_order(tmp_path):
    config = tmp_path / "grid.yaml"
    config.write_text(yaml.safe_dump({"train": {"lr": 3e-4, "epochs": 7}, "seeds": [9]}))
    flags = {"train": {"epochs": 3}}
    resolved = resolve(str(config), flags, ["train.batch_size=8"], preset="kedr-paper")
    assert resolved["train"]["lr"] == 3e-4  # config over preset
    assert resolved["train"]["epochs"] == 3  # flags over config
    assert resolved["train"]["batch_size"] == 8  # --set over all
    assert resolved["train"]["optimizer"] == "adam" and resolved["seeds"] == [9]


def test_an_unknown_preset_names_the_shipped_ones(capsys):
    with pytest.raises(UnknownNameError, match="unknown preset 'kedr-papr': choose one of"):
        load_preset("kedr-papr")
    assert main(["run", "--preset", "kedr-papr"]) == 2
    assert "kedr-paper, kedr-paper-frozen" in capsys.readouterr().err


def test_dry_run_of_kedr_paper_prints_its_cells_and_settings_and_touches_nothing(tmp_path, capsys):
    results = tmp_path / "never-created"
    assert main(["run", "--preset", "kedr-paper", "--dry-run", "--results-dir", str(results)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("20 cells (methods 1 x datasets 1 x rates 4 x seeds 5)")
    assert "settings resolved as defaults < preset < --config" in out
    train = next(line for line in out.splitlines() if line.startswith("train: "))
    assert "epochs=250" in train and "lr=1e-05" in train and "optimizer='adam'" in train
    assert "  mmc-amd: image_size=224" in out and "official_split='splitA'" in out
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in out.splitlines()
        if line.startswith("| kedr ")
    ]
    assert len(rows) == 20 and ["kedr", "mmc-amd", "0.8", "4"] in [row[:4] for row in rows]
    assert not results.exists()


def test_kedr_paper_frozen_runs_end_to_end_on_the_derm7pt_fixture(tmp_path, capsys):
    release, _ = build_derm7pt(tmp_path / "data")
    results = tmp_path / "results"
    args = [
        "run",
        "--preset",
        "kedr-paper-frozen",
        "--datasets",
        "derm7pt",
        "--data-root",
        f"derm7pt={release}",
        "--rates",
        "0.2",
        "--seeds",
        "0",
        "--epochs",
        "1",
        "--results-dir",
        str(results),
        "--set",
        "frozen_backbone.pretrained=null",  # no ImageNet weights in the tests: random init
        "--set",
        "hparams.kedr.text_encoder=hashing",  # nor Bio_ClinicalBERT
        "--set",
        "dataset_options.derm7pt.image_size=64",  # ResNet-50 at 224 px is 12x slower here
    ]
    assert main(args) == 0, capsys.readouterr().err
    tracker = Tracker(results)
    (run,) = tracker.runs(tracker.require_experiment("kedr-paper-frozen"))
    assert run.status == "FINISHED" and run.tags["dataset"] == "derm7pt"
    assert run.params["frozen_backbone.name"] == "resnet50.tv_in1k"
    assert run.params["train.optimizer"] == "adam" and float(run.params["train.lr"]) == 1e-5
    assert int(run.params["train.epochs"]) == 1 and run.params["train.batch_size"] == "32"
    assert "test_ts/ece" in run.metrics and "calibration/temperature" in run.metrics
