"""MLflow tracking: one run per cell, tagged with the cell's stable hash.

The store is SQLite at ``<results_dir>/mlflow.db`` with artifacts under
``<results_dir>/artifacts/``. A FINISHED run carrying a cell's hash means the cell is
done, so rerunning a command resumes it. A run left RUNNING by a process that no longer
exists (kill -9, power loss) is marked KILLED when its cell is started again.

Several processes may write into one store (``bench run --executor process``, joined
``bench tune`` studies): the database is created under a file lock, runs in SQLite's WAL mode
(readers do not block the writer), and a call that still finds it locked is retried.
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import socket
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from bench.errors import ConfigError
from bench.spec import CellSpec, flatten

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

for _noisy in ("alembic", "mlflow"):  # set after import: mlflow configures its loggers then
    logging.getLogger(_noisy).setLevel(logging.WARNING)

TAG_HASH = "cell_hash"
TERMINAL = ("FINISHED", "FAILED", "KILLED")
LOCK_RETRY_SECONDS = 120.0  # beyond MLflow's own 20 s SQLite busy timeout per statement


@dataclass(frozen=True)
class CellRun:
    """What the store knows of one run of a cell."""

    run_id: str
    cell_hash: str
    status: str
    start_time: int
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def _process_alive(tags: dict[str, str]) -> bool:
    """Whether the process that owns a RUNNING run may still be working on it."""
    if tags.get("host") != socket.gethostname():
        return True  # another machine's worker: trust its status
    try:
        os.kill(int(tags.get("pid", "0")), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return int(tags.get("pid", "0")) > 0


def check_writable(results_dir: Path) -> Path:
    """Create ``results_dir`` if needed; fail in one line if it cannot be written."""
    results_dir = Path(results_dir).expanduser()
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=results_dir):
            pass
    except OSError as err:
        raise ConfigError(
            f"results dir {str(results_dir)!r} is not writable ({err.strerror}): "
            "pass --results-dir with a folder you can write to"
        ) from err
    return results_dir.resolve()


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if needed) across processes."""
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _is_locked(err: Exception) -> bool:
    return "database is locked" in str(err) or "database table is locked" in str(err)


class RetryingClient:
    """An ``MlflowClient`` whose calls are retried, with jittered backoff, while SQLite
    reports the database locked. A locked write is rolled back whole, so a retry can
    neither lose nor double a run."""

    def __init__(self, client: MlflowClient) -> None:
        self._client = client
        self._jitter = random.Random()  # not the seeded global one: workers must not sync

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._client, name)
        if not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            deadline, delay = time.monotonic() + LOCK_RETRY_SECONDS, 0.05
            while True:
                try:
                    return value(*args, **kwargs)
                except Exception as err:
                    if not _is_locked(err) or time.monotonic() > deadline:
                        raise
                time.sleep(delay * (1 + self._jitter.random()))
                delay = min(2 * delay, 2.0)

        return call


def _open_store(db: Path, uri: str) -> RetryingClient:
    """Create (once, under a lock) and open the SQLite store in WAL mode.

    Without the lock, processes opening a new store at once race through MLflow's schema
    migrations and fail with 'table ... already exists'.
    """
    with file_lock(db.with_name(db.name + ".lock")):
        with closing(sqlite3.connect(db, timeout=60)) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
        client = RetryingClient(MlflowClient(tracking_uri=uri))
        client.search_experiments(max_results=1)  # builds the schema on first use
    return client


