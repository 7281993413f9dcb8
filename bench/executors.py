"""Executors run a grid of cells and yield each cell's result as soon as it finishes.

- ``local`` (the default): one cell after another in this process.
- ``process``: ``workers`` spawned worker processes, each running one cell at a time with
  ``threads`` torch threads (default ``cores // workers``); on a CUDA machine worker i sees
  only GPU i mod #GPUs (``CUDA_VISIBLE_DEVICES``), so several workers may share a GPU, and
  ``cells_per_gpu`` K places K workers on each GPU with a ``1 / K`` share of its memory,
  checked free before a worker starts (:mod:`bench.gpus`). Each worker talks to the parent
  over its own pipe: a worker that dies (kill -9, out of memory) costs only the cell it
  held, which is reported and recorded KILLED, and a fresh worker takes the next cell
  (``concurrent.futures.ProcessPoolExecutor`` instead breaks for good on a dead worker).
- ``ray``: every cell a Ray task (Moritz et al., OSDI 2018) on a new local Ray instance or
  the cluster at ``ray_address`` (or ``$RAY_ADDRESS``), asking for ``threads`` cores
  (default ``CPUs // workers``) and a ``1 / workers`` share of the GPUs (``1 /
  cells_per_gpu`` when given); a cell whose Ray worker or node dies is recorded KILLED by
  the driver, not retried. Only specs travel to the workers, through Ray; on a cluster of
  several nodes runs must go to a tracking server or database (a SQLite file is one
  node's), each node keeps its own dataset cache under ``$BENCH_CACHE_DIR`` and no worker
  touches the driver's results dir.

All executors write into one tracking store (bench.tracking copes with concurrent writers);
the caller creates the experiment before any worker starts. A cell left unfinished by a
dead worker runs again when the same command is run again; so does a cell that failed for a
reason outside its method (:mod:`bench.failures`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path

import torch
from tqdm import tqdm

from bench.cell import CellHooks, CellResult, DatasetCache, run_cell
from bench.errors import BenchError, ConfigError
from bench.failures import INTERRUPTED, is_sticky, recorded_class
from bench.gpus import GpuPlan, cap_memory, check_memory, plan_workers, visible_gpus
from bench.registry import Registry
from bench.spec import CellSpec
from bench.tracking import Tracker

log = logging.getLogger(__name__)

Executor = Callable[..., Iterator[CellResult]]
EXECUTORS: Registry[Executor] = Registry("executor")


class WorkerDiedError(BenchError):
    """A worker process ended while it ran a cell."""


@dataclass(frozen=True)
class ExecutorOptions:
    """Which executor runs the grid, with how many workers (None: one per GPU on a CUDA
    machine, else one per two cores) and torch threads per cell (None: the cores shared
    out evenly among the workers; all of them for ``local``)."""

    name: str = "local"
    workers: int | None = None
    ray_address: str | None = None
    threads: int | None = None
    cells_per_gpu: int | None = None

    def __post_init__(self) -> None:
        EXECUTORS.entry(self.name)
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {self.threads}")
        if self.name == "local" and self.workers is not None:
            raise ConfigError("--workers needs a parallel executor: add --executor process")
        if self.name != "ray" and self.ray_address is not None:
            raise ConfigError("--ray-address needs --executor ray")
        if self.cells_per_gpu is not None and self.cells_per_gpu < 1:
            raise ConfigError(f"--cells-per-gpu must be at least 1, got {self.cells_per_gpu}")
        if self.name == "local" and self.cells_per_gpu is not None:
            raise ConfigError("--cells-per-gpu needs a parallel executor: add --executor process")


def pending_cells(
    cells: list[CellSpec], tracker: Tracker, experiment_id: str, retry_failed: bool
) -> tuple[list[CellSpec], list[CellResult]]:
    """Split the grid into cells to run and cells already recorded (skipped): FINISHED
    cells, and cells whose method failed (:func:`bench.failures.is_sticky`) unless
    ``retry_failed``; a cell that failed for any other reason, or was killed, runs again."""
    recorded = tracker.latest_by_cell(experiment_id)
    todo, skipped = [], []
    for spec in cells:
        run = recorded.get(spec.hash)
        if run is not None and (
            run.status == "FINISHED" or (not retry_failed and is_sticky(run.status, run.tags))
        ):
            error = run.tags.get("error", "")
            failure = recorded_class(run.status, run.tags)
            skipped.append(
                CellResult(
                    spec, run.status, run.test_metrics, error, run_id=run.run_id, failure=failure
                )
            )
        else:
            todo.append(spec)
    return todo, skipped


def run_cells(
    cells: list[CellSpec],
    tracker: Tracker,
    experiment_id: str,
    cache_dir: Path,
    options: ExecutorOptions,
) -> Iterator[CellResult]:
    """Run ``cells`` with the executor ``options`` names, yielding results as cells finish."""
    if cells:
        yield from EXECUTORS.entry(options.name).obj(
            cells, tracker, experiment_id, cache_dir, options
        )


def _format_eta(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


class _Progress:
    """A tqdm bar on a terminal; otherwise one plain line per finished cell, with an ETA."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0
        self.interactive = sys.stderr.isatty()
        self.bar = tqdm(total=total, unit="cell", disable=not self.interactive, dynamic_ncols=True)
        self.started = time.perf_counter()

    def running(self, spec: CellSpec) -> None:
        self.bar.set_description(spec.label)

    def finished(self, result: CellResult) -> None:
        self.done += 1
        self.bar.update()
        if self.interactive:
            return
        elapsed = time.perf_counter() - self.started
        eta = elapsed / self.done * (self.total - self.done)
        detail = (
            f"f1={result.metrics.get('f1_macro', float('nan')):.3f}"
            if result.status == "FINISHED"
            else result.error
        )
        print(
            f"[{self.done}/{self.total}] {result.spec.label}: {result.status} {detail} "
            f"({result.seconds:.1f} s, ETA {_format_eta(eta)})",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        self.bar.close()


def _default_workers(cpus: int, gpus: int) -> int:
    return gpus if gpus else max(1, cpus // 2)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, as under taskset or a Slurm
    allocation), not every core of the machine."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def node_cache_dir() -> Path:
    """This node's own dataset cache (decoded images, frozen features):
    ``$BENCH_CACHE_DIR/datasets`` (default ``~/.cache/kedr-bench/datasets``)."""
    root = os.environ.get("BENCH_CACHE_DIR") or Path.home() / ".cache" / "kedr-bench"
    return Path(root).expanduser() / "datasets"


@dataclass(frozen=True)
class WorkerContext:
    """What a worker needs besides its cells: the store its runs go to, the experiment,
    the dataset cache, its torch threads and the tags every run of it records."""

    results_dir: Path
    tracking_uri: str
    experiment_id: str
    cache_dir: Path
    threads: int
    tags: tuple[tuple[str, str], ...] = ()

    def tracker(self) -> Tracker:
        return Tracker(self.results_dir, self.tracking_uri)


# local ---------------------------------------------------------------------------------------
@EXECUTORS.register("local")
def run_local(
    cells: list[CellSpec],
    tracker: Tracker,
    experiment_id: str,
    cache_dir: Path,
    options: ExecutorOptions | None = None,
) -> Iterator[CellResult]:
    """Run ``cells`` in order in this process."""
    if options is not None and options.threads is not None:
        torch.set_num_threads(options.threads)
    datasets = DatasetCache(cache_dir)
    progress = _Progress(len(cells))
    try:
        for spec in cells:
            progress.running(spec)
            result = run_cell(spec, tracker, experiment_id, datasets)
            progress.finished(result)
            yield result
    finally:
        progress.close()


# process -------------------------------------------------------------------------------------
@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    gpu: str | None
    spec: CellSpec | None = None


def _worker_loop(conn: Connection, context: WorkerContext, gpu_share: float) -> None:
    """A worker: receive a cell, run it, send its result back; ``None`` ends the loop."""
    torch.set_num_threads(context.threads)
    cap_memory(gpu_share)
    tracker = context.tracker()
    datasets = DatasetCache(context.cache_dir)
    hooks = CellHooks(tags=dict(context.tags))
    try:
        while (spec := conn.recv()) is not None:
            conn.send(run_cell(spec, tracker, context.experiment_id, datasets, hooks))
    except (EOFError, KeyboardInterrupt):  # the parent is gone, or Ctrl-C reached the group
        pass


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables while a child process is started (it copies them)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _start_worker(spawn, gpu: str | None, context: WorkerContext, plan: GpuPlan) -> _Worker:
    parent_end, child_end = spawn.Pipe()
    if gpu is not None:
        context = replace(context, tags=(("gpu", gpu), ("gpu_share", plan.share_label)))
    process = spawn.Process(target=_worker_loop, args=(child_end, context, plan.share), daemon=True)
    threads = context.threads
    env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    with _environment(env):
        process.start()
    child_end.close()  # so that the parent sees EOF when the worker dies
    return _Worker(process, parent_end, gpu)


def _collect(worker: _Worker, tracker: Tracker, experiment_id: str) -> CellResult:
    """The result a worker sent, or, if it died, its cell recorded KILLED."""
    spec = worker.spec
    try:
        if worker.conn.poll():
            return worker.conn.recv()
    except (EOFError, ConnectionResetError):  # it died before or while sending
        pass
    worker.process.join()
    error = WorkerDiedError(
        f"worker process {worker.process.pid} died (exit code {worker.process.exitcode}) "
        "while running this cell: rerun the same command to finish it"
    )
    pid = {"pid": str(worker.process.pid)}
    for run in tracker.find_runs(experiment_id, cell_hash=spec.hash, status="RUNNING", tags=pid):
        tracker.fail(run.run_id, error, status="KILLED")
    return CellResult(spec, "KILLED", error=str(error), failure=INTERRUPTED)


def _stop(workers: list[_Worker]) -> None:
    for worker in workers:
        if worker.process.is_alive():
            with suppress(OSError):  # it died meanwhile
                worker.conn.send(None)
    for worker in workers:
        worker.process.join(timeout=10)
        if worker.process.is_alive():
            worker.process.terminate()
            worker.process.join()
        worker.conn.close()


@EXECUTORS.register("process")
def run_process(
    cells: list[CellSpec],
    tracker: Tracker,
    experiment_id: str,
    cache_dir: Path,
    options: ExecutorOptions,
) -> Iterator[CellResult]:
    """Run ``cells`` on worker processes, replacing any worker that dies (where its GPU
    still has its share of memory free)."""
    cpus, gpus = usable_cores(), visible_gpus()
    plan = plan_workers(
        gpus, options.workers, options.cells_per_gpu, _default_workers(cpus, len(gpus))
    )
    slots = plan.slots[: len(cells)]
    if options.cells_per_gpu is not None:
        check_memory([gpu for gpu in slots if gpu is not None], plan.share)
    threads = options.threads or max(1, cpus // len(slots))
    spawn = multiprocessing.get_context("spawn")  # fork is unsafe with torch and threads
    context = WorkerContext(tracker.results_dir, tracker.uri, experiment_id, cache_dir, threads)
    queue = deque(cells)
    progress = _Progress(len(cells))
    workers = [_start_worker(spawn, gpu, context, plan) for gpu in slots]

    def assign(worker: _Worker) -> None:
        worker.spec = queue.popleft() if queue else None
        if worker.spec is not None:
            progress.running(worker.spec)
            worker.conn.send(worker.spec)

    try:
        for worker in workers:
            assign(worker)
        while busy := [w for w in workers if w.spec is not None]:
            ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy]))
            for worker in busy:
                if worker.conn not in ready and worker.process.sentinel not in ready:
                    continue
                result = _collect(worker, tracker, experiment_id)
                progress.finished(result)
                if worker.process.is_alive():
                    assign(worker)
                else:  # replace the dead worker while cells remain
                    workers.remove(worker)
                    worker.conn.close()
                    if queue and _has_memory(worker.gpu, options, plan):
                        workers.append(_start_worker(spawn, worker.gpu, context, plan))
                        assign(workers[-1])
                yield result
        for spec in queue:  # every worker died and none could be replaced
            yield CellResult(spec, "KILLED", error="no worker left to run it: rerun the command")
    finally:
        _stop(workers)
        progress.close()


