"""What a report is made of: the FINISHED runs of one experiment in the tracking store, with
their provenance, metrics and saved per-sample predictions. Nothing is retrained.
"""

from __future__ import annotations

import math
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.errors import BenchError, ConfigError, DataError, UnknownNameError
from bench.metrics import metric_keys
from bench.tracking import Tracker

SETTING = ("mechanism", "modality", "apply_to")


@dataclass
class ExperimentRuns:
    """One row per reported cell (``frame``), and how to read a run's artifacts.

    ``frame`` columns: method, dataset, rate, seed, run_id, cell_hash, git_commit, end_time
    (ms since the epoch), :data:`SETTING` and :func:`bench.metrics.metric_keys`, sorted by
    dataset, method, rate, seed. ``superseded`` counts older FINISHED runs of a (method,
    dataset, rate, seed) whose recipe changed since (the newest speaks for it);
    ``not_finished`` counts the cells whose latest run did not finish, by status.
    """

    experiment: str
    frame: pd.DataFrame
    superseded: int
    not_finished: dict[str, int]
    tracker: Tracker

    @property
    def newest_end_ms(self) -> int:
        return int(self.frame["end_time"].max())

    def predictions(self, run_id: str) -> pd.DataFrame:
        """The run's ``predictions.csv`` (one row per test sample)."""
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = self.tracker.client.download_artifacts(run_id, "predictions.csv", tmp)
            except Exception as err:  # MLflow raises several types for a missing artifact
                raise DataError(
                    f"run {run_id} has no readable predictions.csv ({type(err).__name__}): "
                    "its artifacts are gone; delete the run (mlflow ui) and rerun bench run "
                    "to redo that cell"
                ) from err
            return pd.read_csv(Path(path))


def collect(experiment: str, results_dir: str | Path) -> ExperimentRuns:
    """The FINISHED cells of ``experiment``; raise a :class:`BenchError` saying what to fix
    when the store, the experiment or finished cells are missing."""
    store = Path(results_dir).expanduser() / "mlflow.db"
    if not store.is_file():
        raise ConfigError(
            f"no tracking store at {str(store)!r}: pass the --results-dir that bench run wrote to"
        )
    tracker = Tracker(results_dir)
    experiment_id = tracker.experiment_id(experiment, create=False)
    if experiment_id is None:
        names = sorted(e.name for e in tracker.client.search_experiments())
        raise UnknownNameError(
            f"no experiment {experiment!r} in {tracker.results_dir}: choose one of "
            f"{', '.join(names) or 'none (run bench run first)'}"
        )
    latest = list(tracker.latest_by_cell(experiment_id).values())
    finished = [run for run in latest if run.status == "FINISHED"]
    not_finished = dict(sorted(Counter(r.status for r in latest if r.status != "FINISHED").items()))
    if not finished:
        counts = ", ".join(f"{n} {s}" for s, n in not_finished.items()) or "no runs"
        raise BenchError(
            f"experiment {experiment!r} has no FINISHED cells ({counts}): finish some with "
            f"bench run --experiment {experiment} (add --retry-failed to rerun failed ones)"
        )
    end_times = _end_times(tracker, experiment_id)
    rows = []
    for run in finished:
        row = {
            "method": run.tags.get("method", ""),
            "dataset": run.tags.get("dataset", ""),
            "rate": float(run.tags.get("rate", "nan")),
            "seed": int(run.tags.get("seed", "-1")),
            "run_id": run.run_id,
            "cell_hash": run.cell_hash,
            "git_commit": run.tags.get("git_commit", "unknown"),
            "end_time": end_times.get(run.run_id, run.start_time),
        }
        row.update({key: run.tags.get(key, "") for key in SETTING})
        row.update({k: run.metrics.get(f"test/{k}", math.nan) for k in metric_keys()})
        rows.append(row)
    frame = pd.DataFrame(rows).sort_values(["end_time", "run_id"])
    settings = sorted({tuple(row) for row in frame[list(SETTING)].to_numpy()})
    if len(settings) > 1:
        found = "; ".join("/".join(s) for s in settings)
        raise ConfigError(
            f"experiment {experiment!r} mixes missingness settings (mechanism/modality/"
            f"apply_to: {found}): rerun each setting under its own --experiment"
        )
    key = ["method", "dataset", "rate", "seed"]
    newest = frame.drop_duplicates(key, keep="last")
    return ExperimentRuns(
        experiment=experiment,
        frame=newest.sort_values(["dataset", "method", "rate", "seed"], ignore_index=True),
        superseded=len(frame) - len(newest),
        not_finished=not_finished,
        tracker=tracker,
    )


def _end_times(tracker: Tracker, experiment_id: str) -> dict[str, int]:
    """End time (ms since the epoch) of every FINISHED run of the experiment."""
    out, token = {}, None
    while True:
        page = tracker.client.search_runs(
            [experiment_id],
            filter_string="attributes.status = 'FINISHED'",
            max_results=1000,
            page_token=token,
        )
        out.update({run.info.run_id: int(run.info.end_time or 0) for run in page})
        token = page.token
        if not token:
            return out
