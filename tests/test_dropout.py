"""Training-time modality dropout (bench/dropout.py) and how the training loop applies it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.cell import DatasetCache, cell_masks, cell_method, run_cell
from bench.dropout import SCHEMES, ModalityDropout, declared, dropout_generator
from bench.errors import ConfigError
from bench.interface import Stage, build_method
from bench.spec import CellSpec, MissingSpec, TrainSpec
from bench.tracking import Tracker
from bench.train import MaskedSplit, fit, predict

CPU = torch.device("cpu")
N = 20_000


def complete(n: int = N, m: int = 2) -> np.ndarray:
    return np.ones((n, m), dtype=bool)


@pytest.mark.parametrize(
    ("scheme", "p", "expected"),
    [
        ("bernoulli", 0.5, 0.75),
        ("bernoulli", 0.2, 0.36),
        ("uniform-count", 0.5, 0.5),
        ("uniform-subset", 0.5, 2 / 3),
    ],
)
def test_a_complete_pair_loses_a_modality_as_often_as_its_scheme_says(scheme, p, expected):
    keep = ModalityDropout(scheme, p).keep(complete(), dropout_generator(0))
    assert keep.any(axis=1).all()
    assert (~keep.all(axis=1)).mean() == pytest.approx(expected, abs=0.015)
    assert keep[:, 0].mean() == pytest.approx(keep[:, 1].mean(), abs=0.02)  # either modality


def test_uniform_count_drops_a_uniform_number_of_three_modalities():
    keep = ModalityDropout("uniform-count").keep(complete(m=3), dropout_generator(1))
    counts = np.bincount(3 - keep.sum(axis=1), minlength=3) / N
    np.testing.assert_allclose(counts, [1 / 3] * 3, atol=0.015)


def test_uniform_subset_draws_every_non_empty_subset_equally_often():
    keep = ModalityDropout("uniform-subset").keep(complete(m=3), dropout_generator(2))
    codes = keep @ np.array([1, 2, 4])
    np.testing.assert_allclose(np.bincount(codes, minlength=8)[1:] / N, [1 / 7] * 7, atol=0.01)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_dropout_keeps_only_present_modalities_and_never_the_last_one_away(scheme):
    rng = np.random.default_rng(3)
    present = rng.random((N, 3)) < 0.6
    keep = ModalityDropout(scheme).keep(present, dropout_generator(3))
    assert not (keep & ~present).any()
    np.testing.assert_array_equal(keep.any(axis=1), present.any(axis=1))
    single = present.sum(axis=1) == 1
    np.testing.assert_array_equal(keep[single], present[single])


def test_the_dropout_stream_is_a_pure_function_of_the_seed():
    draw = ModalityDropout("bernoulli")
    first = draw.keep(complete(100), dropout_generator(7))
    np.testing.assert_array_equal(first, draw.keep(complete(100), dropout_generator(7)))
    assert (first != draw.keep(complete(100), dropout_generator(8))).any()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scheme": "gaussian"}, r"scheme 'gaussian' is not valid: choose one of bernoulli"),
        ({"p": 1.0}, r"p = 1.0 is outside \[0, 1\)"),
        ({"warmup": -0.1}, r"warm-up -0.1 is outside \[0, 1\)"),
    ],
)
def test_a_bad_dropout_declaration_says_what_to_give(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ModalityDropout(**kwargs)


def test_none_declares_no_dropout_and_a_hyper_parameter_typo_is_an_error(tiny_data):
    assert declared("none") is None and declared("uniform-count", warmup=0.5).warmup == 0.5
    with pytest.raises(ConfigError, match="choose one of bernoulli, uniform-count"):
        build_method("shaspec", tiny_data.info, {"modality_dropout": "uniform"})


# the training loop --------------------------------------------------------------------------


def splits(data):
    def masked(split):
        return MaskedSplit(split, torch.ones(len(split), 2, dtype=torch.bool))

    return masked(data.train), masked(data.val), masked(data.test)


class Recorder:
    """Wraps a method's forward: what each call saw, in training and at evaluation."""

    def __init__(self, method):
        self.calls, self.method, self.forward = [], method, method.forward
        method.forward = self

    def __call__(self, batch):
        self.calls.append((self.method.training, self.method.stage, batch))
        return self.forward(batch)

    def training(self, stage=None):
        return [b for t, s, b in self.calls if t and stage in (None, s)]

    def evaluation(self):
        return [b for t, _, b in self.calls if not t]


