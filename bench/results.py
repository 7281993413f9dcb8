"""Results of an experiment as a table: one row per cell, from the tracking store.

``load`` returns a pandas DataFrame with exactly the columns of :func:`columns`;
``bench results`` prints the same as CSV, JSON (a list of objects) or Markdown.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from bench.metrics import metric_keys
from bench.tracking import Tracker

ID_COLUMNS = ("method", "dataset", "rate", "seed", "status")


def columns() -> tuple[str, ...]:
    """The identity columns, then every metric registered now, in registration order."""
    return ID_COLUMNS + metric_keys()


def load(
    experiment: str, results_dir: str | Path = "results", tracking_uri: str | None = None
) -> pd.DataFrame:
    """One row per cell of ``experiment``: identity, status and test metrics, from the
    store at ``tracking_uri`` (default: ``$BENCH_TRACKING_URI``, else ``results_dir``'s)."""
    tracker = Tracker(results_dir, tracking_uri)
    cells = tracker.frame(tracker.require_experiment(experiment))
    frame = cells.reindex(columns=list(columns()))
    return frame.sort_values(["dataset", "method", "rate", "seed"], ignore_index=True)


def results_frame(results: list) -> pd.DataFrame:
    """The same columns as :func:`load`, from in-memory :class:`bench.cell.CellResult`s."""
    rows = [
        {
            "method": r.spec.method,
            "dataset": r.spec.dataset.name,
            "rate": r.spec.missing.rate,
            "seed": r.spec.seed,
            "status": r.status,
            **{k: r.metrics.get(k, math.nan) for k in metric_keys()},
        }
        for r in results
    ]
    return pd.DataFrame(rows, columns=list(columns()))


def render(frame: pd.DataFrame, fmt: str) -> str:
    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt == "json":
        records = [
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            for row in frame.to_dict(orient="records")
        ]
        return json.dumps(records, indent=1)
    return frame.to_markdown(index=False, floatfmt=".4f")


def summary_table(frame: pd.DataFrame) -> str:
    """Per dataset: methods x rates, cells 'F1 / Acc' as mean +- std (%) over seeds."""
    finished = frame[frame["status"] == "FINISHED"]
    if finished.empty:
        return "no finished cells"
    blocks = []
    for dataset, part in finished.groupby("dataset"):
        stats = part.groupby(["method", "rate"])[["f1_macro", "accuracy"]].agg(["mean", "std"])
        table = {}
        for (method, rate), row in stats.iterrows():
            cell = f"{_mean_std(row, 'f1_macro')} / {_mean_std(row, 'accuracy')}"
            table.setdefault(method, {})[f"{rate:g}"] = cell
        seeds = part.groupby(["method", "rate"]).size()
        pivot = pd.DataFrame(table).T.sort_index()
        pivot.index.name = "method"
        blocks.append(
            f"{dataset}: macro-F1 / accuracy (%), mean ± std over {seeds.min()}-{seeds.max()} "
            f"seeds; columns are missing rates\n{pivot.to_markdown()}"
        )
    return "\n\n".join(blocks)


def _mean_std(row: pd.Series, key: str) -> str:
    std = row[(key, "std")]
    return f"{100 * row[(key, 'mean')]:.1f}±{0.0 if math.isnan(std) else 100 * std:.1f}"
