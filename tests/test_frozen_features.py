"""Frozen-backbone mode: features computed once per (dataset, backbone, weights), reused."""

from __future__ import annotations

from bench import results
from bench.cli import main
from tests.conftest import run_args


def test_a_grid_of_heads_trains_on_cached_frozen_features(tmp_path, capsys):
    args = run_args(
        tmp_path,
        "--methods",
        "late-fusion,kedr",
        "--rates",
        "0.4",
        "--seeds",
        "0",
        "--set",
        "frozen_backbone.name=resnet18",
        "--set",
        "hparams.kedr.text_encoder=hashing",
    )
    assert main(args) == 0
    frame = results.load("t", tmp_path)
    assert set(frame["status"]) == {"FINISHED"} and len(frame) == 2
    cached = list((tmp_path / "cache" / "features").glob("*.npz"))
    assert len(cached) == 1  # one extraction served both methods


def test_frozen_backbone_conflicts_with_a_method_backbone(tmp_path, capsys):
    args = run_args(
        tmp_path,
        "--methods",
        "late-fusion",
        "--set",
        "frozen_backbone.name=resnet18",
        "--set",
        "hparams.late-fusion.backbone=resnet18",
    )
    assert main(args) == 2
    assert "frozen backbone decides them" in capsys.readouterr().err


def test_pretrained_weights_that_are_absent_stop_the_grid_before_any_cell(tmp_path, capsys):
    args = run_args(
        tmp_path,
        "--methods",
        "late-fusion",
        "--rates",
        "0",
        "--seeds",
        "0",
        "--set",
        "frozen_backbone.name=resnet18",
        "--set",
        "frozen_backbone.pretrained=/nonexistent/weights.pth",
    )
    assert main(args) == 2  # the pre-flight builds the frozen backbone with its weights
    err = capsys.readouterr().err
    assert "does not exist" in err and err.count("\n") == 1
    assert not (tmp_path / "mlflow.db").exists()
    assert not list((tmp_path / "cache" / "features").glob("*.npz"))
