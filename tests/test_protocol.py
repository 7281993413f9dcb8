import numpy as np
import pytest

from bench.errors import ConfigError
from bench.protocol import presence_mask
from bench.spec import MissingSpec


def mask(split="test", n=200, rate=0.4, seed=0, m=2, labels=None, **kw):
    return presence_mask("ds", split, n, m, MissingSpec(rate=rate, **kw), seed, labels=labels)


def test_mcar_either_removes_exactly_one_modality_from_the_rate_fraction():
    present = mask(rate=0.4)
    missing_count = (~present).sum(axis=1)
    assert missing_count.max() == 1  # never both
    assert missing_count.sum() == 80
    assert 0 < (~present[:, 0]).sum() < 80  # either modality, chosen at random


def test_masks_are_a_pure_function_of_their_inputs():
    assert np.array_equal(mask(seed=3), mask(seed=3))
    assert not np.array_equal(mask(seed=3), mask(seed=4))
    assert not np.array_equal(mask(split="train"), mask(split="test"))


def test_rate_zero_is_complete_data():
    assert mask(rate=0.0).all()


@pytest.mark.parametrize(("modality", "column"), [("m1", 0), ("m2", 1)])
def test_named_modality_is_the_one_lost(modality, column):
    present = mask(modality=modality)
    assert (~present[:, column]).sum() == 80
    assert present[:, 1 - column].all()


def test_apply_to_test_keeps_training_complete_and_masks_validation_like_test():
    assert mask(split="train", apply_to="test").all()
    assert not mask(split="val", apply_to="test").all()
    assert not mask(split="test", apply_to="test").all()
    assert mask(split="test", apply_to="train").all()
    assert not mask(split="train", apply_to="train").all()


def test_mnar_class_keeps_the_rate_and_hits_later_classes_more():
    labels = np.repeat(np.arange(4), 250)
    present = mask(n=1000, rate=0.4, mechanism="mnar-class", labels=labels)
    lost = ~present.all(axis=1)
    assert lost.sum() == 400
    per_class = [lost[labels == c].mean() for c in range(4)]
    assert per_class == sorted(per_class) and per_class[3] > 2 * per_class[0]


def test_released_mechanism_drops_modality_one_of_the_first_samples_of_each_batch():
    present = presence_mask("ds", "test", 70, 2, MissingSpec(0.25, "released"), 0, batch_size=32)
    lost = np.flatnonzero(~present[:, 0])
    assert lost.tolist() == [*range(8), *range(32, 40), *range(64, 70)]
    assert present[:, 1].all()
    assert presence_mask("ds", "train", 70, 2, MissingSpec(0.25, "released"), 0).all()


@pytest.mark.parametrize("rate", [-0.1, 1.0, 1.5])
def test_rate_outside_unit_interval_is_refused(rate):
    with pytest.raises(ConfigError, match=r"outside \[0, 1\)"):
        MissingSpec(rate=rate)


def test_absent_third_modality_is_refused():
    with pytest.raises(ConfigError, match="m3"):
        mask(modality="m3", m=2)