def test_the_loop_drops_by_the_stage_declaration_and_logs_every_epoch_mask(tiny_data):
    torch.manual_seed(0)
    dropout = ModalityDropout("uniform-count", warmup=0.5)
    method = build_method("late-fusion", tiny_data.info, {})
    method.stages = lambda: [Stage("main", modality_dropout=dropout)]
    recorder = Recorder(method)
    train, val, test = splits(tiny_data)
    result = fit(method, train, val, TrainSpec(epochs=4), CPU, seed=0)
    masks = result.dropout_masks["main"]
    assert masks.shape == (4, len(train), 2)
    assert masks[:2].all() and not masks[2:].all()  # two warm-up epochs, then dropout
    assert masks.any(axis=2).all()
    assert [r.loss_parts["dropped_fraction"] for r in result.history][:2] == [0.0, 0.0]
    assert result.history[3].loss_parts["dropped_fraction"] > 0.3
    for batch in recorder.training():
        assert batch.undropped is not None and batch.undropped.present.all()
        for m, x in enumerate(batch.images):  # dropped images are zero, kept ones untouched
            absent = ~batch.present[:, m]
            assert (x[absent] == 0).all()
            assert torch.equal(x[~absent], batch.undropped.images[m][~absent])
    predict(method, test, CPU, 16)
    assert recorder.evaluation() and all(b.undropped is None for b in recorder.evaluation())


def test_declaring_a_dropout_shifts_no_other_random_stream(tiny_data):
    train, val, _ = splits(tiny_data)
    orders, states = [], []
    for dropout in (None, ModalityDropout("bernoulli")):
        torch.manual_seed(0)
        method = build_method("late-fusion", tiny_data.info, {})
        method.stages = lambda dropout=dropout: [Stage("main", modality_dropout=dropout)]
        recorder = Recorder(method)
        fit(method, train, val, TrainSpec(epochs=2), CPU, seed=0)
        orders.append([b.undropped.images[0].sum().item() for b in recorder.training()])
        states.append(torch.get_rng_state())
    assert orders[0] == orders[1]  # the same samples, batch by batch
    assert torch.equal(states[0], states[1])  # and the global stream where it was


def test_without_a_declaration_training_batches_are_their_own_undropped_view(tiny_data):
    method = build_method("late-fusion", tiny_data.info, {})
    recorder = Recorder(method)
    train, val, _ = splits(tiny_data)
    result = fit(method, train, val, TrainSpec(epochs=1), CPU, seed=0)
    assert result.dropout_masks == {}
    assert all(b.undropped.present is b.present for b in recorder.training())


def test_a_cell_saves_its_dropout_masks_with_the_protocol_masks(tmp_path, tiny_ref):
    spec = CellSpec("moddrop", tiny_ref, MissingSpec(0.4, apply_to="test"), TrainSpec(epochs=2), 0)
    tracker = Tracker(tmp_path)
    experiment = tracker.experiment_id("e")
    result = run_cell(spec, tracker, experiment, DatasetCache(tmp_path / "cache"))
    assert result.status == "FINISHED", result.error
    saved = np.load(tracker.artifact_path(result.run_id, "masks.npz"))
    assert set(saved.files) == {"train", "val", "test", "train_dropout_main"}
    dropped = saved["train_dropout_main"]
    assert saved["train"].all() and dropped.shape == (2, *saved["train"].shape)
    assert 0.3 < (~dropped.all(axis=2)).mean() < 0.7  # uniform-count: half of the pairs
    history = tracker.client.get_metric_history(result.run_id, "train/dropped_fraction")
    assert len(history) == 2


@pytest.mark.parametrize("mechanism", ["mcar", "mnar-class", "released"])
@pytest.mark.parametrize("apply_to", ["both", "train", "test"])
def test_dropout_is_honoured_under_every_mechanism_and_split_choice(
    mechanism, apply_to, tiny_data, tiny_ref
):
    spec = CellSpec(
        "moddrop", tiny_ref, MissingSpec(0.4, mechanism, apply_to=apply_to), TrainSpec(epochs=1), 0
    )
    masks = cell_masks(spec, tiny_data)
    train = MaskedSplit(tiny_data.train, torch.from_numpy(masks["train"]))
    val = MaskedSplit(tiny_data.val, torch.from_numpy(masks["val"]))
    (dropped,) = fit(
        cell_method(spec, tiny_data), train, val, spec.train, CPU, 0
    ).dropout_masks.values()
    protocol = masks["train"]
    assert not (dropped[0] & ~protocol).any()  # nothing the protocol made absent comes back
    assert dropped[0].any(axis=1).all()
    complete = protocol.all(axis=1)
    assert (~dropped[0][complete].all(axis=1)).any()  # and complete pairs are dropped from
