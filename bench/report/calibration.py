"""Calibration and model selection in the report: ECE before and after temperature scaling
(Guo et al., ICML 2017; fitted per run on the validation split by :mod:`bench.calibration`),
the fitted temperatures, the epoch each run kept and the monitor that chose it. Everything
is read from what the runs logged: ``test_ts/*`` and ``calibration/*`` metrics, the
``best_epoch`` tag, the ``train.*`` params and the ``predictions_ts.csv`` artifact.
"""

from __future__ import annotations

import ast
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from bench.metrics import metric_spec
from bench.report.collect import ExperimentRuns
from bench.report.stats import summarise
from bench.report.tables import (
    DASH,
    Table,
    comparison_cells,
    mean_std,
    rank_marks,
    rate_label,
    signed,
)
from bench.seeds import AXIS_TAGS

TS_PREDICTIONS = "predictions_ts.csv"
COLUMNS = (
    "method",
    "dataset",
    "rate",
    "seed",
    *AXIS_TAGS.values(),
    "run_id",
    "monitor",
    "epochs",
    "stage",
    "selected_epoch",
    "ece",
    "ece_ts",
    "nll",
    "nll_ts",
    "temperature",
)


def _kept_epoch(tag: str | None) -> tuple[str, float]:
    """(last stage, its kept epoch counted from 1) from a ``best_epoch`` tag like
    ``{'teacher': 4, 'main': 11}``; ('', NaN) when the run has none."""
    stages = ast.literal_eval(tag) if tag else {}
    if not stages:
        return "", math.nan
    last = list(stages)[-1]
    return last, float(stages[last]) + 1


