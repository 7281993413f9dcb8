"""``bench tune``: an Optuna study (Akiba et al., KDD 2019) of one method's hyper-parameters
on one (dataset, missing rate, seed) cell, selected on the validation split only.

- Search space: the method's ``search_space(trial)`` plus the shared training keys
  ``train.lr`` (log-uniform on [1e-4, 1e-2]) and ``train.weight_decay`` (log-uniform on
  [1e-6, 1e-1]).
- Objective: the validation ``train.monitor`` of the epoch whose weights ``fit`` keeps (the
  best epoch of the last stage). A trial is a cell run by ``bench.cell.run_cell``, like
  ``bench run``'s (the same data, frozen-backbone features included, and training), except
  that the test split is never predicted.
- Sampler: TPE (Bergstra et al., NeurIPS 2011) with multivariate=True and constant_liar=True
  (Optuna 5's defaults, set explicitly), reseeded for each trial with ``seed + trial.number``;
  pruner: MedianPruner fed the validation metric after every epoch. Both settings are study
  user attrs and parameters of the study's MLflow run.
- ``--trials N`` is the study's total over all the processes that join it (same storage and
  study name): COMPLETE, PRUNED, FAIL and RUNNING trials count; a trial whose process died or
  was interrupted is voided (FAIL with user attr ``void``) and replaced on the next run.
- Storage (``--storage``): a database URL for Optuna's ``RDBStorage`` through SQLAlchemy
  (the SQLite file ``<results>/optuna.db`` by default, or a PostgreSQL/MySQL server that
  processes on several machines join), or ``journal:PATH`` for Optuna's ``JournalStorage`` on
  a file of a shared filesystem (see :mod:`bench.stores`).
- Tracking: one MLflow run per study (experiment ``tune``), one nested run per trial;
  a pruned trial's run ends KILLED with tag ``optuna_state=PRUNED``. The process that
  creates the study creates its run and records the run's id in the study (user attr
  ``mlflow_parent_run_id``), so that processes on other machines, which share no lock file,
  join the same run. :class:`StudyStorage` is the only code that reaches into Optuna's
  internals.
- Export: the best trial to ``<results>/tune/<study>.yaml`` (``hparams: {method: ...}`` and
  ``train: {lr, weight_decay}``), which ``bench run --hparams FILE`` reads.
"""

from __future__ import annotations

import math
import os
import re
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import sqlalchemy
import yaml
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, TPESampler
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState

from bench.errors import ConfigError
from bench.interface import METHODS
from bench.metrics import metric_spec
from bench.spec import CellSpec, flatten
from bench.stores import is_journal, journal_path, redacted
from bench.train import EpochRecord

if TYPE_CHECKING:  # mlflow loads slowly; bench.cell and bench.tracking import it
    from bench.cell import CellResult, DatasetCache
    from bench.tracking import Tracker

LR_RANGE = (1e-4, 1e-2)
WEIGHT_DECAY_RANGE = (1e-6, 1e-1)
TPE_SETTINGS = {"multivariate": True, "constant_liar": True, "n_startup_trials": 10}
PRUNER_SETTINGS = {"n_startup_trials": 5, "n_warmup_steps": 1}
VOID = "void"  # user attr of a trial that does not count towards --trials, with the reason
STUDY_NAME = re.compile(r"[A-Za-z0-9_.@+-]+")
PARENT_ATTR = "mlflow_parent_run_id"
PARENT_WAIT_SECONDS = 30.0  # a joiner waits this long for the creator to record its run
STORAGE_FORMS = (
    "a database URL such as sqlite:///results/optuna.db or postgresql://USER@HOST/DB, "
    "or journal:PATH for a file on a shared disk"
)


def search_space(method: str, trial: Any) -> dict[str, Any]:
    """The shared training keys and ``method``'s own ``search_space``, drawn from ``trial``."""
    low, high = LR_RANGE
    wd_low, wd_high = WEIGHT_DECAY_RANGE
    return {
        "train.lr": trial.suggest_float("train.lr", low, high, log=True),
        "train.weight_decay": trial.suggest_float("train.weight_decay", wd_low, wd_high, log=True),
        **METHODS.resolve(method)[0].search_space(trial),
    }


def trial_spec(base: CellSpec, trial: Any) -> CellSpec:
    """``base`` with the values ``trial`` draws from the search space."""
    params = search_space(base.method, trial)
    train = replace(
        base.train, lr=params.pop("train.lr"), weight_decay=params.pop("train.weight_decay")
    )
    hparams = tuple(sorted({**dict(base.hparams), **params}.items()))
    return replace(base, train=train, hparams=hparams)


