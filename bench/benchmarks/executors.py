"""Cells per minute of one grid through each executor: process with 1 and 2 workers, and Ray;
and the tracking cost of one cell on each tracking backend.

    .venv/bin/python -m bench.benchmarks.executors [--epochs 10] [--n-train 615] [--image-size 32]
        [--executors process:1,process:2,process:1@1,ray:2,local@1,local@2] [--rounds 2]
        [--seeds 2] [--tracking sqlite,http] [--tracking-cells 8]

Tracking overhead: ``--tracking-cells`` cells' worth of tracking calls, one after another,
into a fresh store of each backend (``sqlite``: ``<dir>/mlflow.db``; ``http``: an MLflow
server started here on 127.0.0.1 with its own SQLite backend and proxied artifacts):
:meth:`Tracker.start`, one ``log_metrics`` per epoch (``--epochs``, a cell's 16 values), and
:meth:`Tracker.finish` with a cell's artifacts (predictions of 153 test pairs, masks, config).
The median seconds per cell is what a backend adds to every cell.

The grid is 4 x seeds small cells on synthetic-retina (late-fusion and moddrop x missing
rates 0.2 and 0.6 x seeds 0 .. seeds - 1; 8 cells by default). Every executor runs it into
a fresh results dir that shares one dataset cache built beforehand, so the timings hold
training, tracking and starting the workers (their imports, and Ray's own start), as a user
of ``bench run --executor`` sees them.

An executor is ``name[:workers][@threads]``, as ``bench run --executor name --workers N
--threads T``: ``process:2`` gives each of 2 workers ``cores // 2`` torch threads,
``process:1`` gives its one worker every core, ``process:1@1`` one thread (the executor's
own scaling, at equal threads per cell), ``local@T`` runs the cells in this process. The
executors run in turn, ``--rounds`` times, and each reports its median; the load average is
printed before and after: on a shared machine, compare numbers from one run only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.benchmarks.servers import mlflow_server
from bench.cell import DatasetCache
from bench.config import expand, resolve
from bench.executors import ExecutorOptions, run_cells, usable_cores
from bench.tracking import Tracker, write_yaml

TEST_PAIRS = 153
EPOCH_VALUES = 16  # train/loss, its parts, lr and the validation metrics


def grid(args: argparse.Namespace) -> list:
    options = {"image_size": args.image_size, "n_train": args.n_train, "n_test": 100}
    flags = {
        "methods": ["late-fusion", "moddrop"],
        "rates": [0.2, 0.6],
        "seeds": list(range(args.seeds)),
        "train": {"epochs": args.epochs, "device": "cpu"},
        "dataset_options": {"synthetic-retina": options},
    }
    return expand(resolve(None, flags, []))


def parse_executor(text: str) -> ExecutorOptions:
    """``name[:workers][@threads]`` -> the options ``bench run`` would build."""
    head, _, threads = text.partition("@")
    name, _, workers = head.partition(":")
    return ExecutorOptions(
        name, int(workers) if workers else None, threads=int(threads) if threads else None
    )


def time_executor(cells: list, executor: str, cache: Path, root: Path) -> tuple[float, float]:
    """Wall seconds of the grid through ``executor``, into a fresh results dir, and the
    median seconds of one cell as the cell itself measured it (no start-up)."""
    options = parse_executor(executor)
    threads = torch.get_num_threads()
    tracker = Tracker(Path(tempfile.mkdtemp(dir=root)))
    experiment_id = tracker.experiment_id("bench")
    started = time.perf_counter()
    try:
        results = list(run_cells(cells, tracker, experiment_id, cache, options))
    finally:
        torch.set_num_threads(threads)  # local@T changed this process's threads
    seconds = time.perf_counter() - started
    statuses = {r.status for r in results}
    if statuses != {"FINISHED"} or len(results) != len(cells):
        raise RuntimeError(f"{executor}: {len(results)} results, statuses {statuses}")
    return seconds, statistics.median(r.seconds for r in results)


def tracking_seconds(tracker: Tracker, spec, epochs: int, cells: int) -> list[float]:
    """Seconds of each of ``cells`` cells' tracking calls (no training) into ``tracker``."""
    experiment_id = tracker.experiment_id("tracking")
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), TEST_PAIRS)
    predictions = pd.DataFrame(probs, columns=[f"prob_{k}" for k in range(4)])
    masks = {s: rng.random((TEST_PAIRS, 2)) > 0.4 for s in ("train", "val", "test")}
    values = {f"val/metric_{k}": float(k) for k in range(EPOCH_VALUES)}

    def artifacts(folder: Path) -> None:
        predictions.to_csv(folder / "predictions.csv", index=False)
        np.savez(folder / "masks.npz", **masks)
        write_yaml(folder / "config.yaml", spec.to_dict())

    out = []
    for _ in range(cells):
        started = time.perf_counter()
        run_id = tracker.start(experiment_id, spec, "cpu")
        for epoch in range(epochs):
            tracker.log_metrics(run_id, values, step=epoch)
        tracker.finish(run_id, {"f1_macro": 0.5}, artifacts)
        out.append(time.perf_counter() - started)
    return out


