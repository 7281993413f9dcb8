"""``python -m bench.benchmarks.before_after``: two experiments of one grid, paired per cell."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.benchmarks.before_after import CELL, cell_values, compare, to_markdown
from bench.cli import main
from bench.report.stats import holm, wilcoxon_signed_rank
from tests.conftest import run_args


def frame(values: dict[str, list[float]]) -> pd.DataFrame:
    index = pd.MultiIndex.from_tuples(
        [(m, "d", r, s) for m in ("a", "b") for r in (0.2, 0.8) for s in (0, 1, 2)], names=CELL
    )
    return pd.DataFrame(values, index=index).sort_index()


def test_differences_are_paired_per_cell_and_holm_adjusted_per_metric():
    rng = np.random.default_rng(0)
    before = frame({k: rng.uniform(0.2, 0.8, 12).tolist() for k in ("f1_macro", "ece", "ece_ts")})
    after = before.copy()
    after.loc["a", "f1_macro"] = (before.loc["a", "f1_macro"] + np.arange(6) * 0.01 + 0.02).values
    shuffled = after.sample(frac=1.0, random_state=1)  # order must not matter
    table = compare(before, shuffled).set_index(["metric", "method"])
    row = table.loc[("f1_macro", "a")]
    assert row["n"] == 6 and row["difference"] == pytest.approx(0.045)
    assert row["p_wilcoxon"] == pytest.approx(
        wilcoxon_signed_rank(after.loc["a", "f1_macro"].sort_index(), before.loc["a", "f1_macro"])[
            1
        ]
    )
    p = table.loc["f1_macro", "p_wilcoxon"].to_numpy()
    np.testing.assert_allclose(table.loc["f1_macro", "p_holm"], holm(p))
    assert table.loc[("ece", "b"), "difference"] == 0.0
    text = to_markdown(compare(before, after), "old", "new")
    assert "| F1 | a | 6 |" in text and "after = new, before = old" in text


def test_two_experiments_of_one_grid_compare_end_to_end(tmp_path):
    grid = ["--methods", "moddrop", "--rates", "0.5", "--seeds", "0,1", "--epochs", "1"]
    assert main(run_args(tmp_path, *grid, "--experiment", "before")) == 0
    changed = ["--set", "hparams.moddrop.drop_prob=0.2", "--experiment", "after"]
    assert main(run_args(tmp_path, *grid, *changed)) == 0
    before, after = cell_values("before", str(tmp_path)), cell_values("after", str(tmp_path))
    assert list(before.columns) == ["f1_macro", "ece", "ece_ts"] and len(before) == 2
    assert before["ece_ts"].notna().all()
    table = compare(before, after)
    assert set(table["metric"]) == {"f1_macro", "ece", "ece_ts"} and (table["n"] == 2).all()