def calibration_frame(runs: ExperimentRuns) -> pd.DataFrame:
    """One row per reported run (:data:`COLUMNS`): ECE and NLL raw and temperature-scaled,
    the temperature, the monitor, the epoch budget and the kept epoch of the last stage; NaN
    where a run predates temperature scaling."""
    tracker = runs.tracker
    cells = tracker.latest_by_cell(tracker.require_experiment(runs.experiment)).values()
    by_id = {run.run_id: run for run in cells}
    rows = []
    for row in runs.frame.itertuples():
        run = by_id[row.run_id]
        stage, epoch = _kept_epoch(run.tags.get("best_epoch"))
        rows.append(
            {
                "method": row.method,
                "dataset": row.dataset,
                "rate": row.rate,
                "seed": row.seed,
                **{column: getattr(row, column, "") for column in AXIS_TAGS.values()},
                "run_id": row.run_id,
                "monitor": run.params.get("train.monitor", "unknown"),
                "epochs": float(run.params.get("train.epochs", "nan")),
                "stage": stage,
                "selected_epoch": epoch,
                "ece": run.metrics.get("test/ece", math.nan),
                "ece_ts": run.metrics.get("test_ts/ece", math.nan),
                "nll": run.metrics.get("test/nll", math.nan),
                "nll_ts": run.metrics.get("test_ts/nll", math.nan),
                "temperature": run.metrics.get("calibration/temperature", math.nan),
            }
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def ts_predictions(runs: ExperimentRuns, run_id: str) -> pd.DataFrame | None:
    """The run's temperature-scaled test predictions, or None when it saved none."""
    names = {a.path for a in runs.tracker.client.list_artifacts(run_id)}
    if TS_PREDICTIONS not in names:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = runs.tracker.client.download_artifacts(run_id, TS_PREDICTIONS, tmp)
        return pd.read_csv(Path(path))


def _bins() -> int:
    return metric_spec("ece").params["n_bins"]


def calibration_table(frame: pd.DataFrame, dataset: str) -> Table:
    """Methods x rates: ECE raw, ECE after temperature scaling (in %) and the temperature,
    mean ± std over seeds; the two ECE columns of each rate ranked together."""
    part = frame[frame["dataset"] == dataset]
    summary = summarise(part, ("ece", "ece_ts", "temperature")).set_index(
        ["method", "rate", "metric"]
    )
    methods, rates = sorted(part["method"].unique()), sorted(part["rate"].unique())
    n_max = int(summary["n"].max()) if len(summary) else 0
    texts = {m: [m] for m in methods}
    marks = {m: [0] for m in methods}
    for rate in rates:
        cells = {(m, k): summary.loc[(m, rate, k)] for m in methods for k in ("ece", "ece_ts")}
        both = [float(cells[(m, k)]["mean"]) for k in ("ece", "ece_ts") for m in methods]
        ranked = rank_marks(both, higher_is_better=False)
        for i, method in enumerate(methods):
            for j, key in enumerate(("ece", "ece_ts")):
                cell = cells[(method, key)]
                texts[method].append(mean_std(cell["mean"], cell["std"], int(cell["n"]), n_max))
                marks[method].append(ranked[j * len(methods) + i])
            t = summary.loc[(method, rate, "temperature")]
            texts[method].append(
                DASH
                if math.isnan(t["mean"])
                else f"{t['mean']:.2f}" + ("" if math.isnan(t["std"]) else f" ± {t['std']:.2f}")
            )
            marks[method].append(0)
    missing = int(part["ece_ts"].isna().sum())
    return Table(
        name=f"{dataset}_calibration",
        title=f"{dataset}: ECE (%) before and after temperature scaling, and the temperature T",
        header=("method", *(label for _ in rates for label in ("ECE", "ECE (TS)", "T"))),
        rows=tuple(tuple(texts[m]) for m in methods),
        marks=tuple(tuple(marks[m]) for m in methods),
        groups=tuple((rate_label(r), 3) for r in rates),
        note=(
            f"top-label ECE, {_bins()} equal-width bins; TS: one temperature per run, fitted "
            "on its validation split's NLL with the kept weights, then applied to its test "
            "probabilities (Guo et al. 2017), which leaves accuracy and F1 unchanged; mean ± "
            "sample std over seeds; lowest ECE of each rate (raw and TS together) in bold, "
            "second underlined"
            + (f"; {missing} runs predate temperature scaling ({DASH})." if missing else ".")
        ),
    )


def _epoch_range(values: np.ndarray) -> str:
    values = values[np.isfinite(values)]
    if not values.size:
        return DASH
    low, high, middle = int(values.min()), int(values.max()), float(np.median(values))
    shown = f"{middle:g}"
    return shown if low == high else f"{shown} [{low}, {high}]"


def selection_table(frame: pd.DataFrame, dataset: str) -> Table:
    """Methods x rates: the epoch each run kept (median [min, max] over seeds)."""
    part = frame[frame["dataset"] == dataset]
    methods, rates = sorted(part["method"].unique()), sorted(part["rate"].unique())
    rows = []
    for method in methods:
        cells = [method]
        for rate in rates:
            kept = part[(part["method"] == method) & (part["rate"] == rate)]
            cells.append(_epoch_range(kept["selected_epoch"].to_numpy(np.float64)))
        budget = _epoch_range(part.loc[part["method"] == method, "epochs"].to_numpy(np.float64))
        stages = sorted(set(part.loc[part["method"] == method, "stage"]) - {""})
        rows.append((*cells, budget, ", ".join(stages) or DASH))
    return Table(
        name=f"{dataset}_selected_epoch",
        title=f"{dataset}: the epoch each run kept (its test numbers come from it)",
        header=("method", *(rate_label(r) for r in rates), "epochs", "stage"),
        rows=tuple(rows),
        note=(
            "epoch counted from 1 within the last training stage (named in the last column), "
            "chosen on the validation split by train.monitor; median [min, max] over seeds; "
            "epochs: train.epochs of the runs (a multi-stage method splits it among stages)."
        ),
    )


def monitor_text(frame: pd.DataFrame) -> str:
    """Which monitor chose the kept epochs, and in which direction."""
    counts = frame["monitor"].value_counts().sort_index()
    parts = []
    for monitor, n in counts.items():
        direction = (
            f"{'highest' if metric_spec(monitor).higher_is_better else 'lowest'} validation "
            if monitor != "unknown"
            else ""
        )
        parts.append(f"{direction}{monitor} ({n} runs)")
    return (
        "Model selection: each run kept the weights of the epoch with the "
        + "; ".join(parts)
        + "; every number in this report comes from those weights."
    )


def ts_stats_table(comparison: pd.DataFrame, reference: str) -> Table:
    """Every method against the reference on the ECE after temperature scaling, paired over
    (dataset, rate, seed), as the statistics table does for the registered metrics."""
    rows = tuple(
        (row.method, *comparison_cells(row, signed(f"{100 * row.median_difference:+.2f}")))
        for row in comparison.itertuples()
    )
    return Table(
        name="stats_ece_ts",
        title=f"ECE after temperature scaling (lower is better): each method against {reference}",
        header=("method", "pairs", "W/T/L", "P(better)", "median Δ", "W", "p", "p Holm"),
        rows=rows,
        note=(
            "as the table above, on each run's test ECE after its temperature scaling; pairs: "
            "cells where both runs have one; median Δ = method − reference in points."
        ),
    )