def _has_memory(gpu: str | None, options: ExecutorOptions, plan: GpuPlan) -> bool:
    """Whether a replacement worker may start on ``gpu``: its share is free there."""
    if gpu is None or options.cells_per_gpu is None:
        return True
    try:
        check_memory([gpu], plan.share)
    except ConfigError as err:
        log.warning("no replacement worker on GPU %s: %s", gpu, err)
        return False
    return True


# ray -----------------------------------------------------------------------------------------
TAG_ATTEMPT = "ray_attempt"  # set by the driver on a Ray cell's run, to find it if the task dies


def _run_ray_cell(spec: CellSpec, context: WorkerContext, attempt: str) -> CellResult:
    """One cell in a Ray worker, on whichever node Ray chose. With a tracking server or
    database the worker reads and writes nothing of the driver's disk: its dataset cache is
    its node's own (:func:`node_cache_dir`)."""
    import ray

    torch.set_num_threads(context.threads)
    tracker = context.tracker()
    cache_dir = context.cache_dir if tracker.kind == "sqlite" else node_cache_dir()
    tags = {**dict(context.tags), TAG_ATTEMPT: attempt}
    tags["ray_node_id"] = ray.get_runtime_context().get_node_id()
    hooks = CellHooks(tags=tags)
    return run_cell(spec, tracker, context.experiment_id, DatasetCache(cache_dir), hooks)


