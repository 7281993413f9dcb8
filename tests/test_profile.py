import json

import pytest

from bench.cli import main
from bench.interface import METHODS


@pytest.mark.parametrize("name", METHODS.names(with_variants=True))
def test_features_only_profile_works_for_every_method(name, capsys):
    args = [
        "profile",
        "--method",
        name,
        "--features-only",
        "--feature-dim",
        "32",
        "--batch-size",
        "8",
        "--steps",
        "1",
        "--json",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["train_step_s"] > 0 and result["peak_mem_mb"] > 0
    assert 0 < result["params_infer"] <= result["params_train"]
    assert result["flops_train"] > result["flops_infer"] > 0


def test_image_profile_with_a_timm_backbone(capsys):
    args = [
        "profile",
        "--method",
        "late-fusion",
        "--backbone",
        "resnet18",
        "--image-size",
        "32",
        "--batch-size",
        "2",
        "--steps",
        "1",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "parameters (training graph)" in out and "images:32" in out
