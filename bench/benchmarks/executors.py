"""Cells per minute of one grid through each executor: process with 1 and 2 workers, and Ray.

    .venv/bin/python -m bench.benchmarks.executors [--epochs 10] [--n-train 615] [--image-size 32]
        [--executors process:1,process:2,ray:2,local:1]

The grid is 8 small cells on synthetic-retina (late-fusion and moddrop x missing rates
0.2 and 0.6 x seeds 0 and 1). Every executor runs it into a fresh results dir that shares
one dataset cache built beforehand, so the timings hold training, tracking and starting the
workers (their imports, and Ray's own start), as a user of ``bench run --executor`` sees
them. ``process:N`` and ``ray:N`` give each of N workers ``cores // N`` torch threads;
``local:T`` runs the cells in this process with T torch threads (``local:1`` is the
one-thread, no-startup control for ``process:2``). The load average is printed before and
after: on a shared machine, compare numbers from one run only.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from bench.cell import DatasetCache
from bench.config import expand, resolve
from bench.executors import ExecutorOptions, run_cells
from bench.tracking import Tracker


def grid(args: argparse.Namespace) -> list:
    options = {"image_size": args.image_size, "n_train": args.n_train, "n_test": 100}
    flags = {
        "methods": ["late-fusion", "moddrop"],
        "rates": [0.2, 0.6],
        "seeds": [0, 1],
        "train": {"epochs": args.epochs, "device": "cpu"},
        "dataset_options": {"synthetic-retina": options},
    }
    return expand(resolve(None, flags, []))


def time_executor(cells: list, executor: str, cache: Path, root: Path) -> float:
    """Wall seconds of the grid through ``executor`` ('name' or 'name:workers')."""
    name, _, count = executor.partition(":")
    if name == "local":
        torch.set_num_threads(int(count or os.cpu_count()))
    options = ExecutorOptions(name, int(count) if count and name != "local" else None)
    tracker = Tracker(root / executor.replace(":", "-"))
    experiment_id = tracker.experiment_id("bench")
    started = time.perf_counter()
    results = list(run_cells(cells, tracker, experiment_id, cache, options))
    seconds = time.perf_counter() - started
    statuses = {r.status for r in results}
    if statuses != {"FINISHED"} or len(results) != len(cells):
        raise RuntimeError(f"{executor}: {len(results)} results, statuses {statuses}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--n-train", dest="n_train", type=int, default=615)
    parser.add_argument("--image-size", dest="image_size", type=int, default=32)
    parser.add_argument("--executors", default="process:1,process:2,ray:2,local:1")
    args = parser.parse_args()
    cells = grid(args)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        DatasetCache(root / "cache").get(cells[0].dataset)
        print(
            f"{len(cells)} cells, {args.epochs} epochs, {args.image_size} px, "
            f"{args.n_train} train pairs; {os.cpu_count()} cores; "
            f"load average before: {os.getloadavg()[0]:.2f}"
        )
        rates = {}
        for executor in args.executors.split(","):
            seconds = time_executor(cells, executor, root / "cache", root)
            rates[executor] = 60 * len(cells) / seconds
            print(
                f"  {executor:<10} {seconds:7.1f} s  {rates[executor]:6.2f} cells/min", flush=True
            )
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        if "process:1" in rates and "process:2" in rates:
            print(f"process:2 / process:1 = {rates['process:2'] / rates['process:1']:.2f}x")


if __name__ == "__main__":
    main()
