"""``bench run``: a grid of method x dataset x missing rate x seed, resumed from the store."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bench.cli.arguments import add_tracking_uri, data_root_sets, numbers, split_list


def add_parser(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run a grid of method x dataset x missing rate x seed")
    run.add_argument("--methods", help="'all', names, or name:* for a method and its variants")
    run.add_argument("--datasets", help="dataset names (default synthetic-retina)")
    run.add_argument("--rates", help="missing rates in [0, 1), e.g. 0.2,0.4,0.6,0.8")
    run.add_argument("--seeds", help="integer seeds (default 0,1,2)")
    run.add_argument("--mechanism", help="mcar | mnar-class | released")
    run.add_argument("--modality", help="either | m1 | m2: which modality goes missing")
    run.add_argument("--apply-to", dest="apply_to", help="both | train | test")
    run.add_argument("--epochs", type=int)
    run.add_argument("--batch-size", dest="batch_size", type=int)
    run.add_argument("--device", help="auto | cpu | cuda | mps")
    run.add_argument("--experiment", help="MLflow experiment name (default 'default')")
    run.add_argument("--results-dir", dest="results_dir", help="default results/")
    add_tracking_uri(run)
    run.add_argument("--config", help="YAML file with any of the keys below")
    run.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override one config key, e.g. train.lr=3e-4 (repeatable)",
    )
    run.add_argument(
        "--data-root",
        dest="data_root",
        action="append",
        metavar="NAME=PATH",
        help="where a real dataset's copy is, e.g. derm7pt=/data/release_v0",
    )
    run.add_argument(
        "--retry-failed",
        dest="retry_failed",
        action="store_true",
        help="run again the cells recorded as FAILED",
    )
    run.add_argument(
        "--hparams",
        metavar="FILE",
        help="YAML of tuned hparams/train keys (as bench tune writes), over --config",
    )
    run.add_argument(
        "--executor", default="local", help="local (default) | process | ray: how cells run"
    )
    run.add_argument(
        "--workers",
        type=int,
        help="parallel cells for process/ray (default: one per GPU, else one per two cores)",
    )
    run.add_argument(
        "--threads",
        type=int,
        help="torch threads per cell (default: the usable cores shared among the workers)",
    )
    run.add_argument(
        "--ray-address", dest="ray_address", help="Ray cluster to join, e.g. auto (default: local)"
    )
    run.add_argument(
        "--cells-per-gpu",
        dest="cells_per_gpu",
        type=int,
        help="workers sharing one GPU, each capped at 1/K of its memory (process, ray)",
    )
    run.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from bench.config import expand, load_hparams_file, resolve
    from bench.executors import ExecutorOptions, pending_cells, run_cells
    from bench.results import results_frame, summary_table
    from bench.tracking import Tracker

    options = ExecutorOptions(
        args.executor, args.workers, args.ray_address, args.threads, args.cells_per_gpu
    )
    tuned = load_hparams_file(args.hparams) if args.hparams else {}
    missing = {"mechanism": args.mechanism, "modality": args.modality, "apply_to": args.apply_to}
    train = {"epochs": args.epochs, "device": args.device, "batch_size": args.batch_size}
    flags = {
        "methods": split_list(args.methods),
        "datasets": split_list(args.datasets),
        "rates": numbers(args.rates, float, "--rates", "0.2,0.4"),
        "seeds": numbers(args.seeds, int, "--seeds", "0,1,2"),
        "experiment": args.experiment,
        "results_dir": args.results_dir,
        "tracking_uri": args.tracking_uri,
        "missing": {k: v for k, v in missing.items() if v is not None},
        "train": {**tuned.get("train", {}), **{k: v for k, v in train.items() if v is not None}},
        "hparams": tuned.get("hparams"),
        "retry_failed": args.retry_failed or None,
    }
    config = resolve(args.config, flags, data_root_sets(args.data_root) + (args.set or []))
    cells = expand(config)
    tracker = Tracker(Path(config["results_dir"]), config["tracking_uri"])
    experiment_id = tracker.experiment_id(config["experiment"])  # before any worker starts
    todo, skipped = pending_cells(cells, tracker, experiment_id, config["retry_failed"])
    logging.getLogger("bench").info(
        "%d cells: %d to run, %d already recorded", len(cells), len(todo), len(skipped)
    )
    print(
        f"{len(cells)} cells: {len(todo)} to run, {len(skipped)} already recorded", file=sys.stderr
    )
    ran = list(run_cells(todo, tracker, experiment_id, tracker.results_dir / "cache", options))
    unfinished = [r for r in ran if r.status != "FINISHED"]
    print(summary_table(results_frame(skipped + ran)))
    for result in unfinished:
        print(f"{result.status} {result.spec.label}: {result.error}", file=sys.stderr)
    return 1 if unfinished else 0
