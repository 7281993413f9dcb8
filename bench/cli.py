"""The ``bench`` command: run, results, list.

User errors (:class:`bench.errors.BenchError`) are printed on one line and exit with 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.errors import BenchError, ConfigError

EXIT_USAGE = 2


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def _numbers(text: str | None, cast: type, what: str, example: str) -> list | None:
    items = _split(text)
    if items is None:
        return None
    try:
        return [cast(item) for item in items]
    except ValueError as err:
        raise ConfigError(
            f"{what} must be {cast.__name__}s separated by commas, like {example}: got {text!r}"
        ) from err


def _seeds(text: str | None) -> list[int] | None:
    return _numbers(text, int, "--seeds", "0,1,2")


def cmd_run(args: argparse.Namespace) -> int:
    from bench.config import expand, resolve
    from bench.executors import pending_cells, run_local
    from bench.results import results_frame, summary_table
    from bench.tracking import Tracker

    missing = {"mechanism": args.mechanism, "modality": args.modality, "apply_to": args.apply_to}
    train = {"epochs": args.epochs, "device": args.device, "batch_size": args.batch_size}
    flags = {
        "methods": _split(args.methods),
        "datasets": _split(args.datasets),
        "rates": _numbers(args.rates, float, "--rates", "0.2,0.4"),
        "seeds": _seeds(args.seeds),
        "experiment": args.experiment,
        "results_dir": args.results_dir,
        "missing": {k: v for k, v in missing.items() if v is not None},
        "train": {k: v for k, v in train.items() if v is not None},
        "retry_failed": args.retry_failed or None,
    }
    config = resolve(args.config, flags, args.set or [])
    cells = expand(config)
    tracker = Tracker(Path(config["results_dir"]))
    experiment_id = tracker.experiment_id(config["experiment"])
    todo, skipped = pending_cells(cells, tracker, experiment_id, config["retry_failed"])
    logging.getLogger("bench").info(
        "%d cells: %d to run, %d already recorded", len(cells), len(todo), len(skipped)
    )
    print(
        f"{len(cells)} cells: {len(todo)} to run, {len(skipped)} already recorded", file=sys.stderr
    )
    ran = list(run_local(todo, tracker, experiment_id, tracker.results_dir / "cache"))
    failed = [r for r in ran if r.status == "FAILED"]
    print(summary_table(results_frame(skipped + ran)))
    for result in failed:
        print(f"FAILED {result.spec.label}: {result.error}", file=sys.stderr)
    return 1 if failed else 0


def cmd_results(args: argparse.Namespace) -> int:
    from bench.results import load, render

    print(render(load(args.experiment, args.results_dir), args.format))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from bench.data import all_cards
    from bench.interface import METHODS

    print("methods:")
    for name in METHODS.names(with_variants=True):
        cls = METHODS.entry(name.partition(":")[0]).obj
        print(f"  {name:<24} {cls.summary}  [{cls.citation}]")
    print("datasets:")
    for name, card in sorted(all_cards().items()):
        print(f"  {name:<24} {card.summary}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench", description="kedr-bench: missing-modality medical imaging benchmark"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

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
    run.add_argument("--config", help="YAML file with any of the keys below")
    run.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override one config key, e.g. train.lr=3e-4 (repeatable)",
    )
    run.add_argument(
        "--retry-failed",
        dest="retry_failed",
        action="store_true",
        help="run again the cells recorded as FAILED",
    )
    run.set_defaults(func=cmd_run)

    results = sub.add_parser("results", help="print one row per cell of an experiment")
    results.add_argument("--experiment", required=True)
    results.add_argument("--results-dir", dest="results_dir", default="results")
    results.add_argument("--format", choices=("csv", "json", "md"), default="md")
    results.set_defaults(func=cmd_results)

    lister = sub.add_parser("list", help="list methods and datasets")
    lister.set_defaults(func=cmd_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except BenchError as err:
        print(f"bench: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("bench: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
