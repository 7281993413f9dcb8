"""What a report is made of: the FINISHED runs of one experiment in the tracking store, with
their provenance, metrics and saved per-sample predictions. Nothing is retrained.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.errors import BenchError, ConfigError, DataError
from bench.metrics import metric_keys
from bench.seeds import REPLICATE_COLUMNS
from bench.tracking import (
    COMPARABILITY_TAG,
    PLATFORM_TAGS,
    SEED_AXIS_TAGS,
    SETTING_TAGS,
    Tracker,
    existing_store,
)

SETTING = SETTING_TAGS
ID_COLUMNS = (
    "method",
    "dataset",
    "rate",
    "seed",
    "run_id",
    "cell_hash",
    "git_commit",
    "end_time",
    *PLATFORM_TAGS,
    COMPARABILITY_TAG,
    *SETTING,
    *SEED_AXIS_TAGS,
)


def columns() -> tuple[str, ...]:
    """:data:`ID_COLUMNS`, then every metric registered now."""
    return ID_COLUMNS + metric_keys()


@dataclass
class ExperimentRuns:
    """One row per reported cell (``frame``), and how to read a run's artifacts.

    ``frame`` columns (:func:`columns`): method, dataset, rate, seed, run_id, cell_hash,
    git_commit, end_time (ms since the epoch), the platform the run ran on
    (:data:`bench.tracking.PLATFORM_TAGS`), its comparability key, :data:`SETTING`, the
    seed-axis tags (``seed_masks``, ``seed_data``: empty unless the grid varied the seed axes
    apart, see :mod:`bench.seeds`) and :func:`bench.metrics.metric_keys`, sorted by dataset,
    method, rate and replicate (:data:`bench.seeds.REPLICATE_COLUMNS`). ``superseded`` counts
    older FINISHED runs of a (method, dataset, rate, replicate) whose recipe changed since (the
    newest speaks for it); ``not_finished`` counts the cells whose latest run did not
    finish, by status.
    """

    experiment: str
    frame: pd.DataFrame
    superseded: int
    not_finished: dict[str, int]
    tracker: Tracker

    @property
    def comparability(self) -> dict[str, int]:
        """Reported runs per :func:`bench.tracking.comparability_key`: more than one key
        means that the tables mix runs whose numbers a rerun need not reproduce."""
        return dict(sorted(Counter(self.frame[COMPARABILITY_TAG]).items()))

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


def collect(
    experiment: str, results_dir: str | Path, tracking_uri: str | None = None
) -> ExperimentRuns:
    """The FINISHED cells of ``experiment`` in the store at ``tracking_uri`` (default:
    ``$BENCH_TRACKING_URI``, else ``results_dir``'s SQLite file); raise a
    :class:`BenchError` saying what to fix when the store, the experiment or finished cells
    are missing."""
    tracker = existing_store(results_dir, tracking_uri)
    cells = tracker.frame(tracker.require_experiment(experiment))
    done = cells["status"] == "FINISHED"
    not_finished = dict(sorted(Counter(cells.loc[~done, "status"]).items()))
    if not done.any():
        counts = ", ".join(f"{n} {s}" for s, n in not_finished.items()) or "no runs"
        raise BenchError(
            f"experiment {experiment!r} has no FINISHED cells ({counts}): finish some with "
            f"bench run --experiment {experiment} (add --retry-failed to rerun failed ones)"
        )
    frame = cells.loc[done].reindex(columns=list(columns())).sort_values(["end_time", "run_id"])
    settings = sorted({tuple(row) for row in frame[list(SETTING)].to_numpy()})
    if len(settings) > 1:
        found = "; ".join("/".join(s) for s in settings)
        raise ConfigError(
            f"experiment {experiment!r} mixes missingness settings (mechanism/modality/"
            f"apply_to: {found}): rerun each setting under its own --experiment"
        )
    key = ["method", "dataset", "rate", *REPLICATE_COLUMNS]  # seed axes tell replicates apart
    newest = frame.drop_duplicates(key, keep="last")
    return ExperimentRuns(
        experiment=experiment,
        frame=newest.sort_values(
            ["dataset", "method", "rate", *REPLICATE_COLUMNS], ignore_index=True
        ),
        superseded=len(frame) - len(newest),
        not_finished=not_finished,
        tracker=tracker,
    )