def tracking_overhead(backends: list[str], spec, epochs: int, cells: int, root: Path) -> None:
    for backend in backends:
        folder = Path(tempfile.mkdtemp(dir=root))
        if backend == "sqlite":
            seconds = tracking_seconds(Tracker(folder), spec, epochs, cells)
        elif backend == "http":
            with mlflow_server(folder / "server") as url:
                seconds = tracking_seconds(Tracker(folder, url), spec, epochs, cells)
        else:
            raise SystemExit(f"--tracking takes sqlite and http, not {backend!r}")
        print(
            f"tracking {backend:<6} {statistics.median(seconds):.3f} s/cell (median of {cells}; "
            f"min {min(seconds):.3f}, max {max(seconds):.3f}; {epochs} epochs of metrics)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--n-train", dest="n_train", type=int, default=615)
    parser.add_argument("--image-size", dest="image_size", type=int, default=32)
    parser.add_argument(
        "--executors", default="process:1,process:2,process:1@1,ray:2,local@1,local@2"
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=2, help="seeds per (method, rate)")
    parser.add_argument("--tracking", default="sqlite,http", help="backends to time, or ''")
    parser.add_argument("--tracking-cells", dest="tracking_cells", type=int, default=8)
    args = parser.parse_args()
    cells = grid(args)
    executors = args.executors.split(",")
    for executor in executors:
        parse_executor(executor)  # a typo fails now, not after minutes of timing
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        DatasetCache(root / "cache").get(cells[0].dataset)
        print(
            f"{len(cells)} cells, {args.epochs} epochs, {args.image_size} px, "
            f"{args.n_train} train pairs; {usable_cores()} cores; {args.rounds} rounds; "
            f"load average before: {os.getloadavg()[0]:.2f}"
        )
        seconds: dict[str, list[float]] = {e: [] for e in executors}
        for round_ in range(args.rounds):
            for executor in executors:
                wall, cell = time_executor(cells, executor, root / "cache", root)
                seconds[executor].append(wall)
                print(f"  round {round_ + 1} {executor:<12} {wall:6.1f} s  ({cell:.2f} s/cell)")
        rates = {e: 60 * len(cells) / statistics.median(s) for e, s in seconds.items()}
        for executor, rate in rates.items():
            print(f"{executor:<12} {rate:6.2f} cells/min (median of {args.rounds})")
        backends = [b for b in args.tracking.split(",") if b]
        tracking_overhead(backends, cells[0], args.epochs, args.tracking_cells, root)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        for one, two in (("process:1", "process:2"), ("process:1@1", "process:2")):
            if one in rates and two in rates:
                print(f"{two} / {one} = {rates[two] / rates[one]:.2f}x")
        if "local@1" in rates and "local@2" in rates:
            threads = rates["local@2"] / rates["local@1"]
            print(
                f"two threads in one process run the grid {threads:.2f}x faster than one, so "
                f"two one-thread workers can beat one two-thread worker by {2 / threads:.2f}x "
                "at most"
            )


if __name__ == "__main__":
    main()
