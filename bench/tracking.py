"""MLflow tracking: one run per cell, tagged with the cell's stable hash and the platform
it ran on; the one place that reads runs back (``Tracker.frame``, ``Tracker.find_runs``).

The store is the tracking URI's (:mod:`bench.stores`): by default SQLite at
``<results_dir>/mlflow.db`` with artifacts under ``<results_dir>/artifacts/``; else an MLflow
tracking server (artifacts where the server puts them) or a database. A FINISHED run
carrying a cell's hash means the cell is done, so rerunning a command resumes it, on every
backend. A run left RUNNING by a process that no longer exists (kill -9, power loss) is
marked KILLED when its cell is started again.

Several processes may write into one store (``bench run --executor process``, joined
``bench tune`` studies). A SQLite store is created under a file lock, runs in SQLite's WAL
mode (readers do not block the writer), and a call that still finds it locked is retried; a
server or a database serialises its writers itself.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import platform
import random
import socket
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml

from bench.errors import ConfigError, UnknownNameError
from bench.failures import INTERRUPTED, recorded_class
from bench.failures import TAG as FAILURE_TAG
from bench.seeds import AXIS_TAGS
from bench.spec import CellSpec, flatten
from bench.stores import redacted, resolve_tracking_uri, sqlite_path, tracking_kind

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# MLflow prints every ended run's URL, credentials included, to stdout for a server store
os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

for _noisy in ("alembic", "mlflow"):  # set after import: mlflow configures its loggers then
    logging.getLogger(_noisy).setLevel(logging.WARNING)

TAG_HASH = "cell_hash"
MLFLOW_DEFAULT_EXPERIMENT = "0"  # the id of the experiment "Default" that MLflow creates
TERMINAL = ("FINISHED", "FAILED", "KILLED")
LOCK_RETRY_SECONDS = 120.0  # beyond MLflow's own 20 s SQLite busy timeout per statement
SERVER_PROBE_SECONDS = 10.0
TEST_PREFIX = "test/"
PLATFORM_TAGS = (
    "python_version",
    "torch_version",
    "cuda_version",
    "cudnn_version",
    "device",
    "device_name",
    "cpu_model",
    "platform",
    "torch_threads",
)
SETTING_TAGS = ("mechanism", "modality", "apply_to")
COMPARABILITY_TAG = "comparability"
CELL_COLUMNS = ("method", "dataset", "rate", "seed", "status", "run_id", "cell_hash")
SEED_AXIS_TAGS = tuple(AXIS_TAGS.values())  # set only on cells of a grid with seed axes
TAG_COLUMNS = (
    "git_commit",
    "error",
    FAILURE_TAG,
    "end_time",
    *SETTING_TAGS,
    *SEED_AXIS_TAGS,
    *PLATFORM_TAGS,
    COMPARABILITY_TAG,
)


@dataclass(frozen=True)
class CellRun:
    """What the store knows of one run (``cell_hash`` is empty for a run that is not a
    cell's, such as a tuning study's parent run). Times are ms since the epoch; ``end_time``
    is 0 while the run has not ended."""

    run_id: str
    cell_hash: str
    status: str
    start_time: int
    end_time: int
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]

    @property
    def test_metrics(self) -> dict[str, float]:
        """The test-split metrics, without their ``test/`` prefix."""
        n = len(TEST_PREFIX)
        return {k[n:]: v for k, v in self.metrics.items() if k.startswith(TEST_PREFIX)}


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


CPUINFO_KEYS = ("model name", "Hardware", "Processor", "cpu model")  # x86, ARM, MIPS


def cpu_model_from(cpuinfo: str) -> str:
    """The CPU's name in the text of ``/proc/cpuinfo``, or "" when it names none."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in CPUINFO_KEYS and value.strip():
            return value.strip()
    return ""


@functools.cache
def cpu_model() -> str:
    """This machine's CPU, from ``/proc/cpuinfo`` where there is one, else ``platform``
    (read once per process)."""
    try:
        found = cpu_model_from(Path("/proc/cpuinfo").read_text(errors="replace"))
    except OSError:
        found = ""
    return found or platform.processor() or platform.machine() or "unknown"


@functools.cache
def _software() -> dict[str, str]:
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "python_version": platform.python_version(),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda or "none",
        "cudnn_version": str(cudnn) if cudnn else "none",
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
    }