class Tracker:
    """The MLflow store under one results dir."""

    def __init__(self, results_dir: Path | str) -> None:
        self.results_dir = check_writable(Path(results_dir))
        self.uri = f"sqlite:///{self.results_dir / 'mlflow.db'}"
        self.client = _open_store(self.results_dir / "mlflow.db", self.uri)
        self._commit = _git_commit()

    # experiments -------------------------------------------------------------------
    def experiment_id(self, name: str, create: bool = True) -> str | None:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        if not create:
            return None
        location = (self.results_dir / "artifacts" / name).as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except MlflowException:  # another process created it first
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def runs(self, experiment_id: str) -> list[CellRun]:
        out, token = [], None
        while True:
            page = self.client.search_runs(
                [experiment_id], max_results=1000, page_token=token, order_by=["start_time ASC"]
            )
            for run in page:
                tags = dict(run.data.tags)
                if TAG_HASH not in tags:
                    continue
                out.append(
                    CellRun(
                        run.info.run_id,
                        tags[TAG_HASH],
                        run.info.status,
                        run.info.start_time or 0,
                        tags,
                        dict(run.data.params),
                        dict(run.data.metrics),
                    )
                )
            token = page.token
            if not token:
                return out

    def latest_by_cell(self, experiment_id: str) -> dict[str, CellRun]:
        """The run that speaks for each cell: its newest FINISHED run, else its newest run.

        A RUNNING run whose process is gone is reported as KILLED.
        """
        best: dict[str, CellRun] = {}
        for run in self.runs(experiment_id):  # oldest first
            if run.status == "RUNNING" and not _process_alive(run.tags):
                run = CellRun(**{**run.__dict__, "status": "KILLED"})
            current = best.get(run.cell_hash)
            if current is None or current.status != "FINISHED" or run.status == "FINISHED":
                best[run.cell_hash] = run
        return best

    # one cell --------------------------------------------------------------------------
    def start(self, experiment_id: str, spec: CellSpec, device: str) -> str:
        """Open a run for ``spec``; mark its dead predecessors KILLED."""
        running = self.client.search_runs(
            [experiment_id],
            filter_string=f"tags.{TAG_HASH} = '{spec.hash}' and attributes.status = 'RUNNING'",
        )
        for run in running:
            if not _process_alive(dict(run.data.tags)):
                self.client.set_terminated(run.info.run_id, "KILLED")
        tags = {
            TAG_HASH: spec.hash,
            "mlflow.runName": spec.label,
            "method": spec.method,
            "dataset": spec.dataset.name,
            "rate": repr(spec.missing.rate),
            "seed": str(spec.seed),
            "mechanism": spec.missing.mechanism,
            "modality": spec.missing.modality,
            "apply_to": spec.missing.apply_to,
            "device": device,
            "host": socket.gethostname(),
            "pid": str(os.getpid()),
            "torch_threads": str(torch.get_num_threads()),
            "git_commit": self._commit,
        }
        run = self.client.create_run(experiment_id, tags=tags)
        params = [Param(k, str(v)[:6000]) for k, v in flatten(spec.to_dict()).items()]
        self.client.log_batch(run.info.run_id, params=params)
        return run.info.run_id

    def log_metrics(self, run_id: str, values: dict[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in values.items()]
        self.client.log_batch(run_id, metrics=metrics)

    def finish(
        self,
        run_id: str,
        metrics: dict[str, float],
        write_artifacts: Callable[[Path], None],
        extra_tags: dict[str, Any] | None = None,
    ) -> None:
        """Log test metrics and artifacts, then mark the run FINISHED (last, so a crash
        in between leaves the cell unfinished)."""
        self.log_metrics(run_id, {f"test/{k}": v for k, v in metrics.items()})
        with tempfile.TemporaryDirectory() as tmp:
            write_artifacts(Path(tmp))
            self.client.log_artifacts(run_id, tmp)
        for key, value in (extra_tags or {}).items():
            self.client.set_tag(run_id, key, str(value))
        self.client.set_terminated(run_id, "FINISHED")

    def fail(self, run_id: str, error: BaseException, status: str = "FAILED") -> None:
        self.client.set_tag(run_id, "error", f"{type(error).__name__}: {error}"[:5000])
        self.client.set_terminated(run_id, status)

    def artifact_path(self, run_id: str, name: str) -> Path:
        """Local path of a run's artifact file."""
        from mlflow.artifacts import download_artifacts

        return Path(download_artifacts(run_id=run_id, artifact_path=name, tracking_uri=self.uri))


def write_yaml(path: Path, data: dict[str, Any]) -> None:
    with path.open("w") as fh:
        yaml.safe_dump(data, fh, sort_keys=False)