class TrialSeededTPE(BaseSampler):
    """TPE reseeded for every trial with ``seed + trial.number``.

    Optuna keeps a sampler's random state in memory only: a resumed study would draw its
    random start again, and processes joining one study with one seed would draw the same
    points. Seeding by trial number gives a resumed sequential study the draws of an
    uninterrupted one, and joined processes distinct ones. TPE keeps no other state between
    trials: it reads the past trials from the storage.
    """

    def __init__(self, seed: int, **settings: Any) -> None:
        self.seed, self.settings = seed, settings
        self._tpe = TPESampler(seed=seed, **settings)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._tpe = TPESampler(seed=self.seed + trial.number, **self.settings)
        self._tpe.before_trial(study, trial)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self._tpe.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._tpe.sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, name: str, distribution: BaseDistribution
    ) -> Any:
        return self._tpe.sample_independent(study, trial, name, distribution)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._tpe.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._tpe.reseed_rng()


@dataclass(frozen=True)
class TuneTask:
    """What one ``bench tune`` process works on."""

    base: CellSpec  # the tuned cell; the search space overrides lr, weight_decay, hparams
    study: str
    storage: str
    trials: int  # the study's total
    results_dir: Path
    experiment: str = "tune"
    tracking_uri: str | None = None  # None: $BENCH_TRACKING_URI, else results_dir's SQLite

    @property
    def monitor(self) -> str:
        return self.base.train.monitor

    @property
    def export_path(self) -> Path:
        return self.results_dir / "tune" / f"{self.study}.yaml"


def _identity(base: CellSpec) -> dict[str, str]:
    """What every process joining a study must agree on: the cell, less what is searched."""
    skip = ("train.lr", "train.weight_decay", "train.device", "dataset.options.root")
    return {k: str(v) for k, v in flatten(base.to_dict()).items() if k not in skip}


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """Optuna's storage for ``--storage``: ``JournalStorage`` on a file for ``journal:PATH``,
    else ``RDBStorage`` on the database URL (SQLite waits up to 60 s for a lock)."""
    if is_journal(url):
        path = journal_path(url)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as err:
            raise ConfigError(
                f"--storage {url!r} cannot be opened ({err.strerror}): give a file in a "
                "folder you can write to"
            ) from err
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine)
        except sqlalchemy.exc.DBAPIError:  # processes building a new schema at once race
            time.sleep(1.0)
            return optuna.storages.RDBStorage(url, engine_kwargs=engine)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as err:
        raise ConfigError(
            f"--storage {redacted(url)!r} cannot be opened ({type(err).__name__}): give "
            f"{STORAGE_FORMS}"
        ) from err


def open_study(task: TuneTask) -> tuple[optuna.Study, bool]:
    """Create the study, or join it after checking that it tunes the same cell; True when
    this process created it."""
    study_options = {
        "storage": open_storage(task.storage),
        "study_name": task.study,
        "sampler": TrialSeededTPE(task.base.seed, **TPE_SETTINGS),
        "pruner": optuna.pruners.MedianPruner(**PRUNER_SETTINGS),
    }
    direction = "maximize" if metric_spec(task.monitor).higher_is_better else "minimize"
    try:
        study, created = optuna.create_study(direction=direction, **study_options), True
    except optuna.exceptions.DuplicatedStudyError:
        study, created = optuna.load_study(**study_options), False
    identity, stored = _identity(task.base), study.user_attrs.get("cell")
    if stored is None:
        for key, value in {"cell": identity, **settings(task)}.items():
            study.set_user_attr(key, value)
    elif stored != identity:
        key = min(k for k in {*stored, *identity} if stored.get(k) != identity.get(k))
        raise ConfigError(
            f"study {task.study!r} tunes a cell with {key}={stored.get(key)}, not "
            f"{identity.get(key)}: pass the options it was started with, or a new --study"
        )
    return study, created


def settings(task: TuneTask) -> dict[str, dict[str, Any]]:
    """Sampler and pruner settings, as recorded with the study."""
    return {
        "sampler": {
            "name": "TPESampler",
            "seed": task.base.seed,
            "per_trial_seed": "seed + trial.number",
            **TPE_SETTINGS,
        },
        "pruner": {"name": "MedianPruner", **PRUNER_SETTINGS},
    }


def counted_trials(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if VOID not in t.user_attrs]


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:  # no COMPLETE trial yet
        return None


