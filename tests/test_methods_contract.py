"""The contract every registered method passes (methods/README.md, "Adding a method")."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from bench.cell import DatasetCache, run_cell
from bench.config import expand, resolve
from bench.encoders import EncoderArgs
from bench.interface import METHODS, Batch, DatasetInfo, Method, Output, build_method, hparam_names
from bench.spec import TrainSpec
from bench.tracking import Tracker
from bench.train import MaskedSplit, fit, make_batch, predict

ALL_METHODS = METHODS.names(with_variants=True)


def declares_dropout(name: str) -> bool:
    cls, fixed = METHODS.resolve(name)
    info = DatasetInfo("toy", ("a", "b"), ("m1", "m2"), (1, 1), 8)
    method = cls(info, **{"backbone": "features", "feature_dim": 4, **fixed})
    return any(stage.modality_dropout is not None for stage in method.stages())


DROPOUT_METHODS = [name for name in ALL_METHODS if declares_dropout(name)]
ENCODER_HPARAMS = ["backbone", "feature_dim", "pretrained"]
PATTERNS = {
    "complete": [[True, True]] * 4,
    "mixed": [[True, True], [True, False], [False, True], [True, False]],
    "all-lack-m1": [[False, True]] * 4,
    "all-lack-m2": [[True, False]] * 4,
}


def batch_of(data, present: list[list[bool]]) -> Batch:
    split = MaskedSplit(data.train, torch.tensor(present + [[True, True]] * (len(data.train) - 4)))
    return make_batch(split, torch.arange(len(present)), torch.device("cpu"))


@pytest.fixture(params=ALL_METHODS)
def method(request, tiny_data):
    torch.manual_seed(0)
    return build_method(request.param, tiny_data.info, {})


@pytest.mark.parametrize("pattern", PATTERNS)
def test_outputs_have_the_right_shape_and_are_finite(method, tiny_data, pattern):
    method.eval()
    with torch.no_grad():
        out = method(batch_of(tiny_data, PATTERNS[pattern]))
    assert out.logits.shape == (4, tiny_data.info.num_classes)
    assert torch.isfinite(out.logits).all()
    for value in out.confidences.values():
        assert value.shape[0] == 4 and torch.isfinite(value).all()


def test_gradient_reaches_every_trainable_parameter(method, tiny_data):
    batch = batch_of(tiny_data, PATTERNS["mixed"])
    y = tiny_data.train.labels[:4]
    reached = set()
    for stage in method.stages():
        method.set_stage(stage.name)
        method.train()
        method.zero_grad()
        loss, _ = method.loss(method(batch), batch, y)
        loss.backward()
        reached |= {
            n for n, p in method.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0
        }
    trainable = {n for n, p in method.named_parameters() if p.requires_grad}
    assert trainable - reached == set()


def test_absent_pixels_are_ignored(method, tiny_data):
    """Methods read ``present``, never 'is this image all zeros'."""
    batch = batch_of(tiny_data, PATTERNS["mixed"])
    noisy = tuple(
        torch.where(batch.present[:, m].view(-1, 1, 1, 1), x, torch.randn_like(x))
        for m, x in enumerate(batch.images)
    )
    method.eval()
    with torch.no_grad():
        clean = method(batch).logits
        dirty = method(Batch(noisy, batch.present)).logits
    assert torch.allclose(clean, dirty, atol=1e-6)


def test_overfits_a_tiny_batch(method, tiny_data):
    batch = batch_of(tiny_data, PATTERNS["complete"])
    y = tiny_data.train.labels[:4]
    for stage in method.stages():
        method.set_stage(stage.name)
        optimizer = torch.optim.Adam([p for p in method.parameters() if p.requires_grad], lr=1e-2)
        method.train()
        for _ in range(60):
            optimizer.zero_grad()
            loss, _ = method.loss(method(batch), batch, y)
            loss.backward()
            optimizer.step()
    method.train()
    with torch.no_grad():
        assert (method(batch).logits.argmax(1) == y).all()


@pytest.mark.parametrize("name", DROPOUT_METHODS)
def test_evaluation_never_gets_the_undropped_view(name, tiny_data):
    """Only training batches carry ``Batch.undropped``: validation and test predictions see
    the protocol's batch alone, whatever the method's training-time dropout."""
    torch.manual_seed(0)
    method = build_method(name, tiny_data.info, {})
    seen, forward = [], method.forward

    def recording(batch):
        seen.append((method.training, batch.undropped is None))
        return forward(batch)

    method.forward = recording
    split = tiny_data.train
    present = torch.ones(len(split), 2, dtype=torch.bool)
    present[::3, 1] = False
    masked = MaskedSplit(split, present)
    fit(method, masked, masked, TrainSpec(epochs=1), torch.device("cpu"), seed=0)
    predict(method, masked, torch.device("cpu"), 16)
    assert {undropped for training, undropped in seen if not training} == {True}
    assert {undropped for training, undropped in seen if training} == {False}


class PermutedTestLabels(DatasetCache):
    def __init__(self, data, permute: bool):
        super().__init__(cache_dir=None)
        test = data.test
        if permute:
            order = torch.randperm(len(test), generator=torch.Generator().manual_seed(1))
            test = dataclasses.replace(test, labels=test.labels[order])
        self.data = dataclasses.replace(data, test=test)

    def get(self, ref):
        return self.data


@pytest.mark.parametrize("name", ALL_METHODS)
def test_predictions_do_not_depend_on_test_labels(name, tiny_data, tmp_path):
    flags = {"methods": [name], "rates": [0.4], "seeds": [0], "train": {"epochs": 2}}
    (spec,) = expand(resolve(None, flags, []))
    probs = []
    for permute in (False, True):
        tracker = Tracker(tmp_path / str(permute))
        experiment = tracker.experiment_id("t")
        result = run_cell(spec, tracker, experiment, PermutedTestLabels(tiny_data, permute))
        assert result.status == "FINISHED", result.error
        (run,) = tracker.runs(experiment)
        frame = pd.read_csv(tracker.artifact_path(run.run_id, "predictions.csv"))
        probs.append(frame.filter(like="prob_").to_numpy())
    np.testing.assert_array_equal(probs[0], probs[1])


@pytest.mark.parametrize("name", ALL_METHODS)
def test_every_method_takes_the_shared_encoder_hyper_parameters(name, tiny_data):
    assert hparam_names(METHODS.resolve(name)[0])[:3] == ENCODER_HPARAMS
    model = build_method(name, tiny_data.info, {"backbone": "features", "feature_dim": 8})
    assert model.encoder_args == EncoderArgs("features", 8, None)


class Plain(Method):
    def __init__(self, info: DatasetInfo, width: int = 4, **encoder) -> None:
        super().__init__(info, **encoder)

    def forward(self, batch: Batch) -> Output:
        raise NotImplementedError


class Derived(Plain):
    def __init__(self, info: DatasetInfo, depth: int = 2, **plain) -> None:
        super().__init__(info, **plain)


class Closed(Plain):
    def __init__(self, info: DatasetInfo, depth: int = 2) -> None:
        super().__init__(info, width=depth)


def test_hparam_names_follow_kwargs_to_the_bases_that_take_them():
    assert hparam_names(Plain) == [*ENCODER_HPARAMS, "width"]
    assert hparam_names(Derived) == [*ENCODER_HPARAMS, "width", "depth"]
    assert hparam_names(Closed) == ["depth"]
