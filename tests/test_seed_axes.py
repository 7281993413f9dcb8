"""Seed axes: a grid that varies model init, missingness masks and data samples apart."""

from __future__ import annotations

import numpy as np
import pytest

from bench.cell import DatasetCache, cell_masks, run_cell
from bench.cli import main
from bench.config import expand, resolve
from bench.errors import ConfigError
from bench.report.collect import collect
from bench.seeds import axis_tags
from bench.spec import CellSpec, DatasetRef, MissingSpec, TrainSpec
from bench.tracking import Tracker
from tests.conftest import TINY_OPTIONS, run_args


def cells(flags=None, sets=()):
    return expand(
        resolve(None, {"methods": ["late-fusion"], "rates": [0.4], **(flags or {})}, list(sets))
    )


def test_cells_without_seed_axes_keep_their_hashes():
    # hashes of kedr-bench before seed axes existed (9f933b0): a store written then still
    # resumes (for methods whose version is still 1)
    grid = cells({"methods": ["late-fusion", "unimodal:m1"], "rates": [0.0, 0.6], "seeds": [0, 3]})
    found = {(c.method, c.missing.rate, c.seed): c.hash for c in grid}
    assert found[("late-fusion", 0.0, 0)] == "e44eb226e17eaf70"
    assert found[("late-fusion", 0.6, 3)] == "9e8da6d885f13c68"
    assert found[("unimodal:m1", 0.6, 0)] == "9f2939c05a1b9a99"
    assert all(c.mask_seed is None and "mask_seed" not in c.to_dict() for c in grid)
    assert all(axis_tags(c) == {} for c in grid)


def test_seed_axes_make_the_factorial_of_the_listed_axes():
    grid = cells({"seeds": [0, 1, 2], "seed_axes": ["init", "masks", "data"]})
    triples = {(c.seed, c.mask_seed, dict(c.dataset.options)["data_seed"]) for c in grid}
    assert len(grid) == len(triples) == 27
    assert (
        {t[0] for t in triples} == {t[1] for t in triples} == {t[2] for t in triples} == {0, 1, 2}
    )
    assert len({c.hash for c in grid}) == 27


def test_an_unlisted_axis_is_held_at_one_value():
    grid = cells({"seeds": [4, 5], "seed_axes": ["masks"]})
    assert [(c.seed, c.mask_seed) for c in grid] == [(4, 4), (4, 5)]
    assert {dict(c.dataset.options)["data_seed"] for c in grid} == {0}  # the card's default
    assert axis_tags(grid[1]) == {"seed_masks": "5", "seed_data": "0"}
    assert "masks=5 data=0" in grid[1].label


def test_a_mapping_gives_each_axis_its_own_seeds():
    grid = cells({"seeds": [0], "seed_axes": {"init": [0, 1], "data": [7]}})
    assert sorted((c.seed, c.mask_seed, c.data_seed) for c in grid) == [(0, 0, 7), (1, 0, 7)]


@pytest.mark.parametrize(
    ("axes", "message"),
    [
        (["init", "split"], "unknown seed axis 'split'"),
        ({"masks": [-1]}, "non-negative integer seeds"),
        ("init", "seed_axes must be a list"),
    ],
)
def test_bad_seed_axes_are_one_line_errors(axes, message):
    with pytest.raises(ConfigError, match=message):
        cells({"seed_axes": axes})


def test_the_data_axis_needs_a_dataset_seed_option():
    with pytest.raises(ConfigError, match=r"derm7pt.*no seed option.*drop 'data'"):
        cells({"datasets": ["derm7pt"], "seed_axes": ["data"]})
    grid = cells({"datasets": ["mmc-amd"], "seeds": [0, 1], "seed_axes": ["data"]})
    assert [dict(c.dataset.options)["split_seed"] for c in grid] == [0, 1]


def test_the_mask_seed_alone_moves_the_masks(tiny_ref, tiny_data):
    base = CellSpec("late-fusion", tiny_ref, MissingSpec(0.5), TrainSpec(), 0)
    same_init = CellSpec("late-fusion", tiny_ref, MissingSpec(0.5), TrainSpec(), 0, mask_seed=3)
    coupled = CellSpec("late-fusion", tiny_ref, MissingSpec(0.5), TrainSpec(), 3)
    a, b, c = (cell_masks(s, tiny_data)["test"] for s in (base, same_init, coupled))
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(b, c)  # the masks depend on their seed only


def test_a_negative_mask_seed_is_refused(tiny_ref):
    with pytest.raises(ConfigError, match="mask_seed -1"):
        CellSpec("late-fusion", tiny_ref, MissingSpec(0.5), TrainSpec(), 0, mask_seed=-1)


def test_the_data_seed_draws_other_samples(tmp_path):
    cache = DatasetCache(tmp_path)
    first = cache.get(DatasetRef.of("synthetic-retina", {**TINY_OPTIONS, "data_seed": 0}))
    other = cache.get(DatasetRef.of("synthetic-retina", {**TINY_OPTIONS, "data_seed": 1}))
    assert not np.array_equal(first.test.images[0].numpy(), other.test.images[0].numpy())


def test_runs_of_a_factorial_grid_are_tagged_and_all_reported(tmp_path):
    grid = ["--methods", "late-fusion", "--rates", "0.5", "--seeds", "0,1"]
    args = run_args(tmp_path, *grid, "--seed-axes", "masks,data", "--epochs", "1")
    assert main(args) == 0
    runs = collect("t", tmp_path)
    assert runs.superseded == 0 and len(runs.frame) == 4
    columns = [runs.frame[c] for c in ("seed", "seed_masks", "seed_data")]
    replicates = set(zip(*columns, strict=True))
    assert replicates == {(0, m, d) for m in ("0", "1") for d in ("0", "1")}
    assert main(args) == 0  # a rerun finds every cell of the factorial done
    assert len(Tracker(tmp_path).runs(Tracker(tmp_path).require_experiment("t"))) == 4


def test_an_ordinary_cell_records_no_axis_tags(tmp_path, tiny_ref):
    spec = CellSpec("late-fusion", tiny_ref, MissingSpec(0.4), TrainSpec(epochs=1), 0)
    tracker = Tracker(tmp_path)
    run_cell(spec, tracker, tracker.experiment_id("e"), DatasetCache(tmp_path / "cache"))
    (run,) = tracker.runs(tracker.experiment_id("e"))
    assert "seed_masks" not in run.tags and "seed_data" not in run.tags