class StudyStorage:
    """The one place that knows Optuna's internals (``study._storage``, a frozen trial's
    ``_trial_id``): voiding a trial that another, dead process asked for, which
    ``Study.tell`` cannot do with a user attr."""

    def __init__(self, study: optuna.Study) -> None:
        self._storage = study._storage

    def void(self, trial: FrozenTrial, reason: str) -> bool:
        """End ``trial`` FAIL with user attr :data:`VOID` = ``reason``; False when it had
        already ended (another process voided it first)."""
        try:
            self._storage.set_trial_user_attr(trial._trial_id, VOID, reason)
            self._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            return False
        return True


def _void_dead_trials(study: optuna.Study, tracker: Tracker) -> None:
    """Void the RUNNING trials whose process on this host is gone (kill -9, power loss),
    and end their MLflow runs KILLED."""
    from bench.tracking import process_alive

    storage = StudyStorage(study)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if "pid" not in trial.user_attrs or process_alive(trial.user_attrs):
            continue
        if storage.void(trial, "its process died") and "mlflow_run_id" in trial.user_attrs:
            tracker.client.set_terminated(trial.user_attrs["mlflow_run_id"], "KILLED")


def next_trial(study: optuna.Study, total: int, tracker: Tracker) -> optuna.Trial | None:
    """A new trial while the study has fewer than ``total`` counted trials, else None."""
    _void_dead_trials(study, tracker)
    if len(counted_trials(study.get_trials(deepcopy=False))) >= total:
        return None
    trial = study.ask()
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", str(os.getpid()))
    earlier = [
        t for t in counted_trials(study.get_trials(deepcopy=False)) if t.number < trial.number
    ]
    if len(earlier) >= total:  # another process took the last trial meanwhile
        trial.set_user_attr(VOID, "surplus: the study reached its trials meanwhile")
        study.tell(trial, state=TrialState.FAIL)
        return None
    return trial


def run_trial(
    trial: optuna.Trial,
    task: TuneTask,
    tracker: Tracker,
    experiment_id: str,
    parent_run_id: str,
    datasets: DatasetCache,
) -> CellResult:
    """Run the trial's cell with :func:`bench.cell.run_cell` as a nested run of the study's,
    reporting every epoch's validation ``monitor`` to the pruner; the test split is never
    predicted. Raises :class:`bench.cell.StopCell` when the pruner stops the trial."""
    from bench.cell import CellHooks, StopCell, run_cell

    monitor = task.monitor

    def report(record: EpochRecord) -> None:
        trial.report(record.val[monitor], record.step)
        if trial.should_prune():
            raise StopCell(
                f"pruned after epoch {record.step + 1}: validation {monitor} "
                f"{record.val[monitor]:.4f} is worse than the median of earlier trials"
            )

    hooks = CellHooks(
        tags={
            "mlflow.runName": f"trial {trial.number}",
            "mlflow.parentRunId": parent_run_id,
            "optuna_study": task.study,
            "optuna_trial": str(trial.number),
        },
        on_start=lambda run_id: trial.set_user_attr("mlflow_run_id", run_id),
        on_epoch=report,
        score_test=False,
    )
    return run_cell(trial_spec(task.base, trial), tracker, experiment_id, datasets, hooks)


def _run_and_tell(
    study: optuna.Study, trial: optuna.Trial, task: TuneTask, *context: Any
) -> FrozenTrial:
    from bench.cell import StopCell

    try:
        result = run_trial(trial, task, *context)
    except StopCell:
        return study.tell(trial, state=TrialState.PRUNED)
    except KeyboardInterrupt:
        trial.set_user_attr(VOID, "interrupted")
        study.tell(trial, state=TrialState.FAIL)
        raise
    if result.status != "FINISHED":
        trial.set_user_attr("error", result.error[:2000])
        return study.tell(trial, state=TrialState.FAIL)
    return study.tell(trial, result.val_metrics[task.monitor])


def _recorded_parent(study: optuna.Study, tracker: Tracker, wait: bool) -> str | None:
    """The study's run id as its creator recorded it (waiting for a creator that is still
    starting when ``wait``), if that run is in this tracking store."""
    from mlflow.exceptions import MlflowException

    deadline = time.monotonic() + (PARENT_WAIT_SECONDS if wait else 0.0)
    while (run_id := study.user_attrs.get(PARENT_ATTR)) is None and time.monotonic() < deadline:
        time.sleep(0.5)
    if run_id is None:
        return None
    try:
        tracker.client.get_run(run_id)
    except MlflowException:  # recorded in another tracking store
        return None
    return run_id


