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


def data_root_sets(items: list[str] | None) -> list[str]:
    """``--data-root derm7pt=PATH`` -> ``dataset_options.derm7pt.root=PATH`` (--set wins)."""
    sets = []
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ConfigError(
                f"--data-root needs NAME=PATH, like derm7pt=/data/release_v0: got {item!r}"
            )
        sets.append(f"dataset_options.{name.strip()}.root={path.strip()}")
    return sets


def cmd_run(args: argparse.Namespace) -> int:
    from bench.config import expand, resolve
    from bench.executors import ExecutorOptions, pending_cells, run_cells
    from bench.results import results_frame, summary_table
    from bench.tracking import Tracker
    from bench.tune import load_hparams_file

    options = ExecutorOptions(args.executor, args.workers, args.ray_address, args.threads)
    tuned = load_hparams_file(args.hparams) if args.hparams else {}
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
        "train": {**tuned.get("train", {}), **{k: v for k, v in train.items() if v is not None}},
        "hparams": tuned.get("hparams"),
        "retry_failed": args.retry_failed or None,
    }
    config = resolve(args.config, flags, data_root_sets(args.data_root) + (args.set or []))
    cells = expand(config)
    tracker = Tracker(Path(config["results_dir"]))
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


def cmd_results(args: argparse.Namespace) -> int:
    from bench.results import load, render

    print(render(load(args.experiment, args.results_dir), args.format))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from bench.data import all_cards
    from bench.interface import METHODS

    print("methods:")
    for name in METHODS.names(with_variants=True):
        base, _, variant = name.partition(":")
        entry = METHODS.entry(base)
        settings = ", ".join(f"{k}={v}" for k, v in entry.variants.get(variant, {}).items())
        if variant and not entry.variants_only:  # an ablation: say only what it changes
            print(f"  {name:<24} {base} with {settings}")
        else:
            detail = f" ({settings})" if settings else ""
            print(f"  {name:<24} {entry.obj.summary}{detail}  [{entry.obj.citation}]")
    print("datasets:")
    for name, card in sorted(all_cards().items()):
        print(f"  {name:<24} {card.summary}")
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    import json

    from bench.config import parse_assignments
    from bench.data import dataset_info, get_card
    from bench.profile import profile
    from bench.runtime import resolve_device

    card = get_card(args.dataset)
    options = card.resolve_options({"image_size": args.image_size} if args.image_size else {})
    hparams = parse_assignments(args.set or [], "--set", "ot_eps=0.05")
    if args.backbone:
        hparams["backbone"] = args.backbone
    feature_dim = args.feature_dim if args.features_only else None
    result = profile(
        args.method,
        dataset_info(card, options),
        hparams,
        args.batch_size,
        resolve_device(args.device),
        feature_dim=feature_dim,
        steps=args.steps,
    )
    if args.save:
        folder = Path(args.results_dir) / "profile"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{args.method.replace(':', '_')}.json").write_text(
            json.dumps(result.to_dict(), indent=1)
        )
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
        return 0
    rows = [
        ("parameters (training graph)", f"{result.params_train / 1e6:.3f} M"),
        ("parameters (inference graph)", f"{result.params_infer / 1e6:.3f} M"),
        ("FLOPs (training step, fwd+bwd)", f"{result.flops_train / 1e9:.3f} G"),
        ("FLOPs (inference forward)", f"{result.flops_infer / 1e9:.3f} G"),
        ("train step (median)", f"{1000 * result.train_step_s:.2f} ms"),
        ("inference latency (median)", f"{1000 * result.infer_latency_s:.2f} ms"),
        ("peak memory (train steps)", f"{result.peak_mem_mb:.1f} MiB"),
    ]
    print(f"{result.method} on {result.device}, batch {result.batch_size}, {result.input}")
    for label, value in rows:
        print(f"  {label:<32} {value}")
    return 0


def cmd_priors(args: argparse.Namespace) -> int:
    from bench import priors

    if args.action == "show":
        print(priors.show(args.dataset))
    else:
        out = priors.generate(args.dataset, args.model, Path(args.out) if args.out else None)
        print(f"wrote {out}")
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
    run.set_defaults(func=cmd_run)

    results = sub.add_parser("results", help="print one row per cell of an experiment")
    results.add_argument("--experiment", required=True)
    results.add_argument("--results-dir", dest="results_dir", default="results")
    results.add_argument("--format", choices=("csv", "json", "md"), default="md")
    results.set_defaults(func=cmd_results)

    prof = sub.add_parser("profile", help="parameters, FLOPs, step time and memory of a method")
    prof.add_argument("--method", required=True)
    prof.add_argument("--dataset", default="synthetic-retina", help="for classes and channels")
    prof.add_argument("--backbone", help="'small-cnn' or a timm model name, e.g. resnet50")
    prof.add_argument("--image-size", dest="image_size", type=int)
    prof.add_argument(
        "--features-only",
        dest="features_only",
        action="store_true",
        help="time the method's head on precomputed features (no backbones)",
    )
    prof.add_argument("--feature-dim", dest="feature_dim", type=int, default=2048)
    prof.add_argument("--batch-size", dest="batch_size", type=int, default=32)
    prof.add_argument("--steps", type=int, default=10, help="timed steps (median reported)")
    prof.add_argument("--device", default="auto")
    prof.add_argument(
        "--set",
        action="append",
        metavar="NAME=VALUE",
        help="a hyper-parameter of the method (repeatable)",
    )
    prof.add_argument("--json", action="store_true")
    prof.add_argument(
        "--save",
        action="store_true",
        help="also write <results-dir>/profile/<method>.json for reports",
    )
    prof.add_argument("--results-dir", dest="results_dir", default="results")
    prof.set_defaults(func=cmd_profile)

    pri = sub.add_parser("priors", help="show or generate a dataset's semantic priors")
    pri_sub = pri.add_subparsers(dest="action", required=True)
    show = pri_sub.add_parser("show", help="print the prior texts of a dataset")
    show.add_argument("dataset")
    gen = pri_sub.add_parser("generate", help="write new priors with an OpenAI-compatible API")
    gen.add_argument("dataset")
    gen.add_argument("--model", required=True)
    gen.add_argument("--out", help="output file (default beside the card)")
    pri.set_defaults(func=cmd_priors)

    from bench.data.verify import add_data_parser
    from bench.report.cli import add_report_parser
    from bench.tune import add_tune_parser

    add_data_parser(sub)
    add_report_parser(sub)
    add_tune_parser(sub)

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
