"""Results of an experiment as a table: one row per cell, from the tracking store.

``load`` returns a pandas DataFrame with exactly the columns of :func:`columns`;
``bench results`` prints the same as CSV, JSON (a list of objects) or Markdown.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from pathlib import Path

import pandas as pd

from bench.failures import METHOD, STICKY
from bench.metrics import metric_keys
from bench.tracking import COMPARABILITY_TAG, existing_store

log = logging.getLogger(__name__)

ID_COLUMNS = ("method", "dataset", "rate", "seed", "status")


def columns() -> tuple[str, ...]:
    """The identity columns, then every metric registered now, in registration order."""
    return ID_COLUMNS + metric_keys()


def load(
    experiment: str, results_dir: str | Path = "results", tracking_uri: str | None = None
) -> pd.DataFrame:
    """One row per cell of ``experiment``: identity, status and test metrics, from the
    store at ``tracking_uri`` (default: ``$BENCH_TRACKING_URI``, else ``results_dir``'s)."""
    tracker = existing_store(results_dir, tracking_uri)
    cells = tracker.frame(tracker.require_experiment(experiment))
    warning = comparability_warning(cells)
    if warning:
        log.warning(warning)
    frame = cells.reindex(columns=list(columns()))
    return frame.sort_values(["dataset", "method", "rate", "seed"], ignore_index=True)


def comparability_warning(cells: pd.DataFrame) -> str | None:
    """A one-line warning when the FINISHED cells of ``cells`` (a :meth:`Tracker.frame`) ran
    under more than one :func:`bench.tracking.comparability_key`, so that one table mixes
    numbers that a rerun of the same cell need not reproduce; None otherwise."""
    finished = cells.loc[cells["status"] == "FINISHED", COMPARABILITY_TAG]
    counts = Counter(finished)
    if len(counts) < 2:
        return None
    listed = "; ".join(f"{key} ({n} cells)" for key, n in sorted(counts.items()))
    return (
        f"these {len(finished)} finished cells ran under {len(counts)} settings that can give "
        f"a cell other numbers: {listed}. Compare cells of one setting, or rerun them under "
        "one (same commit, torch and device; on CPU, --threads) in a new --experiment"
    )


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


def unfinished_line(skipped: list, ran: list) -> str | None:
    """The last line of a ``bench run`` whose grid is not all FINISHED, like ``3 of 12 cells
    not finished (2 FAILED skipped: rerun with --retry-failed; 1 KILLED: rerun the same
    command)``; None when every cell (recorded before, ``skipped``, or run now, ``ran``, as
    :class:`bench.cell.CellResult`) is FINISHED."""
    total = len(skipped) + len(ran)
    parts = []
    sticky = sum(r.status == "FAILED" for r in skipped)
    if sticky:
        parts.append(f"{sticky} FAILED skipped: rerun with --retry-failed")
    failed = Counter(r.failure or METHOD for r in ran if r.status == "FAILED")
    for failure, n in sorted(failed.items()):
        hint = (
            "fix the method, then rerun with --retry-failed"
            if failure in STICKY
            else "fix it, then rerun the same command"
        )
        parts.append(f"{n} FAILED ({failure}: {hint})")
    killed = sum(r.status not in ("FINISHED", "FAILED") for r in (*skipped, *ran))
    if killed:
        parts.append(f"{killed} KILLED: rerun the same command")
    if not parts:
        return None
    unfinished = sticky + sum(failed.values()) + killed
    return f"{unfinished} of {total} cells not finished ({'; '.join(parts)})"