def _parent_run(
    tracker: Tracker, experiment_id: str, task: TuneTask, study: optuna.Study, created: bool
) -> str:
    """The study's MLflow run: created by the process that created the study, which records
    its id in the study; reopened by the processes that join it."""
    from mlflow.entities import Param

    run_id = _recorded_parent(study, tracker, wait=not created)
    if run_id is None:  # a study from before the id was recorded, or another store's
        found = tracker.find_runs(
            experiment_id, tags={"optuna_study": task.study, "optuna_role": "study"}
        )
        run_id = found[0].run_id if found else None
    if run_id is not None:
        if tracker.client.get_run(run_id).info.status != "RUNNING":
            tracker.client.update_run(run_id, status="RUNNING")
        study.set_user_attr(PARENT_ATTR, run_id)
        return run_id
    tags = {"mlflow.runName": task.study, "optuna_study": task.study, "optuna_role": "study"}
    tags.update({"optuna_storage": redacted(task.storage), "cell": task.base.label})
    run_id = tracker.client.create_run(experiment_id, tags=tags).info.run_id
    params = flatten({**settings(task), "monitor": task.monitor})
    tracker.client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items()])
    study.set_user_attr(PARENT_ATTR, run_id)
    return run_id


def _close_parent(
    tracker: Tracker, parent_run_id: str, study: optuna.Study, task: TuneTask
) -> None:
    trials = counted_trials(study.get_trials(deepcopy=False))
    best = best_trial(study)
    tracker.client.set_tag(parent_run_id, "trials", str(task.trials))
    if best is not None:
        tracker.log_metrics(parent_run_id, {f"best_val/{task.monitor}": best.value}, len(trials))
        tracker.client.set_tag(parent_run_id, "best_trial", str(best.number))
    if len(trials) >= task.trials and all(t.state.is_finished() for t in trials):
        tracker.client.set_terminated(parent_run_id, "FINISHED")


def export_best(study: optuna.Study, task: TuneTask) -> Path | None:
    """Write the best trial as a ``bench run --hparams`` file; None when no trial completed."""
    best = best_trial(study)
    if best is None:
        return None
    params = search_space(task.base.method, optuna.trial.FixedTrial(best.params))
    tuned = {
        "hparams": {task.base.method: {k: v for k, v in params.items() if "." not in k}},
        "train": {k[len("train.") :]: v for k, v in params.items() if k.startswith("train.")},
    }
    header = (
        f"# bench tune study {task.study}: trial {best.number} of "
        f"{len(counted_trials(study.get_trials(deepcopy=False)))}, validation {task.monitor} "
        f"{best.value:.4f}\n# cell: {task.base.label}, {task.base.train.epochs} epochs\n"
    )
    path = task.export_path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.yaml")
    with os.fdopen(fd, "w") as fh:
        fh.write(header + yaml.safe_dump(tuned, sort_keys=False))
    os.replace(tmp, path)  # joined processes may export at once
    return path


def _report(frozen: FrozenTrial, study: optuna.Study, task: TuneTask) -> None:
    counted = len(counted_trials(study.get_trials(deepcopy=False)))
    detail = frozen.user_attrs.get("error", "")
    if frozen.value is not None and not math.isnan(frozen.value):
        detail = f"{task.monitor}={frozen.value:.4f}"
    best = best_trial(study)
    best_text = f"best {best.value:.4f} (trial {best.number})" if best else "no best yet"
    seconds = frozen.duration.total_seconds() if frozen.duration else 0.0
    print(
        f"[trial {frozen.number}, {counted}/{task.trials}] {frozen.state.name} {detail} "
        f"({seconds:.1f} s); {best_text}",
        file=sys.stderr,
        flush=True,
    )


def tune(task: TuneTask) -> optuna.Study:
    """Run trials until the study holds ``task.trials``; export the best; return the study."""
    from bench.cell import DatasetCache
    from bench.tracking import Tracker, file_lock

    tracker = Tracker(task.results_dir, task.tracking_uri)
    experiment_id = tracker.experiment_id(task.experiment)
    task.results_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(task.results_dir / "tune.lock"):  # one study per machine at a time
        study, created = open_study(task)
        parent_run_id = _parent_run(tracker, experiment_id, task, study, created)
    datasets = DatasetCache(tracker.results_dir / "cache")
    while (trial := next_trial(study, task.trials, tracker)) is not None:
        frozen = _run_and_tell(study, trial, task, tracker, experiment_id, parent_run_id, datasets)
        if "mlflow_run_id" in frozen.user_attrs:
            run_id = frozen.user_attrs["mlflow_run_id"]
            tracker.client.set_tag(run_id, "optuna_state", frozen.state.name)
        _report(frozen, study, task)
    _close_parent(tracker, parent_run_id, study, task)
    export_best(study, task)
    return study
