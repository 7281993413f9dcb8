"""Does a cell give the same numbers at another torch thread count? One cell per method,
run at each thread count in this process on the CPU, compared prediction by prediction.

    .venv/bin/python -m bench.benchmarks.threads [--methods all] [--rate 0.2] [--seed 0]
        [--epochs 8] [--image-size 64] [--threads 1,2]

Every method's cell (synthetic-retina at ``--image-size``, missing rate ``--rate``, seed
``--seed``, ``--epochs`` epochs) runs once per thread count into one fresh results dir
(the cell hash ignores threads, so each run is a run of the same cell). The table gives the
test macro-F1 at each count, the largest difference of a test-set class probability
between the first thread count and each other, and whether the predictions are identical
(bit for bit). A difference comes from reductions that torch splits over threads (matrix
products, convolutions' backward, sums), which add floating-point numbers in another order;
training amplifies a last-bit difference over the epochs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.cell import DatasetCache, run_cell
from bench.config import expand, resolve
from bench.tracking import Tracker


def cells(args: argparse.Namespace) -> list:
    """One cell per method of ``--methods`` on the CPU."""
    flags = {
        "methods": [m.strip() for m in args.methods.split(",")],
        "rates": [args.rate],
        "seeds": [args.seed],
        "train": {"epochs": args.epochs, "device": "cpu"},
        "dataset_options": {"synthetic-retina": {"image_size": args.image_size}},
    }
    return expand(resolve(None, flags, []))


def probabilities(tracker: Tracker, run_id: str) -> np.ndarray:
    frame = pd.read_csv(tracker.artifact_path(run_id, "predictions.csv"))
    return frame[[c for c in frame.columns if c.startswith("prob_")]].to_numpy()


def compare(args: argparse.Namespace, root: Path) -> pd.DataFrame:
    """One row per method: F1 and seconds at each thread count, and the differences."""
    counts = [int(t) for t in args.threads.split(",")]
    tracker = Tracker(root)
    experiment_id = tracker.experiment_id("threads")
    datasets = DatasetCache(root / "cache")
    rows = []
    for spec in cells(args):
        row, probs = {"method": spec.method}, {}
        for threads in counts:
            torch.set_num_threads(threads)
            started = time.perf_counter()
            result = run_cell(spec, tracker, experiment_id, datasets)
            if result.status != "FINISHED":
                raise RuntimeError(f"{spec.label} at {threads} threads: {result.error}")
            row[f"f1@{threads}"] = result.metrics["f1_macro"]
            row[f"s@{threads}"] = time.perf_counter() - started
            probs[threads] = probabilities(tracker, result.run_id)
        first = counts[0]
        for threads in counts[1:]:
            row[f"max|dp| {first} vs {threads}"] = float(
                np.abs(probs[first] - probs[threads]).max()
            )
        row["identical"] = all(np.array_equal(probs[first], probs[t]) for t in counts[1:])
        rows.append(row)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default="all", help="as bench run --methods")
    parser.add_argument("--rate", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--image-size", dest="image_size", type=int, default=64)
    parser.add_argument("--threads", default="1,2", help="thread counts, the first the base")
    args = parser.parse_args()
    threads = torch.get_num_threads()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            table = compare(args, Path(tmp))
    finally:
        torch.set_num_threads(threads)
    print(
        f"synthetic-retina {args.image_size} px, rate {args.rate:g}, seed {args.seed}, "
        f"{args.epochs} epochs, CPU, torch {torch.__version__}"
    )
    print(table.to_markdown(index=False, floatfmt=".4g"))
    stable = table.loc[table["identical"], "method"]
    print(f"identical at threads {args.threads}: {', '.join(stable) or 'none'}")


if __name__ == "__main__":
    main()