def _check_cluster_store(ray, tracker: Tracker) -> None:
    """A SQLite store is a file on the driver's node: other nodes' runs would be lost."""
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    if len(nodes) > 1 and tracker.kind == "sqlite":
        raise ConfigError(
            f"the Ray cluster has {len(nodes)} nodes but runs would go to the SQLite file "
            f"{tracker.where}, which only this node sees: pass --tracking-uri "
            "http://HOST:PORT of an MLflow server (or a database URL)"
        )


def _record_lost(tracker: Tracker, experiment_id: str, spec: CellSpec, attempt: str, err) -> str:
    """Mark the run a lost Ray task left RUNNING KILLED; the reason."""
    error = WorkerDiedError(
        f"Ray lost this cell ({type(err).__name__}: its worker or node died): rerun the same "
        "command to finish it"
    )
    tags = {TAG_ATTEMPT: attempt}
    for run in tracker.find_runs(experiment_id, cell_hash=spec.hash, status="RUNNING", tags=tags):
        tracker.fail(run.run_id, error, status="KILLED")
    return str(error)


@EXECUTORS.register("ray")
def run_ray(
    cells: list[CellSpec],
    tracker: Tracker,
    experiment_id: str,
    cache_dir: Path,
    options: ExecutorOptions,
) -> Iterator[CellResult]:
    """Run every cell as a Ray task; a Ray instance started here is shut down at the end."""
    try:
        import ray
    except ImportError as err:
        raise ConfigError(
            "--executor ray needs Ray: pip install 'kedr-bench[ray]' (or use --executor process)"
        ) from err
    started_here = not ray.is_initialized()
    if started_here:
        address = options.ray_address or "local"  # never a cluster by accident ($RAY_ADDRESS)
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    progress = _Progress(len(cells))
    try:
        _check_cluster_store(ray, tracker)
        resources = ray.cluster_resources()
        cpus, gpus = int(resources.get("CPU", 1)), int(resources.get("GPU", 0))
        workers = options.workers or _default_workers(cpus, gpus)
        threads = options.threads or max(1, cpus // workers)
        share = 1.0 / options.cells_per_gpu if options.cells_per_gpu else gpus / workers
        task = ray.remote(_run_ray_cell).options(
            num_cpus=threads, num_gpus=min(1.0, share) if gpus else 0, max_retries=0
        )
        context = WorkerContext(tracker.results_dir, tracker.uri, experiment_id, cache_dir, threads)
        pending = {}
        for spec in cells:
            attempt = uuid.uuid4().hex
            pending[task.remote(spec, context, attempt)] = (spec, attempt)
        while pending:
            (done,), _ = ray.wait(list(pending), num_returns=1)
            spec, attempt = pending.pop(done)
            try:
                result = ray.get(done)
            except ray.exceptions.RayError as err:  # the worker died, or the task could not run
                error = _record_lost(tracker, experiment_id, spec, attempt, err)
                result = CellResult(spec, "KILLED", error=error, failure=INTERRUPTED)
            progress.finished(result)
            yield result
    finally:
        progress.close()
        if started_here:
            ray.shutdown()
