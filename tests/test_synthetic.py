"""synthetic-retina: deterministic, valid, and calibrated so that it measures something."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.data import load_dataset
from bench.data.synthetic import generate
from bench.errors import ConfigError
from bench.interface import build_method
from bench.spec import DatasetRef, TrainSpec
from bench.train import MaskedSplit, fit, predict

CPU = torch.device("cpu")


def test_generation_is_deterministic_in_its_seed():
    a, b, c = generate(40, seed=3), generate(40, seed=3), generate(40, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a.images, b.images, strict=True))
    assert not np.array_equal(a.images[0], c.images[0])
    assert a.images[0].shape == (40, 3, 64, 64) and a.images[1].shape == (40, 1, 64, 64)
    assert a.images[0].dtype == np.uint8 and set(np.unique(a.labels)) <= {0, 1, 2, 3}


def test_three_modalities_add_a_grey_angiography_map():
    samples = generate(8, seed=0, image_size=32, modalities=3)
    assert [x.shape[1] for x in samples.images] == [3, 1, 1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "n"),
        ({"image_size": 8}, "image_size"),
        ({"modalities": 4}, "modalities"),
        ({"label_noise": 1.0}, "label_noise"),
        ({"difficulty": 0}, "difficulty"),
    ],
)
def test_bad_arguments_say_what_to_fix(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        generate(**{"n": 10, "seed": 0, **kwargs})


def test_default_splits_mirror_mmc_amd(tmp_path):
    data = load_dataset(DatasetRef.of("synthetic-retina"), tmp_path)
    assert (len(data.train), len(data.val), len(data.test)) == (492, 123, 153)
    assert data.info.classes == ("normal", "dry_amd", "wet_amd", "pcv")


def _test_accuracy(name: str, data, seed: int) -> tuple[float, float]:
    """Test accuracy, and accuracy on the dry/wet AMD test samples, with complete data."""

    def complete(split):
        return MaskedSplit(split, torch.ones(len(split), 2, dtype=torch.bool))

    torch.manual_seed(seed)
    method = build_method(name, data.info, {})
    fit(method, complete(data.train), complete(data.val), TrainSpec(epochs=20), CPU, seed)
    pred = predict(method, complete(data.test), CPU, 64).probs.argmax(1)
    y = data.test.labels.numpy()
    amd = np.isin(y, (1, 2))
    return float((pred == y).mean()), float((pred[amd] == y[amd]).mean())


def test_difficulty_is_calibrated(tmp_path):
    """Late fusion 80-95 %, each modality alone >= 10 points lower, OCT beats fundus on
    wet vs dry AMD (bench/data/synthetic.py); means over 3 seeds. A saturated benchmark
    measures nothing."""
    torch.set_num_threads(1)
    data = load_dataset(DatasetRef.of("synthetic-retina"), tmp_path)
    scores = {
        name: np.mean([_test_accuracy(name, data, seed) for seed in (0, 1, 2)], axis=0)
        for name in ("late-fusion", "unimodal:m1", "unimodal:m2")
    }
    fusion, fundus, oct_ = scores["late-fusion"][0], scores["unimodal:m1"], scores["unimodal:m2"]
    assert 0.80 <= fusion <= 0.95, scores
    assert fundus[0] <= fusion - 0.10 and oct_[0] <= fusion - 0.10, scores
    assert oct_[1] > fundus[1], scores