def device_name(device: str) -> str:
    """The GPU's name for a CUDA device, else the processor that computes."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    if device.startswith("mps"):
        return f"Apple MPS ({cpu_model()})"
    return cpu_model()


def platform_tags(device: str) -> dict[str, str]:
    """What a run's numbers may depend on beyond the code and the seeds: interpreter,
    library and driver versions, the device, the CPU, the OS, the torch threads."""
    return {
        **_software(),
        "device": device,
        "device_name": device_name(device),
        "torch_threads": str(torch.get_num_threads()),
    }


def comparability_key(tags: Mapping[str, str]) -> str:
    """What two runs of one cell must share to give the same numbers, from a run's tags:
    the code (git commit), the torch version, the device type and, on CPU, the torch
    threads (reductions split over threads add in another order). Like
    ``commit=1a2b3c4d5e6f torch=2.5.1 device=cpu threads=2``; on another platform (CPU
    model, BLAS build, driver) the same key may still give other numbers."""
    device = tags.get("device", "unknown").partition(":")[0]
    key = (
        f"commit={tags.get('git_commit', 'unknown')[:12]} "
        f"torch={tags.get('torch_version', 'unknown')} device={device}"
    )
    return f"{key} threads={tags.get('torch_threads', 'unknown')}" if device == "cpu" else key


def process_alive(tags: Mapping[str, str]) -> bool:
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


def store_exists(results_dir: Path | str, tracking_uri: str | None = None) -> bool:
    """Whether the store in force holds runs already: a server or a database always may; a
    SQLite store only once its file exists (reading must not create an empty one)."""
    uri = resolve_tracking_uri(Path(results_dir).expanduser(), tracking_uri)
    return tracking_kind(uri) != "sqlite" or sqlite_path(uri).is_file()


def existing_store(results_dir: Path | str, tracking_uri: str | None = None) -> Tracker:
    """The store of a reader (``bench results``, ``bench report``), which must exist: a
    missing SQLite file names the folder to fix instead of creating an empty store."""
    if not store_exists(results_dir, tracking_uri):
        uri = resolve_tracking_uri(Path(results_dir).expanduser(), tracking_uri)
        raise ConfigError(
            f"no tracking store at {str(sqlite_path(uri))!r}: pass the --results-dir (or "
            "--tracking-uri) that bench run wrote to"
        )
    return Tracker(results_dir, tracking_uri)


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


IDEMPOTENT = ("set_tag", "set_terminated")  # the same call twice leaves the same run


def _is_insert_race(name: str, err: Exception) -> bool:
    """Two processes set the same tag of one run at once (joined ``bench tune`` processes
    closing their study's run): the SQL store's check-then-insert loses the race with a
    unique-key error, and the same call again finds the row and updates it."""
    text = str(err)
    return name in IDEMPOTENT and ("UNIQUE constraint failed" in text or "duplicate key" in text)


class RetryingClient:
    """An ``MlflowClient`` whose calls are retried, with jittered backoff, while SQLite
    reports the database locked (a locked write is rolled back whole, so a retry can
    neither lose nor double a run), and whose idempotent calls are retried after losing an
    insert race."""

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
                    retry = _is_locked(err) or _is_insert_race(name, err)
                    if not retry or time.monotonic() > deadline:
                        raise
                time.sleep(delay * (1 + self._jitter.random()))
                delay = min(2 * delay, 2.0)

        return call


def _open_sqlite(db: Path, uri: str) -> RetryingClient:
    """Create (once, under a lock) and open the SQLite store in WAL mode.

    Without the lock, processes opening a new store at once race through MLflow's schema
    migrations and fail with 'table ... already exists'.
    """
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"tracking store folder {str(db.parent)!r} cannot be created ({err.strerror}): "
            "pass a --tracking-uri or --results-dir you can write to"
        ) from err
    with file_lock(db.with_name(db.name + ".lock")):
        with closing(sqlite3.connect(db, timeout=60)) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
        client = RetryingClient(MlflowClient(tracking_uri=uri))
        client.search_experiments(max_results=1)  # builds the schema on first use
    return client


def _probe_server(uri: str) -> None:
    """Fail in one line unless the MLflow server at ``uri`` answers its health endpoint
    (MLflow's own client would retry for minutes first)."""
    import requests

    try:
        requests.get(f"{uri}/health", timeout=SERVER_PROBE_SECONDS)
    except requests.RequestException as err:
        raise ConfigError(
            f"the MLflow tracking server {redacted(uri)} does not answer "
            f"({type(err).__name__}): start it (mlflow server --serve-artifacts ...) or fix "
            "--tracking-uri"
        ) from err


def _probe_database(uri: str) -> None:
    """Fail in one line unless the database at ``uri`` accepts a connection (MLflow would
    retry for about 100 s, logging every attempt) and its driver is installed."""
    import sqlalchemy

    timeout = {"connect_timeout": int(SERVER_PROBE_SECONDS)}  # libpq's and MySQL drivers' name
    if not uri.startswith(("postgresql", "mysql")):
        timeout = {}
    try:
        engine = sqlalchemy.create_engine(uri, connect_args=timeout)
        with engine.connect():
            pass
        engine.dispose()
    except (ImportError, sqlalchemy.exc.NoSuchModuleError) as err:
        raise ConfigError(
            f"the tracking store {redacted(uri)} needs a database driver that is not installed "
            f"({err}): pip install 'kedr-bench[server]' (PostgreSQL) or that driver"
        ) from err
    except sqlalchemy.exc.SQLAlchemyError as err:
        raise ConfigError(
            f"the database {redacted(uri)} does not accept a connection "
            f"({type(err).__name__}): start it, or fix --tracking-uri and the credentials in "
            "the database client's environment variables"
        ) from err


def _open_store(uri: str) -> RetryingClient:
    """A client of the store at ``uri``, checked to answer."""
    kind = tracking_kind(uri)
    if kind == "sqlite":
        return _open_sqlite(sqlite_path(uri), uri)
    if kind == "server":
        _probe_server(uri)
    else:
        _probe_database(uri)
    try:
        client = RetryingClient(MlflowClient(tracking_uri=uri))
        client.search_experiments(max_results=1)  # a database store builds its schema here
    except Exception as err:  # MLflow and SQLAlchemy raise many types for a bad store
        raise ConfigError(
            f"the tracking store {redacted(uri)} cannot be read ({type(err).__name__}): "
            "check --tracking-uri, and the credentials in MLflow's environment variables"
        ) from err
    return client


class Tracker:
    """The MLflow store at a tracking URI (by default the SQLite file of ``results_dir``).

    ``results_dir`` is created and must be writable only when the store or its artifacts
    live there (SQLite, a database without a server); a worker that writes to a server
    never touches it.
    """

    def __init__(self, results_dir: Path | str, tracking_uri: str | None = None) -> None:
        results_dir = Path(results_dir).expanduser()
        self.kind = tracking_kind(resolve_tracking_uri(results_dir, tracking_uri))
        if self.kind == "server":
            self.results_dir = results_dir.absolute()
        else:
            self.results_dir = check_writable(results_dir)
        self.uri = resolve_tracking_uri(self.results_dir, tracking_uri)
        self.client = _open_store(self.uri)
        self._commit = _git_commit()

    @property
    def where(self) -> str:
        """The store, for messages: its URI without credentials."""
        return redacted(self.uri)

    # experiments -------------------------------------------------------------------
    def experiment_id(self, name: str, create: bool = True) -> str | None:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        if not create:
            return None
        location = None  # a server decides (its proxied artifact store)
        if self.kind != "server":
            location = (self.results_dir / "artifacts" / name).as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except MlflowException:  # another process created it first
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def require_experiment(self, name: str) -> str:
        """The id of experiment ``name``; an :class:`UnknownNameError` naming the known
        experiments when there is none."""
        experiment_id = self.experiment_id(name, create=False)
        if experiment_id is None:
            names = sorted(
                e.name
                for e in self.client.search_experiments()
                if e.experiment_id != MLFLOW_DEFAULT_EXPERIMENT  # MLflow's own, never ours
            )
            raise UnknownNameError(
                f"no experiment {name!r} in {self.where}: choose one of "
                f"{', '.join(names) or 'none (run bench run first)'}"
            )
        return experiment_id

    # reading runs ----------------------------------------------------------------------
    def find_runs(
        self,
        experiment_id: str,
        cell_hash: str | None = None,
        status: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> list[CellRun]:
        """The runs of an experiment, oldest first, that have this cell hash, this status
        and these tag values (each only when given)."""
        clauses = [f"tags.{TAG_HASH} = {_quoted(cell_hash)}"] if cell_hash is not None else []
        if status is not None:
            clauses.append(f"attributes.status = {_quoted(status)}")
        clauses += [f"tags.`{key}` = {_quoted(value)}" for key, value in (tags or {}).items()]
        out, token = [], None
        while True:
            page = self.client.search_runs(
                [experiment_id],
                filter_string=" and ".join(clauses),
                max_results=1000,
                page_token=token,
                order_by=["start_time ASC"],
            )
            out += [_cell_run(run) for run in page]
            token = page.token
            if not token:
                return out

    def runs(self, experiment_id: str) -> list[CellRun]:
        """Every run of a cell in the experiment, oldest first."""
        return [run for run in self.find_runs(experiment_id) if run.cell_hash]

    def latest_by_cell(self, experiment_id: str) -> dict[str, CellRun]:
        """The run that speaks for each cell: its newest FINISHED run, else its newest run.

        A RUNNING run whose process is gone is reported as KILLED.
        """
        best: dict[str, CellRun] = {}
        for run in self.runs(experiment_id):  # oldest first
            if run.status == "RUNNING" and not process_alive(run.tags):
                run = replace(run, status="KILLED")
            current = best.get(run.cell_hash)
            if current is None or current.status != "FINISHED" or run.status == "FINISHED":
                best[run.cell_hash] = run
        return best

    def frame(self, experiment_id: str) -> pd.DataFrame:
        """One row per cell, from the run that speaks for it (:meth:`latest_by_cell`):
        :data:`CELL_COLUMNS`, :data:`TAG_COLUMNS` (``end_time`` in ms since the epoch; the
        start time for a run that never ended) and its test metrics without the ``test/``
        prefix (NaN where a run has none), sorted by dataset, method, rate, seed."""
        rows, metric_keys = [], {}
        for run in self.latest_by_cell(experiment_id).values():
            tests = run.test_metrics
            metric_keys.update(dict.fromkeys(tests))
            rows.append(
                {
                    "method": run.tags.get("method", ""),
                    "dataset": run.tags.get("dataset", ""),
                    "rate": float(run.tags.get("rate", "nan")),
                    "seed": int(run.tags.get("seed", "-1")),
                    "status": run.status,
                    "run_id": run.run_id,
                    "cell_hash": run.cell_hash,
                    "git_commit": run.tags.get("git_commit", "unknown"),
                    "error": run.tags.get("error", ""),
                    FAILURE_TAG: recorded_class(run.status, run.tags),
                    "end_time": run.end_time or run.start_time,
                    **{key: run.tags.get(key, "") for key in (*SETTING_TAGS, *SEED_AXIS_TAGS)},
                    **{key: run.tags.get(key, "unknown") for key in PLATFORM_TAGS},
                    COMPARABILITY_TAG: run.tags.get(COMPARABILITY_TAG)
                    or comparability_key(run.tags),
                    **tests,
                }
            )
        columns = [*CELL_COLUMNS, *TAG_COLUMNS, *sorted(metric_keys)]
        frame = pd.DataFrame(rows, columns=columns)
        return frame.sort_values(["dataset", "method", "rate", "seed"], ignore_index=True)

    # one cell --------------------------------------------------------------------------
    def start(
        self,
        experiment_id: str,
        spec: CellSpec,
        device: str,
        extra_tags: Mapping[str, str] | None = None,
    ) -> str:
        """Open a run for ``spec`` (tagged with its cell, the platform and ``extra_tags``);
        mark its dead predecessors KILLED."""
        for run in self.find_runs(experiment_id, cell_hash=spec.hash, status="RUNNING"):
            if not process_alive(run.tags):
                self.client.set_terminated(run.run_id, "KILLED")
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
            "host": socket.gethostname(),
            "pid": str(os.getpid()),
            "git_commit": self._commit,
            **platform_tags(device),
            **(extra_tags or {}),
        }
        tags[COMPARABILITY_TAG] = comparability_key(tags)
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
        tags = [RunTag(key, str(value)) for key, value in (extra_tags or {}).items()]
        if tags:  # one call, not one per tag: each is a round trip to a tracking server
            self.client.log_batch(run_id, tags=tags)
        self.client.set_terminated(run_id, "FINISHED")

    def fail(
        self, run_id: str, error: BaseException, status: str = "FAILED", failure: str = ""
    ) -> None:
        """End the run ``status`` with tag ``error`` and, when given, its
        :mod:`bench.failures` class (default: ``interrupted`` for a KILLED run)."""
        failure = failure or (INTERRUPTED if status == "KILLED" else "")
        self.client.set_tag(run_id, "error", f"{type(error).__name__}: {error}"[:5000])
        if failure:
            self.client.set_tag(run_id, FAILURE_TAG, failure)
        self.client.set_terminated(run_id, status)

    def artifact_path(self, run_id: str, name: str) -> Path:
        """Local path of a run's artifact file."""
        from mlflow.artifacts import download_artifacts

        return Path(download_artifacts(run_id=run_id, artifact_path=name, tracking_uri=self.uri))


def _quoted(value: str) -> str:
    """``value`` as a string literal of MLflow's search syntax."""
    if "'" in value:
        raise ValueError(f"a searched tag value may not hold a quote: {value!r}")
    return f"'{value}'"


def _cell_run(run: Any) -> CellRun:
    tags = dict(run.data.tags)
    return CellRun(
        run.info.run_id,
        tags.get(TAG_HASH, ""),
        run.info.status,
        run.info.start_time or 0,
        run.info.end_time or 0,
        tags,
        dict(run.data.params),
        dict(run.data.metrics),
    )


def write_yaml(path: Path, data: dict[str, Any]) -> None:
    with path.open("w") as fh:
        yaml.safe_dump(data, fh, sort_keys=False)
