"""The report's calibration section: ECE before and after temperature scaling for every
method, the epoch each run kept, and the monitor that chose it (here ``train.monitor=nll``,
end to end from ``bench run`` to ``bench report``)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.report.build import build_report
from bench.report.calibration import calibration_table, monitor_text, selection_table
from bench.tracking import Tracker
from tests.conftest import run_args

GRID = ["--methods", "late-fusion,moddrop", "--rates", "0.5", "--seeds", "0,1"]


@pytest.fixture(scope="module")
def nll_grid(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nll-grid")
    assert main(run_args(folder, *GRID, "--epochs", "3", "--set", "train.monitor=nll")) == 0
    out = folder / "report"
    build_report("t", folder, out, formats=("md", "csv"))
    return folder, out


def test_monitor_nll_keeps_the_epoch_of_lowest_validation_nll(nll_grid):
    folder, _ = nll_grid
    tracker = Tracker(folder)
    runs = tracker.runs(tracker.require_experiment("t"))
    assert len(runs) == 4
    for run in runs:
        history = tracker.client.get_metric_history(run.run_id, "val/nll")
        best = min(history, key=lambda m: (m.value, m.step)).step
        assert run.tags["best_epoch"] == str({"main": best})
        assert run.metrics["best_val/nll"] == pytest.approx(min(m.value for m in history))


def test_the_report_shows_ece_before_and_after_scaling_and_the_kept_epochs(nll_grid):
    folder, out = nll_grid
    text = (out / "report.md").read_text()
    assert "synthetic-retina: calibration and model selection" in text
    assert "lowest validation nll (4 runs)" in text
    assert "ECE (%) before and after temperature scaling" in text
    assert "the epoch each run kept" in text
    assert (out / "figures" / "synthetic-retina_reliability_ts.png").is_file()
    assert "ECE after temperature scaling (lower is better): each method against" in text
    (stats,) = out.glob("csv/stats_ece_ts_vs_*.csv")
    paired = pd.read_csv(stats)
    assert len(paired) == 1 and paired["n"].item() == 2 and paired["metric"].item() == "ece_ts"

    frame = pd.read_csv(out / "csv" / "calibration.csv")
    assert sorted(frame["method"]) == ["late-fusion", "late-fusion", "moddrop", "moddrop"]
    assert frame["temperature"].between(0.01, 100).all() and (frame["monitor"] == "nll").all()
    tracker = Tracker(folder)
    for row in frame.itertuples():
        run = tracker.client.get_run(row.run_id)
        assert row.ece_ts == pytest.approx(run.data.metrics["test_ts/ece"], rel=1e-5)
        assert row.ece == pytest.approx(run.data.metrics["test/ece"], rel=1e-5)
        assert row.selected_epoch == int(run.data.tags["best_epoch"].split(": ")[1][:-1]) + 1
    section = text.split("ECE (%) before and after temperature scaling")[1].splitlines()
    for method in ("late-fusion", "moddrop"):
        line = next(x for x in section if x.startswith(f"| {method} "))
        assert line.count("±") == 3  # ECE, ECE (TS) and T over the two seeds


def frame_of(**columns) -> pd.DataFrame:
    base = {
        "method": ["a", "a", "b", "b"],
        "dataset": ["d"] * 4,
        "rate": [0.2] * 4,
        "seed": [0, 1, 0, 1],
        "run_id": list("wxyz"),
        "monitor": ["f1_macro"] * 4,
        "epochs": [20.0] * 4,
        "stage": ["main"] * 4,
        "selected_epoch": [3.0, 5.0, 19.0, 19.0],
        "ece": [0.30, 0.20, 0.10, 0.12],
        "ece_ts": [0.05, 0.07, math.nan, math.nan],
        "nll": [1.0] * 4,
        "nll_ts": [0.9, 0.9, math.nan, math.nan],
        "temperature": [0.5, 0.7, math.nan, math.nan],
    }
    return pd.DataFrame({**base, **columns})


def test_runs_without_temperature_scaling_show_a_dash_and_are_counted():
    table = calibration_table(frame_of(), "d")
    assert table.header == ("method", "ECE", "ECE (TS)", "T")
    a, b = table.rows
    assert a == ("a", "25.0 ± 7.1", "6.0 ± 1.4", "0.60 ± 0.14")
    assert b[2] == "–" and b[3] == "–" and "2 runs predate temperature scaling" in table.note
    assert table.marks[0][2] == 1 and table.marks[1][1] == 2  # 6.0 best, 11.0 second


def test_the_selected_epoch_table_gives_median_and_range_per_rate():
    table = selection_table(frame_of(), "d")
    assert table.rows == (("a", "4 [3, 5]", "20", "main"), ("b", "19", "20", "main"))


def test_the_monitor_text_names_each_monitor_and_its_direction():
    mixed = frame_of(monitor=["f1_macro", "f1_macro", "nll", "nll"])
    assert monitor_text(mixed) == (
        "Model selection: each run kept the weights of the epoch with the highest validation "
        "f1_macro (2 runs); lowest validation nll (2 runs); every number in this report "
        "comes from those weights."
    )
    assert np.isnan(frame_of()["ece_ts"]).sum() == 2
