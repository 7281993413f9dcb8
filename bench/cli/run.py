"""``bench run``: a grid of method x dataset x missing rate x seed, resumed from the store.

Pre-flight (:mod:`bench.preflight`) runs before any cell: a problem is one line and exit 2,
with nothing recorded. Exit 0 only when every cell of the grid is FINISHED at the end;
otherwise 1, with a last line that counts the cells not finished and says how to finish
them (:func:`bench.results.unfinished_line`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.cli.arguments import add_tracking_uri, data_root_sets, numbers, split_list

if TYPE_CHECKING:  # torch and MLflow load slowly; --help must not wait for them
    from bench.cell import CellResult
    from bench.executors import ExecutorOptions
    from bench.spec import CellSpec
    from bench.tracking import Tracker


def add_parser(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run a grid of method x dataset x missing rate x seed")
    run.add_argument("--methods", help="'all', names, or name:* for a method and its variants")
    run.add_argument("--datasets", help="dataset names (default synthetic-retina)")
    run.add_argument("--rates", help="missing rates in [0, 1), e.g. 0.2,0.4,0.6,0.8")
    run.add_argument("--seeds", help="integer seeds (default 0,1,2)")
    run.add_argument(
        "--seed-axes",
        dest="seed_axes",
        help="vary these seed axes apart, as a factorial over --seeds: any of init (model "
        "init, batch order), masks, data (synthetic samples / split seed); default: one seed "
        "drives init and masks",
    )
    run.add_argument("--mechanism", help="mcar | mnar-class | released")
    run.add_argument("--modality", help="either | m1 | m2: which modality goes missing")
    run.add_argument("--apply-to", dest="apply_to", help="both | train | test")
    run.add_argument("--epochs", type=int)
    run.add_argument("--batch-size", dest="batch_size", type=int)
    run.add_argument("--device", help="auto | cpu | cuda | mps")
    run.add_argument("--experiment", help="MLflow experiment name (default 'default')")
    run.add_argument("--results-dir", dest="results_dir", help="default results/")
    run.add_argument(
        "--preset",
        metavar="NAME",
        help="a shipped protocol, applied first (e.g. kedr-paper, kedr-paper-frozen); "
        "--config, flags and --set adjust it",
    )
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
        "--dry-run",
        dest="dry_run",
        action="store_true",
        help="print the grid and its settings after the checks that need no data; run nothing",
    )
    run.add_argument(
        "--cells-per-gpu",
        dest="cells_per_gpu",
        type=int,
        help="workers sharing one GPU, each capped at 1/K of its memory (process, ray)",
    )
    run.set_defaults(func=cmd_run)


def resolve_grid(
    args: argparse.Namespace,
) -> tuple[dict[str, Any], list[CellSpec], ExecutorOptions]:
    """The configuration, the grid of cells and the executor options that the flags,
    ``--config``, ``--hparams`` and ``--set`` give (every key and value checked)."""
    from bench.config import expand, load_hparams_file, resolve
    from bench.executors import ExecutorOptions

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
        "seed_axes": split_list(args.seed_axes),
        "experiment": args.experiment,
        "results_dir": args.results_dir,
        "tracking_uri": args.tracking_uri,
        "missing": {k: v for k, v in missing.items() if v is not None},
        "train": {**tuned.get("train", {}), **{k: v for k, v in train.items() if v is not None}},
        "hparams": tuned.get("hparams"),
        "retry_failed": args.retry_failed or None,
    }
    sets = data_root_sets(args.data_root) + (args.set or [])
    config = resolve(args.config, flags, sets, preset=args.preset)
    return config, expand(config), options


def recorded_split(
    cells: list[CellSpec], tracker: Tracker | None, experiment: str, retry_failed: bool
) -> tuple[list[CellSpec], list[CellResult]]:
    """(cells to run, results of cells already recorded), read without creating a store
    (``tracker`` is None when there is none yet) or an experiment that does not exist yet."""
    from bench.executors import pending_cells

    experiment_id = None if tracker is None else tracker.experiment_id(experiment, create=False)
    if experiment_id is None:
        return cells, []
    return pending_cells(cells, tracker, experiment_id, retry_failed)


def cmd_run(args: argparse.Namespace) -> int:
    from bench.executors import run_cells
    from bench.plan import describe_grid
    from bench.preflight import check_disk, check_grid, check_store
    from bench.results import results_frame, summary_table, unfinished_line
    from bench.stores import resolve_tracking_uri, tracking_kind
    from bench.tracking import Tracker, store_exists

    config, cells, options = resolve_grid(args)
    check_grid(cells, options.name, read_disk=False)  # no disk, no store: fails fast
    if args.dry_run:
        print(describe_grid(config, cells))
        return 0
    results_dir, uri = Path(config["results_dir"]).expanduser(), config["tracking_uri"]
    if not (
        options.name == "ray" and tracking_kind(resolve_tracking_uri(results_dir, uri)) == "server"
    ):
        results_dir = check_store(results_dir)  # Ray workers on a server never touch it
    tracker = Tracker(results_dir, uri) if store_exists(results_dir, uri) else None
    todo, skipped = recorded_split(cells, tracker, config["experiment"], config["retry_failed"])
    check_disk(todo)  # the sources of the datasets on disk, before any cell starts
    tracker = tracker or Tracker(results_dir, uri)
    experiment_id = tracker.experiment_id(config["experiment"])  # before any worker starts
    logging.getLogger("bench").info(
        "%d cells: %d to run, %d already recorded", len(cells), len(todo), len(skipped)
    )
    print(
        f"{len(cells)} cells: {len(todo)} to run, {len(skipped)} already recorded", file=sys.stderr
    )
    ran = list(run_cells(todo, tracker, experiment_id, tracker.results_dir / "cache", options))
    print(summary_table(results_frame(skipped + ran)))
    for result in ran:
        if result.status != "FINISHED":
            print(f"{result.status} {result.spec.label}: {result.error}", file=sys.stderr)
    line = unfinished_line(skipped, ran)
    if line is None:
        return 0
    print(line, file=sys.stderr)
    return 1
