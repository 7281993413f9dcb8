"""Executors run a grid of cells. ``local`` (the default) runs them one after another in
this process, skipping cells the store already holds as finished."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from bench.cell import CellResult, DatasetCache, run_cell
from bench.spec import CellSpec
from bench.tracking import Tracker

log = logging.getLogger(__name__)


def pending_cells(
    cells: list[CellSpec], tracker: Tracker, experiment_id: str, retry_failed: bool
) -> tuple[list[CellSpec], list[CellResult]]:
    """Split the grid into cells to run and cells already recorded (skipped)."""
    recorded = tracker.latest_by_cell(experiment_id)
    done_statuses = ("FINISHED",) if retry_failed else ("FINISHED", "FAILED")
    todo, skipped = [], []
    for spec in cells:
        run = recorded.get(spec.hash)
        if run is not None and run.status in done_statuses:
            metrics = {k[5:]: v for k, v in run.metrics.items() if k.startswith("test/")}
            skipped.append(CellResult(spec, run.status, metrics, run.tags.get("error", "")))
        else:
            todo.append(spec)
    return todo, skipped


def _format_eta(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def run_local(
    cells: list[CellSpec], tracker: Tracker, experiment_id: str, cache_dir: Path
) -> Iterator[CellResult]:
    """Run ``cells`` in order with a progress bar (plain lines when stderr is no TTY)."""
    datasets = DatasetCache(cache_dir)
    interactive = sys.stderr.isatty()
    bar = tqdm(total=len(cells), unit="cell", disable=not interactive, dynamic_ncols=True)
    started = time.perf_counter()
    for done, spec in enumerate(cells, start=1):
        bar.set_description(spec.label)
        result = run_cell(spec, tracker, experiment_id, datasets)
        bar.update()
        if not interactive:
            elapsed = time.perf_counter() - started
            eta = elapsed / done * (len(cells) - done)
            detail = (
                f"f1={result.metrics.get('f1_macro', float('nan')):.3f}"
                if result.status == "FINISHED"
                else result.error
            )
            print(
                f"[{done}/{len(cells)}] {spec.label}: {result.status} {detail} "
                f"({result.seconds:.1f} s, ETA {_format_eta(eta)})",
                file=sys.stderr,
                flush=True,
            )
        yield result
    bar.close()
