import pytest

from bench.config import expand, parse_assignments, resolve
from bench.errors import ConfigError, UnknownNameError
from bench.spec import TrainSpec


def cells(flags=None, sets=(), file=None):
    return expand(resolve(file, flags or {}, list(sets)))


def test_default_grid_is_all_methods_four_rates_three_seeds():
    grid = cells()
    methods = {c.method for c in grid}
    assert {"kedr", "late-fusion", "moddrop", "unimodal:m1", "unimodal:m2"} <= methods
    assert not any(m.startswith("kedr:") for m in methods)  # variants only on request
    assert sorted({c.missing.rate for c in grid}) == [0.2, 0.4, 0.6, 0.8]
    assert sorted({c.seed for c in grid}) == [0, 1, 2]


def test_cell_hash_is_stable_and_ignores_the_device():
    a = cells({"methods": ["late-fusion"], "rates": [0.2], "seeds": [0]})[0]
    b = cells(
        {"methods": ["late-fusion"], "rates": [0.2], "seeds": [0]}, sets=["train.device=cpu"]
    )[0]
    c = cells({"methods": ["late-fusion"], "rates": [0.2], "seeds": [0]}, sets=["train.lr=3e-4"])[0]
    assert a.hash == b.hash != c.hash
    assert len(a.hash) == 16


def test_set_parses_numbers_and_nested_hparams():
    grid = cells(
        {"methods": ["late-fusion"], "rates": [0.0], "seeds": [0]},
        sets=["train.lr=3e-4", "hparams.late-fusion.dropout=0.25"],
    )
    assert grid[0].train.lr == pytest.approx(3e-4)
    assert dict(grid[0].hparams) == {"dropout": 0.25}


def test_star_hparams_apply_to_methods_that_accept_them():
    grid = cells(
        {"methods": ["moddrop", "late-fusion"], "rates": [0.2], "seeds": [0]},
        sets=["hparams.*.drop_prob=0.3"],
    )
    by_method = {c.method: dict(c.hparams) for c in grid}
    assert by_method == {"moddrop": {"drop_prob": 0.3}, "late-fusion": {}}


def test_config_file_is_read_and_validated(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("methods: [late-fusion]\nrates: [0.6]\ntrain: {epochs: 4}\n")
    grid = cells(file=str(good))
    assert {c.missing.rate for c in grid} == {0.6} and grid[0].train.epochs == 4
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epoch: 4}\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'train.epoch'.*train\.epochs"):
        cells(file=str(bad))


@pytest.mark.parametrize(
    ("flags", "sets", "error", "message"),
    [
        ({"methods": ["nope"]}, [], UnknownNameError, "unknown method 'nope'.*late-fusion"),
        ({"datasets": ["nope"]}, [], UnknownNameError, "unknown dataset 'nope'.*synthetic-retina"),
        ({"rates": [1.0]}, [], ConfigError, r"outside \[0, 1\)"),
        ({"seeds": [1.5]}, [], ConfigError, "seed 1.5 is not a non-negative integer"),
        ({}, ["train.lrr=1"], ConfigError, "unknown config key 'train.lrr'"),
        ({}, ["hparams.late-fusion.dropuot=0.1"], ConfigError, "no hyper-parameter 'dropuot'"),
        ({}, ["dataset_options.synthetic-retina.size=3"], ConfigError, "no option 'size'"),
        ({}, ["train.optimizer=lion"], ConfigError, "train.optimizer 'lion' is not valid"),
        ({}, ["nonsense"], ConfigError, "is not key=value"),
    ],
)
def test_bad_configuration_fails_with_a_message_that_says_what_to_fix(flags, sets, error, message):
    with pytest.raises(error, match=message):
        cells(flags, sets)


def test_train_spec_rejects_nonsense():
    with pytest.raises(ConfigError, match=r"train\.epochs"):
        TrainSpec(epochs=0)


def test_flat_assignments_are_typed_and_a_missing_equals_sign_is_named():
    assert parse_assignments(["ot_eps=0.05", "prior=naive", " n = 3"], "--set", "a=1") == {
        "ot_eps": 0.05,
        "prior": "naive",
        "n": 3,
    }
    with pytest.raises(
        ConfigError, match=r"^--option needs KEY=VALUE, like pairs=all: got 'pairs'$"
    ):
        parse_assignments(["pairs"], "--option", "pairs=all")
