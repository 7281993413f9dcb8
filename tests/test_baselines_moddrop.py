"""``moddrop``: ModDrop++'s dropout scheme and a fusion head that can model interactions."""

from __future__ import annotations

import pytest
import torch

from bench.errors import ConfigError
from bench.interface import Batch, build_method
from bench.spec import TrainSpec
from bench.train import MaskedSplit, fit

CPU = torch.device("cpu")


def build(name: str, data, **hparams):
    torch.manual_seed(0)
    return build_method(name, data.info, hparams)


def interaction(method, data) -> float:
    """|z(f1, f2) - z(f1, 0) - z(0, f2) + z(0, 0)|: zero for a head additive in modalities."""
    method.eval()
    images = tuple(x[:8].float() / 127.5 - 1 for x in data.train.images)
    zeros = tuple(torch.zeros_like(x) for x in images)
    logits = {}
    for keep in ((True, True), (True, False), (False, True), (False, False)):
        present = torch.tensor([keep] * 8)
        chosen = tuple(x if k else z for x, z, k in zip(images, zeros, keep, strict=True))
        with torch.no_grad():
            logits[keep] = method(Batch(chosen, present)).logits
    tt, tf, ft, ff = (
        logits[k] for k in ((True, True), (True, False), (False, True), (False, False))
    )
    return float((tt - tf - ft + ff).abs().max())


def dropped_share(method, data) -> float:
    """The share of complete training pairs that lost a modality, over 3 epochs of fit."""
    train, val = (
        MaskedSplit(s, torch.ones(len(s), 2, dtype=torch.bool)) for s in (data.train, data.val)
    )
    masks = fit(method, train, val, TrainSpec(epochs=3), CPU, seed=0).dropout_masks["main"]
    return float((~masks.all(axis=2)).mean())


def test_moddrop_drops_a_uniform_number_of_modalities_through_an_interacting_head(tiny_data):
    method = build("moddrop", tiny_data)
    assert interaction(method, tiny_data) > 1e-4
    assert 0.35 < dropped_share(method, tiny_data) < 0.65  # ModDrop++: half of the pairs
    assert method.stages()[0].modality_dropout.scheme == "uniform-count"


def test_moddrop_bernoulli_linear_is_the_earlier_configuration(tiny_data):
    method = build("moddrop:bernoulli-linear", tiny_data)
    assert interaction(method, tiny_data) < 1e-5  # a linear head adds the modalities up
    assert 0.6 < dropped_share(method, tiny_data) < 0.9  # p = 0.5: 75 % of the pairs


def test_moddrop_rejects_an_unknown_head_or_scheme(tiny_data):
    with pytest.raises(ConfigError, match="choose one of"):
        build("moddrop", tiny_data, head="attention")
    with pytest.raises(ConfigError, match="scheme 'dropout' is not valid"):
        build("moddrop", tiny_data, scheme="dropout")
