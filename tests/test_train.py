import pytest
import torch

from bench.errors import TrainingDivergedError
from bench.interface import build_method
from bench.spec import TrainSpec
from bench.train import MaskedSplit, fit, predict

CPU = torch.device("cpu")


def splits(data):
    def masked(split):
        return MaskedSplit(split, torch.ones(len(split), 2, dtype=torch.bool))

    return masked(data.train), masked(data.val), masked(data.test)


def test_nan_loss_stops_the_fit_with_a_reason(tiny_data, monkeypatch):
    method = build_method("late-fusion", tiny_data.info, {})
    monkeypatch.setattr(
        type(method), "loss", lambda self, out, batch, y: (out.logits.sum() * float("nan"), {})
    )
    train, val, _ = splits(tiny_data)
    with pytest.raises(TrainingDivergedError, match=r"loss became nan in stage 'main', epoch 0"):
        fit(method, train, val, TrainSpec(epochs=2), CPU, seed=0)


def test_best_validation_epoch_is_restored_and_history_is_complete(tiny_data):
    torch.manual_seed(0)
    method = build_method("late-fusion", tiny_data.info, {})
    train, val, _ = splits(tiny_data)
    snapshots = []
    result = fit(
        method,
        train,
        val,
        TrainSpec(epochs=4),
        CPU,
        seed=0,
        on_epoch=lambda r: snapshots.append({k: v.clone() for k, v in method.state_dict().items()}),
    )
    assert [r.epoch for r in result.history] == [0, 1, 2, 3]
    scores = [r.val["f1_macro"] for r in result.history]
    best = result.best_epoch["main"]
    assert scores[best] == max(scores) and scores.index(max(scores)) == best
    for key, value in method.state_dict().items():
        assert torch.equal(value, snapshots[best][key])


def test_early_stopping_respects_patience(tiny_data, monkeypatch):
    import bench.train as train_module

    monkeypatch.setattr(
        train_module,
        "compute_metrics",
        lambda probs, y: {"f1_macro": 0.5, **{k: 0.0 for k in ("accuracy",)}},
    )
    method = build_method("late-fusion", tiny_data.info, {})
    train, val, _ = splits(tiny_data)
    result = fit(method, train, val, TrainSpec(epochs=10, patience=2), CPU, seed=0)
    assert len(result.history) == 3 and result.stopped_early["main"]


def test_same_seed_gives_identical_predictions(tiny_data):
    train, val, test = splits(tiny_data)
    outputs = []
    for _ in range(2):
        torch.manual_seed(5)
        method = build_method("moddrop", tiny_data.info, {})
        fit(method, train, val, TrainSpec(epochs=2), CPU, seed=5)
        outputs.append(predict(method, test, CPU, 16).probs)
    assert (outputs[0] == outputs[1]).all()


def test_values_known_after_backward_are_logged_with_the_loss_parts(tiny_data):
    """The implicit DEQ backward's steps exist only once backward has run: the loop asks
    ``after_backward`` for them (before, every epoch logged 0 steps)."""
    torch.manual_seed(0)
    method = build_method("deq-fusion", tiny_data.info, {})
    train, val, _ = splits(tiny_data)
    result = fit(method, train, val, TrainSpec(epochs=1), CPU, seed=0)
    parts = result.history[0].loss_parts
    assert parts["deq_steps"] >= 1 and 1 <= parts["deq_backward_steps"] <= 20
